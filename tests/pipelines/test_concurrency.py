"""Runs that meet: two ``seqlab annotate`` processes into one table, on the same engine or on
two engines, started together. The lease lets one write; the other is refused naming it (or,
where the first ended before it looked, finds nothing left to do). Either way the table
holds each input row once and the next run can use it."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqlab.store.verify import verify
from tests import require
from tests.conftest import make_corpus

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
FILES, ROWS = 6, 12


@pytest.fixture
def corpus(tmp_path) -> Path:
    rows = make_corpus(FILES * ROWS, seed=3, long_every=0)
    (tmp_path / "in").mkdir()
    for n in range(FILES):
        pq.write_table(pa.Table.from_pylist(rows[n * ROWS:(n + 1) * ROWS]),
                       tmp_path / "in" / f"part-{n}.parquet")
    return tmp_path / "in"


def command(corpus: Path, out: Path, model: Path, engine: str) -> list[str]:
    return [sys.executable, "-m", "seqlab", "-q", "annotate", str(corpus), str(out),
            "--engine", engine, "--incremental", "--run-date", "2026-12-05", "--model",
            str(model), "--id-column", "id", "--max-length", "64", "--stride", "16",
            "--batch-docs", "8"]


@pytest.mark.parametrize("engines", [("local", "local"), ("local", "beam")])
def test_two_runs_started_together_leave_each_row_once(tmp_path, corpus, ner_model, engines):
    if "beam" in engines:
        require("apache_beam", "beam")
    out = tmp_path / "table"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [subprocess.Popen(command(corpus, out, ner_model, engine), env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for engine in engines]
    ended = [(run.wait(timeout=240), run.communicate()[1]) for run in runs]
    codes = [code for code, _ in ended]
    assert 0 in codes and set(codes) <= {0, 2}, ended
    for code, err in ended:
        if code == 2:  # refused while the other wrote, naming it
            assert "is being written by" in err and "engine (host" in err, err
        assert "apitools" not in err  # Beam's import-time BigQuery notice is kept quiet
    ids = pq.read_table(out / "documents").column("doc_id").to_pylist()
    assert len(ids) == len(set(ids)) == FILES * ROWS
    assert verify(str(out)).ok
    assert not (out / "_lease.json").exists()
    again = subprocess.run(command(corpus, out, ner_model, "local"), env=env, text=True,
                           capture_output=True, timeout=240)
    assert again.returncode == 0, again.stderr  # the table takes the next run
    assert pq.read_table(out / "documents").num_rows == FILES * ROWS


def test_a_run_started_after_the_others_first_record_is_refused_or_finds_it_done(
        tmp_path, corpus, ner_model):
    require("apache_beam", "beam")
    out = tmp_path / "table"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(command(corpus, out, ner_model, "local"), env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list((out / "_progress").glob("fragment-*.json")) and first.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(command(corpus, out, ner_model, "beam"), env=env, text=True,
                            capture_output=True, timeout=240)
    assert first.wait(timeout=240) == 0, first.communicate()[1]
    if second.returncode == 2:  # the first still wrote: refused, naming it
        assert "is being written by" in second.stderr, second.stderr
    else:  # the first ended before the second looked: nothing left to annotate
        assert second.returncode == 0, second.stderr
    ids = pq.read_table(out / "documents").column("doc_id").to_pylist()
    assert len(ids) == len(set(ids)) == FILES * ROWS
    assert verify(str(out)).ok
