"""seqlab.run.plan and seqlab.run.finish: one fingerprint however paths are spelled, and the
invariants finish_run keeps."""

import hashlib

import pyarrow.parquet as pq
import pytest

from seqlab import schema
from seqlab.errors import ConfigError, RunError
from seqlab.run.finish import finish_run
from seqlab.run.land import land
from seqlab.run.work import read_slices
from seqlab.stages import aggregate
from tests.seqlab import annotator, drive, make_plan, rows, truncate, write_jsonl, write_parquet

TABLES = ("documents", "mentions", "aggregates")


def table_files(out) -> set[str]:
    return {p.relative_to(out).as_posix() for table in TABLES
            for p in (out / table).rglob("*") if p.is_file()}


def test_a_crashed_run_resumes_however_its_paths_are_spelled(tmp_path, monkeypatch, ner_model):
    monkeypatch.chdir(tmp_path)
    write_parquet(tmp_path / "in" / "a.parquet", rows(3, "a"))
    write_parquet(tmp_path / "in" / "b.parquet", rows(6, "b"))
    first = make_plan("in/", "OUT/", ner_model, id_column="id")
    drive(first, first.work[:1])
    annotate = annotator(first)
    land(first, annotate(next(read_slices(first, first.work[1]))))  # then it crashes
    half_done = "OUT/documents/part-00001-0000000000.parquet"
    assert (tmp_path / half_done).exists()
    second = make_plan("./in", "./OUT", ner_model, id_column="id")
    assert not (tmp_path / half_done).exists()  # b is redone from scratch
    third = make_plan(tmp_path / "in", tmp_path / "OUT", ner_model, id_column="id")
    assert first.provenance.run_id == second.provenance.run_id == third.provenance.run_id
    assert set(third.done) == {"a.parquet"}
    assert [item.fragment.name for item in third.work] == ["b.parquet"]
    drive(third)
    manifest = finish_run(third, engine="test")
    assert manifest["rows"] == {"in": 9, "out": 9} and manifest["complete"]
    assert manifest["run_id"] == first.provenance.run_id and len(manifest["attempts"]) == 3
    ids = pq.read_table(tmp_path / "OUT" / "documents").column("doc_id").to_pylist()
    assert sorted(ids) == [f"a{i}" for i in range(3)] + [f"b{i}" for i in range(6)]


def test_finish_refuses_while_a_fragment_is_neither_recorded_nor_failed(tmp_path, ner_model):
    write_parquet(tmp_path / "in" / "a.parquet", rows(2, "a"))
    write_parquet(tmp_path / "in" / "b.parquet", rows(2, "b"))
    plan = make_plan(tmp_path / "in", tmp_path / "out", ner_model)
    drive(plan, plan.work[:1])
    with pytest.raises(RunError, match=r"the test engine ended without finishing \['b.parquet'\]"):
        finish_run(plan, engine="test")
    assert not (tmp_path / "out" / "_manifest.json").exists()
    assert (tmp_path / "out" / "_progress" / "_run.json").exists()


def test_a_run_without_entities_lands_empty_mentions_and_aggregates(tmp_path, pos_model):
    write_parquet(tmp_path / "in" / "a.parquet", rows(3))
    plan = make_plan(tmp_path / "in", tmp_path / "out", pos_model)
    drive(plan)
    manifest = finish_run(plan, engine="test")
    mentions = pq.read_table(tmp_path / "out" / "mentions" / "part-empty.parquet")
    aggregates = pq.read_table(tmp_path / "out" / "aggregates" / "part-00000.parquet")
    assert mentions.num_rows == 0 and mentions.schema.equals(schema.MENTIONS)
    assert aggregates.num_rows == 0 and aggregates.schema.equals(schema.AGGREGATES)
    assert [p["path"] for p in manifest["tables"]["mentions"]] == ["mentions/part-empty.parquet"]
    assert manifest["counts"]["entities"] == 0 and manifest["counts"]["tokens"] > 0


def test_the_manifest_lists_exactly_the_files_of_the_table_folders(tmp_path, ner_model):
    write_parquet(tmp_path / "in" / "a.parquet", rows(7, "a"))
    write_parquet(tmp_path / "in" / "b.parquet", rows(5, "b"))
    out = tmp_path / "out"
    plan = make_plan(tmp_path / "in", out, ner_model, rows_per_part=3)
    drive(plan)
    for stray in ("documents/part-ray-1-000.parquet", "mentions/.tmp-1.parquet",
                  "documents/part-00007-0000000000.parquet", "aggregates/old.parquet"):
        (out / stray).parent.mkdir(exist_ok=True)
        (out / stray).write_bytes(b"left by a crashed attempt")
    manifest = finish_run(plan, engine="test")
    listed = {table: {p["path"]: p for p in manifest["tables"][table]} for table in TABLES}
    assert table_files(out) == set().union(*listed.values())
    assert all(p["rows"] <= 3 for p in listed["documents"].values()) and listed["mentions"]
    for table in TABLES:
        for path, part in listed[table].items():
            data = (out / path).read_bytes()
            assert (part["bytes"], part["sha256"]) == (len(data),
                                                       hashlib.sha256(data).hexdigest())
            assert part["rows"] == pq.read_metadata(out / path).num_rows
    assert manifest["aggregates"] == manifest["tables"]["aggregates"]
    by_input = {p["path"] for i in manifest["inputs"] for ps in i["parts"].values() for p in ps}
    assert by_input == set(listed["documents"]) | set(listed["mentions"])
    assert manifest["rows"] == {"in": 12, "out": 12} and manifest["complete"]
    assert not (out / "_progress").exists()


def test_failed_fragments_keep_progress_and_a_rerun_retries_only_them(tmp_path, ner_model):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_parquet(inp / "a.parquet", rows(3, "a"))
    truncate(write_parquet(inp / "b.parquet", rows(40, "b")))
    write_jsonl(inp / "c.jsonl", rows(2, "c"))
    plan = make_plan(inp, out, ner_model, id_column="id")
    drive(plan)
    manifest = finish_run(plan, engine="test")
    assert manifest["complete"] is False and manifest["rows"] == {"in": 5, "out": 5}
    [failed] = manifest["failed_inputs"]
    assert (failed["fragment"], failed["index"]) == ("b.parquet", 1)
    assert (out / "_progress" / "failed-00001.json").exists()
    assert table_files(out) == {p["path"] for t in TABLES for p in manifest["tables"][t]}

    write_parquet(inp / "b.parquet", rows(4, "b"))  # the file is replaced, the command rerun
    rerun = make_plan(inp, out, ner_model, id_column="id")
    assert rerun.provenance.run_id == plan.provenance.run_id
    assert set(rerun.done) == {"a.parquet", "c.jsonl"}
    assert [item.fragment.name for item in rerun.work] == ["b.parquet"]
    assert not (out / "_manifest.json").exists()  # unfinished again while it runs
    drive(rerun)
    manifest = finish_run(rerun, engine="test")
    assert manifest["complete"] is True and manifest["failed_inputs"] == []
    assert manifest["rows"] == {"in": 9, "out": 9}
    assert not (out / "_progress").exists()
    ids = pq.read_table(out / "documents").column("doc_id").to_pylist()
    assert sorted(ids) == sorted([f"a{i}" for i in range(3)] + [f"b{i}" for i in range(4)]
                                 + ["c0", "c1"])
    # the partials of the fragments done by the first attempt were kept for the aggregates
    mentions = pq.read_table(out / "mentions")
    assert {m["doc_id"][0] for m in mentions.to_pylist()} == {"a", "b", "c"}
    expected = aggregate.finalize(aggregate.partials(mentions))
    assert pq.read_table(out / "aggregates").equals(expected)


def test_a_batch_must_hold_one_window_of_the_settled_length(tmp_path, ner_model):
    corpus = write_parquet(tmp_path / "in.parquet", rows(2))
    plan = make_plan(corpus, tmp_path / "ok", ner_model, max_length=256, batch_tokens=256)
    assert plan.config.max_length == 256
    with pytest.raises(ConfigError, match="--batch-tokens 128 cannot hold one window of "
                       "--max-length 250") as error:
        make_plan(corpus, tmp_path / "out", ner_model, max_length=250, batch_tokens=128)
    assert error.value.fix == "pass --batch-tokens 256 or more"  # padded to a multiple of 16
    assert not (tmp_path / "out").exists()  # refused before the output is touched
