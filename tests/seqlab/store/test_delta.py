"""seqlab.store.delta: runs committed to Delta Lake tables whose roots are the table folders,
read back with deltalake's own reader and, as a warehouse reads the documented globs, with
DuckDB over ``TABLE/**/*.parquet``: through races, crashes before, between and after the
commits, compaction, and a run that ends in a Beam pipeline."""

from __future__ import annotations

import datetime
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqlab.errors import ConfigError, RunError
from seqlab.run.finish import finish_run
from seqlab.schema import AGGREGATES, MENTIONS, documents_schema
from seqlab.store import changes as store_changes
from seqlab.store import compact, delta, incremental
from seqlab.store.delta import TableChange, commit_run
from seqlab.store.outdir import OutputDir
from seqlab.store.parts import write_table
from seqlab.store.verify import verify
from tests import require
from tests.seqlab import SMALL, drive, make_plan
from tests.seqlab.store import first_day, grow
from tests.tiny import build_tiny_srl

deltalake = require("deltalake", "delta")

pytestmark = pytest.mark.timeout(120)

DOCUMENTS = documents_schema(pa.schema([("title", pa.string()), ("year", pa.int64())]))
SCHEMAS = {"documents": DOCUMENTS, "mentions": MENTIONS, "aggregates": AGGREGATES}
TABLES = ("documents", "mentions", "aggregates")
KEYS = {"documents": "doc_id", "mentions": "doc_id", "aggregates": "text"}
PLACES = {"London": "LOC", "Mary": "PER", "Reuters": "ORG"}
PROCESSED = datetime.datetime(2026, 12, 1, 23, 59, 59, 250000, tzinfo=datetime.timezone.utc)


def document(doc_id: str, text: str, run: str) -> dict:
    """A documents row as a run lands it: words with offsets and labels, the K best labels on
    every other word (``top`` is null elsewhere), an entity per known name."""
    tokens, entities, start = [], [], 0
    for i, word in enumerate(text.split()):
        start = text.index(word, start)
        label = f"B-{PLACES[word]}" if word in PLACES else "O"
        top = [{"label": label, "score": 0.75}, {"label": "O", "score": 0.25}]
        tokens.append({"text": word, "start_char": start, "end_char": start + len(word),
                       "label": label, "score": 0.75, "top": top if i % 2 else None})
        if word in PLACES:
            entities.append({"text": word, "label": PLACES[word], "start_char": start,
                             "end_char": start + len(word), "score": 0.75})
        start += len(word)
    return {"doc_id": doc_id, "title": f"Title of {doc_id}", "year": 2026, "text": text,
            "status": "ok", "error": None, "n_tokens": len(tokens), "tokens": tokens,
            "entities": entities, "run_id": run, "model": "ner",
            "model_revision": "sha256:4d10f95", "processed_at": PROCESSED}


def land_run(out: Path, run: str, day: str, part: str, docs: list[tuple[str, str]]) -> dict:
    """Land documents, mentions and aggregates of ``docs`` (id, text) as one part each, in
    the ``run_date=day`` folders; returns their paths relative to ``out``."""
    documents = [document(doc_id, text, run) for doc_id, text in docs]
    mentions = [{"doc_id": d["doc_id"], **{k: e[k] for k in ("start_char", "end_char", "text",
                                                              "label", "score")},
                 **{k: d[k] for k in ("run_id", "model", "model_revision", "processed_at")}}
                for d in documents for e in d["entities"]]
    sums = {(m["label"], m["text"].casefold()): m for m in mentions}
    aggregates = [{"label": label, "text": text, "documents": 1, "score_sum": 0.75,
                   "mentions": sum((m["label"], m["text"].casefold()) == (label, text)
                                   for m in mentions)} for label, text in sums]
    found = {}
    for table, records in (("documents", documents), ("mentions", mentions),
                           ("aggregates", aggregates)):
        found[table] = f"{table}/run_date={day}/part-{run}-{part}.parquet"
        write_table(fsspec.filesystem("file"), str(out), found[table],
                    pa.Table.from_pylist(records, schema=SCHEMAS[table]))
    return found


def changes(added: dict, removed: dict | None = None, only=TABLES) -> dict[str, TableChange]:
    removed = removed or {}
    return {t: TableChange(SCHEMAS[t], [added[t]] if t in added else [],
                           [removed[t]] if t in removed else []) for t in only}


def readers_agree(out: Path, table: str) -> list[dict]:
    """The rows of the Delta table's current version as deltalake reads them, checked to be
    the rows DuckDB reads from ``TABLE/**/*.parquet`` (run_date from the Hive folders)."""
    def rows_of(data: pa.Table) -> list[dict]:
        return sorted(({**r, "run_date": str(r["run_date"])} for r in data.to_pylist()),
                      key=lambda r: (r[KEYS[table]], repr(r)))

    read = rows_of(deltalake.DeltaTable(str(out / table)).to_pyarrow_table())
    globbed = rows_of(duckdb.sql(f"SELECT * FROM read_parquet('{out}/{table}/**/*.parquet', "
                                 "hive_partitioning = true)").fetch_arrow_table())
    assert read == globbed, table
    assert not list((out / table / delta.LOG).rglob("*.parquet"))  # no checkpoint
    return read


def log_actions(out: Path, table: str, version: int) -> list[dict]:
    path = out / table / delta.LOG / f"{version:020d}.json"
    return [json.loads(line) for line in path.read_text().splitlines()]


def table_files(out: Path, table: str) -> set[str]:
    """The files of the Delta table's current version as deltalake lists them, relative to
    the output."""
    uris = deltalake.DeltaTable(str(out / table)).file_uris()
    return {Path(uri.removeprefix("file://")).relative_to(out).as_posix() for uri in uris}


def commits_of(out: Path, table: str, run_id: str) -> int:
    """How many commits of the table's log carry ``run_id`` as their txn app id."""
    versions = deltalake.DeltaTable(str(out / table)).version() + 1
    return sum(any(a.get("txn", {}).get("appId") == run_id for a in log_actions(out, table, v))
               for v in range(versions))


RUN1 = [("news-001", "Reuters reported from London ."), ("news-002", "Mary flew to London")]
RUN2_NEW = [("news-004", "Mary met Reuters")]
RUN2_CHANGED = [("news-001", "Reuters reported from London , and Mary too .")]


def test_the_first_commit_creates_each_table_and_both_readers_read_its_rows(tmp_path):
    out = tmp_path / "out"
    files = land_run(out, "run1", "2026-12-01", "00000", RUN1)

    result = commit_run(OutputDir(str(out)), "run1", changes(files), {"seqlab.model": "ner"})

    for table in TABLES:
        info = result["tables"][table]
        assert (info["status"], info["version"]) == ("committed", 0)
        assert info["added_files"] == info["total_files"] == 1
        loaded = deltalake.DeltaTable(str(out / table))
        assert loaded.metadata().partition_columns == ["run_date"]
        assert loaded.metadata().configuration["delta.checkpointInterval"] == str(2**31 - 1)
        assert loaded.transaction_version("run1") is not None
        assert table_files(out, table) == {files[table]}
        back = pa.schema(loaded.schema().to_arrow())
        assert back.names == [*SCHEMAS[table].names, "run_date"]
        assert back.field("run_date").type == pa.date32()
        read = readers_agree(out, table)
        assert info["total_records"] == len(read)
        commit = log_actions(out, table, 0)[0]
        assert commit["commitInfo"]["seqlab.run_id"] == "run1"
        assert commit["commitInfo"]["seqlab.model"] == "ner"
    documents = readers_agree(out, "documents")
    assert [d["doc_id"] for d in documents] == ["news-001", "news-002"]
    assert {d["run_date"] for d in documents} == {"2026-12-01"}
    assert documents[0]["tokens"][0]["top"] is None  # nulls in nested lists survive
    assert documents[0]["tokens"][1]["top"][0] == {"label": "O", "score": 0.75}
    tokens = pa.schema(deltalake.DeltaTable(str(out / "documents")).schema().to_arrow())
    assert not tokens.field("tokens").type.value_field.nullable
    assert len(readers_agree(out, "mentions")) == 4


def test_a_run_that_supersedes_removes_and_adds_in_one_commit(tmp_path):
    out, output = tmp_path / "out", OutputDir(str(tmp_path / "out"))
    first = land_run(out, "run1", "2026-12-01", "00000", RUN1[:1])
    kept = land_run(out, "run1", "2026-12-01", "00001", RUN1[1:])
    commit_run(output, "run1", {t: TableChange(SCHEMAS[t], [first[t], kept[t]]) for t in TABLES})
    new = land_run(out, "run2", "2026-12-02", "00000", RUN2_NEW)
    changed = land_run(out, "run2", "2026-12-02", "00001", RUN2_CHANGED)

    two = commit_run(output, "run2", {t: TableChange(SCHEMAS[t], [new[t], changed[t]],
                                                     [first[t]]) for t in TABLES})

    for table in TABLES:
        info = two["tables"][table]
        assert (info["version"], info["added_files"], info["removed_files"],
                info["total_files"]) == (1, 2, 1, 3)
        assert table_files(out, table) == {kept[table], new[table], changed[table]}
        actions = log_actions(out, table, 1)
        assert sorted(next(iter(a)) for a in actions) == ["add", "add", "commitInfo", "remove",
                                                          "txn"]
        (remove,) = [a["remove"] for a in actions if "remove" in a]
        assert remove["path"] == first[table].partition("/")[2] and remove["dataChange"]
        # the earlier version still reads as run 1 left it, while the file is in place
        assert deltalake.DeltaTable(str(out / table), version=0).to_pyarrow_table().num_rows \
            == pq.read_metadata(out / first[table]).num_rows + pq.read_metadata(
                out / kept[table]).num_rows
        (out / first[table]).rename(tmp_path / f"{table}-superseded.parquet")  # as runs do
        readers_agree(out, table)
    documents = readers_agree(out, "documents")
    assert [d["doc_id"] for d in documents] == ["news-001", "news-002", "news-004"]
    assert "and Mary too" in documents[0]["text"] and documents[0]["run_date"] == "2026-12-02"


def test_a_run_committed_again_or_after_a_crash_between_tables_commits_once(tmp_path):
    out, output = tmp_path / "out", OutputDir(str(tmp_path / "out"))
    files = land_run(out, "run1", "2026-12-01", "00000", RUN1)
    commit_run(output, "run1", changes(files, only=("documents",)))  # then it crashed

    rerun = commit_run(output, "run1", changes(files))
    again = commit_run(output, "run1", changes(files))

    assert {t: i["status"] for t, i in rerun["tables"].items()} == {
        "documents": "already_committed", "mentions": "committed", "aggregates": "committed"}
    assert {i["status"] for i in again["tables"].values()} == {"already_committed"}
    for table in TABLES:
        assert deltalake.DeltaTable(str(out / table)).version() == 0
        assert again["tables"][table]["added_records"] == rerun["tables"][table]["added_records"]
        assert table_files(out, table) == {files[table]}


def racing(monkeypatch, other_writer) -> list[int]:
    """Make the test's first commit meet another: ``other_writer`` commits first, then the
    commit goes on from the table as it was before."""
    original, calls = deltalake.DeltaTable.create_write_transaction, []

    def create_write_transaction(self, *args, **kwargs):
        calls.append(self.version())
        if len(calls) == 1:
            other_writer()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(deltalake.DeltaTable, "create_write_transaction",
                        create_write_transaction)
    monkeypatch.setattr(store_changes, "BACKOFF_S", 0.001)
    return calls


def test_a_commit_that_meets_another_writers_lands_after_it(tmp_path, monkeypatch):
    out, output = tmp_path / "out", OutputDir(str(tmp_path / "out"))
    first = land_run(out, "run1", "2026-12-01", "00000", RUN1)
    commit_run(output, "run1", changes(first, only=("documents",)))
    ours = land_run(out, "run2", "2026-12-02", "00000", RUN2_NEW)
    theirs = land_run(out, "run3", "2026-12-02", "00009", [("other-1", "London calling")])

    calls = racing(monkeypatch, lambda: commit_run(output, "run3", changes(
        theirs, only=("documents",))))
    result = commit_run(output, "run2", changes(ours, only=("documents",)))

    assert calls == [0, 0]  # ours, then theirs, both on version 0
    assert result["tables"]["documents"]["version"] == 2
    assert [commits_of(out, "documents", run) for run in ("run1", "run2", "run3")] == [1, 1, 1]
    assert table_files(out, "documents") == {first["documents"], ours["documents"],
                                             theirs["documents"]}
    assert [d["doc_id"] for d in readers_agree(out, "documents")] == [
        "news-001", "news-002", "news-004", "other-1"]


def test_a_race_with_another_attempt_of_the_same_run_commits_it_once(tmp_path, monkeypatch):
    out, output = tmp_path / "out", OutputDir(str(tmp_path / "out"))
    files = land_run(out, "run1", "2026-12-01", "00000", RUN1)
    commit_run(output, "run1", changes(files, only=("documents",)))
    new = land_run(out, "run2", "2026-12-02", "00000", RUN2_NEW)

    racing(monkeypatch, lambda: commit_run(output, "run2", changes(new, only=("documents",))))
    result = commit_run(output, "run2", changes(new, only=("documents",)))

    assert result["tables"]["documents"]["status"] == "already_committed"
    assert result["tables"]["documents"]["attempts"] == 2
    assert deltalake.DeltaTable(str(out / "documents")).version() == 1
    assert commits_of(out, "documents", "run2") == 1
    assert len(readers_agree(out, "documents")) == 3


def test_a_table_created_meanwhile_takes_the_run_as_its_next_commit(tmp_path, monkeypatch):
    import deltalake.transaction

    out, output = tmp_path / "out", OutputDir(str(tmp_path / "out"))
    ours = land_run(out, "run1", "2026-12-01", "00000", RUN1)
    theirs = land_run(out, "run2", "2026-12-01", "00001", RUN2_NEW)
    original, calls = deltalake.transaction.create_table_with_add_actions, []

    def create(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 1:  # another writer creates the table first
            commit_run(output, "run2", changes(theirs, only=("aggregates",)))
        return original(*args, **kwargs)

    monkeypatch.setattr(deltalake.transaction, "create_table_with_add_actions", create)
    monkeypatch.setattr(store_changes, "BACKOFF_S", 0.001)
    result = commit_run(output, "run1", changes(ours, only=("aggregates",)))

    assert (result["tables"]["aggregates"]["version"], len(calls)) == (1, 2)
    assert result["tables"]["aggregates"]["attempts"] == 2
    assert table_files(out, "aggregates") == {ours["aggregates"], theirs["aggregates"]}


def test_conflicts_that_never_end_are_a_run_error_and_leave_the_table(tmp_path, monkeypatch):
    from deltalake.exceptions import CommitFailedError

    out, output = tmp_path / "out", OutputDir(str(tmp_path / "out"))
    files = land_run(out, "run1", "2026-12-01", "00000", RUN1)
    commit_run(output, "run1", changes(files, only=("documents",)))
    new = land_run(out, "run2", "2026-12-02", "00000", RUN2_NEW)
    monkeypatch.setattr(store_changes, "BACKOFF_S", 0.001)

    def conflicts(self, *args, **kwargs):
        raise CommitFailedError("Failed to commit transaction: Concurrent append failed.")

    monkeypatch.setattr(deltalake.DeltaTable, "create_write_transaction", conflicts)
    with pytest.raises(RunError) as error:
        commit_run(output, "run2", changes(new, only=("documents",)))
    assert f"failed {delta.ATTEMPTS} times" in error.value.message
    assert "rerun the same command" in error.value.fix
    assert table_files(out, "documents") == {files["documents"]}


def test_what_a_delta_table_cannot_take_is_refused_and_leaves_it(tmp_path):
    out, output = tmp_path / "out", OutputDir(str(tmp_path / "out"))
    files = land_run(out, "run1", "2026-12-01", "00000", RUN1)
    commit_run(output, "run1", changes(files))
    new = land_run(out, "run2", "2026-12-02", "00000", RUN2_NEW)

    with pytest.raises(RunError, match="does not hold 1 of the files"):
        commit_run(output, "run2", {"documents": TableChange(
            DOCUMENTS, [new["documents"]], ["documents/run_date=2026-12-01/never.parquet"])})
    with pytest.raises(RunError, match="already holds 1 of the files"):
        commit_run(output, "run2", {"documents": TableChange(DOCUMENTS, [files["documents"]])})
    wrong = "aggregates/run_date=2026-12-02/part-run2-wrong.parquet"  # mentions rows
    write_table(output.fs, str(out), wrong, MENTIONS.empty_table())
    with pytest.raises(ConfigError, match="does not fit"):
        commit_run(output, "run2", {"aggregates": TableChange(AGGREGATES, [wrong])})
    with pytest.raises(ConfigError, match="other columns"):
        commit_run(output, "run2", {"aggregates": TableChange(MENTIONS, [new["aggregates"]])})
    with pytest.raises(ConfigError, match="'run_date'") as error:
        delta.table_schema(pa.schema([("run_date", pa.string())]))
    assert "rename" in error.value.fix
    # a table set append-only by its owners takes no run that supersedes files
    deltalake.DeltaTable(str(out / "mentions")).alter.set_table_properties(
        {"delta.appendOnly": "true"})
    with pytest.raises(ConfigError, match="append-only"):
        commit_run(output, "run2", changes(new, files, only=("mentions",)))
    for table in TABLES:
        assert table_files(out, table) == {files[table]}


@pytest.mark.parametrize("tables, message", [
    ({"entities": TableChange(MENTIONS, ["entities/run_date=2026-12-01/a.parquet"])},
     "unknown tables"),
    ({"mentions": TableChange(MENTIONS, ["mentions/run_date=2026-12-01/a.parquet"] * 2)},
     "listed twice"),
    ({"mentions": TableChange(MENTIONS, ["mentions/run_date=2026-12-01/a.parquet"],
                              ["mentions/run_date=2026-12-01/a.parquet"])}, "both added"),
    ({"mentions": TableChange(MENTIONS, ["documents/run_date=2026-12-01/a.parquet"])},
     "not a file of the mentions table"),
    ({"mentions": TableChange(MENTIONS, ["mentions/part-00000.parquet"])}, "run_date=YYYY"),
])
def test_changes_that_cannot_be_committed_are_refused_before_the_log(tmp_path, tables, message):
    with pytest.raises(ConfigError, match=message):
        commit_run(OutputDir(str(tmp_path)), "run1", tables)
    assert not list(tmp_path.rglob(delta.LOG))


def test_without_deltalake_the_error_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "deltalake", None)
    delta._table_schema.cache_clear()
    with pytest.raises(ConfigError) as error:
        delta.table_schema(MENTIONS)
    assert "pip install 'seqlab[delta]'" in error.value.fix


@pytest.mark.parametrize("options, message, fix", [
    ({}, "--table-format delta only applies to incremental runs", "add --incremental"),
    ({"incremental": True, "catalog": "prod"}, "--catalog names an Iceberg catalog",
     "drop --catalog")])
def test_table_format_delta_is_for_incremental_tables_without_a_catalog(options, message, fix):
    from seqlab.config import build_config

    with pytest.raises(ConfigError, match=message) as error:
        build_config(input="in", output="out", table_format="delta", **options)
    assert fix in error.value.fix


# ---------------------------------------------------------------- runs of an incremental table

def run(corpus: Path, out: Path, model: Path, **options) -> dict:
    plan = make_plan(corpus, out, model, id_column="id", incremental=True,
                     table_format="delta", **options)
    drive(plan)
    return finish_run(plan, engine="test")


@pytest.fixture
def corpus(tmp_path) -> Path:
    return first_day(tmp_path / "in")


def index_files(out: Path, table: str) -> set[str]:
    index = compact.current_index(OutputDir(str(out)))
    return {path for path, (kind, _) in index.files.items() if kind == table}


def holds_the_index(out: Path) -> None:
    """Each Delta table holds exactly the index's live files, and both readers agree."""
    for table in TABLES:
        assert delta.live_files(OutputDir(str(out)), table) == index_files(out, table), table
        assert table_files(out, table) == index_files(out, table), table
        readers_agree(out, table)


DAY_TWO = ["b10", "b11", "c0", "c1", "c2", "k0", "k1", "k2"]


def test_each_run_commits_exactly_the_live_files(tmp_path, corpus, ner_model):
    out = tmp_path / "out"
    first = run(corpus, out, ner_model, run_date="2026-12-01")
    assert {t: first["delta"]["tables"][t]["status"] for t in TABLES} == dict.fromkeys(
        TABLES, "committed")
    holds_the_index(out)
    grow(corpus)
    second = run(corpus, out, ner_model, run_date="2026-12-02", prune=True)
    holds_the_index(out)
    ids = [d["doc_id"] for d in readers_agree(out, "documents")]
    assert ids == DAY_TWO
    superseded = second["incremental"]["superseded"]
    assert second["delta"]["tables"]["documents"]["removed_files"] == sum(
        p.startswith("documents/") for p in superseded) > 0
    assert all((out / "_superseded" / second["run_id"] / p).exists() for p in superseded)
    commit = log_actions(out, "documents", 1)[0]["commitInfo"]
    assert commit["seqlab.run_date"] == "2026-12-02" and commit["seqlab.model"] == \
        str(ner_model)
    checked = verify(str(out))  # the Delta logs are no files of the runs
    assert checked.ok, [finding.line() for finding in checked.findings]


def test_frames_of_an_srl_model_join_the_delta_commits(tmp_path, corpus, ner_model):
    out, model = tmp_path / "out", f"{ner_model},{build_tiny_srl(tmp_path / 'srl')}"
    first = run(corpus, out, model, run_date="2026-12-01")
    assert first["delta"]["tables"]["frames"]["status"] == "committed"
    grow(corpus)
    second = run(corpus, out, model, run_date="2026-12-02", prune=True)
    superseded = [p for p in second["incremental"]["superseded"] if p.startswith("frames/")]
    assert superseded and second["delta"]["tables"]["frames"]["removed_files"] == len(superseded)
    assert table_files(out, "frames") == index_files(out, "frames") == \
        delta.live_files(OutputDir(str(out)), "frames")
    frames = deltalake.DeltaTable(str(out / "frames")).to_pyarrow_table()
    documents = deltalake.DeltaTable(str(out / "documents")).to_pyarrow_table()
    assert frames.num_rows == sum(len(f or []) for f in documents.column("srl_frames")
                                  .to_pylist()) > 0
    assert set(frames.column("doc_id").to_pylist()) <= set(documents.column("doc_id").to_pylist())


def test_verify_finds_a_delta_table_that_no_longer_holds_the_live_files(tmp_path, corpus,
                                                                       ner_model):
    out = tmp_path / "out"
    run(corpus, out, ner_model, run_date="2026-12-01")
    live = sorted(index_files(out, "mentions"))
    # another writer's commit takes a live file out of the Delta table
    commit_run(OutputDir(str(out)), "another-writer", {"mentions": TableChange(None, [], live[:1])})
    findings = verify(str(out)).findings
    assert [(f.path, "not in the current version of the Delta table" in f.problem)
            for f in findings] == [(live[0], True)]


class Killed(BaseException):
    pass


@pytest.mark.parametrize("when", ["before", "between", "after"])
def test_killed_around_the_commits_the_rerun_commits_each_table_once(tmp_path, corpus,
                                                                     ner_model, monkeypatch,
                                                                     when):
    out = tmp_path / "out"
    run(corpus, out, ner_model, run_date="2026-12-01")
    before = {t: table_files(out, t) for t in TABLES}
    grow(corpus)
    plan = make_plan(corpus, out, ner_model, id_column="id", incremental=True, prune=True,
                     table_format="delta", run_date="2026-12-02")
    drive(plan)
    commit_table, calls = delta._commit_table, []

    def kill(*args, **kwargs):
        calls.append(args)
        if when != "between" or len(calls) == 2:
            raise Killed(when)
        return commit_table(*args, **kwargs)

    with monkeypatch.context() as patched, pytest.raises(Killed):
        if when == "after":  # every table committed, nothing moved aside, no index
            patched.setattr(incremental, "supersede", kill)
        else:
            patched.setattr(delta, "_commit_table", kill)
        finish_run(plan, engine="test")
    run_id = plan.provenance.run_id
    committed = {t for t in TABLES if table_files(out, t) != before[t]}
    assert committed == {"before": set(), "between": {"documents"}, "after": set(TABLES)}[when]

    again = make_plan(corpus, out, ner_model, id_column="id", incremental=True, prune=True,
                      table_format="delta", run_date="2026-12-02")
    assert again.provenance.run_id == run_id
    manifest = finish_run(again, engine="test")

    statuses = {t: manifest["delta"]["tables"][t]["status"] for t in TABLES}
    assert statuses == {t: "already_committed" if t in committed else "committed"
                        for t in TABLES}
    holds_the_index(out)
    assert [d["doc_id"] for d in readers_agree(out, "documents")] == DAY_TWO
    assert all(commits_of(out, t, run_id) == 1 for t in TABLES)


@pytest.mark.parametrize("step, calls", [("compact-indexed", 1), ("compact-moving", 2)])
def test_compaction_commits_once_per_table_removing_the_small_files(tmp_path, ner_model,
                                                                     monkeypatch, step, calls):
    from tests.seqlab.store.test_compact import TARGET, build, crash_compaction

    _, out = build(tmp_path, ner_model, n=4, table_format="delta")
    before = {t: readers_agree(out, t) for t in TABLES}
    small = {t: table_files(out, t) for t in TABLES}
    versions = {t: deltalake.DeltaTable(str(out / t)).version() for t in TABLES}
    # indexed: no commit yet; moving: committed, one file moved
    crash_compaction(out, step, monkeypatch, calls)
    committed = deltalake.DeltaTable(str(out / "documents")).version() > versions["documents"]
    assert committed == (step == "compact-moving")
    summary = compact.compact(str(out), TARGET)

    holds_the_index(out)
    for table in ("documents", "mentions"):
        assert readers_agree(out, table) == before[table]
        assert deltalake.DeltaTable(str(out / table)).version() == versions[table] + 1
        actions = log_actions(out, table, versions[table] + 1)
        info = actions[0]["commitInfo"]
        assert (info["seqlab.operation"], info["seqlab.run_id"]) == (
            "compact", summary["compaction_id"])
        removed = {f"{table}/{a['remove']['path']}" for a in actions if "remove" in a}
        assert removed == small[table] and not small[table] & table_files(out, table)
        assert {a[k]["dataChange"] for a in actions for k in ("add", "remove") if k in a} == \
            {False}
    assert deltalake.DeltaTable(str(out / "aggregates")).version() == versions["aggregates"]
    assert commits_of(out, "documents", summary["compaction_id"]) == 1
    assert compact.compact(str(out), TARGET)["status"] == "unchanged"
    assert deltalake.DeltaTable(str(out / "documents")).version() == versions["documents"] + 1


def test_a_run_that_ends_in_a_beam_pipeline_commits_the_live_files(tmp_path, corpus,
                                                                   ner_model):
    require("apache_beam", "beam")
    import seqlab

    out = tmp_path / "out"
    run(corpus, out, ner_model, run_date="2026-12-01")
    grow(corpus)
    manifest = seqlab.annotate(str(corpus), str(out), model=str(ner_model), engine="beam",
                               id_column="id", incremental=True, prune=True,
                               table_format="delta", run_date="2026-12-02", **SMALL)
    assert manifest["engine"] == "beam"
    assert manifest["delta"]["tables"]["documents"]["removed_files"] > 0
    holds_the_index(out)
    assert [d["doc_id"] for d in readers_agree(out, "documents")] == DAY_TWO


@pytest.fixture(scope="module")
def s3_options():
    """A local S3 server (moto, loopback only) in a process of its own: deltalake holds the
    interpreter while it waits on the network, so a server thread in this one would never
    answer."""
    boto3 = require("boto3", "dev")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(endpoint, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test").create_bucket(
            Bucket="lake")
        yield {"key": "test", "secret": "test",
               "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    finally:
        server.terminate()
        server.wait(10)


def test_a_table_on_s3_is_committed_with_the_runs_storage_options(corpus, ner_model,
                                                                   s3_options):
    import seqlab

    manifest = seqlab.annotate(str(corpus), "s3://lake/ner", model=str(ner_model),
                               id_column="id", incremental=True, table_format="delta",
                               storage_options=s3_options, **SMALL)

    out = OutputDir("s3://lake/ner", s3_options)
    assert delta.storage_options(out)["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    for table in TABLES:
        assert manifest["delta"]["tables"][table]["status"] == "committed"
        assert delta.live_files(out, table) == {p["path"] for p in manifest["tables"][table]}
    read = delta.open_table(out, "documents").to_pyarrow_table()
    assert sorted(read.column("doc_id").to_pylist()) == sorted(
        ["a0", "a1", "b0", "b1", "b2", "b3", "k0", "k1", "k2"])
    assert not [p for p in out.fs.find("lake/ner") if "_delta_log" in p and
                p.endswith(".parquet")]
