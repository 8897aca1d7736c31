"""seqlab.store.compact: an incremental table of many one-document input files, its small files
rewritten into few large ones, read back the same through DuckDB, through crashes at every
step, and through later runs that annotate a compacted input again."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from seqlab.errors import ConfigError, OutputError
from seqlab.run.finish import finish_run
from seqlab.store import compact
from seqlab.store.outdir import OutputDir
from seqlab.store.verify import verify
from tests.conftest import make_text
from tests.seqlab import drive, make_plan, write_parquet

pytestmark = pytest.mark.timeout(180)

TARGET = 100_000  # a one-document file is ~14 KB, a partition of 24 documents ~250 KB
ROW_TABLES = ("documents", "mentions")
DAYS = {"2026-12-01": range(24), "2026-12-02": range(24, 40)}


def one_document(root: Path, i: int, words: int = 150, seed: int = 0) -> None:
    text = make_text(random.Random(i * 1000 + seed), words)
    write_parquet(root / f"f{i:03d}.parquet", [{"id": f"f{i:03d}-{seed}", "text": text}])


def run(corpus: Path, out: Path, model: Path, run_date: str, **options) -> dict:
    plan = make_plan(corpus, out, model, id_column="id", incremental=True, run_date=run_date,
                     **options)
    drive(plan)
    return finish_run(plan, engine="test")


def build(root: Path, model: Path, n: int | None = None, **options) -> tuple[Path, Path]:
    """Two daily runs of one-document input files: 24 files, then 16 more."""
    corpus, out = root / "in", root / "out"
    for run_date, files in DAYS.items():
        for i in files[:n]:
            one_document(corpus, i)
        run(corpus, out, model, run_date, **options)
    return corpus, out


@pytest.fixture(scope="module")
def built(tmp_path_factory, ner_model) -> Path:
    root = tmp_path_factory.mktemp("compact")
    build(root, ner_model)
    return root


@pytest.fixture
def table(built, tmp_path) -> tuple[Path, Path]:
    """A copy of the built table and its corpus, to compact (a run on the copy would
    annotate every input again: the input folder is part of the table's configuration)."""
    for name in ("in", "out"):
        shutil.copytree(built / name, tmp_path / name)
    return tmp_path / "in", tmp_path / "out"


def scan(out: Path, table: str) -> list[tuple]:
    """What a warehouse reads from the live prefix, sorted."""
    return duckdb.sql(f"SELECT * FROM read_parquet('{out}/{table}/**/*.parquet', "
                      "hive_partitioning = true) ORDER BY ALL").fetchall()


def live_files(out: Path, table: str) -> dict[str, list[str]]:
    """The table's files per partition folder."""
    found: dict[str, list[str]] = {}
    for path in sorted((out / table).rglob("*.parquet")):
        found.setdefault(path.parent.name, []).append(path.name)
    return found


def shape(out: Path) -> list[tuple]:
    """The live table as the index records it, with compaction ids blanked: files and rows,
    and every input's spans."""
    index = compact.current_index(OutputDir(str(out)))

    def blank(path: str) -> str:
        return re.sub(r"part-compact-[^-]+-[^-]+-", "part-compact-ID-", path)

    files = sorted((blank(p), table, info.rows) for p, (table, info) in index.files.items())
    spans = sorted((name, blank(s.path), s.first_row, s.rows)
                   for name, entry in index.inputs.items() for s in entry.spans)
    return files + spans


def test_small_files_become_few_and_warehouses_read_the_same_rows(table):
    corpus, out = table
    before = {t: scan(out, t) for t in ROW_TABLES}
    aggregates = live_files(out, "aggregates")
    assert [len(files) for files in live_files(out, "documents").values()] == [24, 16]

    summary = compact.compact(str(out), TARGET)

    assert summary["status"] == "compacted"
    assert summary["files_before"]["documents"] == 40
    documents = live_files(out, "documents")
    assert sorted(documents) == ["run_date=2026-12-01", "run_date=2026-12-02"]
    assert all(1 <= len(files) <= 3 for files in documents.values()), documents
    # a mentions file keeps the name of the documents file whose rows it annotates
    assert live_files(out, "mentions") == documents
    assert summary["files_after"]["documents"] == sum(len(f) for f in documents.values())
    for t in ROW_TABLES:
        assert scan(out, t) == before[t], t
    assert live_files(out, "aggregates") == aggregates  # one per input, untouched
    # each input's span in its compacted file holds exactly its own rows, inputs by name
    index = compact.current_index(OutputDir(str(out)))
    for name, entry in index.inputs.items():
        (span,) = [s for s in entry.spans if s.path.startswith("documents/")]
        assert "part-compact-" in span.path and span.rows == 1
        rows = pq.read_table(out / span.path).slice(span.first_row, span.rows)
        assert rows.column("doc_id").to_pylist() == [f"{name[:4]}-0"]
    for files in documents.values():
        for name in files:
            ids = pq.read_table(next(out.glob(f"documents/*/{name}"))).column("doc_id")
            assert ids.to_pylist() == sorted(ids.to_pylist())
    checked = verify(str(out))  # files, sha256, mentions naming live documents, sums
    assert checked.ok, [finding.line() for finding in checked.findings]
    moved = list((out / "_superseded" / summary["compaction_id"]).rglob("*.parquet"))
    assert len(moved) == summary["retired"] == 80
    assert not (out / "_compact" / "state.json").exists()


def test_a_compacted_table_compacts_to_nothing(table):
    _, out = table
    compact.compact(str(out), TARGET)
    files = {t: live_files(out, t) for t in ROW_TABLES}
    version = compact.current_index(OutputDir(str(out))).version
    again = compact.compact(str(out), TARGET)
    assert again["status"] == "unchanged" and again["written"] == again["retired"] == 0
    assert {t: live_files(out, t) for t in ROW_TABLES} == files
    assert compact.current_index(OutputDir(str(out))).version == version


class Crash(Exception):
    pass


def crash_compaction(out: Path, step: str, monkeypatch, calls: int = 1) -> None:
    """Run ``seqlab compact`` on ``out`` and stop it the ``calls``-th time it reaches ``step``,
    where a killed process would have stopped."""
    seen = []

    def crash_at(name: str) -> None:
        seen.append(name)
        if seen.count(step) == calls:
            raise Crash(step)

    with monkeypatch.context() as patched, pytest.raises(Crash):
        patched.setattr(compact, "pause_at", crash_at)
        compact.compact(str(out), TARGET)


@pytest.mark.parametrize("step, calls", [
    ("compact-planned", 1), ("compact-file-written", 2), ("compact-written", 1),
    ("compact-indexed", 1), ("compact-moving", 5)])
def test_a_crash_at_any_step_then_a_rerun_leaves_the_table_an_uncrashed_compaction_leaves(
        built, table, tmp_path, monkeypatch, step, calls):
    _, out = table
    clean = tmp_path / "clean"
    shutil.copytree(built / "out", clean)
    compact.compact(str(clean), TARGET)
    before = {t: scan(out, t) for t in ROW_TABLES}
    crash_compaction(out, step, monkeypatch, calls)
    state = (out / "_compact" / "state.json").read_text()
    assert not (out / "_lease.json").exists()  # released on the way out

    summary = compact.compact(str(out), TARGET)
    assert summary["compaction_id"] in state  # the same compaction, finished
    assert shape(out) == shape(clean)
    for t in ROW_TABLES:
        assert scan(out, t) == before[t] == scan(clean, t), t
        assert [len(f) for f in live_files(out, t).values()] == \
            [len(f) for f in live_files(clean, t).values()]
    assert not (out / "_compact" / "state.json").exists() and not list(out.rglob(".tmp-*"))
    assert compact.compact(str(out), TARGET)["status"] == "unchanged"


def test_an_input_changed_after_compaction_leaves_its_compacted_files(tmp_path, ner_model):
    corpus, out = build(tmp_path, ner_model)  # in place: the input folder is in its config
    compact.compact(str(out), TARGET)
    one_document(corpus, 3, seed=1)  # changed: new text, new id
    (corpus / "f030.parquet").unlink()  # gone, pruned
    later = run(corpus, out, ner_model, "2026-12-03", prune=True)

    assert [i["fragment"] for i in later["inputs"]] == ["f003.parquet"]
    assert later["incremental"]["pruned"] == ["f030.parquet"]
    ids = [row[0] for row in duckdb.sql(
        f"SELECT doc_id FROM '{out}/documents/**/*.parquet' ORDER BY ALL").fetchall()]
    expected = sorted(f"f{i:03d}-0" for i in range(40) if i not in (3, 30)) + ["f003-1"]
    assert ids == sorted(expected)  # each current row once: the old ones left by rewrite
    mentions = {row[0] for row in duckdb.sql(
        f"SELECT DISTINCT doc_id FROM '{out}/mentions/**/*.parquet'").fetchall()}
    assert mentions <= set(expected) and "f003-0" not in mentions
    index = compact.current_index(OutputDir(str(out)))
    for name, entry in index.inputs.items():
        for span in entry.spans:
            if span.path.startswith("documents/"):
                rows = pq.read_table(out / span.path).slice(span.first_row, span.rows)
                seed = int(name == "f003.parquet")
                assert rows.column("doc_id").to_pylist() == [f"{name[:4]}-{seed}"]
    checked = verify(str(out))
    assert checked.ok, [finding.line() for finding in checked.findings]
    compact.compact(str(out), TARGET)
    assert sorted(r[0] for r in duckdb.sql(
        f"SELECT doc_id FROM '{out}/documents/**/*.parquet'").fetchall()) == sorted(expected)


def test_a_compaction_whose_table_changed_before_its_swap_is_dropped(tmp_path, ner_model,
                                                                     monkeypatch):
    corpus, out = build(tmp_path, ner_model)
    crash_compaction(out, "compact-written", monkeypatch)
    dropped = (out / "_compact" / "state.json").read_text()
    one_document(corpus, 3, seed=1)
    run(corpus, out, ner_model, "2026-12-03")  # a run that does not finish the compaction

    summary = compact.compact(str(out), TARGET)
    assert summary["compaction_id"] not in dropped  # planned again on the table as it is
    live = [p.name for t in ROW_TABLES for p in (out / t).rglob("*.parquet")]
    assert not [name for name in live if "-".join(name.split("-")[2:4]) in dropped]
    expected = sorted(f"f{i:03d}-{int(i == 3)}" for i in range(40))
    assert [r[0] for r in duckdb.sql(f"SELECT doc_id FROM '{out}/documents/**/*.parquet' "
                                     "ORDER BY ALL").fetchall()] == expected
    checked = verify(str(out))
    assert checked.ok, [finding.line() for finding in checked.findings]


def test_release_rewrites_a_shared_compacted_file_without_the_inputs_rows(table):
    _, out = table
    compact.compact(str(out), TARGET)
    output = OutputDir(str(out))
    index = compact.current_index(output)
    shared = {s.path for s in index.inputs["f003.parquet"].spans if "part-compact-" in s.path}
    own = {s.path for s in index.inputs["f003.parquet"].spans} - shared  # its aggregates
    run_id = "20991231T000000Z-0000beef"

    left = compact.release(output, index, ["f003.parquet"], run_id)

    assert set(left) == shared | own and "f003.parquet" not in index.inputs
    assert not shared & set(index.files)
    rewritten = compact.rewritten(index, run_id)
    assert sorted(rewritten) == ["documents", "mentions"]
    ids = []
    for path in rewritten["documents"]:
        ids += pq.read_table(out / path).column("doc_id").to_pylist()
    old = pq.read_table(out / next(p for p in shared if p.startswith("documents/")))
    assert ids == [i for i in old.column("doc_id").to_pylist() if i != "f003-0"]
    for name, entry in index.inputs.items():
        for span in entry.spans:
            if span.path in rewritten["documents"]:
                rows = pq.read_table(out / span.path).slice(span.first_row, span.rows)
                assert rows.column("doc_id").to_pylist() == [f"{name[:4]}-0"]


def test_an_unfinished_run_or_a_single_run_output_is_refused(table, ner_model, tmp_path):
    corpus, out = table
    one_document(corpus, 50)
    make_plan(corpus, out, ner_model, id_column="id", incremental=True)  # started, not ended
    with pytest.raises(OutputError, match="has not ended") as refused:
        compact.compact(str(out), TARGET)
    assert "rerun the seqlab annotate command" in refused.value.fix
    with pytest.raises(OutputError, match="not an incremental table"):
        compact.compact(str(tmp_path / "nothing"), TARGET)


@pytest.mark.parametrize("options, message, fix", [
    ({"compact": True}, "--compact only applies to incremental runs", "add --incremental"),
    ({"incremental": True, "target_file_size": "1GB"}, "--target-file-size", "add --compact"),
    ({"incremental": True, "compact": True, "target_file_size": "12 parsecs"},
     "'12 parsecs' is not a size", "512MB"),
])
def test_compact_options_that_cannot_apply_name_the_fix(options, message, fix):
    from seqlab.config import build_config

    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        build_config(input="in", output="out", **options)
    assert fix in refused.value.fix


def test_sizes_read_as_written():
    from seqlab.config import build_config

    config = build_config(input="in", output="out", incremental=True, compact=True,
                          target_file_size="1GiB")
    assert config.target_file_size == 2**30


def iceberg_state(catalog: str, table: str) -> tuple[set[str], list[str], str]:
    """The files of the Iceberg table's current snapshot, its doc ids, its snapshot's run id."""
    from seqlab.store import iceberg

    loaded = iceberg.load(catalog).load_table(f"seqlab.{table}")
    ids = loaded.scan(selected_fields=("doc_id",)).to_arrow().column("doc_id").to_pylist()
    summary = loaded.current_snapshot().summary.additional_properties
    return set(iceberg.live_files(loaded)), sorted(ids), summary["seqlab.run_id"]


def test_an_iceberg_table_gets_one_replace_commit_per_table(tmp_path, ner_model, lake,
                                                            monkeypatch):
    pytest.importorskip("sqlalchemy", reason="pip install 'pyiceberg[sql-sqlite]'")
    _, out = build(tmp_path, ner_model, n=8, table_format="iceberg", catalog=lake)
    before = {t: iceberg_state(lake, t)[1] for t in ROW_TABLES}
    crash_compaction(out, "compact-indexed", monkeypatch)  # the index swapped, no commit made
    summary = compact.compact(str(out), TARGET)
    index = compact.current_index(OutputDir(str(out)))
    for t in ROW_TABLES:
        files, ids, run_id = iceberg_state(lake, t)
        assert run_id == summary["compaction_id"]
        assert files == {f"file://{out}/{p}" for p, (kind, _) in index.files.items()
                         if kind == t}
        assert ids == before[t]
        parquet = pq.read_table([str(out / p) for p, (kind, _) in index.files.items()
                                 if kind == t], columns=["doc_id"])
        assert sorted(parquet.column("doc_id").to_pylist()) == ids
    assert len(iceberg_state(lake, "documents")[0]) < 16
    assert compact.compact(str(out), TARGET)["status"] == "unchanged"


def test_an_iceberg_inputs_rows_leave_a_compacted_file_in_the_runs_commit(tmp_path, ner_model,
                                                                          lake):
    pytest.importorskip("sqlalchemy", reason="pip install 'pyiceberg[sql-sqlite]'")
    _, out = build(tmp_path, ner_model, n=8, table_format="iceberg", catalog=lake)
    before = iceberg_state(lake, "documents")[1]
    compact.compact(str(out), TARGET)
    one_document(tmp_path / "in", 3, seed=1)
    later = run(tmp_path / "in", out, ner_model, "2026-12-03", table_format="iceberg",
                catalog=lake)
    assert [i["fragment"] for i in later["inputs"]] == ["f003.parquet"]
    files, ids, _ = iceberg_state(lake, "documents")
    index = compact.current_index(OutputDir(str(out)))
    assert files == {f"file://{out}/{p}" for p, (kind, _) in index.files.items()
                     if kind == "documents"}
    assert ids == sorted([i for i in before if i != "f003-0"] + ["f003-1"])
