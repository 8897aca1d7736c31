"""The local engine: the seqlab stages in one process, streaming. The embedded default.

Reading and tokenization run one batch ahead on a background thread while the model tags the
current batch. Each input fragment lands as its own documents and mentions parts and a progress
record, so a rerun after a crash resumes at the first unfinished fragment. Aggregates are
merged from the mentions parts at the end, so they are exact after a resume too.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seqlab import aggregate, schema
from seqlab.io import Fragment
from seqlab.output import FragmentRecord, PartWriter, write_table
from seqlab.run import RunPlan, finish_run
from seqlab.stages import Decoder, mentions
from seqlab.tag import Tagger
from seqlab.tokenize import Tokenizer

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (documents, words) done since the last call


def run(plan: RunPlan, progress: Progress | None = None) -> dict:
    """Annotate every unfinished fragment of the plan; return the manifest."""
    tokenize = plan.tokenizer_stage()
    tag = plan.tagger_stage()
    decode = plan.decoder_stage()
    records = list(plan.done.values())
    left = None if plan.config.limit is None else plan.config.limit - sum(
        r.rows_in for r in records)
    for fragment in plan.todo:
        if left is not None and left <= 0:
            break
        record = annotate_fragment(plan, fragment, tokenize, tag, decode, left, progress)
        records.append(record)
        if left is not None:
            left -= record.rows_in
    parts = [p for r in records for p in r.parts.get("mentions", [])]
    totals = aggregate.merge([])
    for partial in _partials(plan, parts):  # folded one part at a time: memory ~ unique keys
        totals = aggregate.merge([totals, partial])
    info = write_table(plan.out.fs, plan.out.root, "aggregates/part-00000.parquet",
                       aggregate.finalize(totals))
    return finish_run(plan, records, [info], engine="local",
                      extra={"tagging": {"windows": tag.windows_run,
                                         "padded_tokens": tag.tokens_run}})


def annotate_fragment(plan: RunPlan, fragment: Fragment, tokenize: Tokenizer, tag: Tagger,
                      decode: Decoder, limit: int | None,
                      progress: Progress | None) -> FragmentRecord:
    plan.out.discard_parts(fragment.index)
    rows = plan.config.rows_per_part
    documents = PartWriter(plan.out, "documents", plan.documents_schema, fragment.index, rows)
    found = PartWriter(plan.out, "mentions", schema.MENTIONS, fragment.index, rows)
    counts: Counter[str] = Counter()
    rows_in = 0
    for batch in _prefetch(tokenize(b) for b in plan.reader.read(fragment, limit)):
        rows_in += batch.num_rows
        docs = decode(tag(batch))
        entities = mentions(docs)
        documents.write(docs)
        found.write(entities)
        words = _count(docs, counts, entities.num_rows)
        if progress:
            progress(docs.num_rows, words)
    record = FragmentRecord(fragment.name, fragment.index, rows_in,
                            {"documents": documents.close(), "mentions": found.close()},
                            dict(counts))
    plan.out.record(record)
    return record


def _count(docs: pa.RecordBatch, counts: Counter, n_entities: int) -> int:
    for status in docs.column(schema.STATUS).to_pylist():
        counts[f"status.{status}"] += 1
    words = int(pc.sum(docs.column("n_tokens")).as_py() or 0)
    counts["documents"] += docs.num_rows
    counts["tokens"] += words
    counts["entities"] += n_entities
    return words


def _partials(plan: RunPlan, parts: Iterable) -> Iterator[pa.Table]:
    for part in parts:
        with plan.out.fs.open(plan.out.path(part.path), "rb") as handle:
            yield aggregate.partials(pq.read_table(handle))


def _prefetch(items: Iterator[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Compute ``items`` one or two steps ahead on a thread (reading and tokenizing overlap
    tagging); exceptions surface in the caller."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce() -> None:
        try:
            for item in items:
                slots.put(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            slots.put(exc)
        slots.put(done)

    thread = threading.Thread(target=produce, name="seqlab-prefetch", daemon=True)
    thread.start()
    while (item := slots.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item
    thread.join()
