"""Mergeable entity aggregates: (label, normalised text) -> mentions, documents, score sum.

Aggregation works in two steps that any engine can distribute:

1. ``partials(mentions)`` reduces a table of mentions to one row per (label, text) with sums.
   Every mention of a document must be in the same call, so that ``documents`` counts it once;
   the stages guarantee this because a document travels as one row.
2. ``merge(partials)`` sums partials. Sums are associative and commutative, so partials merge
   in any order and grouping; scores are summed as integer micro-units so the total is exact
   whatever the order, and engines agree to the last bit.

Every engine lands one partial per landed part (``seqlab.run.land``) and the run's end folds
them with ``fold`` into ``aggregates/``; a warehouse can keep summing the same way across runs.

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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqlab import schema
from seqlab.stages.entities import normalize_text

MICRO = 1_000_000
KEYS = ["label", "text"]
SUMS = ["mentions", "documents", "score_micros"]


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


def fold(partials: Iterable[pa.Table], chunk: int = 64) -> pa.Table:
    """Merge many partials a ``chunk`` at a time: memory stays ~ the unique keys, and each
    merge touches each partial once rather than re-summing a growing total per partial."""
    total = merge([])
    for group in _chunks(partials, chunk):
        total = merge([total, *group])
    return total


def _chunks(items: Iterable[pa.Table], size: int) -> Iterator[list[pa.Table]]:
    group: list[pa.Table] = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
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
