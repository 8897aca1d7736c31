"""``seqlab compact`` killed with SIGKILL at each of its steps, run again, then the table's next
incremental run on another engine: the table equals one whose compaction never crashed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import require

require("apache_beam", "beam")

import seqlab  # noqa: E402
from seqlab.pause import PAUSE_ENV, SECONDS_ENV  # noqa: E402
from seqlab.store import compact  # noqa: E402
from seqlab.store.verify import verify  # noqa: E402
from tests.conftest import make_text  # noqa: E402
from tests.tiny import NER_LABELS, build_tiny_model  # noqa: E402

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
TARGET = 100_000  # a one-document file is ~14 KB: 16 of them compact into 2 or 3 files
OPTIONS = {"max_length": 64, "stride": 16, "batch_docs": 8, "batch_tokens": 1024,
           "id_column": "id", "incremental": True}
SORT = {"documents": ["doc_id"], "mentions": ["doc_id", "start_char", "end_char", "label"],
        "aggregates": ["label", "text"]}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("compact-crashes") / "ner", NER_LABELS)


def one_document(corpus: Path, i: int, seed: int = 0) -> None:
    text = make_text(random.Random(100 * i + seed), 150)
    pq.write_table(pa.Table.from_pylist([{"id": f"f{i:02d}-{seed}", "text": text}]),
                   corpus / f"f{i:02d}.parquet")


def day_one(root: Path, model: Path) -> Path:
    """Sixteen one-document input files, annotated on the local engine."""
    (root / "in").mkdir(parents=True)
    for i in range(16):
        one_document(root / "in", i)
    seqlab.annotate(str(root / "in"), str(root / "out"), model=str(model), engine="local",
                    run_date="2026-12-01", **OPTIONS)
    return root / "out"


def day_two(root: Path, model: Path, engine: str) -> dict:
    """A changed input file (its rows in a compacted file) and two new ones."""
    one_document(root / "in", 3, seed=1)
    for i in (16, 17):
        one_document(root / "in", i)
    return seqlab.annotate(str(root / "in"), str(root / "out"), model=str(model),
                           engine=engine, run_date="2026-12-02", **OPTIONS)


def read(out: Path, table: str):
    data = pq.read_table(out / table)
    data = data.drop_columns([c for c in ("run_id", "processed_at") if c in data.column_names])
    return data.sort_by([(k, "ascending") for k in SORT[table]])


def file_counts(out: Path) -> dict[str, int]:
    return {f"{t}/{d.name}": len(list(d.glob("*.parquet"))) for t in SORT
            for d in sorted((out / t).iterdir())}


@pytest.fixture(scope="module")
def clean(model, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    out = day_one(root, model)
    compact.compact(str(out), TARGET)
    day_two(root, model, "local")
    return out


def kill_at(step: str, out: Path, log: Path) -> None:
    """Start ``seqlab compact``, SIGKILL it once it pauses at ``step``."""
    command = [sys.executable, "-m", "seqlab", "compact", str(out), "--target-file-size",
               str(TARGET)]
    env = {**os.environ, PAUSE_ENV: step, SECONDS_ENV: "120",
           "PYTHONPATH": ""}
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT,
                                   start_new_session=True, env=env)
        deadline = time.monotonic() + 120
        try:
            while f"pausing at {step}" not in log.read_text():
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "compact did not reach the step in time"
                time.sleep(0.05)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("step, rerun", [
    ("compact-file-written", True), ("compact-written", True), ("compact-indexed", True),
    ("compact-moving", True), ("compact-written", False)])
def test_kill_9_during_compaction_then_rerun_then_a_beam_run_equals_a_clean_table(
        step, rerun, model, clean, tmp_path):
    """``rerun``: seqlab compact finishes the compaction; else the next run does, first."""
    out = day_one(tmp_path, model)
    kill_at(step, out, tmp_path / "compact.log")
    assert (out / "_compact" / "state.json").exists() and (out / "_lease.json").exists()

    if rerun:
        summary = compact.compact(str(out), TARGET)  # takes over the dead process's lease
        assert summary["status"] == "compacted"
    manifest = day_two(tmp_path, model, "beam")
    assert not (out / "_compact" / "state.json").exists()

    assert [i["fragment"] for i in manifest["inputs"]] == [
        "f03.parquet", "f16.parquet", "f17.parquet"]
    for table in SORT:
        assert read(out, table).equals(read(clean, table)), table
    assert file_counts(out) == file_counts(clean)
    ids = read(out, "documents").column("doc_id").to_pylist()
    assert len(ids) == len(set(ids)) == 18 and "f03-0" not in ids
    checked = verify(str(out))
    assert checked.ok, [finding.line() for finding in checked.findings]
    assert not list(out.rglob(".tmp-*"))
