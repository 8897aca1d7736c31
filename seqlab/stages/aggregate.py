"""Mergeable entity aggregates: (label, normalised text) -> mentions, documents, score sum.

Aggregation works in two steps that any engine can distribute:

1. ``partials(mentions)`` reduces a table of mentions to one row per (label, text) with sums.
   Every mention of a document must be in the same call, so that ``documents`` counts it once;
   the stages guarantee this because a document travels as one row.
2. ``merge(partials)`` sums partials. Sums are associative and commutative, so partials merge
   in any order and grouping; scores are summed as integer micro-units so the total is exact
   whatever the order, and engines agree to the last bit.

Every engine lands one partial per landed part (``seqlab.run.land``). At the run's end the
partials are hash-partitioned by key into buckets (``key_hash``, ``split``) and each bucket is
folded on its own into one ``aggregates/`` file (``seqlab.run.aggregates``): a key's sums are
all in one bucket, so no process holds more than one bucket's keys, and a warehouse can keep
summing the same way across runs.

>>> from seqlab import schema
>>> a = pa.table({"label": ["PER"], "text": ["john"], "mentions": [2], "documents": [1],
...               "score_micros": [1_500_000]}, schema=schema.AGGREGATE_PARTIAL)
>>> b = pa.table({"label": ["PER"], "text": ["john"], "mentions": [1], "documents": [1],
...               "score_micros": [250_000]}, schema=schema.AGGREGATE_PARTIAL)
>>> merge([a, b]).equals(merge([b, a]))
True
>>> finalize(fold([a, b], chunk=1)).to_pylist()
[{'label': 'PER', 'text': 'john', 'mentions': 3, 'documents': 2, 'score_sum': 1.75}]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqlab import schema
from seqlab.stages.entities import normalize_text

MICRO = 1_000_000
T = TypeVar("T")
KEYS = ["label", "text"]
SUMS = ["mentions", "documents", "score_micros"]
# 64-bit FNV-1a (http://www.isthe.com/chongo/tech/comp/fnv/): simple enough to compute for a
# whole column with numpy, and the same on every machine, process and engine (Python's hash()
# is salted per process)
FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
SEPARATOR = "\x1f"  # between label and text in the hashed key (whitespace: never in a text)


def score_micros(scores: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(scores, dtype=np.float64) * MICRO).astype(np.int64)


def document_contributions(mentions: pa.Table) -> pa.Table:
    """One row per (document, label, normalised text): the unit every engine sums."""
    if mentions.num_rows == 0:
        return schema.AGGREGATE_PARTIAL.empty_table().append_column(
            schema.DOC_ID, pa.array([], pa.string()))
    table = pa.table({
        schema.DOC_ID: mentions.column(schema.DOC_ID),
        "label": mentions.column("label"),
        "text": pa.array([normalize_text(t) for t in mentions.column("text").to_pylist()],
                         pa.string()),
        "score_micros": pa.array(score_micros(mentions.column("score").to_numpy()), pa.int64()),
    })
    grouped = table.group_by([schema.DOC_ID, *KEYS], use_threads=False).aggregate(
        [("label", "count"), ("score_micros", "sum")]
    )
    return pa.table({
        "label": grouped.column("label"),
        "text": grouped.column("text"),
        "mentions": grouped.column("label_count").cast(pa.int64()),
        "documents": pa.array(np.ones(grouped.num_rows, dtype=np.int64)),
        "score_micros": grouped.column("score_micros_sum"),
        schema.DOC_ID: grouped.column(schema.DOC_ID),
    })


def partials(mentions: pa.Table) -> pa.Table:
    """Partial aggregates of a set of whole documents' mentions."""
    contributions = document_contributions(mentions).drop_columns([schema.DOC_ID])
    return merge([contributions])


def merge(parts: Iterable[pa.Table]) -> pa.Table:
    """Sum partial aggregates; the result is itself a partial, sorted by (label, text)."""
    tables = [t.select(schema.AGGREGATE_PARTIAL.names) for t in parts]
    if not tables:
        return schema.AGGREGATE_PARTIAL.empty_table()
    table = pa.concat_tables(tables).cast(schema.AGGREGATE_PARTIAL)
    summed = table.group_by(KEYS, use_threads=False).aggregate([(c, "sum") for c in SUMS])
    summed = summed.rename_columns({f"{c}_sum": c for c in SUMS})
    summed = summed.select(schema.AGGREGATE_PARTIAL.names).cast(schema.AGGREGATE_PARTIAL)
    return summed.sort_by([(k, "ascending") for k in KEYS])


def fold(partials: Iterable[pa.Table], chunk: int = 64, rows: int | None = None) -> pa.Table:
    """Merge many partials a ``chunk`` at a time (or as soon as they hold ``rows`` rows):
    memory stays ~ the unique keys plus one chunk, and each merge touches each partial once
    rather than re-summing a growing total per partial."""
    total = merge([])
    for group in chunks(partials, chunk, rows):
        total = merge([total, *group])
    return total


def chunks(items: Iterable[T], size: int, rows: int | None = None) -> Iterator[list[T]]:
    """``items`` in lists of ``size``, or fewer where (tables) they reach ``rows`` rows first
    (the last list shorter), read as they are needed."""
    group: list[T] = []
    held = 0
    for item in items:
        group.append(item)
        held += item.num_rows if rows is not None else 0
        if len(group) == size or (rows is not None and held >= rows):
            yield group
            group, held = [], 0
    if group:
        yield group


def finalize(partial: pa.Table) -> pa.Table:
    """The landed ``aggregates`` table: score sums back in score units, sorted by key."""
    partial = partial.sort_by([(k, "ascending") for k in KEYS])
    score_sum = pc.divide(partial.column("score_micros").cast(pa.float64()), float(MICRO))
    return pa.table(
        {
            "label": partial.column("label"),
            "text": partial.column("text"),
            "mentions": partial.column("mentions"),
            "documents": partial.column("documents"),
            "score_sum": score_sum,
        },
        schema=schema.AGGREGATES,
    )


def fnv1a64(strings: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The 64-bit FNV-1a hash of each string's UTF-8 bytes (a null hashes as ""), computed a
    byte position at a time over every string at once (uint64 arithmetic wraps, as FNV's does).

    >>> [hex(h) for h in fnv1a64(pa.array(["", "a", "foobar"]))]
    ['0xcbf29ce484222325', '0xaf63dc4c8601ec8c', '0x85944171f73967e8']
    """
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    strings = strings.cast(pa.large_binary())  # int64 offsets, whatever the string type
    validity, offsets_buffer, data_buffer = strings.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[
        strings.offset:strings.offset + len(strings) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else \
        np.zeros(0, dtype=np.uint8)
    lengths = np.diff(offsets)
    if validity is not None:
        lengths = np.where(strings.is_null().to_numpy(zero_copy_only=False), 0, lengths)
    order = np.argsort(-lengths, kind="stable")  # longest first: position j's strings lead
    starts, lengths = offsets[:-1][order], lengths[order]
    hashes = np.full(len(strings), FNV_OFFSET, dtype=np.uint64)
    longer = np.searchsorted(-lengths, -np.arange(int(lengths.max(initial=0))), side="left")
    for position, n in enumerate(longer.tolist()):  # n: the strings longer than position
        hashes[:n] ^= data[starts[:n] + position].astype(np.uint64)
        hashes[:n] *= FNV_PRIME
    unsorted = np.empty_like(hashes)
    unsorted[order] = hashes
    return unsorted


def key_hash(table: pa.Table) -> np.ndarray:
    """The stable hash of each row's key: FNV-1a of ``label + "\\x1f" + text``.

    >>> key = pa.table({"label": ["PER"], "text": ["john"]})
    >>> hex(key_hash(key)[0]) == hex(fnv1a64(pa.array(["PER\\x1fjohn"]))[0])
    True
    """
    return fnv1a64(pc.binary_join_element_wise(table.column("label"), table.column("text"),
                                               SEPARATOR))


def buckets(table: pa.Table, count: int) -> np.ndarray:
    """The bucket of each row's key, in ``0 .. count - 1``: its hash modulo ``count``."""
    return (key_hash(table) % np.uint64(count)).astype(np.int64)


def split(table: pa.Table, count: int) -> Iterator[tuple[int, pa.Table]]:
    """The rows of each non-empty bucket of ``count``, in bucket order; rows keep their order
    within a bucket (a merged partial's stay sorted by key).

    >>> part = pa.table({"label": ["LOC", "PER", "PER"], "text": ["paris", "ada", "john"]})
    >>> [(b, rows.num_rows) for b, rows in split(part, 1)]
    [(0, 3)]
    >>> sum(rows.num_rows for _, rows in split(part, 4)) == part.num_rows
    True
    """
    if table.num_rows == 0:
        return
    ids = buckets(table, count)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    cuts = np.flatnonzero(np.diff(ids)) + 1
    for start, stop in zip([0, *cuts.tolist()], [*cuts.tolist(), len(ids)]):
        yield int(ids[start]), table.take(pa.array(order[start:stop]))
