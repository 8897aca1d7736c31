"""``seqlab report``'s page: one self-contained HTML file (inline CSS and a small inline
script, nothing fetched) rendering what ``seqlab.report.gather.gather`` read of a run: the run
and a header per model (``run_html``), rows by status, the entity model's labels, top
entities, score histograms, top documents and sample, with entities highlighted
displaCy-style, one colour per label; then a section per tagging model and per role labeller
(``tasks_html``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from seqlab.report.gather import BINS, MAX_CHARS, STATUS_GROUPS, TOP_ENTITIES, Report, gather
from seqlab.report.page import CSS, SCRIPT, bar, chip, esc, section
from seqlab.report.run_html import run_section, title
from seqlab.report.tasks_html import frames_section, tags_section


def write_report(output: str, html_path: str | Path, sample: int = 50,
                 storage_options: dict | None = None) -> Report:
    """Gather the report of ``output`` and write it to ``html_path`` as one HTML page."""
    report = gather(output, sample, storage_options)
    Path(html_path).write_text(render(report), encoding="utf-8")
    return report




def render(report: Report) -> str:
    """The whole page: inline CSS and a small inline script, nothing fetched."""
    colours = report.colours()
    sections = [run_section(report.manifest, report.models), _statuses(report)]
    if report.primary is not None:
        sections.append(_labels(report, colours))
        if not report.tags:
            sections.append(_top_entities(report, colours))
        sections += [_histograms(report, colours)]
        if not report.tags:
            sections.append(_top_documents(report, colours))
    sections += [tags_section(view) for view in report.pos]
    sections += [frames_section(view) for view in report.srl]
    if report.primary is not None:
        sections.append(_sample(report, colours))
    sections = [s for s in sections if s]
    links = " ".join(f'<a href="#{s[0]}">{esc(s[1])}</a>' for s in sections)
    manifest = report.manifest
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>seqlab report: {esc(manifest.run_id)}</title>
<style>{CSS}</style></head><body>
<header><h1>seqlab report &middot; {esc(title(report.models, manifest))}</h1>
<p>{esc(report.url)} &middot; run {esc(manifest.run_id)}</p></header>
<nav>{links}</nav>
<main>
{''.join(s[2] for s in sections)}
</main>
<script>{SCRIPT}</script>
</body></html>
"""


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
                        f"<td>{bar(n, total)}</td></tr>")
    body = ('<table><tr><th>group</th><th>status</th><th class="n">rows</th>'
            f'<th class="n">share</th><th style="width:40%"></th></tr>{"".join(rows)}</table>')
    counted = {k.removeprefix("status."): v for k, v in report.manifest.counts.items()
               if k.startswith("status.")}
    differ = counted and counted != {k: v for k, v in report.statuses.items() if v}
    note = (f"{total:,} rows in documents/" + (f"; the manifest counts {counted}" if differ
                                               else ", as the manifest counts"))
    return section("statuses", "Rows by status", body, esc(note))


def _labels(report: Report, colours: dict[str, str]) -> tuple[str, str, str]:
    stats = sorted(report.labels.values(), key=lambda s: (-s.mentions, s.label))
    what = "tokens" if report.tags else "mentions"
    if not stats:
        return section("labels", "Labels", '<p class="note">No entities were found.</p>')
    top = max(s.mentions for s in stats)
    texts = "" if report.tags else '<th class="n">distinct texts</th>'
    rows = "".join(
        f'<tr data-label="{esc(s.label)}"><td>{chip(s.label, colours)}</td>'
        f'<td class="n" data-count="{s.mentions}">{s.mentions:,}</td>'
        f'<td class="n">{s.documents:,}</td>'
        + ("" if report.tags else f'<td class="n">{s.texts:,}</td>')
        + f'<td class="n">{s.mean:.3f}</td><td>{bar(s.mentions, top)}</td></tr>'
        for s in stats)
    body = (f'<table><tr><th>label</th><th class="n">{what}</th><th class="n">documents</th>'
            f'{texts}<th class="n">mean score</th><th style="width:35%"></th></tr>{rows}'
            "</table>")
    if report.tags:
        note = (f"A tags model has no entities: the tags of the words of the first "
                f"{report.tag_documents:,} ok documents.")
        return section("labels", "Tags", body, note)
    note = ("Mentions, distinct texts and mean scores from aggregates/; documents: those with "
            "at least one entity of the label.")
    return section("labels", "Entities per label", body, note)


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
                     f'{chip(label, colours)}</h3><table><tr><th>text</th><th class="n">'
                     'mentions</th><th class="n">docs</th><th class="n">score</th></tr>'
                     f"{lines}</table></div>")
    note = (f"The {TOP_ENTITIES} most mentioned texts of each label (normalised: case folded, "
            "whitespace collapsed) with their mean score.")
    return section("top-entities", "Top entities",
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
                     f'style="--c:{colours.get(s.label, "#ddd")}"><h3>{chip(s.label, colours)}'
                     f'<span class="note">{sum(s.bins):,} &middot; mean {s.mean:.3f}</span></h3>'
                     f'<div class="hist">{bars}</div><div class="axis"><span>0</span>'
                     "<span>0.5</span><span>1</span></div></div>")
    what = "token" if report.tags else "entity"
    note = f"Each {what}'s score (softmax probability) in {BINS} bins; bars scale per label."
    return section("scores", "Score histograms",
                    f'<div class="grid" style="--w:16rem">{"".join(cards)}</div>',
                    note)


def _top_documents(report: Report, colours: dict[str, str]) -> tuple[str, str, str] | None:
    if not report.top_documents:
        return None
    labels = sorted(report.labels)
    anchors = {d["doc_id"]: f"doc-{i + 1}" for i, d in enumerate(report.sample)}
    head = "".join(f'<th class="n">{chip(label, colours)}</th>' for label in labels)
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
    return section("top-documents", "Documents with the most entities", body)


def _sample(report: Report, colours: dict[str, str]) -> tuple[str, str, str]:
    what = "tokens" if report.tags else "entities"
    if not report.sample:
        return section("sample", "Sample", f'<p class="note">No ok document has {what}.</p>')
    index = "".join(f'<a href="#doc-{i + 1}">{esc(str(d["doc_id"]))}</a>'
                    for i, d in enumerate(report.sample))
    articles = "".join(_document(d, i, len(report.sample), colours)
                       for i, d in enumerate(report.sample))
    note = (f"The first {len(report.sample)} ok documents with {what}; j / k or the arrow keys "
            f"move between them. Texts are cut near {MAX_CHARS:,} characters.")
    return section("sample", "Sample", f'<div class="index">{index}</div>{articles}', note)


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
    chips = " ".join(f'{chip(label, colours)}{counts[label]}' for label in sorted(counts))
    pager = "".join(f'<a href="#doc-{j + 1}">{word}</a>' for j, word in
                    ((i - 1, "‹ prev"), (i + 1, "next ›")) if 0 <= j < n)
    return (f'<article class="doc" id="doc-{i + 1}" data-doc-id="{esc(str(doc["doc_id"]))}">'
            f'<div class="dochead"><h3>{i + 1} / {n} &middot; {esc(str(doc["doc_id"]))}</h3>'
            f'<span class="pager">{pager}<a href="#sample">↑ index</a></span></div>'
            f'<p class="note">{chips}</p><div class="text">{"".join(pieces)}</div></article>')
