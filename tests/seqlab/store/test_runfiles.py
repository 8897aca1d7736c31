"""seqlab.store.runfiles: an incremental run's manifest as a JSON summary and a Parquet list of
its files, read back through ``read_manifest`` as the one manifest it was; manifests written
with their files in the JSON still read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest

from seqlab.errors import OutputError
from seqlab.run.finish import finish_run
from seqlab.store import incremental, runfiles
from seqlab.store.index import read_index
from seqlab.store.manifest import Manifest, read_manifest
from seqlab.store.outdir import OutputDir
from tests.seqlab import drive, make_plan, rows, write_parquet

FS = fsspec.filesystem("file")


def run(input: Path, output: Path, model: Path, **options) -> dict:
    plan = make_plan(input, output, model, id_column="id", incremental=True, **options)
    drive(plan)
    return finish_run(plan, engine="test")


@pytest.fixture
def table(tmp_path, ner_model) -> tuple[Path, list[dict]]:
    """Two runs: the second annotates a changed file again and prunes a gone one."""
    source = tmp_path / "in"
    write_parquet(source / "a.parquet", rows(4, "a"))
    write_parquet(source / "b.parquet", rows(3, "b"))
    write_parquet(source / "c.parquet", rows(2, "c"))
    out = tmp_path / "out"
    first = run(source, out, ner_model, run_date="2026-12-01")
    write_parquet(source / "b.parquet", rows(2, "b", start=10))
    (source / "c.parquet").unlink()
    second = run(source, out, ner_model, run_date="2026-12-02", prune=True)
    return out, [first, second]


def manifest_path(out: Path, run_id: str) -> Path:
    return out / "_runs" / run_id / "manifest.json"


def test_a_runs_files_are_listed_in_parquet_and_read_back_into_its_manifest(table):
    out, manifests = table
    for returned in manifests:
        path = manifest_path(out, returned["run_id"])
        summary = json.loads(path.read_text())
        assert not {"inputs", "tables", "aggregates"} & set(summary)
        assert "superseded" not in summary["incremental"]
        listing = pq.read_table(path.parent / runfiles.FILES)
        files = sum(len(parts) for parts in returned["tables"].values())
        superseded = returned["incremental"]["superseded"]
        assert listing.num_rows == files + len(superseded)
        assert summary["files"] == {"path": "files.parquet", "inputs": len(returned["inputs"]),
                                    "tables": {t: len(p) for t, p in returned["tables"].items()},
                                    "superseded": len(superseded)}
        # the one reader gives the manifest the run returned, files and all
        assert read_manifest(FS, str(path)) == Manifest.from_dict(returned)
    assert manifests[1]["incremental"]["superseded"] and manifests[1]["incremental"]["pruned"]
    ended = incremental.run_manifests(OutputDir(str(out)))
    assert [m.to_dict() for m in ended] == manifests


def test_the_summary_alone_reads_without_the_listing(table):
    out, (_, second) = table
    path = manifest_path(out, second["run_id"])
    (path.parent / runfiles.FILES).unlink()
    summary = read_manifest(FS, str(path), files=False)
    assert summary.run_id == second["run_id"] and summary.inputs == ()
    assert summary.incremental.config_key == second["incremental"]["config_key"]
    with pytest.raises(OutputError, match="files.parquet, the list of the files of the run"):
        read_manifest(FS, str(path))


def test_split_and_join_give_back_every_shape_of_manifest():
    def part(path: str, rows: int) -> dict:
        return {"path": path, "rows": rows, "bytes": 10 + rows, "sha256": f"h-{path}"}

    manifest = {
        "run_id": "R2", "counts": {"documents": 3},
        "inputs": [
            {"fragment": "b.parquet", "rows": 3, "identity": [10, "v2"],
             "parts": {"documents": [part("documents/b1", 2), part("documents/b0", 1)],
                       "mentions": [], "aggregates": [part("aggregates/b", 4)]}},
            {"fragment": "empty.jsonl", "rows": 0, "parts": {}},
        ],
        "failed_inputs": [],
        "tables": {"documents": [part("documents/b0", 1), part("documents/b1", 2)],
                   "mentions": [part("mentions/R2-empty", 0)], "frames": [],
                   "aggregates": [part("aggregates/b", 4)]},
        "aggregates": [part("aggregates/b", 4)],
        "incremental": {"config_key": "k", "unchanged": 1, "replaced": ["b.parquet"],
                        "pruned": [], "superseded": ["mentions/b-old", "documents/b-old"]},
    }
    summary, listing = runfiles.split(manifest)
    assert runfiles.join(json.loads(json.dumps(summary)), listing) == manifest
    # a manifest whose aggregates are not its aggregates table keeps them in the summary
    odd = {**manifest, "aggregates": []}
    assert runfiles.split(odd)[0]["aggregates"] == [] and \
        runfiles.join(*runfiles.split(odd)) == odd


def test_a_table_whose_manifests_list_their_files_in_json_reads_and_goes_on(table, ner_model):
    """A table written before manifests were split, and before it had an index: `seqlab runs`
    and verify read it, and its next run plans from the index folded from those manifests."""
    from seqlab.store.verify import verify

    out, manifests = table
    for returned in manifests:
        path = manifest_path(out, returned["run_id"])
        path.write_text(json.dumps(returned, indent=2) + "\n")
        (path.parent / runfiles.FILES).unlink()
    shutil.rmtree(out / "_index")
    assert [r["inputs"] for r in incremental.list_runs(OutputDir(str(out)))] == [3, 1]
    assert verify(str(out)).ok
    again = run(out.parent / "in", out, ner_model, run_date="2026-12-03", prune=True)
    assert again["inputs"] == [] and again["incremental"]["unchanged"] == 2
    assert read_index(OutputDir(str(out))).version == 1
    assert verify(str(out)).ok
