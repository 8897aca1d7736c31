"""The bucketed aggregates merge on every engine: with several buckets (a small
``SEQLAB_MENTIONS_PER_BUCKET``) local, Ray and Beam land the same K files byte for byte, and a
driver killed with SIGKILL during the merge, after its scatter or its gather step, resumes on
another engine to a run equal to a clean one."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests import require

require("ray", "ray")
require("apache_beam", "beam")

import seqlab  # noqa: E402
from seqlab.pause import PAUSE_ENV  # noqa: E402
from seqlab.run import aggregates  # noqa: E402
from seqlab.stages import aggregate  # noqa: E402
from tests.pipelines import test_conformance as conformance  # noqa: E402
from tests.pipelines.test_conformance import (  # noqa: E402
    CRASH_OPTIONS,
    ENGINES,
    KEYS,
    annotate_command,
    kill_when_landed,
    landed_files,
    read,
)

# the conformance suite's fixtures: its tiny model, its local Ray, its crash corpus and the
# clean local run of it (one aggregates bucket)
model, ray_cluster = conformance.model, conformance.ray_cluster
many_files, clean_run = conformance.many_files, conformance.clean_run

pytestmark = pytest.mark.timeout(300)

MENTIONS_PER_BUCKET = "400"  # the 240 documents of many_files find ~2,000 entities


def digests(out: Path) -> dict[str, str]:
    """Each aggregates file by name, with the sha256 of its bytes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((out / "aggregates").iterdir())}


@pytest.fixture(scope="module")
def bucketed(many_files, model, ray_cluster, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """The crash corpus annotated by every engine with several aggregates buckets."""
    root = tmp_path_factory.mktemp("bucketed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(aggregates.BUCKETS_ENV, MENTIONS_PER_BUCKET)
        return {engine: (root / engine, seqlab.annotate(
            str(many_files), str(root / engine), model=str(model), engine=engine,
            **CRASH_OPTIONS)) for engine in ENGINES}


def test_every_engine_lands_the_same_k_files(bucketed, clean_run):
    local, manifest = bucketed["local"]
    k = manifest["aggregate_buckets"]
    assert k == -(-manifest["counts"]["entities"] // int(MENTIONS_PER_BUCKET)) > 2
    assert list(digests(local)) == [f"part-{b:05d}.parquet" for b in range(k)]
    for engine in ("ray", "beam"):
        out, other = bucketed[engine]
        assert other["aggregate_buckets"] == k, engine
        assert digests(out) == digests(local), f"aggregates files differ: local != {engine}"
        assert other["aggregates"] == manifest["aggregates"], engine
        assert landed_files(out) == {p["path"] for parts in other["tables"].values()
                                     for p in parts}
    for bucket in range(k):  # each file holds its bucket's keys, sorted, once each
        table = pq.read_table(local / "aggregates" / f"part-{bucket:05d}.parquet")
        assert set(aggregate.buckets(table, k).tolist()) <= {bucket}
        assert table.equals(table.sort_by([(c, "ascending") for c in aggregate.KEYS]))
    # the union of the K files is the one file of a run with one bucket, row for row
    assert read(local, "aggregates").equals(read(clean_run, "aggregates"))
    assert len(list((clean_run / "aggregates").iterdir())) == 1


@pytest.mark.slow
@pytest.mark.parametrize("crashed, step, resumed", [
    ("local", "aggregates-scatter", "ray"), ("ray", "aggregates-gather", "beam"),
    ("beam", "aggregates-scatter", "local")])
def test_kill_9_during_the_merge_then_resume_on_another_engine(
        crashed, step, resumed, bucketed, many_files, model, ray_cluster, tmp_path, monkeypatch):
    expected, clean = bucketed["local"]
    k = clean["aggregate_buckets"]
    out = tmp_path / "out"
    monkeypatch.setenv(aggregates.BUCKETS_ENV, MENTIONS_PER_BUCKET)
    monkeypatch.setenv(PAUSE_ENV, step)  # the driver sleeps there, to be killed
    # after the scatter step its bucket files are there; after the gather step all K files
    pattern = ("_progress/buckets/*/*.parquet" if step == "aggregates-scatter"
               else f"aggregates/part-{k - 1:05d}.parquet")
    kill_when_landed(annotate_command(many_files, out, model, crashed, ray_cluster), out,
                     pattern, tmp_path / "driver.log")
    assert len(list((out / "_progress").glob("fragment-*.json"))) == 24
    if step == "aggregates-gather":
        assert len(list((out / "aggregates").iterdir())) == k
    else:
        assert not (out / "aggregates").exists() or not list((out / "aggregates").iterdir())
    monkeypatch.delenv(PAUSE_ENV)
    manifest = seqlab.annotate(str(many_files), str(out), model=str(model), engine=resumed,
                               **CRASH_OPTIONS)
    assert [a["engine"] for a in manifest["attempts"]] == [crashed, resumed]
    assert manifest["rows"] == {"in": 240, "out": 240} and manifest["aggregate_buckets"] == k
    for table in KEYS:
        assert read(out, table).equals(read(expected, table)), table
    assert digests(out) == digests(expected)
    assert landed_files(out) == {p["path"] for parts in manifest["tables"].values()
                                 for p in parts}
    assert not (out / "_progress").exists() and not list(out.rglob(".tmp-*"))
    assert os.environ.get(PAUSE_ENV) is None
