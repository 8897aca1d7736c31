"""The run contract, proved by every engine: local, Ray (a real local Ray) and Beam (FnApiRunner).

Each engine annotates the same corpus once (module fixtures): bad rows of every kind, long
documents, and a document that breaks each row-level stage (``SEQLAB_FAULT``). The tests then
compare what landed. Crash and resume kill a real driver process with SIGKILL mid-run and
resume it on another engine.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import require

ray = require("ray", "ray")
require("apache_beam", "beam")

import seqlab  # noqa: E402
from seqlab import schema  # noqa: E402
from seqlab.run.annotator import FAULT_ENV  # noqa: E402
from tests.conftest import make_corpus  # noqa: E402
from tests.helpers import comparable, read_output  # noqa: E402
from tests.tiny import NER_LABELS, POS_LABELS, build_tiny_model, build_tiny_srl  # noqa: E402

pytestmark = pytest.mark.timeout(300)

ENGINES = ("local", "ray", "beam")
ROOT = Path(__file__).resolve().parents[2]
CRASH_OPTIONS = {"max_length": 64, "stride": 16, "batch_docs": 8, "batch_tokens": 1024}
FLAGS = ["--max-length", "64", "--stride", "16", "--batch-docs", "8", "--batch-tokens", "1024"]
OPTIONS = {**CRASH_OPTIONS, "max_chars": 10_000, "id_column": "id"}
KEYS = {"documents": ["doc_id"], "mentions": ["doc_id", "start_char"],
        "aggregates": ["label", "text"]}
SORT = {**KEYS, "mentions": ["doc_id", "start_char", "end_char"], "frames": ["doc_id", "frame"]}
FAULTS = {"doc-003": "tokenize", "doc-015": "tag", "doc-027": "decode"}
BAD = {  # id -> the status every engine must give it
    "bad-null": schema.EMPTY, "bad-empty": schema.EMPTY, "bad-blank": schema.EMPTY,
    "bad-number": schema.BAD_TYPE, "bad-long": schema.TOO_LONG, "bad-surrogate":
    schema.BAD_ENCODING, "ok-nul": schema.OK, "ok-bidi": schema.OK,
}


def write_corpus(root: Path) -> Path:
    """A Parquet file of 40 documents (some long), a JSON Lines file of bad rows and lines."""
    root.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(make_corpus(40, long_every=8, long_words=700)),
                   root / "a.parquet", row_group_size=16)
    rows = [{"id": "bad-null", "text": None}, {"id": "bad-empty", "text": ""},
            {"id": "bad-blank", "text": " \n\t "}, {"id": "bad-number", "text": 42},
            {"id": "bad-long", "text": "john " * 2500},
            {"id": "ok-nul", "text": "john\x00smith went to london"},
            {"id": "ok-bidi", "text": "paris \u202ereuters\u202c city"}]
    lines = [json.dumps(r) for r in rows]
    lines.insert(2, '{"id": "broken", "text": ')  # not JSON
    lines.insert(4, "[1, 2, 3]")  # JSON, not an object
    raw = ("\n".join(lines) + "\n").encode()
    raw += b'{"id": "bad-latin1", "text": "caf\xe9"}\n'  # not UTF-8
    raw += json.dumps({"id": "bad-surrogate", "text": "a \ud800 b"}).encode() + b"\n"
    (root / "b.jsonl").write_bytes(raw)
    return root


def read(out: Path, table: str) -> pa.Table:
    data = pq.read_table(out / table)
    data = data.drop_columns([c for c in ("run_id", "processed_at") if c in data.column_names])
    return data.sort_by([(k, "ascending") for k in SORT[table]])


def landed_files(out: Path) -> set[str]:
    return {f"{t}/{p.name}" for t in KEYS for p in (out / t).iterdir()}


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray (2 CPUs, as this machine has) for the module; in-process runs join it and
    driver subprocesses connect to its address."""
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a test cluster on loopback; no token file
    context = ray.init(address="local", num_cpus=2, include_dashboard=False,
                       log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("conformance") / "ner", NER_LABELS,
                            case_feature=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, model, ray_cluster) -> dict[str, tuple[Path, dict]]:
    """Every engine on the same corpus, with one document breaking each row-level stage."""
    return on_every_engine(tmp_path_factory.mktemp("runs"), str(model))


def on_every_engine(root: Path, model: str) -> dict[str, tuple[Path, dict]]:
    """The conformance corpus annotated by every engine, one document breaking each stage."""
    corpus = write_corpus(root / "in")
    os.environ[FAULT_ENV] = ",".join(f"{step}:{doc}" for doc, step in FAULTS.items())
    try:
        return {engine: (root / engine,
                         seqlab.annotate(str(corpus), str(root / engine), model=model,
                                         engine=engine, **OPTIONS))
                for engine in ENGINES}
    finally:
        del os.environ[FAULT_ENV]


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_rows_land_with_the_same_status(runs, engine):
    out, manifest = runs[engine]
    docs = {d["doc_id"]: d for d in read(out, "documents").to_pylist()}
    assert len(docs) == manifest["rows"]["out"] == manifest["rows"]["in"] == 40 + 11
    for doc_id, status in BAD.items():
        assert docs[doc_id]["status"] == status, doc_id
        assert (docs[doc_id]["error"] is None) == (status == schema.OK), doc_id
    assert docs["b.jsonl:2"]["status"] == schema.BAD_RECORD  # not JSON
    assert docs["b.jsonl:4"]["status"] == schema.BAD_RECORD  # not an object
    assert docs["b.jsonl:9"]["status"] == schema.BAD_ENCODING  # not UTF-8: no id to read
    assert "--max-chars 10000" in docs["bad-long"]["error"]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_stage_that_raises_fails_only_its_document(runs, engine):
    out, manifest = runs[engine]
    docs = {d["doc_id"]: d for d in read(out, "documents").to_pylist()}
    for doc_id, step in FAULTS.items():
        assert docs[doc_id]["status"] == schema.FAILED
        assert docs[doc_id]["error"].startswith(f"{step} failed: InjectedFault")
        assert docs[doc_id]["tokens"] is None and docs[doc_id]["n_tokens"] == 0
    ok = [d for d in docs.values() if d["doc_id"].startswith("doc-")
          and d["doc_id"] not in FAULTS]
    assert len(ok) == 37 and all(d["status"] == schema.OK for d in ok)
    assert manifest["counts"]["status.failed"] == 3 and manifest["complete"]


@pytest.mark.parametrize("table", list(KEYS))
def test_engines_land_identical_tables(runs, table):
    local = read(runs["local"][0], table)
    assert local.num_rows > 0
    for engine in ("ray", "beam"):
        other = read(runs[engine][0], table)
        assert other.schema.equals(local.schema), (engine, table)
        assert other.equals(local), f"{table} differs between local and {engine}"


@pytest.mark.parametrize("engine", ENGINES)
def test_manifest_lists_exactly_the_landed_files(runs, engine, model):
    out, manifest = runs[engine]
    listed = {p["path"] for parts in manifest["tables"].values() for p in parts}
    assert listed == landed_files(out)
    for path in listed:
        assert pq.ParquetFile(out / path).metadata.num_rows == next(
            p["rows"] for parts in manifest["tables"].values() for p in parts
            if p["path"] == path)
    assert not (out / "_progress").exists()
    assert [i["fragment"] for i in manifest["inputs"]] == ["a.parquet", "b.jsonl"]
    assert manifest["counts"] == runs["local"][1]["counts"]
    # what the forward passes ran, summed over Ray's actors and Beam's workers: each window
    # of the tagged documents once, in the precision every engine settled on alike
    counters = ("windows", "padded_tokens", "content_tokens", "precision")
    local = runs["local"][1]["tagging"]
    assert {k: manifest["tagging"][k] for k in counters} == {k: local[k] for k in counters}
    assert local["windows"] > 40 and local["precision"] == "fp32"
    assert manifest["tagging"]["backend"] == "torch"
    assert manifest["tagging"]["models"] == {"ner": {
        "name": str(model), "precision": "fp32", "backend": "torch", "recipe": None}}


@pytest.mark.parametrize("engine", ENGINES)
def test_no_entities_still_lands_schema_bearing_tables(engine, ray_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"tags-{engine}")
    model = build_tiny_model(root / "pos", POS_LABELS, seed=1)
    pq.write_table(pa.Table.from_pylist(make_corpus(6, long_every=0)), root / "in.parquet")
    seqlab.annotate(str(root / "in.parquet"), str(root / "out"), model=str(model),
                    engine=engine, **OPTIONS)
    for table, declared in (("mentions", schema.MENTIONS), ("aggregates", schema.AGGREGATES)):
        parts = list((root / "out" / table).glob("*.parquet"))
        assert len(parts) == 1, table
        landed = pq.read_table(parts[0])
        assert landed.num_rows == 0 and landed.schema.remove_metadata().equals(declared)


@pytest.fixture(scope="module")
def several(tmp_path_factory, model, ray_cluster) -> dict[str, tuple[Path, dict]]:
    """Every engine applying three models in one run (NER, POS tags and SRL frames) to the
    same corpus, with one document breaking each row-level stage."""
    root = tmp_path_factory.mktemp("several")
    models = [model, build_tiny_model(root / "pos", POS_LABELS, seed=1),
              build_tiny_srl(root / "srl")]
    return on_every_engine(root, ",".join(map(str, models)))


@pytest.mark.parametrize("table", ["documents", "mentions", "frames", "aggregates"])
def test_engines_land_identical_tables_of_several_models(several, table):
    local = read(several["local"][0], table)
    assert local.num_rows > 0
    for engine in ("ray", "beam"):
        assert read(several[engine][0], table).equals(local), f"{table}: local != {engine}"


@pytest.mark.parametrize("engine", ENGINES)
def test_several_models_keep_one_row_per_input_row(several, engine):
    out, manifest = several[engine]
    docs = {d["doc_id"]: d for d in read(out, "documents").to_pylist()}
    assert len(docs) == manifest["rows"]["in"] == manifest["rows"]["out"] == 40 + 11
    for doc_id, status in BAD.items():
        assert docs[doc_id]["status"] == status, doc_id
    columns = ("ner_tokens", "ner_entities", "pos_tokens", "srl_frames")
    for doc_id, step in FAULTS.items():
        assert docs[doc_id]["status"] == schema.FAILED
        assert docs[doc_id]["error"].split(" failed: ")[0] in (step, f"{step} (ner)")
        assert all(docs[doc_id][c] is None for c in columns)
    ok = [d for d in docs.values() if d["status"] == schema.OK]
    assert ok and all(d["ner_tokens"] is not None and d["srl_frames"] is not None for d in ok)
    listed = {p["path"] for parts in manifest["tables"].values() for p in parts}
    assert listed == {f"{t}/{p.name}" for t in SORT for p in (out / t).iterdir()}
    assert manifest["counts"]["frames"] == read(out, "frames").num_rows > 0
    tagging = manifest["tagging"]
    assert tagging["windows"] == several["local"][1]["tagging"]["windows"] > 40
    # each model's precision, the SRL model's predicate labeller too
    assert sorted(tagging["models"]) == ["ner", "pos", "srl", "srl_predicates"]
    assert {m["precision"] for m in tagging["models"].values()} == {"fp32"}


@pytest.fixture(scope="module")
def increments(model, ray_cluster, tmp_path_factory) -> dict[str, tuple[Path, list[dict]]]:
    """Two incremental runs on every engine over a growing corpus: day two adds a file,
    changes one and deletes one (with --prune)."""
    results = {}
    for engine in ENGINES:
        root = tmp_path_factory.mktemp(f"incremental-{engine}")
        (root / "in").mkdir()
        rows = make_corpus(18, long_every=0)
        for name, part in (("a", rows[:6]), ("b", rows[6:12]), ("c", rows[12:])):
            pq.write_table(pa.Table.from_pylist(part), root / "in" / f"{name}.parquet")
        options = {**OPTIONS, "model": str(model), "engine": engine, "incremental": True}
        first = seqlab.annotate(str(root / "in"), str(root / "out"), run_date="2026-12-01",
                                **options)
        pq.write_table(renamed(make_corpus(4, seed=5, long_every=0), "d"),
                       root / "in" / "d.parquet")
        pq.write_table(pa.Table.from_pylist(rows[6:9]), root / "in" / "b.parquet")  # changed
        (root / "in" / "c.parquet").unlink()
        second = seqlab.annotate(str(root / "in"), str(root / "out"), run_date="2026-12-02",
                                 prune=True, **options)
        results[engine] = (root / "out", [first, second])
    return results


@pytest.mark.parametrize("engine", ENGINES)
def test_incremental_runs_keep_each_current_row_once(increments, engine):
    out, (first, second) = increments[engine]
    assert [i["fragment"] for i in second["inputs"]] == ["b.parquet", "d.parquet"]
    assert second["incremental"]["replaced"] == ["b.parquet"]
    assert second["incremental"]["pruned"] == ["c.parquet"]
    ids = pq.read_table(out / "documents").column("doc_id").to_pylist()
    expected = [f"doc-{i:03d}" for i in range(9)] + [f"d-{i}" for i in range(4)]
    assert sorted(ids) == sorted(expected)  # each current row exactly once
    live = {p.relative_to(out).as_posix() for table in KEYS
            for p in (out / table).rglob("*.parquet")}
    written = {p["path"] for m in (first, second) for parts in m["tables"].values()
               for p in parts}
    assert live == written - set(second["incremental"]["superseded"])
    assert all((out / "_superseded" / second["run_id"] / p).exists()
               for p in second["incremental"]["superseded"])
    assert {p.split("/")[1] for p in live} == {"run_date=2026-12-01", "run_date=2026-12-02"}


def test_incremental_runs_commit_exactly_the_live_files_to_iceberg(model, tmp_path,
                                                                    monkeypatch):
    """As the local engine does (tests/seqlab/store/test_incremental.py), from the step that ends a
    Beam pipeline. (Ray ends its runs in the driver, as the local engine does.)"""
    require("sqlalchemy", "dev")
    from seqlab.store import iceberg

    monkeypatch.setenv("PYICEBERG_CATALOG__LAKE__URI", f"sqlite:///{tmp_path}/catalog.db")
    monkeypatch.setenv("PYICEBERG_CATALOG__LAKE__WAREHOUSE", (tmp_path / "wh").as_uri())
    (tmp_path / "in").mkdir()
    rows = make_corpus(12, long_every=0)
    for name, part in (("a", rows[:6]), ("b", rows[6:])):
        pq.write_table(pa.Table.from_pylist(part), tmp_path / "in" / f"{name}.parquet")
    options = {**OPTIONS, "model": str(model), "engine": "beam", "incremental": True,
               "table_format": "iceberg", "catalog": "lake"}
    out = tmp_path / "out"

    def check(manifests: list[dict], ids: list[str]) -> None:
        written = {p["path"] for m in manifests for parts in m["tables"].values() for p in parts}
        live = written - set(manifests[-1]["incremental"]["superseded"])
        catalog = iceberg.load("lake")
        for table in KEYS:
            files = set(iceberg.live_files(catalog.load_table(f"seqlab.{table}")))
            assert files == {f"file://{out}/{p}" for p in live if p.startswith(f"{table}/")}
        scan = catalog.load_table("seqlab.documents").scan(selected_fields=("doc_id",))
        assert sorted(scan.to_arrow().column("doc_id").to_pylist()) == ids

    manifests = [seqlab.annotate(str(tmp_path / "in"), str(out), **options)]
    check(manifests, [f"doc-{i:03d}" for i in range(12)])
    pq.write_table(pa.Table.from_pylist(rows[6:9]), tmp_path / "in" / "b.parquet")
    manifests.append(seqlab.annotate(str(tmp_path / "in"), str(out), **options))
    check(manifests, [f"doc-{i:03d}" for i in range(9)])


def test_engines_land_identical_incremental_tables(increments):
    def tables(out: Path) -> list[pa.Table]:
        return [read(out, table) for table in KEYS]

    local = tables(increments["local"][0])
    for engine in ("ray", "beam"):
        assert all(a.equals(b) for a, b in zip(tables(increments[engine][0]), local)), engine


@pytest.mark.parametrize("engine", ENGINES)
def test_unreadable_file_fails_alone_and_is_retried(engine, model, ray_cluster,
                                                    tmp_path_factory):
    """A truncated Parquet file fails as a fragment (named in the manifest, its rows
    counted); a value that does not fit its column fails its row; the rerun after the file is
    fixed retries only the failed fragment."""
    root = tmp_path_factory.mktemp(f"corrupt-{engine}")
    (root / "in").mkdir()
    rows = make_corpus(12, long_every=0)
    pq.write_table(pa.Table.from_pylist(rows[:6]), root / "in" / "a.parquet")
    second = [{**r, "year": "circa 1900" if i == 2 else str(r["year"])}
              for i, r in enumerate(rows[6:])]
    pq.write_table(pa.Table.from_pylist(second), root / "in" / "b.parquet")
    good = root / "c-good.parquet"
    pq.write_table(renamed(make_corpus(5, seed=3, long_every=0), "c"), good)
    data = good.read_bytes()
    (root / "in" / "c.parquet").write_bytes(data[: len(data) // 2])
    pq.write_table(renamed(make_corpus(4, seed=4, long_every=0), "d"), root / "in" / "d.parquet")
    out = root / "out"

    manifest = seqlab.annotate(str(root / "in"), str(out), model=str(model), engine=engine,
                               **OPTIONS)
    assert not manifest["complete"]
    assert [f["fragment"] for f in manifest["failed_inputs"]] == ["c.parquet"]
    assert "c.parquet" in manifest["failed_inputs"][0]["error"]
    assert [i["fragment"] for i in manifest["inputs"]] == ["a.parquet", "b.parquet",
                                                           "d.parquet"]
    docs = {d["doc_id"]: d for d in read(out, "documents").to_pylist()}
    assert len(docs) == 16 and docs["doc-008"]["status"] == schema.BAD_RECORD
    assert "'year'" in docs["doc-008"]["error"] and docs["doc-009"]["year"] == 1999
    assert landed_files(out) == {p["path"] for parts in manifest["tables"].values()
                                 for p in parts}

    (root / "in" / "c.parquet").write_bytes(data)  # the file is fixed
    before = {i["fragment"]: i["parts"] for i in manifest["inputs"]}
    again = seqlab.annotate(str(root / "in"), str(out), model=str(model), engine=engine,
                            **OPTIONS)
    assert again["complete"] and again["failed_inputs"] == []
    assert again["rows"] == {"in": 21, "out": 21}
    assert {i["fragment"]: i["parts"] for i in again["inputs"]
            if i["fragment"] != "c.parquet"} == before  # kept, not redone
    assert not (out / "_progress").exists()


def renamed(rows: list[dict], prefix: str) -> pa.Table:
    return pa.Table.from_pylist([{**r, "id": f"{prefix}-{i}"} for i, r in enumerate(rows)])


# --------------------------------------------------------------------------- crash and resume

def annotate_command(corpus: Path, out: Path, model: Path, engine: str,
                     address: str) -> list[str]:
    command = [sys.executable, "-m", "seqlab", "-q", "annotate", str(corpus), str(out),
               "--model", str(model), "--engine", engine, *FLAGS]
    return command + (["--address", address] if engine == "ray" else [])


def kill_when_landed(command: list[str], out: Path, pattern: str, log: Path) -> None:
    """Start the driver, SIGKILL its whole process group as soon as a file matching
    ``pattern`` exists (before the run can finish), and check it did die mid-run."""
    with open(log, "wb") as sink:
        driver = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT,
                                  start_new_session=True, env={**os.environ, "PYTHONPATH": ""})
        deadline = time.monotonic() + 240
        try:
            while not list(out.glob(pattern)):
                assert driver.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "no part landed in time"
                time.sleep(0.02)
        finally:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)
    assert not (out / "_manifest.json").exists(), "the run finished before it was killed"


@pytest.fixture(scope="module")
def many_files(tmp_path_factory) -> Path:
    """Twenty-four small fragments, so a driver is still busy when its first part lands."""
    root = tmp_path_factory.mktemp("many") / "in"
    root.mkdir()
    for i in range(24):
        rows = make_corpus(10, seed=i, long_every=5, long_words=300)
        pq.write_table(pa.Table.from_pylist(rows).drop_columns(["id"]),
                       root / f"part-{i:02d}.parquet")
    return root


@pytest.fixture(scope="module")
def clean_run(many_files, model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "out"
    seqlab.annotate(str(many_files), str(out), model=str(model), engine="local",
                    **CRASH_OPTIONS)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("crashed, resumed", [("local", "ray"), ("ray", "beam"),
                                              ("beam", "local")])
def test_kill_9_then_resume_on_another_engine(crashed, resumed, many_files, model, clean_run,
                                              ray_cluster, tmp_path):
    out = tmp_path / "out"
    # local and Ray record fragments as they finish: kill after the first record; Beam
    # records them at its end: kill once its first parts have landed
    pattern = "documents/part-*.parquet" if crashed == "beam" else "_progress/fragment-*.json"
    kill_when_landed(annotate_command(many_files, out, model, crashed, ray_cluster), out,
                     pattern, tmp_path / "driver.log")
    recorded = len(list((out / "_progress").glob("fragment-*.json")))
    manifest = seqlab.annotate(str(many_files), str(out), model=str(model), engine=resumed,
                               **CRASH_OPTIONS)
    assert [a["engine"] for a in manifest["attempts"]] == [crashed, resumed]
    assert manifest["rows"] == {"in": 240, "out": 240}
    ids = read(out, "documents").column("doc_id").to_pylist()
    assert len(ids) == len(set(ids)) == 240  # every doc_id exactly once in the live prefix
    for table in KEYS:
        assert read(out, table).equals(read(clean_run, table)), table
    assert landed_files(out) == {p["path"] for parts in manifest["tables"].values()
                                 for p in parts}
    assert not list(out.rglob(".tmp-*"))
    if crashed != "beam":  # fragments the killed driver had finished were kept
        assert 1 <= recorded < 24


# --------------------------------------------------------------------------- memory

PEAK = """
import resource, sys
import seqlab
seqlab.annotate(sys.argv[1], sys.argv[2], model=sys.argv[3], max_length=64, stride=16)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_file_size(model, tmp_path):
    """One file of 250 articles and one of 2,000 (each ~150 words): the local engine's peak
    RSS stays within 15%, as parts stream a batch at a time."""
    peaks = {}
    for n in (250, 2000):
        rows = make_corpus(n, long_every=0)
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"in-{n}.parquet",
                       row_group_size=256)
        done = subprocess.run([sys.executable, "-c", PEAK, str(tmp_path / f"in-{n}.parquet"),
                               str(tmp_path / f"out-{n}"), str(model)], cwd=ROOT,
                              capture_output=True, text=True, timeout=240, check=True)
        peaks[n] = int(done.stdout.split()[-1])
    assert peaks[2000] <= 1.15 * peaks[250], peaks
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


# --------------------------------------------------------------------------- Beam, worker processes

# the FnApiRunner's multi-process mode: each worker process unpickles the DoFns (the plan in
# them) and loads its own model; Finish still runs once
TWO_WORKERS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def beam_workers(session: int) -> set[int]:
    """The Beam SDK worker processes (``python -m ...sdk_worker_main``) alive in a session."""
    found = set()
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):  # not a process, or one that just ended
            continue
        fields = stat.rsplit(")", 1)[1].split()  # state, ppid, pgrp, session, ...
        if int(fields[3]) == session and argv[1:3] == [
                b"-m", b"apache_beam.runners.worker.sdk_worker_main"]:
            found.add(int(proc.name))
    return found


def test_beam_in_two_worker_processes_lands_what_local_lands(runs, model, tmp_path, monkeypatch,
                                                             caplog):
    """The conformance corpus (bad rows, a document breaking each stage) on 2 worker
    processes: both annotate, the run finishes once, and it lands what the local engine lands."""
    local, expected = runs["local"]
    monkeypatch.setenv(FAULT_ENV, ",".join(f"{step}:{doc}" for doc, step in FAULTS.items()))
    caplog.set_level(logging.INFO, logger="pipelines.beam")
    out = tmp_path / "out"
    manifest = seqlab.annotate(str(local.parent / "in"), str(out), model=str(model),
                               engine="beam", engine_options={"beam_args": TWO_WORKERS},
                               **OPTIONS)
    assert manifest["beam"] == {"runner": "FnApiRunner", "running_mode": "multi_processing",
                                "workers": 2}
    metrics = next(r.getMessage() for r in caplog.records
                   if r.getMessage().startswith("beam metrics:"))
    assert "worker_processes=2" in metrics and "finished=1" in metrics, metrics
    for table in KEYS:
        assert read(out, table).equals(read(local, table)), table
    assert comparable(read_output(out)) == comparable(read_output(local))
    assert manifest["rows"] == expected["rows"] and manifest["counts"] == expected["counts"]
    assert [a["engine"] for a in manifest["attempts"]] == ["beam"]
    assert landed_files(out) == {p["path"] for parts in manifest["tables"].values()
                                 for p in parts}
    assert not (out / "_progress").exists()


def kill_watching_workers(command: list[str], out: Path, pattern: str, log: Path) -> set[int]:
    """``kill_when_landed`` for a driver whose runner starts worker processes: returns the
    workers seen in the driver's session before the kill, and checks none outlives it."""
    with open(log, "wb") as sink:
        driver = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT,
                                  start_new_session=True, env={**os.environ, "PYTHONPATH": ""})
        deadline, seen = time.monotonic() + 240, set()
        try:
            while not list(out.glob(pattern)):
                assert driver.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "no part landed in time"
                seen |= beam_workers(driver.pid)
                time.sleep(0.02)
            seen |= beam_workers(driver.pid)
        finally:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)
    gone = time.monotonic() + 30
    while beam_workers(driver.pid):
        assert time.monotonic() < gone, "a worker process outlived its killed driver"
        time.sleep(0.1)
    assert not (out / "_manifest.json").exists(), "the run finished before it was killed"
    return seen


@pytest.mark.slow
def test_kill_9_on_two_beam_worker_processes_then_resume_on_two(many_files, model, clean_run,
                                                                tmp_path):
    if not Path("/proc/self/stat").exists():
        pytest.skip("finds the worker processes in /proc")
    out = tmp_path / "out"
    command = annotate_command(many_files, out, model, "beam", "") + ["--", *TWO_WORKERS]
    seen = kill_watching_workers(command, out, "documents/part-*.parquet", tmp_path / "driver.log")
    assert len(seen) == 2, seen  # the killed run ran in 2 worker processes
    manifest = seqlab.annotate(str(many_files), str(out), model=str(model), engine="beam",
                               engine_options={"beam_args": TWO_WORKERS}, **CRASH_OPTIONS)
    assert [a["engine"] for a in manifest["attempts"]] == ["beam", "beam"]
    assert manifest["beam"]["workers"] == 2
    assert manifest["rows"] == {"in": 240, "out": 240}
    ids = read(out, "documents").column("doc_id").to_pylist()
    assert len(ids) == len(set(ids)) == 240  # every doc_id exactly once in the live prefix
    for table in KEYS:
        assert read(out, table).equals(read(clean_run, table)), table
    assert comparable(read_output(out)) == comparable(read_output(clean_run))
    assert landed_files(out) == {p["path"] for parts in manifest["tables"].values()
                                 for p in parts}
    assert not list(out.rglob(".tmp-*"))
