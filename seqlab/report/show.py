"""Look at annotated documents: entities highlighted on a terminal, marked as
``[text](LABEL)`` in plain text (a pipe, a log), or an HTML page (``show_html``); each
tagging model's tag of every word in a column beside the word; each SRL frame on a line of
its own (those without arguments hidden unless asked); or a list of documents.

``--chars N`` bounds everything shown of a document: its text, and the entities, words and
frames that lie inside its first N characters."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from rich.console import Console
from rich.text import Text

from seqlab import schema
from seqlab.errors import InputError
from seqlab.report.run_info import TAGS, ModelHeader, header_lines, model_headers
from seqlab.store.outdir import OutputDir

PALETTE = ["#ffd166", "#8ecae6", "#95d5b2", "#f4a6a6", "#cdb4db", "#ffafcc", "#a9def9",
           "#e4c1f9", "#fcf6bd", "#d0f4de"]
RICH_STYLES = ["black on yellow", "black on cyan", "black on green", "black on red",
               "black on magenta", "black on bright_blue", "black on bright_green",
               "black on bright_magenta", "black on bright_yellow", "black on white"]
SPAN_LABEL = re.compile(r"^[BIESLU]-")  # a span scheme's token label (B-PER), not a tag


def open_documents(output: str, storage_options: dict | None = None) -> ds.Dataset:
    out = OutputDir(output, storage_options)
    path = out.path("documents")
    if not out.fs.exists(path):
        raise InputError(f"{output} has no documents/ table",
                         fix="point seqlab show at the OUTPUT of a seqlab annotate run")
    return ds.dataset(path, filesystem=out.fs, format="parquet")


def run_models(output: str, storage_options: dict | None = None) -> list[ModelHeader]:
    """The run's models as its manifest names them; none while the run has not ended."""
    manifest = OutputDir(output, storage_options).manifest()
    return model_headers(manifest) if manifest is not None else []


def load_documents(output: str, doc_id: str | None = None, limit: int = 1,
                   storage_options: dict | None = None,
                   models: list[ModelHeader] | None = None) -> list[dict]:
    """Rows of ``OUTPUT/documents`` as dicts: the one with ``doc_id``, else the first
    ``limit`` ok ones; with every model's entities and frames, and (``tags``) the words of
    each tagging model, by column."""
    dataset = open_documents(output, storage_options)
    if doc_id is not None:
        found = dataset.head(1, filter=pc.field(schema.DOC_ID) == doc_id)
    else:
        found = dataset.head(max(limit, 1), filter=pc.field(schema.STATUS) == schema.OK)
    if found.num_rows == 0:
        raise InputError(f"no document {doc_id!r} in {output}" if doc_id else
                         f"no ok document in {output}",
                         fix="pass an id that seqlab show --list prints")
    entities, frames = span_columns(dataset.schema)
    tagged = tag_columns(dataset.schema, models)
    rows = found.to_pylist()
    for row in rows:
        if row.get(schema.TEXT) is None:
            row[schema.TEXT] = rebuild_text(next((row[c] for c in row if isinstance(
                row[c], list) and row[c] and c.endswith(schema.TOKENS)), []))
        # every model's entities and frames (a run of several names them KEY_entities...)
        row["entities"] = sorted((e for c in entities for e in row.get(c) or []),
                                 key=lambda e: (e["start_char"], -e["end_char"]))
        row["frames"] = [f for c in frames for f in row.get(c) or []]
        columns = tagged if tagged is not None else _tag_like(row, dataset.schema)
        row["tags"] = {name: row.get(column) or [] for name, column in columns}
    return rows


def span_columns(declared: pa.Schema) -> tuple[list[str], list[str]]:
    """The documents columns holding entities, and those holding frames (``entities`` and
    ``frames`` alone, ``KEY_entities`` and ``KEY_frames`` in a run of several models)."""
    def named(name: str) -> list[str]:
        return [f.name for f in declared if pa.types.is_list(f.type)
                and (f.name == name or f.name.endswith("_" + name))]

    return named(schema.ENTITIES), named(schema.FRAMES_COLUMN)


def tag_columns(declared: pa.Schema, models: list[ModelHeader] | None
                ) -> list[tuple[str, str]] | None:
    """(name, tokens column) of each tagging model the manifest names; None without one."""
    if not models:
        return None
    return [(h.key or h.task, column) for h in models if h.kind == TAGS
            and (column := h.column(schema.TOKENS)) and column in declared.names]


def _tag_like(row: dict, declared: pa.Schema) -> list[tuple[str, str]]:
    """Without a manifest (a run not ended), the tokens columns whose labels are tags (not
    O or a span scheme's B-PER)."""
    columns = [f.name for f in declared if pa.types.is_list(f.type) and (
        f.name == schema.TOKENS or f.name.endswith("_" + schema.TOKENS))]
    return [(c.removesuffix(schema.TOKENS).rstrip("_") or "tag", c) for c in columns
            if any(t["label"] != "O" and not SPAN_LABEL.match(t["label"])
                   for t in row.get(c) or [])]


def list_documents(output: str, limit: int | None = None, storage_options: dict | None = None
                   ) -> Iterator[tuple[str, str, int, int, str]]:
    """``(doc_id, status, entities, frames, error)`` of each document (error "" where there is
    none), reading only those columns."""
    dataset = open_documents(output, storage_options)
    entities, frames = span_columns(dataset.schema)
    errors = [schema.ERROR] if schema.ERROR in dataset.schema.names else []
    left = limit
    for batch in dataset.to_batches(columns=[schema.DOC_ID, schema.STATUS, *errors, *entities,
                                             *frames]):
        if left is not None:
            batch = batch.slice(0, left)
            left -= batch.num_rows
        error = batch.column(schema.ERROR).to_pylist() if errors else [None] * batch.num_rows
        yield from zip(batch.column(schema.DOC_ID).to_pylist(),
                       batch.column(schema.STATUS).to_pylist(),
                       _lengths(batch, entities).tolist(), _lengths(batch, frames).tolist(),
                       [e or "" for e in error])
        if left == 0:
            return


def _lengths(batch: pa.RecordBatch, columns: list[str]):
    total = pa.array([0] * batch.num_rows, pa.int64())
    for column in columns:
        total = pc.add(total, pc.fill_null(pc.list_value_length(batch.column(column)), 0))
    return total.to_numpy(zero_copy_only=False)


def print_list(rows: Iterable[tuple[str, str, int, int, str]]) -> None:
    """Tab-separated, with a header line: easy to read and to cut, sort or grep; a row that
    was skipped or failed shows why (``too_long``: its length and the limit)."""
    print("doc_id\tstatus\tentities\tframes\terror")
    for doc_id, status, entities, frames, error in rows:
        print(f"{doc_id}\t{status}\t{entities}\t{frames}\t{error}".rstrip("\t"))


def rebuild_text(tokens: list[dict]) -> str:
    """Text from token offsets, for runs written with --drop-text (gaps become spaces)."""
    chars: list[str] = []
    for token in tokens:
        chars.extend(" " * (token["start_char"] - len(chars)))
        chars[token["start_char"]:token["end_char"]] = token["text"]
    return "".join(chars)


def clip(document: dict, chars: int | None) -> dict:
    """The document cut to its first ``chars`` characters, with the entities, words and
    frames that end inside them; ``clipped`` says how many characters were left out and
    ``frames_after`` how many frames.

    >>> doc = {"text": "Ada Lovelace wrote", "entities": [{"start_char": 0, "end_char": 3},
    ...        {"start_char": 4, "end_char": 12}]}
    >>> clip(doc, 5)["text"], clip(doc, 5)["entities"], clip(doc, 5)["clipped"]
    ('Ada L', [{'start_char': 0, 'end_char': 3}], 13)
    """
    text = document.get(schema.TEXT) or ""
    if chars is None or len(text) <= chars:
        return document
    frames = document.get("frames") or []
    inside = [f for f in frames if max(s["end_char"] for s in
                                       [f["predicate"], *f["arguments"]]) <= chars]
    return {**document, schema.TEXT: text[:chars],
            "entities": [e for e in document.get("entities") or [] if e["end_char"] <= chars],
            "tags": {name: [t for t in tokens if t["end_char"] <= chars]
                     for name, tokens in (document.get("tags") or {}).items()},
            "frames": inside, "clipped": len(text) - chars,
            "frames_after": len(frames) - len(inside), "chars": chars}


def drop_bare_frames(document: dict) -> dict:
    """The document without its frames that have no arguments (a predicate the model found no
    role for, most often an auxiliary); ``frames_hidden`` counts them."""
    frames = document.get("frames") or []
    kept = [f for f in frames if f["arguments"]]
    return {**document, "frames": kept, "frames_hidden": len(frames) - len(kept)}


def hidden_note(document: dict) -> str:
    """What of the document's frames is not shown, and how to see it.

    >>> hidden_note({"frames_after": 430, "chars": 1200, "frames_hidden": 2})
    'not shown: 430 frames after character 1,200; 2 frames without arguments (--all-frames)'
    """
    parts = []
    if document.get("frames_after"):
        parts.append(f"{document['frames_after']:,} frames after character "
                     f"{document['chars']:,}")
    if document.get("frames_hidden"):
        parts.append(f"{document['frames_hidden']:,} frames without arguments (--all-frames)")
    return "not shown: " + "; ".join(parts) if parts else ""


def colours(labels: list[str], palette: list[str]) -> dict[str, str]:
    return {label: palette[i % len(palette)] for i, label in enumerate(sorted(set(labels)))}


def _header(document: dict) -> str:
    header = f"{document[schema.DOC_ID]}  status={document[schema.STATUS]}"
    if document.get(schema.ERROR):
        header += f"  error={document[schema.ERROR]}"
    return header


def more(document: dict) -> str:
    return f"… ({document['clipped']:,} more characters)" if document.get("clipped") else ""


def aligned_tags(document: dict) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The tagging models' names and, word by word, the word and each model's tag ("" where
    a model has none for it): the models share one tokenization, matched by offsets."""
    tags = {name: tokens for name, tokens in (document.get("tags") or {}).items() if tokens}
    if not tags:
        return [], []
    names = list(tags)
    by_offsets = {name: {(t["start_char"], t["end_char"]): t["label"] for t in tokens}
                  for name, tokens in tags.items()}
    words = {(t["start_char"], t["end_char"]): t["text"] for ts in tags.values() for t in ts}
    return names, [(words[span], [by_offsets[name].get(span, "") for name in names])
                   for span in sorted(words)]


def tag_lines(document: dict, width: int = 100) -> list[str]:
    """The words interlinear with each tagging model's tags: a column per word, a row per
    model, wrapped at ``width`` characters.

    >>> words = [("Ada", "PROPN"), ("wrote", "VERB"), ("it", "PRON")]
    >>> tokens = [{"text": w, "start_char": 6 * i, "end_char": 6 * i + len(w), "label": t}
    ...           for i, (w, t) in enumerate(words)]
    >>> print("\\n".join(tag_lines({"tags": {"upos": tokens}}, width=20)))
    word  Ada    wrote
    upos  PROPN  VERB
    <BLANKLINE>
    word  it
    upos  PRON
    """
    names, rows = aligned_tags(document)
    if not rows:
        return []
    heads = ["word", *names]
    head = max(map(len, heads))
    lines: list[str] = []
    blocks: list[list[list[str]]] = [[]]
    used = head
    for word, tags in rows:
        column = [word, *tags]
        wide = max(map(len, column)) + 2
        if blocks[-1] and used + wide > width:
            blocks.append([])
            used = head
        blocks[-1].append(column)
        used += wide
    for block in blocks:
        lines += [""] if lines else []
        for i, name in enumerate(heads):
            cells = [c[i].ljust(max(map(len, c))) for c in block]
            lines.append("  ".join([name.ljust(head), *cells]).rstrip())
    return lines


def print_documents(documents: list[dict], console: Console | None = None,
                    models: list[ModelHeader] | None = None) -> None:
    """Colours on a terminal; elsewhere ANSI colours would be noise or lost, so the
    entities are marked in the text. The run's models first, one line each."""
    console = console or Console()
    lines = header_lines(models or [])
    if lines and console.is_terminal:
        for line in [*lines, ""]:
            console.print(Text(line, style="dim"))
    elif lines:
        sys.stdout.write("\n".join(lines) + "\n\n")
    for i, document in enumerate(documents):
        if console.is_terminal:
            if i:
                console.print()
            render_terminal(document, console)
        else:
            sys.stdout.write(("\n" if i else "") + render_plain(document) + "\n")


def render_plain(document: dict) -> str:
    """The header and the text with each entity written ``[text](LABEL)``, then the words'
    tags and the frames.

    >>> print(render_plain({"doc_id": "d1", "status": "ok", "text": "Ada Lovelace wrote.",
    ...     "entities": [{"start_char": 0, "end_char": 12, "label": "PER"}]}))
    d1  status=ok
    [Ada Lovelace](PER) wrote.
    """
    text = document[schema.TEXT] or ""
    pieces, at = [], 0
    for e in outermost(document.get("entities") or []):
        pieces.append(text[at:e["start_char"]])
        pieces.append(f"[{text[e['start_char']:e['end_char']]}]({e['label']})")
        at = e["end_char"]
    pieces.append(text[at:])
    lines = [_header(document), "".join(pieces), more(document)]
    tags = tag_lines(document)
    lines = [line for line in lines if line] + tags
    lines += [frame_line(frame) for frame in document.get("frames") or []]
    lines += [hidden_note(document)] if hidden_note(document) else []
    return "\n".join(lines)


def outermost(entities: list[dict]) -> list[dict]:
    """Entities in text order without overlaps (two models may mark the same words): the
    first, longest one of overlapping ones."""
    kept, end = [], 0
    for e in sorted(entities, key=lambda e: (e["start_char"], -e["end_char"])):
        if e["start_char"] >= end:
            kept.append(e)
            end = e["end_char"]
    return kept


def frame_line(frame: dict) -> str:
    """A frame in one line: its predicate, then each argument as ``ROLE="text"``.

    >>> frame_line({"frame": 0, "predicate": {"text": "said"}, "arguments": [
    ...     {"role": "ARG0", "text": "John"}, {"role": "ARG1", "text": "it rained"}]})
    'frame 0  said: ARG0="John" ARG1="it rained"'
    """
    arguments = " ".join(f'{a["role"]}="{a["text"]}"' for a in frame["arguments"])
    return f'frame {frame["frame"]}  {frame["predicate"]["text"]}: {arguments}'.rstrip()


def render_terminal(document: dict, console: Console | None = None) -> None:
    console = console or Console()
    text = Text(document[schema.TEXT] or "")
    entities = outermost(document.get("entities") or [])
    styles = colours([e["label"] for e in entities], RICH_STYLES)
    for entity in entities:
        text.stylize(styles[entity["label"]], entity["start_char"], entity["end_char"])
    console.print(Text(_header(document), style="bold"))
    if styles:
        legend = Text("  ").join(Text(f" {label} ", style=style) for label, style in styles.items())
        console.print(legend)
    console.print(text)
    if document.get("clipped"):
        console.print(Text(more(document), style="dim"))
    for line in tag_lines(document, console.width):
        console.print(Text(line), soft_wrap=True)
    for frame in document.get("frames") or []:
        console.print(Text(frame_line(frame)))
    if hidden_note(document):
        console.print(Text(hidden_note(document), style="dim"))
