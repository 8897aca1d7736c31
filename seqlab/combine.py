"""Per-key accumulators for engines that aggregate element by element (Beam's ``CombineFn``).

``seqlab.aggregate`` sums partial tables; an engine that shuffles single values by key instead
needs the same sums as plain Python values. A document's contribution to a key is one
``Sums(mentions, documents, score_micros)`` row of ``aggregate.document_contributions``; sums
of integers are associative and commutative, so accumulators merge in any order and grouping
and give the ``aggregates`` rows of ``aggregate.finalize`` to the last bit.

>>> a = add(ZERO, Sums(2, 1, 1_500_000))
>>> b = merge([add(ZERO, Sums(1, 1, 250_000)), ZERO])
>>> merge([a, b]) == merge([b, a]) == Sums(3, 2, 1_750_000)
True
>>> aggregate_row(("PER", "john"), merge([a, b]))
{'label': 'PER', 'text': 'john', 'mentions': 3, 'documents': 2, 'score_sum': 1.75}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

import pyarrow as pa

from seqlab import aggregate, schema

Key = tuple[str, str]  # (label, normalised text)


class Sums(NamedTuple):
    """The additive state of one (label, text) key."""

    mentions: int
    documents: int
    score_micros: int


ZERO = Sums(0, 0, 0)


def add(acc: Sums, value: Sums) -> Sums:
    return Sums(acc.mentions + value.mentions, acc.documents + value.documents,
                acc.score_micros + value.score_micros)


def merge(accs: Iterable[Sums]) -> Sums:
    total = ZERO
    for acc in accs:
        total = add(total, acc)
    return total


def contributions(mentions: pa.Table) -> Iterator[tuple[Key, Sums]]:
    """``(key, sums)`` pairs of whole documents' mentions, one per (document, key).

    They are the rows of ``aggregate.document_contributions``, so normalisation and score
    rounding are the ones every other engine uses.
    """
    table = aggregate.document_contributions(mentions)
    for row in table.select(["label", "text", *aggregate.SUMS]).to_pylist():
        yield (row["label"], row["text"]), Sums(row["mentions"], row["documents"],
                                                 row["score_micros"])


def aggregate_row(key: Key, sums: Sums) -> dict:
    """One ``aggregates`` row (``schema.AGGREGATES``), as ``aggregate.finalize`` computes it."""
    label, text = key
    return {"label": label, "text": text, "mentions": sums.mentions,
            "documents": sums.documents,
            "score_sum": float(sums.score_micros) / float(aggregate.MICRO)}


def aggregates_table(items: Iterable[tuple[Key, Sums]]) -> pa.Table:
    """The landed ``aggregates`` table of finished accumulators, sorted by key."""
    rows = [aggregate_row(key, sums) for key, sums in items]
    table = pa.Table.from_pylist(rows, schema=schema.AGGREGATES)
    return table.sort_by([(k, "ascending") for k in aggregate.KEYS])


def merge_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Sum run counters (documents, tokens, entities, ``status.*``) from any grouping.

    >>> merge_counts([{"documents": 2}, {"documents": 1, "status.ok": 1}])
    {'documents': 3, 'status.ok': 1}
    """
    total: Counter[str] = Counter()
    for part in counts:
        total.update(part)
    return dict(total)
