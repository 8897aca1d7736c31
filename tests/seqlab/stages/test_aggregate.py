import random

import numpy as np
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


def fnv1a64_reference(data: bytes) -> int:
    """FNV-1a, 64 bits, byte by byte: the definition the vectorised hash must match."""
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) % 2**64
    return value


def keys_table(keys: list[tuple[str, str]]) -> pa.Table:
    return pa.table({"label": [k[0] for k in keys], "text": [k[1] for k in keys]})


UNICODE_TEXTS = ["zürich", "東京都", "naïve café", "o'neil", "", "x" * 300, "ß", "🙂 emoji"]


def test_the_key_hash_is_fnv1a_of_label_and_text():
    rng = random.Random(2)
    keys = [(rng.choice(["PER", "B-LOC", "MISC"]),
             rng.choice(UNICODE_TEXTS) + rng.choice(["", " " + str(rng.randint(0, 999))]))
            for _ in range(500)]
    hashes = aggregate.key_hash(keys_table(keys))
    assert hashes.dtype.name == "uint64"
    assert [int(h) for h in hashes] == [fnv1a64_reference(f"{label}\x1f{text}".encode())
                                        for label, text in keys]
    # the definition, for one key, as a warehouse would recompute it; and FNV's own vectors
    assert int(aggregate.key_hash(keys_table([("PER", "john")]))[0]) == 0x1241799B1BE85BE8
    assert [fnv1a64_reference(b) for b in (b"a", b"foobar")] == [0xAF63DC4C8601EC8C,
                                                                 0x85944171F73967E8]


def test_the_key_hash_reads_slices_and_chunks_as_whole_arrays():
    texts = pa.chunked_array([["paris", "zürich"], ["東京都", "new york", "ada"]])
    whole = aggregate.fnv1a64(texts)
    assert [int(h) for h in whole] == [fnv1a64_reference(t.encode()) for t in texts.to_pylist()]
    sliced = pa.array(texts.to_pylist()).slice(1, 3)
    assert list(aggregate.fnv1a64(sliced)) == list(whole[1:4])
    large = pa.array(texts.to_pylist(), pa.large_string())
    assert list(aggregate.fnv1a64(large)) == list(whole)


@pytest.mark.parametrize("count", [7, 16, 64])
def test_buckets_spread_keys_evenly(count):
    rng = random.Random(count)
    words = ["john", "smith", "bank", "new", "york", "london", "zürich", "東京", "naïve"]
    keys = {(rng.choice(["PER", "LOC", "ORG", "MISC"]),
             " ".join(rng.choice(words) for _ in range(rng.randint(1, 3))) + str(i))
            for i in range(40_000)}
    sizes = np.bincount(aggregate.buckets(keys_table(sorted(keys)), count), minlength=count)
    expected = len(keys) / count
    assert len(sizes) == count
    # a chi-square statistic far below what a skew would give (p = 0.001 at ~count + 3
    # sqrt(2 count) for count - 1 degrees of freedom)
    chi2 = float(((sizes - expected) ** 2 / expected).sum())
    assert chi2 < count + 3 * (2 * count) ** 0.5, (chi2, sizes)


def test_split_keeps_every_row_once_in_its_bucket_in_order():
    rng = random.Random(3)
    rows = random_mentions(rng, 200) + [(f"u{i}", "LOC", t, 0.5)
                                        for i, t in enumerate(UNICODE_TEXTS)]
    merged = aggregate.partials(mentions_table(rows))
    pieces = list(aggregate.split(merged, 5))
    assert [b for b, _ in pieces] == sorted({b for b, _ in pieces})
    for bucket, piece in pieces:
        assert set(aggregate.buckets(piece, 5).tolist()) == {bucket}
        assert piece.equals(piece.sort_by([(k, "ascending") for k in aggregate.KEYS]))
    assert aggregate.merge(p for _, p in pieces).equals(merged)
    assert list(aggregate.split(aggregate.merge([]), 5)) == []
