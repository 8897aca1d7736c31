"""The building blocks of ``seqlab report``'s page: its inline CSS and script, and the small
HTML pieces every section uses (a section, a label chip, a bar, a number, a definition
list), so that each section's renderer stays beside what it renders."""

from __future__ import annotations

import html
from collections.abc import Callable

CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bg: #f5f7fa; --accent: #2f5d8a; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: var(--bg); }
header { background: #1f2933; color: #fff; padding: 1.2rem 2rem; }
header h1 { margin: 0; font-size: 1.35rem; font-weight: 600; }
header p { margin: .25rem 0 0; color: #cbd2d9; font-size: .9rem; overflow-wrap: anywhere; }
nav { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid var(--line);
  padding: .5rem 2rem; display: flex; gap: 1.2rem; flex-wrap: wrap; font-size: .9rem; }
nav a { color: var(--accent); text-decoration: none; }
main { max-width: 76rem; margin: 0 auto; padding: 1rem 2rem 4rem; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px;
  padding: 1rem 1.4rem 1.2rem; margin: 1.2rem 0; scroll-margin-top: 3rem; }
h2 { font-size: 1.1rem; margin: 0 0 .8rem; }
h3 { font-size: .95rem; margin: 0 0 .5rem; }
.note { color: var(--muted); font-size: .85rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(var(--w, 22rem), 1fr));
  gap: 1rem; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: .7rem .9rem; min-width: 0; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
td.z { color: #c3cad2; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 600; font-size: .8rem; text-transform: uppercase; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.t { overflow-wrap: break-word; word-break: break-word; }
tr.zero td { color: #9aa5b1; }
.bar { background: #eef1f4; border-radius: 3px; height: .7rem; min-width: 8rem; }
.bar span { display: block; height: 100%; border-radius: 3px; background: var(--accent); }
.ok .bar span { background: #3f9142; } .skipped .bar span { background: #d9a21b; }
.failed .bar span { background: #c7392f; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(9rem, 1fr));
  gap: .8rem; margin-bottom: 1rem; }
.tile { background: var(--bg); border-radius: 6px; padding: .6rem .9rem; }
.tile b { display: block; font-size: 1.35rem; font-variant-numeric: tabular-nums; }
.tile span { color: var(--muted); font-size: .8rem; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: 1rem; font-size: .8rem;
  font-weight: 600; } .yes { background: #e3f4e4; color: #276b2a; }
.no { background: #fbe4e2; color: #a12c23; }
.chip { display: inline-block; background: var(--c); padding: 0 .45rem; border-radius: .3rem;
  font-size: .78rem; font-weight: 700; letter-spacing: .02em; margin-right: .25rem;
  white-space: nowrap; }
.hist { display: flex; align-items: flex-end; gap: 3px; height: 6rem;
  border-bottom: 1px solid #9aa5b1; }
.hist div { flex: 1; background: var(--c); border-radius: 2px 2px 0 0; min-height: 1px; }
.axis { display: flex; justify-content: space-between; font-size: .75rem; color: var(--muted); }
.index { display: flex; flex-wrap: wrap; gap: .35rem; margin-bottom: .5rem; }
.index a { font-size: .8rem; border: 1px solid var(--line); border-radius: 4px;
  padding: .1rem .45rem; color: var(--accent); text-decoration: none; }
article { border-top: 1px solid var(--line); padding: 1rem 0; scroll-margin-top: 3rem; }
article:target { background: #fffdf3; }
.dochead { display: flex; justify-content: space-between; gap: 1rem; flex-wrap: wrap;
  align-items: baseline; margin-bottom: .4rem; }
.dochead h3 { margin: 0; overflow-wrap: anywhere; } .pager a { margin-left: .8rem; }
.text { white-space: pre-wrap; line-height: 2.4; overflow-wrap: anywhere; font-size: .95rem; }
mark.ent { background: var(--c); color: var(--ink); padding: .2em .35em; margin: 0 .1em;
  border-radius: .35em; box-decoration-break: clone; -webkit-box-decoration-break: clone; }
mark.ent .tag { font-size: .62em; font-weight: 700; text-transform: uppercase;
  vertical-align: middle; margin-left: .4em; letter-spacing: .03em; }
.models { display: grid; grid-template-columns: repeat(auto-fill, minmax(17rem, 1fr));
  gap: .8rem; margin-bottom: 1rem; }
.model { border: 1px solid var(--line); border-left: 4px solid var(--accent); border-radius: 6px;
  padding: .6rem .9rem; min-width: 0; }
.model h3 { display: flex; gap: .5rem; align-items: baseline; }
.model h3 .key { font-family: ui-monospace, monospace; }
.model .name { color: var(--muted); font-size: .8rem; overflow-wrap: anywhere; margin: 0 0 .4rem; }
.speed td.n { width: 9rem; }
.words { display: flex; flex-wrap: wrap; gap: .5rem .35rem; align-items: flex-end; }
.word { display: inline-flex; flex-direction: column; align-items: center; }
.word b { font-weight: 400; font-size: 1rem; padding: 0 .1rem; }
.word .chip { margin: .15rem 0 0; }
.frames { margin: 0; padding-left: 2.2rem; }
.frames li { line-height: 2.4; margin-bottom: .3rem; }
.frames .pred { display: inline-block; min-width: 6rem; color: var(--muted);
  font-family: ui-monospace, monospace; font-size: .85rem; }
.frames .v { border-bottom: 3px solid var(--ink); font-weight: 600; }
.cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(22rem, 1fr)); gap: 1.2rem; }
"""
# j / k (or the arrow keys) move between the sampled documents
SCRIPT = """
document.addEventListener('keydown', function (e) {
  if (e.target.tagName === 'INPUT' || e.altKey || e.ctrlKey || e.metaKey) return;
  var step = {j: 1, ArrowRight: 1, k: -1, ArrowLeft: -1}[e.key];
  if (!step) return;
  var docs = document.querySelectorAll('article.doc');
  var at = Array.prototype.findIndex.call(docs, function (d) {
    return '#' + d.id === location.hash;
  });
  var next = docs[Math.min(Math.max(at + step, 0), docs.length - 1)];
  if (next) location.hash = next.id;
});
"""
esc = html.escape


def section(key: str, title: str, body: str, note: str = "") -> tuple[str, str, str]:
    """(anchor, title, HTML) of one section of the page; the navigation links the titles."""
    note = f'<p class="note">{note}</p>' if note else ""
    return key, title, f'<section id="{key}"><h2>{esc(title)}</h2>{note}{body}</section>\n'


def chip(label: str, colours: dict[str, str]) -> str:
    return f'<span class="chip" style="--c:{colours.get(label, "#ddd")}">{esc(label)}</span>'


def bar(value: float, top: float) -> str:
    width = 100 * value / top if top else 0
    return f'<div class="bar"><span style="width:{width:.1f}%"></span></div>'


def n(value: float) -> str:
    """
    >>> n(12345), n(0.5)
    ('12,345', '0.5')
    """
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def share(part: int, whole: int) -> str:
    """
    >>> share(1, 3), share(0, 0)
    ('33.3%', '–')
    """
    return f"{100 * part / whole:.1f}%" if whole else "–"


def dl(items: list[tuple[str, str]]) -> str:
    """A definition list; the values are HTML already."""
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def table(head: list[str], rows: list[str], numeric: set[int] = frozenset()) -> str:
    """A table of ``rows`` (each ``<tr>...</tr>`` already) under a header row."""
    cells = "".join(f'<th class="n">{h}</th>' if i in numeric else f"<th>{h}</th>"
                    for i, h in enumerate(head))
    return f"<table><tr>{cells}</tr>{''.join(rows)}</table>"


def frame_spans(text: str, spans: list[dict], predicate: dict,
                argument: Callable[[dict, str], str]) -> str:
    """A frame's stretch of text from its first span to its last (``spans`` in text order,
    without overlaps): the predicate in bold, each argument as ``argument(span, words)``
    marks it (``words``: its text, escaped)."""
    at, pieces = spans[0]["start_char"], []
    for span in spans:
        pieces.append(esc(text[at:span["start_char"]]))
        words = esc(text[span["start_char"]:span["end_char"]])
        if span is predicate:
            pieces.append(f'<b class="v" title="predicate {span["score"]:.3f}">{words}</b>')
        else:
            pieces.append(argument(span, words))
        at = span["end_char"]
    return "".join(pieces)
