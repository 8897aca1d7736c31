"""One self-contained HTML page that reviews a whole annotate run: the run itself, rows by
status, entities per label, top entities, score histograms, the documents with the most
entities and a navigable sample of documents with their entities highlighted.

Tables are read through fsspec from the files the manifest lists, column by column and batch
by batch: documents' ``doc_id``/``status``/``entities.label``, mentions' ``label``/``score``,
the aggregates, and texts only of the sampled documents. A plain-tags model (POS, ...) has no
entities; its page shows the tags of a sample of documents' tokens instead.
"""

from __future__ import annotations

import heapq
import html
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seqlab import schema
from seqlab.errors import OutputError
from seqlab.labels import OUTSIDE, split_label
from seqlab.output import OutputDir
from seqlab.show import _rebuild_text

log = logging.getLogger(__name__)

STATUS_GROUPS = (("ok", (schema.OK,)), ("skipped", (schema.EMPTY, schema.TOO_LONG)),
                 ("failed", (schema.FAILED, schema.BAD_RECORD, schema.BAD_ENCODING,
                             schema.BAD_TYPE)))
BINS = 10  # score histogram bins over [0, 1]
TOP_ENTITIES = 15
TOP_DOCUMENTS = 10
MAX_CHARS = 3000  # a sampled text is cut near here, never inside an entity
TAG_DOCUMENTS = 1000  # documents whose tokens give a tags model's distribution
PALETTE = ["#feca74", "#f4b6c2", "#7aecec", "#aa9cfc", "#bfeeb7", "#ffeb80", "#c887fb",
           "#9cc9cc", "#ff9561", "#bfe1d9", "#e4e7d2", "#ff8197", "#a7c7e7", "#d4c4a8",
           "#f0d0ff", "#c5e384", "#ffd1a9", "#cfd8dc"]


@dataclass
class LabelStats:
    """What one label (an entity type, or a tag of a tags model) adds up to."""

    label: str
    mentions: int = 0  # entities (tokens, for tags)
    documents: int = 0  # distinct documents with at least one
    texts: int = 0  # distinct normalised texts (aggregate rows)
    score_sum: float = 0.0
    bins: list[int] = field(default_factory=lambda: [0] * BINS)

    @property
    def mean(self) -> float:
        return self.score_sum / self.mentions if self.mentions else 0.0


@dataclass
class Report:
    """Everything the page shows, gathered from one output."""

    url: str
    manifest: dict
    tags: bool  # a plain-tags model: tokens' tags instead of entities
    statuses: Counter = field(default_factory=Counter)
    labels: dict[str, LabelStats] = field(default_factory=dict)
    top_entities: dict[str, list[dict]] = field(default_factory=dict)
    top_documents: list[dict] = field(default_factory=list)  # doc_id, entities, labels
    sample: list[dict] = field(default_factory=list)  # doc_id, text, spans, cut, hidden
    tag_documents: int = 0  # documents the tags distribution was read from

    def label(self, name: str) -> LabelStats:
        return self.labels.setdefault(name, LabelStats(name))

    def colours(self) -> dict[str, str]:
        """One colour per label: the model's own labels (entity types) first, sorted, so
        that colours are stable across runs of one model."""
        types = [split_label(name)[1] or name
                 for name in self.manifest["model"].get("labels", []) if name != OUTSIDE]
        names = list(dict.fromkeys(sorted(set(types)) + sorted(self.labels)))
        return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def write_report(output: str, html_path: str | Path, sample: int = 50,
                 storage_options: dict | None = None) -> Report:
    """Gather the report of ``output`` and write it to ``html_path`` as one HTML page."""
    report = gather(output, sample, storage_options)
    Path(html_path).write_text(render(report), encoding="utf-8")
    return report


# ---------------------------------------------------------------------- reading the tables


def gather(output: str, sample: int = 50, storage_options: dict | None = None) -> Report:
    """The report of one ended run, read from the files its manifest lists."""
    out = OutputDir(output, storage_options)
    manifest = out.manifest()
    if manifest is None:
        under_way = out.state() is not None
        raise OutputError(
            f"{output} has no _manifest.json: "
            + ("its run is still under way or was interrupted" if under_way
               else "no seqlab annotate run has finished there"),
            fix="run seqlab annotate first, or wait for it to finish")
    report = Report(output, manifest, tags=manifest["model"].get("scheme") == "tags")
    files = {table: [out.path(p["path"]) for p in manifest.get("tables", {}).get(table, [])]
             for table in ("documents", "mentions", "aggregates")}
    log.debug("reading %s: %d documents, %d mentions and %d aggregates files", output,
             *(len(files[table]) for table in ("documents", "mentions", "aggregates")))
    picked = _scan_documents(out, files["documents"], report, sample)
    if report.tags:
        _scan_tags(out, files["documents"], report, max(sample, TAG_DOCUMENTS))
    else:
        _scan_mentions(out, files["mentions"], report)
        _read_aggregates(out, files["aggregates"], report)
    report.sample = _load_sample(out, picked, report.tags)
    return report


@contextmanager
def _open(out: OutputDir, path: str) -> Iterator[pq.ParquetFile]:
    with out.fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        try:
            yield parquet
        finally:
            parquet.close()


def _leaf(parquet: pq.ParquetFile, column: str, name: str) -> str | None:
    """The Parquet path of a list-of-struct column's field (``entities.list.element.label``),
    so that only that field is read; None when the column is not there."""
    return next((c.path for c in (parquet.schema.column(i) for i in range(len(parquet.schema)))
                 if c.path.startswith(f"{column}.") and c.path.endswith(f".{name}")), None)


def _scan_documents(out: OutputDir, files: list[str], report: Report,
                    sample: int) -> dict[str, list[str]]:
    """Statuses, documents per label and the documents with the most entities, from
    ``doc_id``, ``status`` and ``entities.label`` only. Returns the sampled ids per file: the
    first ``sample`` ok documents with entities (with tokens, for a tags model)."""
    picked: dict[str, list[str]] = {}
    top: list[tuple[int, int, str, list[str]]] = []  # (entities, -position, doc_id, labels)
    seen = 0
    for path in files:
        with _open(out, path) as parquet:
            labels = None if report.tags else _leaf(parquet, schema.ENTITIES, "label")
            columns = [schema.DOC_ID, schema.STATUS, schema.N_TOKENS, *([labels] * bool(labels))]
            for batch in parquet.iter_batches(columns=columns, batch_size=8192):
                counts = _scan_batch(batch, report, top, seen)
                wanted = sample - sum(map(len, picked.values()))
                if wanted > 0:
                    picked.setdefault(path, []).extend(_first_ok(batch, counts, wanted))
                seen += batch.num_rows
    report.top_documents = [{"doc_id": doc_id, "entities": n, "labels": Counter(labels)}
                            for n, _, doc_id, labels in sorted(top, reverse=True)]
    return {path: ids for path, ids in picked.items() if ids}


def _scan_batch(batch: pa.RecordBatch, report: Report, top: list, seen: int) -> pa.Array:
    """Count one batch of documents in; returns each row's entities (words, for tags)."""
    report.statuses.update(dict(zip(*_value_counts(batch.column(schema.STATUS)))))
    if schema.ENTITIES not in batch.schema.names:
        return batch.column(schema.N_TOKENS)
    entities = batch.column(schema.ENTITIES)
    counts = pc.fill_null(pc.list_value_length(entities), 0)
    _count_documents(entities, report)
    _keep_top(top, batch.column(schema.DOC_ID), counts, entities, seen)
    return counts


def _first_ok(batch: pa.RecordBatch, counts: pa.Array, wanted: int) -> list[str]:
    """The ids of the first ``wanted`` ok rows with at least one entity (or word)."""
    ok = pc.and_(pc.equal(batch.column(schema.STATUS), schema.OK), pc.greater(counts, 0))
    rows = np.flatnonzero(ok.to_numpy(zero_copy_only=False))[:wanted]
    return batch.column(schema.DOC_ID).take(pa.array(rows, pa.int64())).to_pylist()


def _value_counts(column: pa.Array) -> tuple[list, list]:
    counts = pc.value_counts(column)
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()


def _count_documents(entities: pa.Array, report: Report) -> None:
    """Add, per label, the documents of this batch with at least one such entity."""
    flat = pc.list_flatten(entities)
    if len(flat) == 0:
        return
    pairs = pa.table({"doc": pc.list_parent_indices(entities), "label": flat.field("label")})
    distinct = pairs.group_by(["doc", "label"]).aggregate([])
    for label, n in zip(*_value_counts(distinct.column("label").combine_chunks())):
        report.label(label).documents += n


def _keep_top(top: list, doc_ids: pa.Array, counts: pa.Array, entities: pa.Array,
              seen: int) -> None:
    """Keep the TOP_DOCUMENTS documents with the most entities (the first on ties), looking
    only at this batch's own top candidates."""
    order = pc.top_k_unstable(counts, TOP_DOCUMENTS)
    for i in order.to_pylist():
        n = counts[i].as_py()
        if n == 0:
            continue
        item = (n, -(seen + i), doc_ids[i].as_py(),
                [e["label"] for e in entities[i].as_py()])
        if len(top) < TOP_DOCUMENTS:
            heapq.heappush(top, item)
        elif item > top[0]:
            heapq.heapreplace(top, item)


def _bins(scores: pa.Array) -> pa.Array:
    """The histogram bin of each score in [0, 1]; 1.0 falls in the last bin.

    >>> _bins(pa.array([0.0, 0.05, 0.5, 0.99, 1.0])).to_pylist()
    [0, 0, 5, 9, 9]
    """
    scaled = pc.floor(pc.multiply(scores, float(BINS)))
    return pc.max_element_wise(pc.min_element_wise(pc.cast(scaled, pa.int64()), BINS - 1), 0)


def _add_scores(labels: pa.Array, scores: pa.Array, report: Report) -> None:
    """Mentions, score sums and histogram bins per label; with ``documents`` counted apart."""
    table = pa.table({"label": labels, "bin": _bins(scores), "score": scores})
    grouped = table.group_by(["label", "bin"]).aggregate([("score", "count"),
                                                          ("score", "sum")])
    for row in grouped.to_pylist():
        stats = report.label(row["label"])
        stats.bins[row["bin"]] += row["score_count"]
        if report.tags:  # entities' sums come from the aggregates
            stats.mentions += row["score_count"]
            stats.score_sum += row["score_sum"]


def _scan_mentions(out: OutputDir, files: list[str], report: Report) -> None:
    for path in files:
        with _open(out, path) as parquet:
            for batch in parquet.iter_batches(columns=["label", "score"], batch_size=65536):
                _add_scores(batch.column("label"), batch.column("score"), report)


def _scan_tags(out: OutputDir, files: list[str], report: Report, limit: int) -> None:
    """A tags model: its tags' counts, documents and scores from the tokens of the first
    ``limit`` ok documents."""
    for path in files:
        with _open(out, path) as parquet:
            fields = [_leaf(parquet, schema.TOKENS, name) for name in ("label", "score")]
            columns = [schema.STATUS, *fields]
            if None in columns:
                return
            for batch in parquet.iter_batches(columns=columns, batch_size=1024):
                tokens = batch.column(schema.TOKENS).filter(
                    pc.equal(batch.column(schema.STATUS), schema.OK))
                tokens = tokens.slice(0, limit - report.tag_documents)
                report.tag_documents += len(tokens)
                flat = pc.list_flatten(tokens)
                _add_scores(flat.field("label"), flat.field("score"), report)
                _count_documents(tokens, report)
                if report.tag_documents >= limit:
                    return


def _read_aggregates(out: OutputDir, files: list[str], report: Report) -> None:
    """Mentions, texts and score sums per label, and each label's top entities by mentions
    (ties by text)."""
    columns = ["label", "text", "mentions", "documents", "score_sum"]
    tables = []
    for path in files:
        with _open(out, path) as parquet:
            tables.append(parquet.read(columns=columns))
    if not tables or not sum(t.num_rows for t in tables):
        return
    table = pa.concat_tables(tables)
    sums = table.group_by("label").aggregate([("mentions", "sum"), ("score_sum", "sum"),
                                              ("text", "count")])
    for row in sums.to_pylist():
        stats = report.label(row["label"])
        stats.mentions, stats.score_sum = row["mentions_sum"], row["score_sum_sum"]
        stats.texts = row["text_count"]
    for label in sorted(report.labels):
        rows = table.filter(pc.equal(table.column("label"), label))
        rows = rows.sort_by([("mentions", "descending"), ("text", "ascending")])
        report.top_entities[label] = rows.slice(0, TOP_ENTITIES).to_pylist()


def _load_sample(out: OutputDir, picked: dict[str, list[str]], tags: bool) -> list[dict]:
    """The sampled documents, read from their own files only, in output order, each with its
    spans (entities, or tokens for a tags model) and cut near MAX_CHARS."""
    documents = []
    for path, ids in picked.items():
        with _open(out, path) as parquet:
            rows = _read_rows(parquet, set(ids), tags)
        for doc_id in ids:
            row = rows[doc_id]
            text = row.get(schema.TEXT)
            if text is None:  # a run with --drop-text
                text = _rebuild_text(row.get(schema.TOKENS) or [])
            spans = row[schema.TOKENS if tags else schema.ENTITIES] or []
            documents.append(_cut({"doc_id": doc_id, "text": text,
                                   "spans": sorted(spans, key=lambda s: s["start_char"])}))
    return documents


def _read_rows(parquet: pq.ParquetFile, ids: set[str], tags: bool) -> dict[str, dict]:
    """The rows with these ids, reading texts only of the row groups that hold them."""
    columns = [schema.DOC_ID, schema.TOKENS if tags else schema.ENTITIES]
    if schema.TEXT in parquet.schema_arrow.names:
        columns.append(schema.TEXT)
    elif not tags:
        columns.append(schema.TOKENS)
    rows: dict[str, dict] = {}
    for group in range(parquet.num_row_groups):
        found = pc.is_in(parquet.read_row_group(group, columns=[schema.DOC_ID])
                         .column(schema.DOC_ID), pa.array(sorted(ids), pa.string()))
        if pc.any(found).as_py():
            table = parquet.read_row_group(group, columns=columns)
            rows.update((row[schema.DOC_ID], row) for row in table.filter(found).to_pylist())
        if len(rows) == len(ids):
            break
    return rows


def _cut(document: dict, limit: int = MAX_CHARS) -> dict:
    """The document cut at a space near ``limit`` characters, never inside a span; ``cut``
    says how many characters and ``hidden`` how many spans it leaves out.

    >>> doc = _cut({"text": "Ada Lovelace wrote", "spans": [{"start_char": 4,
    ...     "end_char": 12}]}, limit=8)
    >>> doc["text"], doc["cut"], doc["hidden"]
    ('Ada ', 14, 1)
    """
    text, spans = document["text"], document["spans"]
    at = len(text)
    if at > limit:
        space = text.rfind(" ", max(limit - 200, 0), limit)
        at = space + 1 if space > 0 else limit
        at = next((s["start_char"] for s in spans if s["start_char"] < at < s["end_char"]), at)
    shown = [s for s in spans if s["end_char"] <= at]
    return {**document, "text": text[:at], "spans": shown, "cut": len(text) - at,
            "hidden": len(spans) - len(shown)}


# ---------------------------------------------------------------------- the page

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
    model = report.manifest["model"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>seqlab report: {esc(str(report.manifest.get('run_id')))}</title>
<style>{CSS}</style></head><body>
<header><h1>seqlab report &middot; {esc(str(model.get('name')))}</h1>
<p>{esc(report.url)} &middot; run {esc(str(report.manifest.get('run_id')))}</p></header>
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
    elapsed = m.get("elapsed_s") or 0
    counts = m.get("counts", {})
    docs = counts.get("documents", m.get("rows", {}).get("out", 0))
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
            f'</div>{_failed_inputs(m.get("failed_inputs") or [])}')
    return _section("run", "Run", body)


def _run_cards(m: dict) -> list[tuple[str, list[tuple[str, str]]]]:
    model, config = m.get("model", {}), m.get("config", {})
    complete = m.get("complete", True)
    runs = m.get("attempts", [])
    attempts = (f'<span title="{esc(", ".join(_when(a.get("started_at")) for a in runs))}">'
                f'{len(runs)} &middot; {" → ".join(esc(str(a.get("engine"))) for a in runs)}'
                "</span>")

    def get(mapping: dict, key: str) -> str:
        return _value(mapping.get(key))

    state = ("yes", "complete") if complete else ("no", "incomplete")
    device = f"{get(config, 'device')} / {get(config, 'dtype')}"
    return [
        ("Model", [("name", get(model, "name")), ("revision", get(model, "revision")),
                   ("scheme", get(model, "scheme")),
                   ("labels", str(len(model.get("labels", []))))]),
        ("Run", [("run id", get(m, "run_id")), ("engine", get(m, "engine")),
                 ("state", '<span class="badge {}">{}</span>'.format(*state)),
                 ("started", _when(m.get("processed_at"))),
                 ("finished", _when(m.get("finished_at"))),
                 ("attempts", attempts if runs else "–"), ("input", get(config, "input"))]),
        ("Configuration", [("window", get(config, "max_length")),
                           ("stride", get(config, "stride")),
                           ("decoder", get(config, "decoder")),
                           ("aggregation", get(config, "aggregation")),
                           ("batch tokens", get(config, "batch_tokens")),
                           ("device / dtype", device),
                           ("text kept", get(config, "keep_text"))]),
    ]


def _failed_inputs(failed: list[dict]) -> str:
    if not failed:
        return ""
    rows = "".join(f'<tr><td class="t">{esc(str(f.get("fragment")))}</td>'
                   f'<td class="n">{_n(f["rows"]) if f.get("rows") is not None else "–"}</td>'
                   f'<td class="t">{esc(str(f.get("error")))}</td></tr>' for f in failed)
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
    counted = {k.removeprefix("status."): v for k, v in report.manifest.get("counts", {}).items()
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
