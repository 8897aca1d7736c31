"""What ``seqlab report`` shows of a run's tagging models (POS: the tags of words) and of its
semantic role labellers (SRL: frames, a predicate and its arguments), read column by column.

A tags model's distribution comes from the words of the first ok documents (bounded in
documents and in words, as novels are long), with one sentence of the first as a sample. A
role labeller's counts come from every row of the frames table (the predicate's text, each
argument's role and score only); its sample is the first document with frames that have
arguments, read whole from the documents table.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from seqlab import schema
from seqlab.report.read import find_row, leaf, open_parquet, value_counts
from seqlab.report.run_info import ModelHeader
from seqlab.report.show import rebuild_text
from seqlab.store.outdir import OutputDir

TAG_DOCUMENTS = 1000  # documents whose words give a tags model's distribution...
TAG_WORDS = 2_000_000  # ...or fewer, once this many words are read
SENTENCE_END = {".", "!", "?"}
SENTENCE_WORDS = 40  # a sample sentence longer than this is cut
SAMPLE_FRAMES = 12  # frames with arguments shown of the sample document


@dataclass
class TagsView:
    """A tags model's words per tag, read from the first ``documents`` ok documents."""

    header: ModelHeader
    counts: Counter = field(default_factory=Counter)
    score_sums: Counter = field(default_factory=Counter)
    documents: int = 0
    sentence: list[dict] = field(default_factory=list)  # text, label, score of each word
    sentence_doc: str | None = None

    @property
    def words(self) -> int:
        return sum(self.counts.values())


@dataclass
class FramesView:
    """A role labeller's frames: how many, their predicates and their arguments' roles."""

    header: ModelHeader
    frames: int = 0
    bare: int = 0  # frames without arguments (a predicate the model found no role for)
    arguments: int = 0
    documents: int = 0  # documents with at least one frame
    predicates: Counter = field(default_factory=Counter)  # lower-cased text -> frames
    bare_predicates: Counter = field(default_factory=Counter)
    roles: Counter = field(default_factory=Counter)
    role_scores: Counter = field(default_factory=Counter)
    sample: dict | None = None  # doc_id, text, frames (with arguments), more, bare


def gather_tags(out: OutputDir, files: list[str], header: ModelHeader,
                documents: int = TAG_DOCUMENTS, words: int = TAG_WORDS) -> TagsView:
    """The tags of the words of the first ok documents, and the first one's first sentence."""
    view, column = TagsView(header), header.column(schema.TOKENS)
    for path in files if column else []:
        with open_parquet(out, path) as parquet:
            fields = [leaf(parquet, column, name) for name in ("text", "label", "score")]
            if None in fields:
                return view
            for batch in parquet.iter_batches(columns=[schema.DOC_ID, schema.STATUS, *fields],
                                              batch_size=64):
                ok = batch.filter(pc.equal(batch.column(schema.STATUS), schema.OK))
                ok = ok.slice(0, documents - view.documents)
                _add_tags(view, ok, column)
                if view.documents >= documents or view.words >= words:
                    return view
    return view


def _add_tags(view: TagsView, batch: pa.RecordBatch, column: str) -> None:
    tokens = batch.column(column)
    view.documents += batch.num_rows
    flat = pc.list_flatten(tokens)
    if not len(flat):
        return
    table = pa.table({"label": flat.field("label"), "score": flat.field("score")})
    for row in table.group_by("label").aggregate([("score", "count"),
                                                  ("score", "sum")]).to_pylist():
        view.counts[row["label"]] += row["score_count"]
        view.score_sums[row["label"]] += row["score_sum"]
    if not view.sentence:
        first = next(i for i, n in enumerate(pc.list_value_length(tokens).to_pylist()) if n)
        view.sentence = first_sentence(tokens[first].as_py())
        view.sentence_doc = batch.column(schema.DOC_ID)[first].as_py()


def first_sentence(tokens: list[dict], most: int = SENTENCE_WORDS) -> list[dict]:
    """The words up to the first sentence end (of at least four words), at most ``most``.

    >>> words = [{"text": w} for w in "Hi . Ada wrote it . Then".split()]
    >>> [w["text"] for w in first_sentence(words)]
    ['Hi', '.', 'Ada', 'wrote', 'it', '.']
    """
    for i, token in enumerate(tokens[:most]):
        if i >= 3 and token["text"] in SENTENCE_END:
            return tokens[:i + 1]
    return tokens[:most]


def gather_frames(out: OutputDir, frames_files: list[str], documents_files: list[str],
                  header: ModelHeader) -> FramesView:
    """Counts over every frame of the model, and the first document with argued frames."""
    view, sample, last = FramesView(header), None, None
    for path in frames_files:
        with open_parquet(out, path) as parquet:
            names = parquet.schema_arrow.names
            fields = [leaf(parquet, "predicate", "text"), leaf(parquet, "arguments", "role"),
                      leaf(parquet, "arguments", "score")]
            columns = [schema.DOC_ID, *(["model"] if "model" in names else []), *fields]
            if None in fields:
                continue
            for batch in parquet.iter_batches(columns=columns, batch_size=65536):
                if "model" in names:
                    batch = batch.filter(pc.equal(batch.column("model"), header.name))
                if not batch.num_rows:
                    continue
                sample = sample or _first_argued(batch)
                last = _add_frames(view, batch, last)
    if sample is not None:
        view.sample = _sample(out, documents_files, header, sample)
    return view


def _add_frames(view: FramesView, batch: pa.RecordBatch, last: str | None) -> str:
    """Count one batch of frames rows in; returns its last doc_id (a document's frames are
    consecutive rows, so a document that goes on into the next batch is counted once)."""
    arguments = batch.column("arguments")
    n = pc.fill_null(pc.list_value_length(arguments), 0)
    bare = pc.equal(n, 0)
    predicates = pc.utf8_lower(batch.column("predicate").field("text"))
    view.frames += batch.num_rows
    view.bare += pc.sum(bare).as_py() or 0
    view.arguments += pc.sum(n).as_py() or 0
    view.predicates.update(dict(zip(*value_counts(predicates))))
    view.bare_predicates.update(dict(zip(*value_counts(predicates.filter(bare)))))
    flat = pc.list_flatten(arguments)
    if len(flat):
        table = pa.table({"role": flat.field("role"), "score": flat.field("score")})
        for row in table.group_by("role").aggregate([("score", "count"),
                                                     ("score", "sum")]).to_pylist():
            view.roles[row["role"]] += row["score_count"]
            view.role_scores[row["role"]] += row["score_sum"]
    doc_ids = batch.column(schema.DOC_ID)
    view.documents += pc.count_distinct(doc_ids).as_py() - (doc_ids[0].as_py() == last)
    return doc_ids[-1].as_py()


def _first_argued(batch: pa.RecordBatch) -> str | None:
    """The doc_id of the first frame with arguments in this batch, if any."""
    n = pc.fill_null(pc.list_value_length(batch.column("arguments")), 0)
    rows = pc.indices_nonzero(pc.greater(n, 0))
    return batch.column(schema.DOC_ID)[rows[0].as_py()].as_py() if len(rows) else None


def _sample(out: OutputDir, files: list[str], header: ModelHeader, doc_id: str
            ) -> dict | None:
    """The document ``doc_id`` with its first SAMPLE_FRAMES frames that have arguments."""
    column = header.column(schema.FRAMES_COLUMN)
    tokens = next((c for c in _token_columns(files, out) if c), None)
    row = find_row(out, files, doc_id, [column] if column else [], tokens)
    if row is None or not column:
        return None
    frames = row.get(column) or []
    argued = [f for f in frames if f["arguments"]]
    text = row.get(schema.TEXT)
    if text is None:  # a run with --drop-text
        text = rebuild_text(row.get(tokens) or [])
    return {"doc_id": doc_id, "text": text, "frames": argued[:SAMPLE_FRAMES],
            "more": max(len(argued) - SAMPLE_FRAMES, 0), "bare": len(frames) - len(argued)}


def _token_columns(files: list[str], out: OutputDir) -> list[str | None]:
    """A tokens column of the documents table (any model's), to rebuild texts from."""
    if not files:
        return []
    with open_parquet(out, files[0]) as parquet:
        names = parquet.schema_arrow.names
    return [c for c in names if c == schema.TOKENS or c.endswith("_" + schema.TOKENS)]
