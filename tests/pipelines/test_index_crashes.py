"""An incremental run killed with SIGKILL while it writes the table's index (its next version's
file written, ``current.json`` not yet switched), then resumed on another engine: the table
equals one that two clean runs left, and its index is the version that run writes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import require

require("ray", "ray")
require("apache_beam", "beam")

import seqlab  # noqa: E402
from seqlab.pause import PAUSE_ENV  # noqa: E402
from seqlab.store.index import read_index  # noqa: E402
from seqlab.store.outdir import OutputDir  # noqa: E402
from seqlab.store.verify import verify  # noqa: E402
from tests.conftest import make_corpus  # noqa: E402
from tests.pipelines import test_conformance as conformance  # noqa: E402
from tests.pipelines.test_conformance import (  # noqa: E402
    CRASH_OPTIONS,
    KEYS,
    annotate_command,
    kill_when_landed,
    read,
    renamed,
)

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

model = conformance.model  # the conformance suite's tiny model and local Ray, as fixtures
ray_cluster = conformance.ray_cluster

DAY_TWO = ["--incremental", "--prune", "--run-date", "2026-12-02", "--id-column", "id"]


def day_one(root: Path, model: Path) -> Path:
    """Three input files annotated on day one; then day two's corpus: a new file, a changed
    one and a deleted one."""
    corpus = root / "in"
    corpus.mkdir(parents=True)
    rows = make_corpus(18, long_every=0)
    for name, part in (("a", rows[:6]), ("b", rows[6:12]), ("c", rows[12:])):
        pq.write_table(pa.Table.from_pylist(part), corpus / f"{name}.parquet")
    seqlab.annotate(str(corpus), str(root / "out"), model=str(model), incremental=True,
                    run_date="2026-12-01", id_column="id", **CRASH_OPTIONS)
    pq.write_table(renamed(make_corpus(4, seed=5, long_every=0), "d"), corpus / "d.parquet")
    pq.write_table(pa.Table.from_pylist(rows[6:9]), corpus / "b.parquet")
    (corpus / "c.parquet").unlink()
    return corpus


def day_two(corpus: Path, out: Path, model: Path, engine: str) -> dict:
    return seqlab.annotate(str(corpus), str(out), model=str(model), engine=engine,
                           incremental=True, prune=True, run_date="2026-12-02",
                           id_column="id", **CRASH_OPTIONS)


def held(out: Path) -> dict[str, dict[str, int]]:
    index = read_index(OutputDir(str(out)))
    return {name: index.rows(name) for name in index.inputs}


@pytest.mark.parametrize("crashed, resumed", [("local", "ray"), ("beam", "local")])
def test_kill_9_while_writing_the_index_then_resume_on_another_engine(
        crashed, resumed, model, ray_cluster, tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    day_two(day_one(clean, model), clean / "out", model, "local")

    corpus = day_one(tmp_path / "crashed", model)
    out = tmp_path / "crashed" / "out"
    monkeypatch.setenv(PAUSE_ENV, "index-written")
    kill_when_landed(annotate_command(corpus, out, model, crashed, ray_cluster) + DAY_TWO,
                     out, "_index/v-0000000002.parquet", tmp_path / "driver.log")
    monkeypatch.delenv(PAUSE_ENV)
    current = json.loads((out / "_index" / "current.json").read_text())
    assert current["version"] == 1  # killed between the version's file and current.json
    assert (out / "_progress" / "_run.json").exists()

    manifest = day_two(corpus, out, model, resumed)
    assert [a["engine"] for a in manifest["attempts"]] == [crashed, resumed]
    assert manifest["incremental"]["replaced"] == ["b.parquet"]
    assert manifest["incremental"]["pruned"] == ["c.parquet"]
    for table in KEYS:
        assert read(out, table).equals(read(clean / "out", table)), table
    assert held(out) == held(clean / "out")
    assert read_index(OutputDir(str(out))).version == 2
    assert verify(str(out)).ok
