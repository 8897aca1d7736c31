"""What ``seqlab report`` shows of a whole annotate run, read from its tables: the run itself,
rows by status, entities per label, top entities, score histograms, the documents with the
most entities and a sample of documents (``seqlab.report.html`` renders it as one page).

Tables are read through fsspec from the files the manifest lists, column by column and batch
by batch: documents' ``doc_id``/``status``/``entities.label``, mentions' ``label``/``score``,
the aggregates, and texts only of the sampled documents. A plain-tags model (POS, ...) has no
entities: alone in its run, its page shows the tags of a sample of documents' tokens instead;
beside an entity model, and for role labellers, ``seqlab.report.tasks`` gathers its own
section. The page has a header per model (``seqlab.report.run_info``).
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqlab import schema
from seqlab.errors import OutputError
from seqlab.labels import OUTSIDE, split_label
from seqlab.report.read import leaf, open_parquet, read_rows, value_counts
from seqlab.report.run_info import ENTITIES, FRAMES, TAGS, ModelHeader, model_headers
from seqlab.report.show import rebuild_text
from seqlab.report.tasks import (
    TAG_DOCUMENTS,
    FramesView,
    TagsView,
    gather_frames,
    gather_tags,
)
from seqlab.store.manifest import Manifest
from seqlab.store.outdir import OutputDir

log = logging.getLogger(__name__)

STATUS_GROUPS = (("ok", (schema.OK,)), ("skipped", (schema.EMPTY, schema.TOO_LONG)),
                 ("failed", (schema.FAILED, schema.BAD_RECORD, schema.BAD_ENCODING,
                             schema.BAD_TYPE)))
BINS = 10  # score histogram bins over [0, 1]
TOP_ENTITIES = 15
TOP_DOCUMENTS = 10
MAX_CHARS = 3000  # a sampled text is cut near here, never inside an entity
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
    manifest: Manifest
    tags: bool  # a plain-tags model: tokens' tags instead of entities
    # the documents columns of the model whose labels the entity sections show: in a run of
    # several, the first one with entities (else the first tagging model), ``KEY_entities``
    # and ``KEY_tokens``; None (no such section) when only role labellers ran
    primary: ModelHeader | None = None
    entities: str = schema.ENTITIES
    tokens: str = schema.TOKENS
    models: list[ModelHeader] = field(default_factory=list)
    pos: list[TagsView] = field(default_factory=list)  # the other tagging models
    srl: list[FramesView] = field(default_factory=list)
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
        labels = self.primary.labels if self.primary else self.manifest.model.labels
        types = [split_label(name)[1] or name for name in labels if name != OUTSIDE]
        names = list(dict.fromkeys(sorted(set(types)) + sorted(self.labels)))
        return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


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
    report = _report(output, manifest)
    files = {table: [out.path(p.path) for p in manifest.tables.get(table, ())]
             for table in ("documents", "mentions", "aggregates")}
    log.debug("reading %s: %d documents, %d mentions and %d aggregates files", output,
             *(len(files[table]) for table in ("documents", "mentions", "aggregates")))
    picked = _scan_documents(out, files["documents"], report, sample)
    if report.primary is None:
        picked = {}
    elif report.tags:
        _scan_tags(out, files["documents"], report, max(sample, TAG_DOCUMENTS))
    else:
        _scan_mentions(out, files["mentions"], report)
        _read_aggregates(out, files["aggregates"], report)
    report.sample = _load_sample(out, picked, report)
    frames = [out.path(p.path) for p in manifest.tables.get("frames", ())]
    for header in report.models:
        if header.kind == TAGS and header is not report.primary:
            report.pos.append(gather_tags(out, files["documents"], header))
        elif header.kind == FRAMES:
            report.srl.append(gather_frames(out, frames, files["documents"], header))
    return report


def _report(output: str, manifest: Manifest) -> Report:
    """The report of the run's first entity model (or, with none, its first tags model; with
    neither, of its role labellers only)."""
    models = model_headers(manifest)
    labelled = [h for h in models if h.kind in (ENTITIES, TAGS) and h.column(schema.TOKENS)]
    primary = next((h for h in labelled if h.kind == ENTITIES and h.column(schema.ENTITIES)),
                   labelled[0] if labelled else None)
    if primary is None:
        return Report(output, manifest, tags=False, models=models)
    return Report(output, manifest, tags=primary.kind == TAGS, primary=primary,
                  entities=primary.column(schema.ENTITIES) or schema.ENTITIES,
                  tokens=primary.column(schema.TOKENS) or schema.TOKENS, models=models)


def _scan_documents(out: OutputDir, files: list[str], report: Report,
                    sample: int) -> dict[str, list[str]]:
    """Statuses, documents per label and the documents with the most entities, from
    ``doc_id``, ``status`` and ``entities.label`` only. Returns the sampled ids per file: the
    first ``sample`` ok documents with entities (with tokens, for a tags model)."""
    picked: dict[str, list[str]] = {}
    top: list[tuple[int, int, str, list[str]]] = []  # (entities, -position, doc_id, labels)
    seen = 0
    for path in files:
        with open_parquet(out, path) as parquet:
            labels = None if report.tags else leaf(parquet, report.entities, "label")
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
    report.statuses.update(dict(zip(*value_counts(batch.column(schema.STATUS)))))
    if report.entities not in batch.schema.names:
        return batch.column(schema.N_TOKENS)
    entities = batch.column(report.entities)
    counts = pc.fill_null(pc.list_value_length(entities), 0)
    _count_documents(entities, report)
    _keep_top(top, batch.column(schema.DOC_ID), counts, entities, seen)
    return counts


def _first_ok(batch: pa.RecordBatch, counts: pa.Array, wanted: int) -> list[str]:
    """The ids of the first ``wanted`` ok rows with at least one entity (or word)."""
    ok = pc.and_(pc.equal(batch.column(schema.STATUS), schema.OK), pc.greater(counts, 0))
    rows = np.flatnonzero(ok.to_numpy(zero_copy_only=False))[:wanted]
    return batch.column(schema.DOC_ID).take(pa.array(rows, pa.int64())).to_pylist()


def _count_documents(entities: pa.Array, report: Report) -> None:
    """Add, per label, the documents of this batch with at least one such entity."""
    flat = pc.list_flatten(entities)
    if len(flat) == 0:
        return
    pairs = pa.table({"doc": pc.list_parent_indices(entities), "label": flat.field("label")})
    distinct = pairs.group_by(["doc", "label"]).aggregate([])
    for label, n in zip(*value_counts(distinct.column("label").combine_chunks())):
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
        with open_parquet(out, path) as parquet:
            for batch in parquet.iter_batches(columns=["label", "score"], batch_size=65536):
                _add_scores(batch.column("label"), batch.column("score"), report)


def _scan_tags(out: OutputDir, files: list[str], report: Report, limit: int) -> None:
    """A tags model: its tags' counts, documents and scores from the tokens of the first
    ``limit`` ok documents."""
    for path in files:
        with open_parquet(out, path) as parquet:
            fields = [leaf(parquet, report.tokens, name) for name in ("label", "score")]
            columns = [schema.STATUS, *fields]
            if None in columns:
                return
            for batch in parquet.iter_batches(columns=columns, batch_size=1024):
                tokens = batch.column(report.tokens).filter(
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
        with open_parquet(out, path) as parquet:
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


def _load_sample(out: OutputDir, picked: dict[str, list[str]], report: Report) -> list[dict]:
    """The sampled documents, read from their own files only, in output order, each with its
    spans (entities, or tokens for a tags model) and cut near MAX_CHARS."""
    spans_column = report.tokens if report.tags else report.entities
    documents = []
    for path, ids in picked.items():
        with open_parquet(out, path) as parquet:
            rows = read_rows(parquet, set(ids), [spans_column], report.tokens)
        for doc_id in ids:
            row = rows[doc_id]
            text = row.get(schema.TEXT)
            if text is None:  # a run with --drop-text
                text = rebuild_text(row.get(report.tokens) or [])
            spans = row.get(spans_column) or []
            documents.append(_cut({"doc_id": doc_id, "text": text,
                                   "spans": sorted(spans, key=lambda s: s["start_char"])}))
    return documents


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
