"""seqlab.store.incremental: a table root that accumulates runs over a growing corpus, driven
through the run contract (``plan_run`` -> stages -> ``finish_run``) as every engine drives it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from seqlab.errors import ConfigError, OutputError
from seqlab.run.finish import finish_run
from seqlab.store import incremental
from seqlab.store.index import from_manifests, read_index
from seqlab.store.outdir import OutputDir
from tests.seqlab import drive, make_plan, rows, truncate, write_jsonl, write_parquet
from tests.seqlab.store import first_day, grow
from tests.tiny import build_tiny_srl

TABLES = ("documents", "mentions", "aggregates")


def run(input: Path, output: Path, model: Path, **options) -> dict:
    plan = make_plan(input, output, model, id_column="id", incremental=True, **options)
    drive(plan)
    return finish_run(plan, engine="test")


def live(output: Path, table: str):
    """What a loader of ``TABLE/**/*.parquet`` reads (``_`` folders are skipped)."""
    return pq.read_table(output / table)


def table_files(output: Path) -> set[str]:
    return {p.relative_to(output).as_posix() for table in TABLES
            for p in (output / table).rglob("*.parquet")}


@pytest.fixture
def corpus(tmp_path) -> Path:
    return first_day(tmp_path / "in")


def test_two_runs_hold_each_current_row_once_and_move_the_replaced_parts_aside(
        tmp_path, corpus, ner_model):
    out = tmp_path / "out"
    first = run(corpus, out, ner_model, run_date="2026-12-01")
    assert first["rows"] == {"in": 9, "out": 9} and first["run_date"] == "2026-12-01"
    assert all(p.startswith(f"{t}/run_date=2026-12-01/part-{first['run_id']}-")
               for t in TABLES for p in (f["path"] for f in first["tables"][t]))
    assert (out / "_runs" / first["run_id"] / "_SUCCESS").exists()
    assert not (out / "_progress").exists() and not (out / "_manifest.json").exists()

    grow(corpus)
    second = run(corpus, out, ner_model, run_date="2026-12-02", prune=True)
    assert sorted(i["fragment"] for i in second["inputs"]) == ["b.parquet", "c.parquet"]
    assert second["incremental"]["unchanged"] == 1  # keep/k.parquet
    assert second["incremental"]["replaced"] == ["b.parquet"]
    assert second["incremental"]["pruned"] == ["a.jsonl"]
    ids = live(out, "documents").column("doc_id").to_pylist()
    assert sorted(ids) == ["b10", "b11", "c0", "c1", "c2", "k0", "k1", "k2"]
    # the superseded parts are listed, and moved where loaders do not look
    superseded = second["incremental"]["superseded"]
    first_files = {p["path"] for t in TABLES for p in first["tables"][t]}
    b_and_a = {p["path"] for i in first["inputs"] if i["fragment"] != "keep/k.parquet"
               for parts in i["parts"].values() for p in parts}
    assert set(superseded) == b_and_a and b_and_a < first_files
    assert all((out / "_superseded" / second["run_id"] / p).exists() for p in superseded)
    # the index holds the live files, as the fold of the run manifests does
    manifests = incremental.run_manifests(OutputDir(str(out)))
    index = read_index(OutputDir(str(out)))
    assert index.version == 2 and index.last_run == second["run_id"]
    assert table_files(out) == set(index.files) == set(from_manifests(manifests).files)
    # totals are a sum over the aggregate partitions, and match the live mentions
    mentions, sums = live(out, "mentions"), live(out, "aggregates")
    assert mentions.num_rows == pc.sum(sums.column("mentions")).as_py() > 0
    assert set(mentions.column("doc_id").to_pylist()) <= set(ids)


def test_without_prune_a_deleted_files_rows_stay(tmp_path, corpus, ner_model):
    out = tmp_path / "out"
    run(corpus, out, ner_model)
    grow(corpus)
    second = run(corpus, out, ner_model)
    assert second["incremental"]["pruned"] == []
    assert {"a0", "a1"} <= set(live(out, "documents").column("doc_id").to_pylist())


def test_an_unchanged_corpus_runs_again_without_annotating_anything(tmp_path, corpus,
                                                                     ner_model):
    out = tmp_path / "out"
    first = run(corpus, out, ner_model)
    again = run(corpus, out, ner_model)
    assert again["run_id"] != first["run_id"] and again["inputs"] == []
    assert again["incremental"]["unchanged"] == 3 and again["rows"] == {"in": 0, "out": 0}
    assert all(again["tables"][t] == [] for t in TABLES)  # an empty run adds no files
    assert live(out, "documents").num_rows == 9
    runs = incremental.list_runs(OutputDir(str(out)))
    assert [(r["inputs"], r["unchanged"], r["rows"]) for r in runs] == [(3, 0, 9), (0, 3, 0)]
    latest = json.loads((out / "_runs" / "latest.json").read_text())
    assert latest["run_id"] == again["run_id"]
    assert OutputDir(str(out)).manifest().run_id == again["run_id"]


def test_another_configuration_annotates_every_file_again(tmp_path, corpus, ner_model,
                                                           caplog):
    out = tmp_path / "out"
    first = run(corpus, out, ner_model)
    with caplog.at_level(logging.WARNING, logger="seqlab.store.incremental"):
        second = run(corpus, out, ner_model, max_length=32, stride=8)
    # the warning names the options that changed, so an unintended change is easy to undo
    warned = [r.getMessage() for r in caplog.records if "annotated again" in r.getMessage()]
    assert len(warned) == 1 and "--max-length: " in warned[0] and "--stride: " in warned[0]
    assert second["incremental"]["config_key"] != first["incremental"]["config_key"]
    assert len(second["inputs"]) == 3
    assert len(second["incremental"]["superseded"]) == sum(
        len(parts) for i in first["inputs"] for parts in i["parts"].values())
    assert sorted(live(out, "documents").column("doc_id").to_pylist()) == sorted(
        f"{p}{i}" for p, n in (("a", 2), ("b", 4), ("k", 3)) for i in range(n))


def test_a_crash_while_finishing_resumes_the_same_run_and_never_duplicates(
        tmp_path, corpus, ner_model, monkeypatch):
    out = tmp_path / "out"
    run(corpus, out, ner_model)
    grow(corpus)
    plan = make_plan(corpus, out, ner_model, id_column="id", incremental=True, prune=True)
    drive(plan)

    def crash(*args):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(incremental, "supersede", crash)
    with pytest.raises(KeyboardInterrupt):
        finish_run(plan, engine="test")
    monkeypatch.undo()
    write_parquet(corpus / "d.parquet", rows(2, "d"))  # arrives before the rerun
    again = make_plan(corpus, out, ner_model, id_column="id", incremental=True, prune=True)
    assert again.provenance.run_id == plan.provenance.run_id and not again.work
    manifest = finish_run(again, engine="test")
    assert len(manifest["attempts"]) == 2
    ids = live(out, "documents").column("doc_id").to_pylist()
    assert sorted(ids) == ["b10", "b11", "c0", "c1", "c2", "k0", "k1", "k2"]
    third = run(corpus, out, ner_model, prune=True)  # the late file waits for the next run
    assert [i["fragment"] for i in third["inputs"]] == ["d.parquet"]


def test_a_file_that_fails_to_read_is_retried_by_the_next_run(tmp_path, corpus, ner_model):
    out = tmp_path / "out"
    truncate(corpus / "b.parquet")
    first = run(corpus, out, ner_model)
    assert not first["complete"] and [f["fragment"] for f in first["failed_inputs"]] == \
        ["b.parquet"]
    assert not (out / "_progress").exists()  # the run ended; the next one picks b up
    write_parquet(corpus / "b.parquet", rows(4, "b"))
    second = run(corpus, out, ner_model)
    assert [i["fragment"] for i in second["inputs"]] == ["b.parquet"] and second["complete"]
    assert second["incremental"]["superseded"] == []
    assert live(out, "documents").num_rows == 9


def test_a_single_run_output_and_an_incremental_table_are_not_mixed(tmp_path, corpus,
                                                                    ner_model):
    run(corpus, tmp_path / "table", ner_model)
    with pytest.raises(OutputError, match="is an incremental table") as caught:
        make_plan(corpus, tmp_path / "table", ner_model, id_column="id")
    assert "add --incremental" in caught.value.fix
    once = make_plan(corpus, tmp_path / "once", ner_model, id_column="id")
    drive(once)
    finish_run(once, engine="test")
    with pytest.raises(OutputError, match="single run written without --incremental"):
        make_plan(corpus, tmp_path / "once", ner_model, id_column="id", incremental=True)


def test_a_table_keeps_its_columns(tmp_path, corpus, ner_model):
    run(corpus, tmp_path / "out", ner_model)
    with pytest.raises(OutputError, match="documents_schema") as caught:
        make_plan(corpus, tmp_path / "out", ner_model, id_column="id", incremental=True,
                  keep_text=False)
    assert "new OUTPUT" in caught.value.fix


@pytest.mark.parametrize("options, flag", [
    ({"prune": True}, "--prune"), ({"run_date": "2026-12-01"}, "--run-date"),
    ({"table_format": "iceberg", "catalog": "lake"}, "--table-format iceberg")])
def test_incremental_flags_without_incremental_name_the_fix(options, flag):
    from seqlab.config import build_config

    with pytest.raises(ConfigError, match=flag) as caught:
        build_config(input="in", output="out", **options)
    assert "add --incremental" in caught.value.fix


@pytest.mark.parametrize("options, message", [
    ({"overwrite": True}, "--overwrite"), ({"limit": 5}, "--limit"),
    ({"run_date": "12/01/2026"}, "not a date"), ({"table_format": "iceberg"}, "--catalog")])
def test_incremental_refuses_what_it_cannot_keep(options, message):
    from seqlab.config import build_config

    with pytest.raises(ConfigError, match=message):
        build_config(input="in", output="out", incremental=True, **options)


def iceberg_files(catalog: str, table: str) -> set[str]:
    from seqlab.store import iceberg

    return set(iceberg.live_files(iceberg.load(catalog).load_table(f"seqlab.{table}")))


def test_each_iceberg_snapshot_holds_exactly_the_live_files(tmp_path, corpus, ner_model,
                                                             lake):
    pytest.importorskip("sqlalchemy", reason="pip install 'pyiceberg[sql-sqlite]'")
    out = tmp_path / "out"
    options = {"table_format": "iceberg", "catalog": lake}
    first = run(corpus, out, ner_model, **options)
    for table in TABLES:
        assert iceberg_files(lake, table) == {f"file://{out}/{p['path']}"
                                              for p in first["tables"][table]}
        assert first["iceberg"]["tables"][table]["status"] == "committed"
    grow(corpus)
    second = run(corpus, out, ner_model, prune=True, **options)
    written = {p["path"] for m in (first, second) for t in TABLES for p in m["tables"][t]}
    live = written - set(second["incremental"]["superseded"])
    for table in TABLES:
        assert iceberg_files(lake, table) == {f"file://{out}/{p}" for p in live
                                              if p.startswith(f"{table}/")}
    # the superseded files stay where the first snapshot still reads them
    assert all((out / p).exists() for p in second["incremental"]["superseded"])
    from seqlab.store import iceberg

    snapshot = iceberg.load(lake).load_table("seqlab.documents").current_snapshot()
    summary = snapshot.summary.additional_properties
    assert summary["seqlab.run_id"] == second["run_id"] and summary["seqlab.model"] == \
        str(ner_model) and summary["seqlab.run_date"] == second["run_date"]
    scanned = iceberg.load(lake).load_table("seqlab.documents").scan(
        selected_fields=("doc_id",)).to_arrow()
    assert sorted(scanned.column("doc_id").to_pylist()) == [
        "b10", "b11", "c0", "c1", "c2", "k0", "k1", "k2"]


def test_a_crash_before_the_commit_leaves_the_table_as_it_was(tmp_path, corpus, ner_model,
                                                              lake, monkeypatch):
    pytest.importorskip("sqlalchemy", reason="pip install 'pyiceberg[sql-sqlite]'")
    from seqlab.store import iceberg

    out = tmp_path / "out"
    options = {"table_format": "iceberg", "catalog": lake}
    run(corpus, out, ner_model, **options)
    before = {t: iceberg_files(lake, t) for t in TABLES}
    grow(corpus)
    plan = make_plan(corpus, out, ner_model, id_column="id", incremental=True, **options)
    drive(plan)  # every file written

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed before committing")

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(iceberg, "commit_run", crash)
        finish_run(plan, engine="test")
    assert {t: iceberg_files(lake, t) for t in TABLES} == before
    again = make_plan(corpus, out, ner_model, id_column="id", incremental=True, **options)
    assert again.provenance.run_id == plan.provenance.run_id
    manifest = finish_run(again, engine="test")
    table = iceberg.load(lake).load_table("seqlab.documents")
    runs = [s.summary.additional_properties.get("seqlab.run_id") for s in table.snapshots()]
    assert runs.count(manifest["run_id"]) == 1  # committed once
    # committing the same run again (a crash after the commit) adds no snapshot
    added = [f"file://{out}/{p['path']}" for p in manifest["tables"]["documents"]]
    repeat = iceberg.commit_run(lake, "seqlab", manifest["run_id"], {
        "documents": iceberg.TableChange(again.documents_schema, added, [])})
    assert repeat["tables"]["documents"]["status"] == "already_committed"
    assert len(iceberg.load(lake).load_table("seqlab.documents").snapshots()) == len(runs)


def test_an_earlier_days_unfinished_run_is_finished_then_the_days_run_follows(
        tmp_path, corpus, ner_model):
    import seqlab

    out = tmp_path / "out"
    options = dict(model=str(ner_model), id_column="id", incremental=True, max_length=64,
                   stride=16, batch_tokens=1024, device="cpu")
    monday = make_plan(corpus, out, ner_model, id_column="id", incremental=True,
                       run_date="2026-11-30")
    drive(monday, monday.work[:1])  # then it crashes
    write_parquet(corpus / "d.parquet", rows(2, "d"))  # Tuesday's new file
    manifest = seqlab.annotate(str(corpus), str(out), run_date="2026-12-01", **options)
    runs = incremental.list_runs(OutputDir(str(out)))
    assert [(r["run_date"], r["inputs"]) for r in runs] == [("2026-11-30", 3),
                                                             ("2026-12-01", 1)]
    assert runs[0]["run_id"] == monday.provenance.run_id
    assert manifest["run_date"] == "2026-12-01" and manifest["inputs"][0]["fragment"] == \
        "d.parquet"
    assert live(out, "documents").num_rows == 11


def test_overwrite_replaces_an_incremental_table_with_a_single_run(tmp_path, corpus,
                                                                    ner_model):
    out = tmp_path / "out"
    run(corpus, out, ner_model)
    grow(corpus)
    run(corpus, out, ner_model, prune=True)
    once = make_plan(corpus, out, ner_model, id_column="id", overwrite=True)
    drive(once)
    finish_run(once, engine="test")
    assert not (out / "_runs").exists() and not (out / "_superseded").exists()
    assert not (out / "_index").exists()
    assert not OutputDir(str(out)).incremental()
    assert live(out, "documents").num_rows == 8


def test_the_first_run_without_entities_gives_mentions_a_schema(tmp_path, corpus, pos_model):
    first = run(corpus, tmp_path / "out", pos_model)
    (empty,) = first["tables"]["mentions"]
    assert empty["rows"] == 0 and empty["path"].startswith("mentions/run_date=")
    assert live(tmp_path / "out", "mentions").num_rows == 0


def test_frames_of_an_srl_model_join_the_iceberg_commit(tmp_path, corpus, ner_model, lake):
    pytest.importorskip("sqlalchemy", reason="pip install 'pyiceberg[sql-sqlite]'")
    from seqlab.store import iceberg

    out, model = tmp_path / "out", f"{ner_model},{build_tiny_srl(tmp_path / 'srl')}"
    options = {"table_format": "iceberg", "catalog": lake}
    first = run(corpus, out, model, **options)
    grow(corpus)
    second = run(corpus, out, model, prune=True, **options)
    written = {p["path"] for m in (first, second) for t in m["tables"] for p in m["tables"][t]}
    live_files = written - set(second["incremental"]["superseded"])
    assert any(p.startswith("frames/") for p in second["incremental"]["superseded"])
    assert iceberg_files(lake, "frames") == {f"file://{out}/{p}" for p in live_files
                                             if p.startswith("frames/")}
    frames = iceberg.load(lake).load_table("seqlab.frames").scan().to_arrow()
    documents = iceberg.load(lake).load_table("seqlab.documents").scan(
        selected_fields=("doc_id", "srl_frames")).to_arrow()
    assert frames.num_rows == sum(len(f or []) for f in documents.column("srl_frames").to_pylist())
    assert set(frames.column("doc_id").to_pylist()) <= set(documents.column("doc_id").to_pylist())


def test_a_lost_run_manifest_quarantines_that_runs_parts_never_deletes_them(
        tmp_path, corpus, ner_model, caplog):
    import shutil

    out = tmp_path / "out"
    first = run(corpus, out, ner_model, run_date="2026-12-01")
    (out / "_runs" / first["run_id"] / "manifest.json").unlink()  # its state is lost
    (out / "_runs" / "latest.json").unlink()
    shutil.rmtree(out / "_index")
    second = run(corpus, out, ner_model, run_date="2026-12-02")
    moved = {p.relative_to(out / "_quarantine").as_posix()
             for p in (out / "_quarantine").rglob("*.parquet")}
    assert moved == {p["path"] for t in TABLES for p in first["tables"][t]}
    assert "no manifest lists it (a run's manifest under _runs/ missing" in caplog.text
    assert set(second["quarantined"]) == {f"_quarantine/{path}" for path in moved}
    # what the lost run held is annotated again: every input row once in the live table
    ids = live(out, "documents").column("doc_id").to_pylist()
    assert sorted(ids) == sorted(set(ids)) and len(ids) == second["rows"]["in"] == 9


def test_a_lost_latest_pointer_is_found_again_from_the_run_manifests(tmp_path, corpus,
                                                                       ner_model):
    out = tmp_path / "out"
    run(corpus, out, ner_model, run_date="2026-12-01")
    grow(corpus)
    second = run(corpus, out, ner_model, run_date="2026-12-02")
    (out / "_runs" / "latest.json").unlink()
    assert OutputDir(str(out)).manifest().run_id == second["run_id"]


def test_a_damaged_fragment_record_stops_the_run_naming_its_file(tmp_path, corpus, ner_model):
    out = tmp_path / "out"
    plan = make_plan(corpus, out, ner_model, id_column="id", incremental=True,
                     run_date="2026-12-01")
    drive(plan)  # every fragment recorded; the run not finished (a crash before its end)
    record = sorted((out / "_progress").glob("fragment-*.json"))[0]
    record.write_text(record.read_text()[:20])
    with pytest.raises(OutputError, match=rf"{record} is not readable JSON") as error:
        run(corpus, out, ner_model, run_date="2026-12-01")
    assert "annotated again" in error.value.fix


def test_a_live_part_deleted_by_hand_gets_its_input_annotated_again(tmp_path, corpus,
                                                                    ner_model, caplog):
    out = tmp_path / "out"
    first = run(corpus, out, ner_model, run_date="2026-12-01")
    [lost] = [p["path"] for p in first["tables"]["documents"] if "-00001-" in p["path"]]
    (out / lost).unlink()
    second = run(corpus, out, ner_model, run_date="2026-12-02")
    assert f"{out / lost}, a live file of input" in caplog.text
    assert second["incremental"]["unchanged"] == 2  # the other two inputs stay as they were
    ids = live(out, "documents").column("doc_id").to_pylist()
    assert len(ids) == len(set(ids)) == 9  # every row once again
    from seqlab.store.verify import verify

    assert verify(str(out)).ok


def test_a_lost_run_manifest_leaves_the_index_holding_the_table(tmp_path, corpus, ner_model):
    """The index is the table's state: without the manifest of the run that wrote them, its
    files stay live and the next run annotates nothing again; verify names the gap."""
    from seqlab.store.verify import verify

    out = tmp_path / "out"
    first = run(corpus, out, ner_model, run_date="2026-12-01")
    second = run(corpus, out, ner_model, run_date="2026-12-02")
    (out / "_runs" / first["run_id"] / "manifest.json").unlink()
    third = run(corpus, out, ner_model, run_date="2026-12-03")
    assert third["inputs"] == [] and third["incremental"]["unchanged"] == 3
    assert not (out / "_quarantine").exists() and live(out, "documents").num_rows == 9
    found = verify(str(out)).findings
    assert {f.problem.split(":")[0] for f in found} == {"a.jsonl", "b.parquet",
                                                        "keep/k.parquet"}
    assert all("held by the index, not by the run manifests" in f.problem for f in found)
    assert second["inputs"] == []


# --------------------------------------------------------------------------- the index

def content(out: Path) -> dict[str, list[dict]]:
    """The live tables' rows, without what names the run (its id and time)."""
    tables = {}
    for table in TABLES:
        data = live(out, table)
        data = data.drop_columns([c for c in ("run_id", "processed_at", "run_date")
                                  if c in data.column_names])
        tables[table] = sorted(data.to_pylist(), key=lambda r: json.dumps(r, default=str))
    return tables


def held(out: Path) -> dict[str, dict[str, int]]:
    """What the index says the table holds: each input file's rows per table."""
    index = read_index(OutputDir(str(out)))
    return {name: index.rows(name) for name in index.inputs}


def day_one(root: Path, model: Path) -> tuple[Path, Path]:
    corpus, out = root / "in", root / "out"
    write_jsonl(corpus / "a.jsonl", rows(2, "a"))
    write_parquet(corpus / "b.parquet", rows(4, "b"))
    write_parquet(corpus / "keep" / "k.parquet", rows(3, "k"))
    run(corpus, out, model, run_date="2026-12-01")
    return corpus, out


def test_a_table_without_an_index_gets_one_folded_from_its_manifests(tmp_path, ner_model,
                                                                     caplog):
    import shutil

    from seqlab.store.verify import verify

    made = {}
    for name in ("clean", "migrated"):
        corpus, out = day_one(tmp_path / name, ner_model)
        if name == "migrated":  # as a seqlab that wrote no index left it
            shutil.rmtree(out / "_index")
        grow(corpus)
        with caplog.at_level(logging.INFO, logger="seqlab.store.incremental"):
            made[name] = (out, run(corpus, out, ner_model, run_date="2026-12-02", prune=True))
    (clean, one), (migrated, other) = made["clean"], made["migrated"]
    assert [r.getMessage() for r in caplog.records].count(
        f"{migrated} has no index yet: folded from its run manifests; written as version 1 "
        "when this run ends") == 1
    for key in ("replaced", "pruned", "unchanged"):
        assert other["incremental"][key] == one["incremental"][key]
    assert len(other["incremental"]["superseded"]) == len(one["incremental"]["superseded"])
    assert content(migrated) == content(clean)
    assert held(migrated) == held(clean) and len(held(clean)) == 3
    assert read_index(OutputDir(str(migrated))).version == 1
    assert read_index(OutputDir(str(clean))).version == 2
    assert verify(str(migrated)).ok and verify(str(clean)).ok


def test_planning_reads_the_index_and_the_last_manifest_only(tmp_path, ner_model,
                                                             monkeypatch):
    from seqlab.store import outdir

    corpus, out = day_one(tmp_path, ner_model)
    for day in range(2, 6):  # runs that each annotate one new file
        write_parquet(corpus / f"day{day}.parquet", rows(2, f"d{day}"))
        run(corpus, out, ner_model, run_date=f"2026-12-0{day}")
    read = []

    def spy(fs, path, files=True):
        read.append((Path(path).parent.name, files))
        return real(fs, path, files)

    def history(*args):
        raise AssertionError("planning read every run manifest")

    real = outdir.read_manifest
    monkeypatch.setattr(outdir, "read_manifest", spy)
    monkeypatch.setattr(incremental, "run_manifests", history)
    monkeypatch.setattr(OutputDir, "run_manifests", history)
    plan = make_plan(corpus, out, ner_model, id_column="id", incremental=True,
                     run_date="2026-12-09")
    latest = json.loads((out / "_runs" / "latest.json").read_text())["run_id"]
    assert read == [(latest, False)]  # the last run's summary, not its files
    assert plan.increment.inputs == [] and plan.increment.unchanged == 7
    assert plan.increment.index_version == 5
    manifest = finish_run(plan, engine="test")
    assert read_index(OutputDir(str(out))).version == 6
    assert manifest["inputs"] == [] and read == [(latest, False)]


def test_a_crash_between_the_index_and_the_manifest_resumes_to_the_same_version(
        tmp_path, ner_model, monkeypatch):
    from seqlab.store.verify import verify

    made = {}
    for name in ("clean", "crashed"):
        corpus, out = day_one(tmp_path / name, ner_model)
        grow(corpus)
        plan = make_plan(corpus, out, ner_model, id_column="id", incremental=True,
                         prune=True, run_date="2026-12-02")
        drive(plan)
        if name == "crashed":
            def crash(*args, **kwargs):
                raise KeyboardInterrupt("killed after the index was written")

            with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
                patched.setattr(OutputDir, "finish", crash)
                finish_run(plan, engine="test")
            current = json.loads((out / "_index" / "current.json").read_text())
            assert current["version"] == 2 and current["last_run"] == plan.provenance.run_id
            assert not (out / "_runs" / plan.provenance.run_id).exists()
            # while the run is unfinished, verify checks the version before against the
            # manifests: no finding about the index
            assert not [f for f in verify(str(out)).findings if f.path.startswith("_index")]
            plan = make_plan(corpus, out, ner_model, id_column="id", incremental=True,
                             prune=True, run_date="2026-12-02")
            assert not plan.work and plan.increment.index_version == 1
        made[name] = (out, finish_run(plan, engine="test"))
    (clean, one), (crashed, other) = made["clean"], made["crashed"]
    assert len(other["attempts"]) == 2 and other["incremental"]["pruned"] == ["a.jsonl"]
    assert len(other["incremental"]["superseded"]) == len(one["incremental"]["superseded"])
    assert content(crashed) == content(clean) and held(crashed) == held(clean)
    assert read_index(OutputDir(str(crashed))).version == 2
    assert sorted(p.name for p in (crashed / "_index").glob("v-*")) == [
        "v-0000000001.parquet", "v-0000000002.parquet"]
    assert verify(str(crashed)).ok


def test_an_index_behind_the_last_run_stops_the_run_naming_the_fix(tmp_path, corpus,
                                                                   ner_model):
    out = tmp_path / "out"
    run(corpus, out, ner_model, run_date="2026-12-01")
    current = out / "_index" / "current.json"
    current.write_text(json.dumps({**json.loads(current.read_text()), "last_run": "R0"}))
    with pytest.raises(OutputError, match="holds the table as run R0 left it") as caught:
        run(corpus, out, ner_model, run_date="2026-12-02")
    assert f"remove {out / '_index'}" in caught.value.fix


def test_an_index_that_moved_on_under_an_unfinished_run_stops_its_finish(tmp_path, corpus,
                                                                         ner_model):
    from seqlab.store.index import write_index

    out = tmp_path / "out"
    run(corpus, out, ner_model, run_date="2026-12-01")
    grow(corpus)
    plan = make_plan(corpus, out, ner_model, id_column="id", incremental=True,
                     run_date="2026-12-02")
    drive(plan)
    table = OutputDir(str(out))
    write_index(table, read_index(table), "another-writer")  # e.g. a compaction
    with pytest.raises(OutputError, match="the table changed while the run was unfinished") \
            as caught:
        finish_run(plan, engine="test")
    assert f"remove {out / '_progress'} " in caught.value.fix
    assert read_index(table).version == 2 and not (out / "_runs" / plan.provenance.run_id /
                                                   "manifest.json").exists()
