"""Look at annotated documents: entities highlighted on a terminal, marked as
``[text](LABEL)`` in plain text (a pipe, a log), or an HTML page; or a list of documents."""

from __future__ import annotations

import html
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from rich.console import Console
from rich.text import Text

from seqlab import schema
from seqlab.errors import InputError
from seqlab.store.outdir import OutputDir

PALETTE = ["#ffd166", "#8ecae6", "#95d5b2", "#f4a6a6", "#cdb4db", "#ffafcc", "#a9def9",
           "#e4c1f9", "#fcf6bd", "#d0f4de"]
RICH_STYLES = ["black on yellow", "black on cyan", "black on green", "black on red",
               "black on magenta", "black on bright_blue", "black on bright_green",
               "black on bright_magenta", "black on bright_yellow", "black on white"]


def open_documents(output: str, storage_options: dict | None = None) -> ds.Dataset:
    out = OutputDir(output, storage_options)
    path = out.path("documents")
    if not out.fs.exists(path):
        raise InputError(f"{output} has no documents/ table",
                         fix="point seqlab show at the OUTPUT of a seqlab annotate run")
    return ds.dataset(path, filesystem=out.fs, format="parquet")


def load_documents(output: str, doc_id: str | None = None, limit: int = 1,
                   storage_options: dict | None = None) -> list[dict]:
    """Rows of ``OUTPUT/documents`` as dicts: the one with ``doc_id``, else the first
    ``limit`` ok ones."""
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
    rows = found.to_pylist()
    for row in rows:
        if row.get(schema.TEXT) is None:
            row[schema.TEXT] = rebuild_text(next((row[c] for c in row if isinstance(
                row[c], list) and row[c] and c.endswith(schema.TOKENS)), []))
        # every model's entities and frames (a run of several names them KEY_entities...)
        row["entities"] = sorted((e for c in entities for e in row.get(c) or []),
                                 key=lambda e: (e["start_char"], -e["end_char"]))
        row["frames"] = [f for c in frames for f in row.get(c) or []]
    return rows


def span_columns(declared: pa.Schema) -> tuple[list[str], list[str]]:
    """The documents columns holding entities, and those holding frames (``entities`` and
    ``frames`` alone, ``KEY_entities`` and ``KEY_frames`` in a run of several models)."""
    def named(name: str) -> list[str]:
        return [f.name for f in declared if pa.types.is_list(f.type)
                and (f.name == name or f.name.endswith("_" + name))]

    return named(schema.ENTITIES), named(schema.FRAMES_COLUMN)


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
    """The document cut to its first ``chars`` characters, with the entities inside them;
    ``clipped`` says how many characters were left out.

    >>> doc = {"text": "Ada Lovelace wrote", "entities": [{"start_char": 0, "end_char": 12}]}
    >>> clip(doc, 5)["text"], clip(doc, 5)["entities"], clip(doc, 5)["clipped"]
    ('Ada L', [{'start_char': 0, 'end_char': 5}], 13)
    """
    text = document.get(schema.TEXT) or ""
    if chars is None or len(text) <= chars:
        return document
    entities = [{**e, "end_char": min(e["end_char"], chars)}
                for e in document.get("entities") or [] if e["start_char"] < chars]
    return {**document, schema.TEXT: text[:chars], "entities": entities,
            "clipped": len(text) - chars}


def colours(labels: list[str], palette: list[str]) -> dict[str, str]:
    return {label: palette[i % len(palette)] for i, label in enumerate(sorted(set(labels)))}


def _header(document: dict) -> str:
    header = f"{document[schema.DOC_ID]}  status={document[schema.STATUS]}"
    if document.get(schema.ERROR):
        header += f"  error={document[schema.ERROR]}"
    return header


def _more(document: dict) -> str:
    return f"… ({document['clipped']:,} more characters)" if document.get("clipped") else ""


def print_documents(documents: list[dict], console: Console | None = None) -> None:
    """Colours on a terminal; elsewhere ANSI colours would be noise or lost, so the
    entities are marked in the text."""
    console = console or Console()
    for i, document in enumerate(documents):
        if console.is_terminal:
            if i:
                console.print()
            render_terminal(document, console)
        else:
            sys.stdout.write(("\n" if i else "") + render_plain(document) + "\n")


def render_plain(document: dict) -> str:
    """The header and the text with each entity written ``[text](LABEL)``.

    >>> print(render_plain({"doc_id": "d1", "status": "ok", "text": "Ada Lovelace wrote.",
    ...     "entities": [{"start_char": 0, "end_char": 12, "label": "PER"}]}))
    d1  status=ok
    [Ada Lovelace](PER) wrote.
    """
    text = document[schema.TEXT] or ""
    pieces, at = [], 0
    for e in _outermost(document.get("entities") or []):
        pieces.append(text[at:e["start_char"]])
        pieces.append(f"[{text[e['start_char']:e['end_char']]}]({e['label']})")
        at = e["end_char"]
    pieces.append(text[at:])
    lines = [_header(document), "".join(pieces), _more(document)]
    lines += [frame_line(frame) for frame in document.get("frames") or []]
    return "\n".join(line for line in lines if line)


def _outermost(entities: list[dict]) -> list[dict]:
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
    entities = _outermost(document.get("entities") or [])
    styles = colours([e["label"] for e in entities], RICH_STYLES)
    for entity in entities:
        text.stylize(styles[entity["label"]], entity["start_char"], entity["end_char"])
    console.print(Text(_header(document), style="bold"))
    if styles:
        legend = Text("  ").join(Text(f" {label} ", style=style) for label, style in styles.items())
        console.print(legend)
    console.print(text)
    if document.get("clipped"):
        console.print(Text(_more(document), style="dim"))
    for frame in document.get("frames") or []:
        console.print(Text(frame_line(frame)))


def _html_document(document: dict) -> str:
    """One document: its id, status, legend, and the text with entities marked."""
    text = document[schema.TEXT] or ""
    entities = _outermost(document.get("entities") or [])
    palette = colours([e["label"] for e in entities], PALETTE)
    pieces, at = [], 0
    for e in entities:
        pieces.append(html.escape(text[at:e["start_char"]]))
        pieces.append(
            f'<mark style="background:{palette[e["label"]]}" title="{html.escape(e["label"])} '
            f'{e["score"]:.3f}">{html.escape(text[e["start_char"]:e["end_char"]])}'
            f'<sup>{html.escape(e["label"])}</sup></mark>')
        at = e["end_char"]
    pieces.append(html.escape(text[at:]) + html.escape(f" {_more(document)}".rstrip()))
    legend = " ".join(f'<mark style="background:{c}">{html.escape(label)}</mark>'
                      for label, c in palette.items())
    return f"""<section>
<h1>{html.escape(str(document[schema.DOC_ID]))}</h1>
<p>status: {html.escape(document[schema.STATUS])} &middot; {len(entities)} entities \
&middot; {legend}</p>
<div class="doc">{''.join(pieces)}</div>
{_html_frames(text, document.get("frames") or [])}
</section>"""


def _html_frames(text: str, frames: list[dict]) -> str:
    """Each frame as the stretch of text from its first to its last span, the predicate in
    bold and every argument marked with its role."""
    if not frames:
        return ""
    roles = colours([a["role"] for f in frames for a in f["arguments"]], PALETTE)
    rows = []
    for frame in frames:
        predicate = {**frame["predicate"], "role": "V"}
        spans = _outermost([predicate, *frame["arguments"]])
        at = min(s["start_char"] for s in spans)
        pieces = []
        for span in spans:
            pieces.append(html.escape(text[at:span["start_char"]]))
            words = html.escape(text[span["start_char"]:span["end_char"]])
            if span is predicate:
                pieces.append(f'<b class="v" title="predicate {span["score"]:.3f}">{words}</b>')
            else:
                pieces.append(f'<mark style="background:{roles[span["role"]]}" title="'
                              f'{html.escape(span["role"])} {span["score"]:.3f}">{words}'
                              f'<sup>{html.escape(span["role"])}</sup></mark>')
            at = span["end_char"]
        rows.append(f'<li><span class="p">{html.escape(frame["predicate"]["text"])}</span> '
                    f'{"".join(pieces)}</li>')
    return f'<h2>{len(frames)} frames</h2>\n<ol class="frames" start="0">{"".join(rows)}</ol>'


def to_html(documents: list[dict]) -> str:
    """A self-contained page: each document's text with entities marked, one colour per
    label."""
    title = html.escape(", ".join(str(d[schema.DOC_ID]) for d in documents[:3])
                        + (", …" if len(documents) > 3 else ""))
    body = "\n".join(_html_document(d) for d in documents)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; }}
.doc {{ white-space: pre-wrap; line-height: 1.9; }}
mark {{ padding: 0.1em 0.25em; border-radius: 0.3em; }}
sup {{ font-size: 0.6em; font-weight: bold; margin-left: 0.2em; }}
.frames li {{ line-height: 1.9; margin-bottom: 0.4em; }}
.frames .p {{ display: inline-block; min-width: 7rem; color: #555; }}
.v {{ border-bottom: 2px solid #333; }}
</style></head><body>
{body}
</body></html>
"""


def write_html(documents: list[dict], path: str | Path) -> None:
    Path(path).write_text(to_html(documents), encoding="utf-8")
