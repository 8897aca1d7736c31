import random

import pyarrow as pa
import pytest

from seqlab import schema
from seqlab.stages import aggregate


def mentions_table(rows):
    n = len(rows)
    return pa.table({
        "doc_id": [r[0] for r in rows], "start_char": [0] * n, "end_char": [1] * n,
        "text": [r[2] for r in rows], "label": [r[1] for r in rows],
        "score": [r[3] for r in rows],
    })


def random_mentions(rng, n_docs):
    rows = []
    for d in range(n_docs):
        for _ in range(rng.randint(0, 6)):
            rows.append((f"d{d}", rng.choice(["PER", "LOC"]),
                         rng.choice(["Paris", "paris", "New  York", "new york", "Ada"]),
                         rng.random()))
    return rows


def test_partials_merge_in_any_order_and_grouping():
    rng = random.Random(0)
    rows = random_mentions(rng, 40)
    whole = aggregate.finalize(aggregate.partials(mentions_table(rows)))
    docs = sorted({r[0] for r in rows})
    for _trial in range(5):
        rng.shuffle(docs)
        cut = sorted(rng.sample(range(1, len(docs)), 4))
        groups = [docs[a:b] for a, b in zip([0, *cut], [*cut, len(docs)])]
        parts = [aggregate.partials(mentions_table([r for r in rows if r[0] in set(g)]))
                 for g in groups]
        rng.shuffle(parts)
        nested = aggregate.merge([aggregate.merge(parts[:2]), aggregate.merge(parts[2:])])
        assert aggregate.finalize(nested).equals(whole)


def test_counts_documents_once_and_normalises_text():
    rows = [("d1", "LOC", "Paris", 0.5), ("d1", "LOC", "paris", 0.25),
            ("d2", "LOC", "PARIS", 1.0), ("d2", "PER", "Paris", 0.125)]
    result = aggregate.finalize(aggregate.partials(mentions_table(rows))).to_pylist()
    assert result == [
        {"label": "LOC", "text": "paris", "mentions": 3, "documents": 2, "score_sum": 1.75},
        {"label": "PER", "text": "paris", "mentions": 1, "documents": 1, "score_sum": 0.125},
    ]
    assert aggregate.finalize(aggregate.merge([])).schema.equals(schema.AGGREGATES)


def test_score_sum_is_within_a_micro_unit_per_mention():
    rng = random.Random(1)
    rows = random_mentions(rng, 50)
    result = aggregate.finalize(aggregate.partials(mentions_table(rows)))
    total = sum(result.column("score_sum").to_pylist())
    assert total == pytest.approx(sum(r[3] for r in rows), abs=1e-6 * len(rows))
