"""``seqlab show --html``: the documents shown, as one self-contained page. Each document's
text with its entities marked, its words' tags (each tagging model's, word by word) and its
frames (the predicate underlined, each argument marked with its role); the run's models
named at the top."""

from __future__ import annotations

import html
from pathlib import Path

from seqlab import schema
from seqlab.report.page import frame_spans
from seqlab.report.run_info import ModelHeader
from seqlab.report.show import PALETTE, aligned_tags, colours, hidden_note, more, outermost

esc = html.escape
CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; }
.doc { white-space: pre-wrap; line-height: 1.9; }
mark { padding: 0.1em 0.25em; border-radius: 0.3em; }
sup { font-size: 0.6em; font-weight: bold; margin-left: 0.2em; }
.frames li { line-height: 1.9; margin-bottom: 0.4em; }
.frames .p { display: inline-block; min-width: 7rem; color: #555; }
.v { border-bottom: 2px solid #333; }
.models td, .models th { text-align: left; padding: 0.1em 0.8em 0.1em 0; }
.words { display: flex; flex-wrap: wrap; gap: 0.4em 0.3em; }
.word { display: inline-flex; flex-direction: column; align-items: center; }
.word small { font-size: 0.7em; font-weight: bold; padding: 0 0.3em; border-radius: 0.3em; }
.note { color: #666; font-size: 0.9em; }
"""


def _models(headers: list[ModelHeader]) -> str:
    if not headers:
        return ""
    names = [k for k, _ in headers[0].fields()[:5]]
    rows = "".join(f"<tr><td><b>{esc(h.key or h.task)}</b></td>"
                   + "".join(f"<td>{esc(v)}</td>" for _, v in h.fields()[:5])
                   + f"<td>{esc(h.name)}</td></tr>" for h in headers)
    head = "".join(f"<th>{name}</th>" for name in ["model", *names, "name"])
    return f'<table class="models"><tr>{head}</tr>{rows}</table>'


def _document(document: dict) -> str:
    """One document: its id, status, legend, the text with entities marked, its words' tags
    and its frames."""
    text = document[schema.TEXT] or ""
    entities = outermost(document.get("entities") or [])
    palette = colours([e["label"] for e in entities], PALETTE)
    pieces, at = [], 0
    for e in entities:
        pieces.append(esc(text[at:e["start_char"]]))
        pieces.append(
            f'<mark style="background:{palette[e["label"]]}" title="{esc(e["label"])} '
            f'{e["score"]:.3f}">{esc(text[e["start_char"]:e["end_char"]])}'
            f'<sup>{esc(e["label"])}</sup></mark>')
        at = e["end_char"]
    pieces.append(esc(text[at:]) + esc(f" {more(document)}".rstrip()))
    legend = " ".join(f'<mark style="background:{c}">{esc(label)}</mark>'
                      for label, c in palette.items())
    note = hidden_note(document)
    return f"""<section>
<h1>{esc(str(document[schema.DOC_ID]))}</h1>
<p>status: {esc(document[schema.STATUS])} &middot; {len(entities)} entities \
&middot; {legend}</p>
<div class="doc">{''.join(pieces)}</div>
{_tags(document)}{_frames(text, document.get("frames") or [])}
{f'<p class="note">{esc(note)}</p>' if note else ""}
</section>"""


def _tags(document: dict) -> str:
    """Each word with the tag of every tagging model under it."""
    names, rows = aligned_tags(document)
    if not rows:
        return ""
    palette = colours([tag for _, tags in rows for tag in tags], PALETTE)
    words = "".join(
        f'<span class="word"><span>{esc(word)}</span>'
        + "".join(f'<small style="background:{palette[tag]}" title="{esc(name)}">{esc(tag)}'
                  "</small>" for name, tag in zip(names, tags) if tag)
        + "</span>" for word, tags in rows)
    return f'<h2>Tags ({esc(", ".join(names))})</h2>\n<div class="words">{words}</div>\n'


def _frames(text: str, frames: list[dict]) -> str:
    """Each frame as the stretch of text from its first to its last span, the predicate in
    bold and every argument marked with its role."""
    if not frames:
        return ""
    roles = colours([a["role"] for f in frames for a in f["arguments"]], PALETTE)
    rows = []
    for frame in frames:
        predicate = {**frame["predicate"], "role": "V"}
        spans = outermost([predicate, *frame["arguments"]])
        pieces = frame_spans(text, spans, predicate, lambda span, words: (
            f'<mark style="background:{roles[span["role"]]}" title="'
            f'{esc(span["role"])} {span["score"]:.3f}">{words}'
            f'<sup>{esc(span["role"])}</sup></mark>'))
        rows.append(f'<li value="{frame["frame"]}"><span class="p">'
                    f'{esc(frame["predicate"]["text"])}</span> {pieces}</li>')
    return f'<h2>{len(frames)} frames</h2>\n<ol class="frames">{"".join(rows)}</ol>'


def to_html(documents: list[dict], headers: list[ModelHeader] | None = None) -> str:
    """A self-contained page: the run's models, then each document."""
    title = esc(", ".join(str(d[schema.DOC_ID]) for d in documents[:3])
                + (", …" if len(documents) > 3 else ""))
    body = "\n".join(_document(d) for d in documents)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{CSS}</style></head><body>
{_models(headers or [])}
{body}
</body></html>
"""


def write_html(documents: list[dict], path: str | Path,
               headers: list[ModelHeader] | None = None) -> None:
    Path(path).write_text(to_html(documents, headers), encoding="utf-8")
