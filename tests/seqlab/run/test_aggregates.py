"""seqlab.run.aggregates: the bucketed merge lands exactly what one fold of every partial gives,
in K files of one bucket each, K from the run's entity count, and a merge cut short anywhere
is redone from the partials."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqlab import schema
from seqlab.errors import ConfigError
from seqlab.run import aggregates
from seqlab.run.finish import finish_run
from seqlab.stages import aggregate
from seqlab.store.outdir import OutputDir
from seqlab.store.parts import read_table, write_table
from seqlab.store.verify import verify
from tests.seqlab import drive, make_plan, rows, write_parquet
from tests.seqlab.store.test_verify import rewrite

pytestmark = pytest.mark.timeout(120)

LABELS = ["PER", "LOC", "ORG", "MISC"]
TEXTS = ["john smith", "zürich", "東京都", "naïve café", "o'neil", "new york", "ß", "paris",
         "🙂", "x" * 200, "bank of new york", "reuters"]


def synthetic_partials(out: OutputDir, n: int, seed: int = 0) -> list[str]:
    """``n`` partial files as landings leave them: each summed and sorted by key, keys
    repeating across files (a few common, many rare, unicode among them)."""
    rng = random.Random(seed)
    paths = []
    for i in range(n):
        mentions = []
        for d in range(rng.randint(0, 30)):
            for _ in range(rng.randint(1, 5)):
                text = rng.choice(TEXTS) if rng.random() < 0.6 else f"{rng.choice(TEXTS)} {d}"
                mentions.append({"doc_id": f"p{i}-d{d}", "start_char": 0, "end_char": 1,
                                 "text": text, "label": rng.choice(LABELS),
                                 "score": rng.random()})
        table = pa.Table.from_pylist(mentions) if mentions else pa.table({
            "doc_id": pa.array([], pa.string()), "start_char": pa.array([], pa.int64()),
            "end_char": pa.array([], pa.int64()), "text": pa.array([], pa.string()),
            "label": pa.array([], pa.string()), "score": pa.array([], pa.float64())})
        path = f"_progress/partials/part-{i:05d}-0000000000.parquet"
        write_table(out.fs, out.root, path, aggregate.partials(table))
        paths.append(path)
    return paths


def folded(out: OutputDir, paths: list[str]) -> pa.Table:
    """What the run's end landed before the merge was bucketed: one fold of every partial."""
    return aggregate.finalize(aggregate.fold(read_table(out.fs, out.path(p)) for p in paths))


def check_buckets(out: OutputDir, landed: list, buckets: int) -> pa.Table:
    """Every one of the K files is there with the aggregates schema, holds only keys of its
    bucket, once each and sorted; returns their union, in file order."""
    assert sorted(p.path for p in landed) == [aggregates.bucket_part(b) for b in range(buckets)]
    tables = []
    for bucket, part in enumerate(sorted(landed, key=lambda p: p.path)):
        table = pq.read_table(out.path(part.path))
        assert table.schema.equals(schema.AGGREGATES) and table.num_rows == part.rows
        if table.num_rows:
            assert set(aggregate.buckets(table, buckets).tolist()) == {bucket}
        assert table.equals(table.sort_by([(k, "ascending") for k in aggregate.KEYS]))
        keys = list(zip(table.column("label").to_pylist(), table.column("text").to_pylist()))
        assert len(keys) == len(set(keys))
        tables.append(table)
    return pa.concat_tables(tables)


@pytest.mark.parametrize("buckets, spill_keys, group", [(1, 500_000, 256), (3, 500_000, 4),
                                                        (8, 40, 3), (256, 25, 7)])
def test_the_bucketed_merge_lands_the_fold_of_every_partial(tmp_path, monkeypatch, buckets,
                                                            spill_keys, group):
    monkeypatch.setattr(aggregates, "SPILL_KEYS", spill_keys)  # several spills per task
    monkeypatch.setattr(aggregates, "PARTIALS_PER_GROUP", group)  # several scatter tasks
    out = OutputDir(str(tmp_path / "out"))
    paths = synthetic_partials(out, 23)
    expected = folded(out, paths)
    assert expected.num_rows > 100
    landed = aggregates.merge_local(out, paths, buckets)
    union = check_buckets(out, landed, buckets)
    assert union.sort_by([(k, "ascending") for k in aggregate.KEYS]).equals(expected)
    if buckets == 256:  # fewer keys than buckets: some are empty, and landed all the same
        assert any(p.rows == 0 for p in landed)


def test_same_text_under_two_labels_stays_two_rows_in_any_bucket(tmp_path):
    out = OutputDir(str(tmp_path / "out"))
    part = pa.table({"label": ["LOC", "PER", "PER"], "text": ["paris", "paris", "parís"],
                     "mentions": [2, 1, 1], "documents": [1, 1, 1],
                     "score_micros": [1_500_000, 250_000, 1]}, schema=schema.AGGREGATE_PARTIAL)
    paths = []
    for i in range(3):
        paths.append(f"_progress/partials/part-{i:05d}-0000000000.parquet")
        write_table(out.fs, out.root, paths[-1], part)
    union = check_buckets(out, aggregates.merge_local(out, paths, 2), 2)
    assert sorted(union.to_pylist(), key=lambda r: (r["label"], r["text"])) == [
        {"label": "LOC", "text": "paris", "mentions": 6, "documents": 3, "score_sum": 4.5},
        {"label": "PER", "text": "paris", "mentions": 3, "documents": 3, "score_sum": 0.75},
        {"label": "PER", "text": "parís", "mentions": 3, "documents": 3, "score_sum": 3e-06}]


def test_k_follows_the_entity_count_and_the_setting(monkeypatch):
    per = aggregates.MENTIONS_PER_BUCKET
    assert [aggregates.bucket_count(n) for n in (0, 1, per, per + 1, 10 * per)] == \
        [1, 1, 1, 2, 10]
    assert aggregates.bucket_count(10**15) == aggregates.MAX_BUCKETS
    monkeypatch.setenv(aggregates.BUCKETS_ENV, "100")
    assert aggregates.bucket_count(250) == 3
    monkeypatch.setenv(aggregates.BUCKETS_ENV, "many")
    with pytest.raises(ConfigError, match=aggregates.BUCKETS_ENV):
        aggregates.bucket_count(250)


def corpus(root):
    write_parquet(root / "in" / "a.parquet", rows(30, "a"))
    write_parquet(root / "in" / "b.parquet", rows(25, "b", start=7))
    write_parquet(root / "in" / "c.parquet", rows(9, "c", start=3))
    return root / "in"


def finished(input, output, model) -> dict:
    plan = make_plan(input, output, model, id_column="id", rows_per_part=8)
    drive(plan)
    return finish_run(plan, engine="test")


def test_a_run_lands_k_files_from_its_entity_count(tmp_path, ner_model, monkeypatch):
    one = finished(corpus(tmp_path), tmp_path / "one", ner_model)
    assert one["aggregate_buckets"] == 1 and len(one["aggregates"]) == 1
    monkeypatch.setenv(aggregates.BUCKETS_ENV, "40")
    several = finished(tmp_path / "in", tmp_path / "several", ner_model)
    entities = several["counts"]["entities"]
    assert entities == one["counts"]["entities"] > 80
    k = -(-entities // 40)
    assert several["aggregate_buckets"] == k
    assert [p["path"] for p in several["aggregates"]] == [aggregates.bucket_part(b)
                                                         for b in range(k)]
    out = OutputDir(str(tmp_path / "several"))
    union = check_buckets(out, [aggregates.PartInfo(**p) for p in several["aggregates"]], k)
    whole = pq.read_table(tmp_path / "one" / "aggregates")
    assert union.sort_by([(c, "ascending") for c in aggregate.KEYS]).equals(whole)
    assert not (tmp_path / "several" / "_progress").exists()


def test_a_merge_cut_short_is_redone_from_the_partials(tmp_path, ner_model, monkeypatch):
    clean = finished(corpus(tmp_path), tmp_path / "clean", ner_model)
    monkeypatch.setenv(aggregates.BUCKETS_ENV, "40")
    first = make_plan(tmp_path / "in", tmp_path / "out", ner_model, id_column="id",
                      rows_per_part=8)
    drive(first)
    merge = aggregates.plan_merge(first)
    assert merge.buckets > 2 and merge.scatters
    scattered = [aggregates.scatter(first.out, task) for task in merge.scatters]
    gathers = aggregates.gather_tasks(merge, scattered)
    aggregates.gather(first.out, gathers[0])  # then the process dies mid-gather
    out = tmp_path / "out"
    stale = out / "_progress" / "buckets" / "00099" / "part-00000-00000.parquet"
    stale.parent.mkdir(parents=True)
    (out / next(s for task in gathers for s in task.sources)).write_bytes(b"not parquet")
    first_bucket = pq.read_table(out / gathers[0].target)
    pq.write_table(first_bucket, stale)
    pq.write_table(first_bucket, out / "aggregates" / "part-00999.parquet")

    again = make_plan(tmp_path / "in", tmp_path / "out", ner_model, id_column="id",
                      rows_per_part=8)
    assert again.provenance.run_id == first.provenance.run_id and not again.work
    manifest = finish_run(again, engine="test")
    assert manifest["aggregate_buckets"] == merge.buckets
    landed = sorted(p.relative_to(out).as_posix() for p in (out / "aggregates").iterdir())
    assert landed == [p["path"] for p in manifest["aggregates"]]
    merged = pq.read_table(out / "aggregates").sort_by([(k, "ascending")
                                                        for k in aggregate.KEYS])
    assert merged.equals(pq.read_table(tmp_path / "clean" / "aggregates"))
    assert sum(p["rows"] for p in manifest["aggregates"]) == clean["aggregates"][0]["rows"]
    assert not (out / "_progress").exists()


def test_gather_tasks_name_every_bucket_and_only_written_files():
    merge = aggregates.Merge(4, scatters=(aggregates.Scatter(0, ("a",), 4),
                                          aggregates.Scatter(1, ("b",), 4)))
    tasks = aggregates.gather_tasks(merge, [aggregates.Scattered(1, ((2,),)),
                                            aggregates.Scattered(0, ((0, 2), (2,)))])
    assert [t.target for t in tasks] == [aggregates.bucket_part(b) for b in range(4)]
    assert [t.sources for t in tasks] == [
        (aggregates.scatter_file(0, 0, 0),), (),
        (aggregates.scatter_file(2, 0, 0), aggregates.scatter_file(2, 0, 1),
         aggregates.scatter_file(2, 1, 0)), ()]
    assert np.all([t.target.startswith("aggregates/") for t in tasks])


def test_verify_finds_a_key_in_another_bucket_s_file(tmp_path, ner_model, monkeypatch):
    monkeypatch.setenv(aggregates.BUCKETS_ENV, "40")
    manifest = finished(corpus(tmp_path), tmp_path / "out", ner_model)
    out, k = tmp_path / "out", manifest["aggregate_buckets"]
    assert verify(str(out)).ok
    filled = [p["path"] for p in manifest["aggregates"] if p["rows"]]
    assert len(filled) >= 2
    source, target = filled[0], filled[-1]
    first, last = pq.read_table(out / source), pq.read_table(out / target)
    moved = first.slice(0, 1)
    rewrite(out, source, first.slice(1))  # the key's sums stay in the table: only its file
    rewrite(out, target, pa.concat_tables([last, moved]))
    [finding] = verify(str(out)).findings
    assert finding.path == target
    assert finding.problem == f"1 key(s) of another of the {k} buckets and 0 repeated key(s)"
