"""``seqlab report``'s page: one self-contained HTML file (inline CSS and a small inline
script, nothing fetched) rendering what ``seqlab.report.gather.gather`` read of a run, with entities
highlighted displaCy-style, one colour per label."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from seqlab.report.gather import BINS, MAX_CHARS, STATUS_GROUPS, TOP_ENTITIES, Report, gather
from seqlab.store.manifest import FailedInput, Manifest


def write_report(output: str, html_path: str | Path, sample: int = 50,
                 storage_options: dict | None = None) -> Report:
    """Gather the report of ``output`` and write it to ``html_path`` as one HTML page."""
    report = gather(output, sample, storage_options)
    Path(html_path).write_text(render(report), encoding="utf-8")
    return report


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
  font-size: .78rem; font-weight: 700; letter-spacing: .02em; margin-right: .25rem; }
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


def render(report: Report) -> str:
    """The whole page: inline CSS and a small inline script, nothing fetched."""
    colours = report.colours()
    sections = [_run(report), _statuses(report), _labels(report, colours)]
    if not report.tags:
        sections.append(_top_entities(report, colours))
    sections += [_histograms(report, colours)]
    if not report.tags:
        sections.append(_top_documents(report, colours))
    sections.append(_sample(report, colours))
    sections = [s for s in sections if s]
    links = " ".join(f'<a href="#{s[0]}">{esc(s[1])}</a>' for s in sections)
    manifest = report.manifest
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>seqlab report: {esc(manifest.run_id)}</title>
<style>{CSS}</style></head><body>
<header><h1>seqlab report &middot; {esc(manifest.model.name)}</h1>
<p>{esc(report.url)} &middot; run {esc(manifest.run_id)}</p></header>
<nav>{links}</nav>
<main>
{''.join(s[2] for s in sections)}
</main>
<script>{SCRIPT}</script>
</body></html>
"""


def _section(key: str, title: str, body: str, note: str = "") -> tuple[str, str, str]:
    note = f'<p class="note">{note}</p>' if note else ""
    return key, title, f'<section id="{key}"><h2>{esc(title)}</h2>{note}{body}</section>\n'


def _chip(label: str, colours: dict[str, str]) -> str:
    return f'<span class="chip" style="--c:{colours.get(label, "#ddd")}">{esc(label)}</span>'


def _bar(value: float, top: float) -> str:
    width = 100 * value / top if top else 0
    return f'<div class="bar"><span style="width:{width:.1f}%"></span></div>'


def _n(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _when(stamp: str | None) -> str:
    """An ISO timestamp as ``2026-01-31 12:00:00 UTC``."""
    if not stamp:
        return "–"
    try:
        return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except ValueError:
        return stamp


def _duration(seconds: float) -> str:
    """
    >>> _duration(6.45), _duration(3725)
    ('6.5 s', '1 h 2 min 5 s')
    """
    if seconds < 60:
        return f"{seconds:.1f} s"
    hours, rest = divmod(round(seconds), 3600)
    return (f"{hours} h " if hours else "") + f"{rest // 60} min {rest % 60} s"


def _value(value: object) -> str:
    """A manifest value for the page: None as a dash, booleans as yes / no.

    >>> _value(None), _value(True), _value(256)
    ('–', 'yes', '256')
    """
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return esc(str(value))


def _dl(items: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _run(report: Report) -> tuple[str, str, str]:
    m = report.manifest
    elapsed = m.elapsed_s
    counts = m.counts
    docs = counts.get("documents", m.rows.written)
    figures = [("documents", _n(docs)), ("words", _n(counts.get("tokens", 0)))]
    figures += [] if report.tags else [("entities", _n(counts.get("entities", 0)))]
    figures += [("elapsed", _duration(elapsed))]
    figures += [(f"{what}/s", f"{n / elapsed:,.1f}" if elapsed else "–")
                for what, n in (("documents", docs), ("words", counts.get("tokens", 0)))]
    tiles = "".join(f'<div class="tile"><b>{value}</b><span>{what}</span></div>'
                    for what, value in figures)
    cards = "".join(f'<div class="card"><h3>{title}</h3>{_dl(items)}</div>'
                    for title, items in _run_cards(m))
    body = (f'<div class="tiles">{tiles}</div><div class="grid" style="--w:20rem">{cards}'
            f'</div>{_failed_inputs(m.failed_inputs)}')
    return _section("run", "Run", body)


def _run_cards(m: Manifest) -> list[tuple[str, list[tuple[str, str]]]]:
    model, config, runs = m.model, m.config, m.attempts
    attempts = (f'<span title="{esc(", ".join(_when(a.started_at) for a in runs))}">'
                f'{len(runs)} &middot; {" → ".join(esc(a.engine) for a in runs)}</span>')

    def get(mapping: Mapping[str, Any], key: str) -> str:
        return _value(mapping.get(key))

    state = ("yes", "complete") if m.complete else ("no", "incomplete")
    device = f"{get(config, 'device')} / {get(config, 'precision') or get(config, 'dtype')}"
    return [
        ("Model", [("name", _value(model.name)), ("revision", _value(model.revision)),
                   ("scheme", _value(model.scheme)), ("labels", str(len(model.labels)))]),
        ("Run", [("run id", _value(m.run_id)), ("engine", _value(m.engine)),
                 ("state", '<span class="badge {}">{}</span>'.format(*state)),
                 ("started", _when(m.processed_at)),
                 ("finished", _when(m.finished_at)),
                 ("attempts", attempts if runs else "–"), ("input", get(config, "input"))]),
        ("Configuration", [("window", get(config, "max_length")),
                           ("stride", get(config, "stride")),
                           ("decoder", get(config, "decoder")),
                           ("aggregation", get(config, "aggregation")),
                           ("batch tokens", get(config, "batch_tokens")),
                           ("device / precision", device),
                           ("text kept", get(config, "keep_text"))]),
    ]


def _failed_inputs(failed: tuple[FailedInput, ...]) -> str:
    if not failed:
        return ""
    rows = "".join(f'<tr><td class="t">{esc(f.fragment)}</td>'
                   f'<td class="n">{_n(f.rows) if f.rows is not None else "–"}</td>'
                   f'<td class="t">{esc(f.error)}</td></tr>' for f in failed)
    return (f'<h3 style="margin-top:1rem">Input files that could not be read ({len(failed)})'
            f'</h3><table><tr><th>file</th><th class="n">rows</th><th>error</th></tr>{rows}'
            "</table><p class=\"note\">Rerun the same annotate command to retry them.</p>")


def _statuses(report: Report) -> tuple[str, str, str]:
    total = sum(report.statuses.values())
    known = {s for _, statuses in STATUS_GROUPS for s in statuses}
    groups = [*STATUS_GROUPS, ("other", tuple(sorted(set(report.statuses) - known)))]
    rows = []
    for group, statuses in groups:
        for status in statuses:
            n = report.statuses.get(status, 0)
            share = f"{100 * n / total:.1f}%" if total else "–"
            rows.append(f'<tr class="{group}{" zero" if not n else ""}" data-status="{status}">'
                        f"<td>{group}</td><td>{esc(status)}</td>"
                        f'<td class="n" data-count="{n}">{n:,}</td><td class="n">{share}</td>'
                        f"<td>{_bar(n, total)}</td></tr>")
    body = ('<table><tr><th>group</th><th>status</th><th class="n">rows</th>'
            f'<th class="n">share</th><th style="width:40%"></th></tr>{"".join(rows)}</table>')
    counted = {k.removeprefix("status."): v for k, v in report.manifest.counts.items()
               if k.startswith("status.")}
    differ = counted and counted != {k: v for k, v in report.statuses.items() if v}
    note = (f"{total:,} rows in documents/" + (f"; the manifest counts {counted}" if differ
                                               else ", as the manifest counts"))
    return _section("statuses", "Rows by status", body, esc(note))


def _labels(report: Report, colours: dict[str, str]) -> tuple[str, str, str]:
    stats = sorted(report.labels.values(), key=lambda s: (-s.mentions, s.label))
    what = "tokens" if report.tags else "mentions"
    if not stats:
        return _section("labels", "Labels", '<p class="note">No entities were found.</p>')
    top = max(s.mentions for s in stats)
    texts = "" if report.tags else '<th class="n">distinct texts</th>'
    rows = "".join(
        f'<tr data-label="{esc(s.label)}"><td>{_chip(s.label, colours)}</td>'
        f'<td class="n" data-count="{s.mentions}">{s.mentions:,}</td>'
        f'<td class="n">{s.documents:,}</td>'
        + ("" if report.tags else f'<td class="n">{s.texts:,}</td>')
        + f'<td class="n">{s.mean:.3f}</td><td>{_bar(s.mentions, top)}</td></tr>'
        for s in stats)
    body = (f'<table><tr><th>label</th><th class="n">{what}</th><th class="n">documents</th>'
            f'{texts}<th class="n">mean score</th><th style="width:35%"></th></tr>{rows}'
            "</table>")
    if report.tags:
        note = (f"A tags model has no entities: the tags of the words of the first "
                f"{report.tag_documents:,} ok documents.")
        return _section("labels", "Tags", body, note)
    note = ("Mentions, distinct texts and mean scores from aggregates/; documents: those with "
            "at least one entity of the label.")
    return _section("labels", "Entities per label", body, note)


def _top_entities(report: Report, colours: dict[str, str]) -> tuple[str, str, str] | None:
    if not report.top_entities:
        return None
    cards = []
    for label, rows in report.top_entities.items():
        lines = "".join(
            f'<tr><td class="t">{esc(r["text"])}</td><td class="n">{r["mentions"]:,}</td>'
            f'<td class="n">{r["documents"]:,}</td>'
            f'<td class="n">{r["score_sum"] / r["mentions"]:.3f}</td></tr>' for r in rows)
        cards.append(f'<div class="card" data-label="{esc(label)}"><h3>'
                     f'{_chip(label, colours)}</h3><table><tr><th>text</th><th class="n">'
                     'mentions</th><th class="n">docs</th><th class="n">score</th></tr>'
                     f"{lines}</table></div>")
    note = (f"The {TOP_ENTITIES} most mentioned texts of each label (normalised: case folded, "
            "whitespace collapsed) with their mean score.")
    return _section("top-entities", "Top entities",
                    f'<div class="grid" style="--w:26rem">{"".join(cards)}</div>',
                    note)


def _histograms(report: Report, colours: dict[str, str]) -> tuple[str, str, str] | None:
    stats = [s for s in sorted(report.labels.values(), key=lambda s: s.label) if sum(s.bins)]
    if not stats:
        return None
    cards = []
    for s in stats:
        top = max(s.bins)
        bars = "".join(f'<div style="height:{100 * n / top:.1f}%" data-count="{n}" '
                       f'title="{i / BINS:.1f}–{(i + 1) / BINS:.1f}: {n:,}"></div>'
                       for i, n in enumerate(s.bins))
        cards.append(f'<div class="card" data-label="{esc(s.label)}" '
                     f'style="--c:{colours.get(s.label, "#ddd")}"><h3>{_chip(s.label, colours)}'
                     f'<span class="note">{sum(s.bins):,} &middot; mean {s.mean:.3f}</span></h3>'
                     f'<div class="hist">{bars}</div><div class="axis"><span>0</span>'
                     "<span>0.5</span><span>1</span></div></div>")
    what = "token" if report.tags else "entity"
    note = f"Each {what}'s score (softmax probability) in {BINS} bins; bars scale per label."
    return _section("scores", "Score histograms",
                    f'<div class="grid" style="--w:16rem">{"".join(cards)}</div>',
                    note)


def _top_documents(report: Report, colours: dict[str, str]) -> tuple[str, str, str] | None:
    if not report.top_documents:
        return None
    labels = sorted(report.labels)
    anchors = {d["doc_id"]: f"doc-{i + 1}" for i, d in enumerate(report.sample)}
    head = "".join(f'<th class="n">{_chip(label, colours)}</th>' for label in labels)
    rows = []
    for d in report.top_documents:
        doc_id = esc(str(d["doc_id"]))
        link = (f'<a href="#{anchors[d["doc_id"]]}">{doc_id}</a>' if d["doc_id"] in anchors
                else doc_id)
        cells = "".join(f'<td class="n{"" if d["labels"].get(label) else " z"}">'
                        f'{d["labels"].get(label, 0):,}</td>' for label in labels)
        rows.append(f'<tr><td class="t">{link}</td><td class="n">{d["entities"]:,}</td>'
                    f"{cells}</tr>")
    body = (f'<table><tr><th>doc_id</th><th class="n">entities</th>{head}</tr>'
            f'{"".join(rows)}</table>')
    return _section("top-documents", "Documents with the most entities", body)


def _sample(report: Report, colours: dict[str, str]) -> tuple[str, str, str]:
    what = "tokens" if report.tags else "entities"
    if not report.sample:
        return _section("sample", "Sample", f'<p class="note">No ok document has {what}.</p>')
    index = "".join(f'<a href="#doc-{i + 1}">{esc(str(d["doc_id"]))}</a>'
                    for i, d in enumerate(report.sample))
    articles = "".join(_document(d, i, len(report.sample), colours)
                       for i, d in enumerate(report.sample))
    note = (f"The first {len(report.sample)} ok documents with {what}; j / k or the arrow keys "
            f"move between them. Texts are cut near {MAX_CHARS:,} characters.")
    return _section("sample", "Sample", f'<div class="index">{index}</div>{articles}', note)


def _document(doc: dict, i: int, n: int, colours: dict[str, str]) -> str:
    """One document, displaCy style: each span a coloured mark with its label beside it."""
    text, pieces, at = doc["text"], [], 0
    for span in doc["spans"]:
        if span["start_char"] < at:  # overlapping spans are not expected; keep the first
            continue
        label = span["label"]
        pieces.append(esc(text[at:span["start_char"]]))
        pieces.append(f'<mark class="ent" style="--c:{colours.get(label, "#ddd")}" '
                      f'title="{esc(label)} {span["score"]:.3f}">'
                      f'{esc(text[span["start_char"]:span["end_char"]])}'
                      f'<span class="tag">{esc(label)}</span></mark>')
        at = span["end_char"]
    pieces.append(esc(text[at:]))
    if doc["cut"]:
        hidden = f" and {doc['hidden']:,} more spans" if doc["hidden"] else ""
        pieces.append(f'<span class="note"> … {doc["cut"]:,} more characters{hidden} not '
                      "shown</span>")
    counts = Counter(s["label"] for s in doc["spans"])
    chips = " ".join(f'{_chip(label, colours)}{counts[label]}' for label in sorted(counts))
    pager = "".join(f'<a href="#doc-{j + 1}">{word}</a>' for j, word in
                    ((i - 1, "‹ prev"), (i + 1, "next ›")) if 0 <= j < n)
    return (f'<article class="doc" id="doc-{i + 1}" data-doc-id="{esc(str(doc["doc_id"]))}">'
            f'<div class="dochead"><h3>{i + 1} / {n} &middot; {esc(str(doc["doc_id"]))}</h3>'
            f'<span class="pager">{pager}<a href="#sample">↑ index</a></span></div>'
            f'<p class="note">{chips}</p><div class="text">{"".join(pieces)}</div></article>')
