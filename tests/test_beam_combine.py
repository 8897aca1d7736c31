"""The aggregate accumulators: associative and commutative, and equal to seqlab.aggregate."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from seqlab import aggregate, combine, schema

LABELS = ["PER", "LOC", "ORG"]
WHEN = datetime(2026, 1, 1, tzinfo=timezone.utc)
NAMES = ["John", "john", "JOHN ", "New  York", "new york", "Paris", "Zürich", "ACME"]


def random_mentions(rng: random.Random, n_docs: int = 40) -> pa.Table:
    rows = []
    for doc in range(n_docs):
        for _ in range(rng.randint(0, 12)):
            rows.append({"doc_id": f"doc-{doc}", "start_char": 0, "end_char": 1,
                         "text": rng.choice(NAMES), "label": rng.choice(LABELS),
                         "score": rng.random(), "run_id": "r", "model": "m",
                         "model_revision": "v", "processed_at": WHEN})
    return pa.Table.from_pylist(rows, schema=schema.MENTIONS)


def per_document(mentions: pa.Table) -> list[pa.Table]:
    ids = sorted(set(mentions.column("doc_id").to_pylist()))
    return [mentions.filter(pc.equal(mentions.column("doc_id"), d)) for d in ids]


def fold(pairs: list[tuple[combine.Key, combine.Sums]]) -> dict[combine.Key, combine.Sums]:
    accs: dict[combine.Key, combine.Sums] = {}
    for key, value in pairs:
        accs[key] = combine.add(accs.get(key, combine.ZERO), value)
    return accs


def merge_tree(parts: list[dict], rng: random.Random) -> dict[combine.Key, combine.Sums]:
    """Merge accumulators pairwise in a random order and grouping."""
    parts = list(parts)
    while len(parts) > 1:
        rng.shuffle(parts)
        a, b = parts.pop(), parts.pop()
        keys = set(a) | set(b)
        parts.append({k: combine.merge([a.get(k, combine.ZERO), b.get(k, combine.ZERO)])
                      for k in keys})
    return parts[0] if parts else {}


@pytest.mark.parametrize("seed", range(5))
def test_any_grouping_and_order_gives_the_same_aggregates(seed: int) -> None:
    rng = random.Random(seed)
    mentions = random_mentions(rng)
    expected = aggregate.finalize(aggregate.partials(mentions))
    pairs = [p for doc in per_document(mentions) for p in combine.contributions(doc)]
    for trial in range(4):
        rng.shuffle(pairs)
        cuts = sorted(rng.sample(range(1, len(pairs)), k=min(trial * 3, len(pairs) - 1)))
        groups = [pairs[i:j] for i, j in zip([0, *cuts], [*cuts, len(pairs)])]
        merged = merge_tree([fold(g) for g in groups], rng)
        assert combine.aggregates_table(merged.items()).equals(expected)


def test_contributions_are_the_aggregate_module_rows() -> None:
    mentions = random_mentions(random.Random(7), n_docs=5)
    reference = aggregate.document_contributions(mentions)
    assert len(list(combine.contributions(mentions))) == reference.num_rows
    assert combine.aggregates_table([]).equals(aggregate.finalize(aggregate.merge([])))


def test_beam_combine_fn_in_a_pipeline() -> None:
    beam = pytest.importorskip("apache_beam")
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.testing.util import assert_that, equal_to

    from pipelines.beam import SumsFn

    rng = random.Random(3)
    mentions = random_mentions(rng, n_docs=60)
    pairs = [p for doc in per_document(mentions) for p in combine.contributions(doc)]
    fn = SumsFn()
    by_key = fold(pairs)
    # the CombineFn's own methods, split and merged in shuffled groups
    for key, total in by_key.items():
        values = [v for k, v in pairs if k == key]
        rng.shuffle(values)
        accs = [fn.add_input(fn.create_accumulator(), v) for v in values] + [
            fn.create_accumulator()]
        rng.shuffle(accs)
        half = len(accs) // 2
        merged = fn.merge_accumulators([fn.merge_accumulators(accs[:half]),
                                        fn.merge_accumulators(accs[half:])])
        assert fn.extract_output(merged) == total
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        summed = (pipeline | beam.Create(pairs, reshuffle=True)
                  | beam.CombinePerKey(SumsFn()))
        assert_that(summed, equal_to(list(by_key.items())))
