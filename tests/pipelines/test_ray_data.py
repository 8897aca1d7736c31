"""The Ray engine on a real local Ray: parity with the local engine, actor loss, resume.

One Ray instance (2 CPUs, like this machine) serves the whole module; the engine joins it
instead of starting its own, and the fixture shuts it down at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import require

ray = require("ray", "ray")

from pipelines import local, ray_data  # noqa: E402
from seqlab.api import annotate  # noqa: E402
from seqlab.cli.main import main  # noqa: E402
from seqlab.errors import ConfigError  # noqa: E402
from tests.conftest import BAD_ROWS, make_corpus  # noqa: E402

pytestmark = pytest.mark.timeout(240)

SMALL_WINDOWS = {"max_length": 64, "stride": 16}  # long documents get many windows
KEYS = {"documents": ["doc_id"], "mentions": ["doc_id", "start_char"],
        "aggregates": ["label", "text"]}


@pytest.fixture(scope="module")
def ray_local():
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a test cluster on loopback; no token file
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    """Three fragments: two Parquet files (long documents, null/empty texts) and JSON Lines
    with a line that is not JSON."""
    rows = make_corpus(50) + BAD_ROWS
    root = tmp_path / "corpus"
    root.mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:30]), root / "a.parquet", row_group_size=8)
    pq.write_table(pa.Table.from_pylist(rows[30:45]), root / "b.parquet")
    lines = [json.dumps(r) for r in rows[45:]] + ["{not json"]
    (root / "c.jsonl").write_text("\n".join(lines) + "\n")
    return root


def read_table(out: Path, table: str) -> pa.Table:
    parts = sorted((out / table).glob("*.parquet"))
    data = pa.concat_tables([pq.read_table(p) for p in parts])
    data = data.drop_columns([c for c in ("run_id", "processed_at") if c in data.column_names])
    return data.sort_by([(k, "ascending") for k in KEYS[table]])


def assert_same_output(left: Path, right: Path) -> None:
    for table in KEYS:
        a, b = read_table(left, table), read_table(right, table)
        assert a.schema == b.schema, table
        assert a.num_rows == b.num_rows, table
        assert a.to_pylist() == b.to_pylist(), f"{table} differs between engines"


def test_ray_matches_local_engine(ray_local, corpus_dir, cased_ner_model, tmp_path):
    # a model trained with casing: its token type ids must reach the model on both engines
    options = {"model": str(cased_ner_model), **SMALL_WINDOWS, "batch_docs": 8}
    by_local = annotate(str(corpus_dir), str(tmp_path / "local"), engine="local", **options)
    by_ray = annotate(str(corpus_dir), str(tmp_path / "ray"), engine="ray", **options)

    assert_same_output(tmp_path / "local", tmp_path / "ray")
    assert by_ray["engine"] == "ray"
    assert by_ray["rows"] == by_local["rows"] == {"in": 54, "out": 54}
    assert by_ray["counts"] == by_local["counts"]
    assert by_local["counts"]["entities"] > 0  # parity is about something
    assert by_ray["counts"]["status.bad_record"] == 1  # the line that is not JSON
    for table in KEYS:  # the declared schemas, as landed by each engine
        first = [next((tmp_path / engine / table).glob("*.parquet")) for engine in ("local", "ray")]
        assert pq.read_schema(first[0]).remove_metadata() == \
            pq.read_schema(first[1]).remove_metadata(), table
    # every landed Ray part is described in the manifest, with its rows adding up
    described = by_ray["tables"]["documents"]
    assert sum(p["rows"] for p in described) == 54
    assert {p["path"] for p in described} == {
        f"documents/{p.name}" for p in (tmp_path / "ray" / "documents").glob("*.parquet")}
    assert all(len(p["sha256"]) == 64 for p in described + by_ray["aggregates"])
    assert not (tmp_path / "ray" / "_progress").exists()


def test_tagging_actor_lost_mid_run(ray_local, corpus_parquet, ner_model, tmp_path,
                                    monkeypatch):
    """The first tagging actor exits its process on its 3rd batch; Ray restarts it and the run
    lands every row exactly once. Runs through the CLI and its engine flags."""
    monkeypatch.setenv(ray_data.FAULT_ENV, "3")
    out = tmp_path / "out"
    code = main(["-q", "annotate", str(corpus_parquet), str(out), "--engine", "ray", "--model",
                 str(ner_model), "--batch-docs", "8", "--max-length", "64", "--stride", "16",
                 "--tag-actors", "1", "--cpus-per-actor", "1", "--tokenize-cpus", "0.5"])
    assert code == 0
    docs = read_table(out, "documents")
    ids = docs.column("doc_id").to_pylist()
    expected = pq.read_table(corpus_parquet).num_rows
    assert len(ids) == len(set(ids)) == expected
    restarted = [a for a in ray._private.state.actors().values()
                 if "TagActor" in a["ActorClassName"] and a["NumRestarts"] >= 1]
    assert restarted, "the fault hook did not kill a tagging actor"
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows"] == {"in": expected, "out": expected}
    assert manifest["ray"]["tag_actors"] == 1


def test_resume_after_a_crash(ray_local, corpus_dir, ner_model, tmp_path, monkeypatch):
    """A local run dies after its first fragment; a Ray rerun keeps that fragment, redoes the
    rest, drops what the crashed attempt left behind, and matches an uninterrupted run."""
    options = {"model": str(ner_model), **SMALL_WINDOWS}
    out = tmp_path / "out"
    real = local.read_slices
    calls = []

    def crash_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(local, "read_slices", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        annotate(str(corpus_dir), str(out), engine="local", **options)
    monkeypatch.undo()
    first = json.loads((out / "_progress" / "fragment-00000.json").read_text())
    # leftovers of a crashed Ray attempt: an unrecorded part and a staging folder
    leftover = pa.table({"doc_id": ["ghost"]})
    pq.write_table(leftover, out / "documents" / "part-ray-crashed-000000-0.parquet")
    (out / "_progress" / "ray-crashed" / "documents").mkdir(parents=True)

    manifest = annotate(str(corpus_dir), str(out), engine="ray", **options)
    annotate(str(corpus_dir), str(tmp_path / "whole"), engine="local", **options)

    assert_same_output(out, tmp_path / "whole")
    assert manifest["rows"] == {"in": 54, "out": 54}
    # a.parquet was done by the local attempt and kept as it was, not redone
    assert manifest["inputs"][0]["parts"] == first["parts"]
    assert [a["engine"] for a in manifest["attempts"]] == ["local", "ray"]
    assert not (out / "documents" / "part-ray-crashed-000000-0.parquet").exists()


def test_limit_takes_rows_in_fragment_order(ray_local, corpus_dir, ner_model, tmp_path):
    options = {"model": str(ner_model), **SMALL_WINDOWS, "limit": 40}
    annotate(str(corpus_dir), str(tmp_path / "local"), engine="local", **options)
    manifest = annotate(str(corpus_dir), str(tmp_path / "ray"), engine="ray", **options)
    assert manifest["rows"] == {"in": 40, "out": 40}
    assert_same_output(tmp_path / "local", tmp_path / "ray")


def test_progress_moves_through_a_long_document_before_it_lands(ray_local, ner_model,
                                                                tmp_path):
    """The tagging actor reports through the relay actor (no CPU of its own, or the 2-CPU
    layout would not fit), at most once a second, while the driver waits for the row."""
    vocab = "john smith said the bank of new york was in london .".split()
    text = " ".join(vocab[(i * 7) % len(vocab)] for i in range(120_000))  # 2 s of passes
    source = tmp_path / "big.jsonl"
    source.write_text(json.dumps({"id": "big", "text": text}) + "\n")
    events: list[tuple[str, float, int]] = []

    class Recorder:
        def start(self, expected_characters):
            self.started = time.monotonic()

        def advance(self, characters):
            events.append(("advance", time.monotonic(), characters))

        def update(self, counts):
            events.append(("update", time.monotonic(), counts["characters"]))

    recorder = Recorder()
    annotate(str(source), str(tmp_path / "out"), engine="ray", model=str(ner_model),
             **SMALL_WINDOWS, batch_tokens=256, progress=recorder)
    kinds = [kind for kind, _, _ in events]
    assert kinds.count("update") == 1 and kinds.index("update") >= 1
    landed = next(n for kind, _, n in events if kind == "update")
    advanced = [n for kind, _, n in events if kind == "advance"]
    assert landed == len(text) and 0 < sum(advanced) <= len(text)
    seconds = events[-1][1] - recorder.started
    assert len(advanced) <= seconds + 1  # the driver asks the relay once a second


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process has just ended
            continue
        if text in args:
            found.append(f"{cmdline.parent.name}: {args[:200]}")
    return found


@pytest.mark.timeout(300)
def test_without_address_starts_its_own_ray_despite_a_stale_current_cluster(
        corpus_parquet, ner_model, tmp_path):
    """Ray's temp folder names a cluster where nothing listens (what a crashed `ray start`
    leaves); a run without --address still starts and stops a local Ray of its own.

    A driver process of its own: this module's Ray, running in the test process, would be
    joined instead. RAY_TMPDIR is set for that driver only (a short folder: Ray's socket paths
    live in it), so /tmp/ray and its current-cluster file are never touched."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        stale = f"127.0.0.1:{probe.getsockname()[1]}"
    temp = tempfile.mkdtemp(prefix="seqlab-ray-")
    try:
        (Path(temp) / "ray").mkdir()
        (Path(temp) / "ray" / "ray_current_cluster").write_text(stale)
        env = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
        env.update(RAY_TMPDIR=temp, RAY_AUTH_MODE="disabled", PYTHONPATH="")
        out = tmp_path / "out"
        driver = subprocess.run(
            [sys.executable, "-m", "seqlab", "-q", "annotate", str(corpus_parquet), str(out),
             "--engine", "ray", "--model", str(ner_model), "--batch-docs", "8",
             "--max-length", "64", "--stride", "16"],
            cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True,
            timeout=240)
        assert driver.returncode == 0, (driver.stdout + driver.stderr)[-3000:]
        # quiet without -v: no line of Ray's C++ logger ("[...] logging.cc:303: Set ray log
        # level ...", core_worker.cc errors) on the terminal
        assert not re.search(r"\] \w+\.cc:\d+: ", driver.stderr), driver.stderr[-3000:]
        manifest = json.loads((out / "_manifest.json").read_text())
        expected = pq.read_table(corpus_parquet).num_rows
        assert manifest["engine"] == "ray"
        assert manifest["rows"] == {"in": expected, "out": expected}
        assert (Path(temp) / "ray" / "ray_current_cluster").read_text() == stale
        sessions = list((Path(temp) / "ray").glob("session_2*"))
        assert sessions, "the run's Ray did not start under RAY_TMPDIR"
        deadline = time.monotonic() + 30  # the Ray the run started is gone with it
        while processes_mentioning(temp) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not processes_mentioning(temp)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def test_layouts_that_would_hang_are_refused():
    with pytest.raises(ConfigError, match="exceed the cluster's 2 CPUs"):
        ray_data.resolve_settings(ray_data.RayOptions(cpus_per_actor=2), {"CPU": 2.0}, local=True)
    with pytest.raises(ConfigError, match="need 1 GPUs"):
        ray_data.resolve_settings(ray_data.RayOptions(gpus_per_actor=1), {"CPU": 8.0}, local=True)
    # a remote (possibly autoscaling) cluster only gets a warning
    settings = ray_data.resolve_settings(ray_data.RayOptions(tag_actors=8), {"CPU": 2.0},
                                         local=False)
    assert settings.tag_actors == 8
    gpu = ray_data.resolve_settings(ray_data.RayOptions(), {"CPU": 32.0, "GPU": 4.0}, local=False)
    assert (gpu.tag_actors, gpu.gpus_per_actor, gpu.tokenize_cpus) == (4, 1.0, 1.0)
