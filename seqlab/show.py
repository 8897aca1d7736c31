"""Look at an annotated document: entities highlighted in the terminal, or an HTML page."""

from __future__ import annotations

import html
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
from rich.console import Console
from rich.text import Text

from seqlab import schema
from seqlab.errors import InputError
from seqlab.output import OutputDir

PALETTE = ["#ffd166", "#8ecae6", "#95d5b2", "#f4a6a6", "#cdb4db", "#ffafcc", "#a9def9",
           "#e4c1f9", "#fcf6bd", "#d0f4de"]
RICH_STYLES = ["black on yellow", "black on cyan", "black on green", "black on red",
               "black on magenta", "black on bright_blue", "black on bright_green",
               "black on bright_magenta", "black on bright_yellow", "black on white"]


def load_document(output: str, doc_id: str | None = None) -> dict:
    """One row of ``OUTPUT/documents`` (by id, else the first ok one) as a dict."""
    out = OutputDir(output)
    path = out.path("documents")
    if not out.fs.exists(path):
        raise InputError(f"{output} has no documents/ table",
                         fix="point seqlab show at the OUTPUT of a seqlab annotate run")
    dataset = ds.dataset(path, filesystem=out.fs, format="parquet")
    if doc_id is not None:
        found = dataset.to_table(filter=pc.field(schema.DOC_ID) == doc_id)
    else:
        found = dataset.head(1, filter=pc.field(schema.STATUS) == schema.OK)
    if found.num_rows == 0:
        raise InputError(f"no document {doc_id!r} in {output}" if doc_id else
                         f"no ok document in {output}", fix="pass an id from documents/doc_id")
    row = found.slice(0, 1).to_pylist()[0]
    if row.get(schema.TEXT) is None:
        row[schema.TEXT] = _rebuild_text(row.get("tokens") or [])
    return row


def _rebuild_text(tokens: list[dict]) -> str:
    """Text from token offsets, for runs written with --drop-text (gaps become spaces)."""
    chars: list[str] = []
    for token in tokens:
        chars.extend(" " * (token["start_char"] - len(chars)))
        chars[token["start_char"]:token["end_char"]] = token["text"]
    return "".join(chars)


def colours(labels: list[str], palette: list[str]) -> dict[str, str]:
    return {label: palette[i % len(palette)] for i, label in enumerate(sorted(set(labels)))}


def render_terminal(document: dict, console: Console | None = None) -> None:
    console = console or Console()
    text = Text(document[schema.TEXT] or "")
    entities = document.get("entities") or []
    styles = colours([e["label"] for e in entities], RICH_STYLES)
    for entity in entities:
        text.stylize(styles[entity["label"]], entity["start_char"], entity["end_char"])
    header = f"{document[schema.DOC_ID]}  status={document[schema.STATUS]}"
    if document.get(schema.ERROR):
        header += f"  error={document[schema.ERROR]}"
    console.print(Text(header, style="bold"))
    if styles:
        legend = Text("  ").join(Text(f" {label} ", style=style) for label, style in styles.items())
        console.print(legend)
    console.print(text)


def to_html(document: dict) -> str:
    """A self-contained page: the text with entities marked, one colour per label."""
    text = document[schema.TEXT] or ""
    entities = sorted(document.get("entities") or [], key=lambda e: e["start_char"])
    palette = colours([e["label"] for e in entities], PALETTE)
    pieces, at = [], 0
    for e in entities:
        pieces.append(html.escape(text[at:e["start_char"]]))
        pieces.append(
            f'<mark style="background:{palette[e["label"]]}" title="{html.escape(e["label"])} '
            f'{e["score"]:.3f}">{html.escape(text[e["start_char"]:e["end_char"]])}'
            f'<sup>{html.escape(e["label"])}</sup></mark>')
        at = e["end_char"]
    pieces.append(html.escape(text[at:]))
    legend = " ".join(f'<mark style="background:{c}">{html.escape(label)}</mark>'
                      for label, c in palette.items())
    title = html.escape(str(document[schema.DOC_ID]))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; }}
.doc {{ white-space: pre-wrap; line-height: 1.9; }}
mark {{ padding: 0.1em 0.25em; border-radius: 0.3em; }}
sup {{ font-size: 0.6em; font-weight: bold; margin-left: 0.2em; }}
</style></head><body>
<h1>{title}</h1>
<p>status: {html.escape(document[schema.STATUS])} &middot; {len(entities)} entities &middot; {legend}</p>
<div class="doc">{''.join(pieces)}</div>
</body></html>
"""


def write_html(document: dict, path: str | Path) -> None:
    Path(path).write_text(to_html(document), encoding="utf-8")
