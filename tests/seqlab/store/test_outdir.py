"""seqlab.store.outdir: atomic parts, cleanup of what no record names, and who may reuse a
location."""

import errno
import gc
import hashlib
import json
import os
import sys
import uuid

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqlab.errors import OutputError
from seqlab.store.manifest import Manifest, ModelInfo, Resume, Rows, RunState
from seqlab.store.outdir import OutputDir, check_resumable
from seqlab.store.parts import FragmentRecord, PartFile, PartInfo, read_table

DECLARED = pa.schema([pa.field("doc_id", pa.string(), nullable=False),
                      pa.field("n", pa.int64())])


@pytest.fixture(params=["file", "memory"])
def out(request, tmp_path):
    if request.param == "file":
        yield OutputDir(str(tmp_path / "out"))
        return
    url = f"memory://seqlab-out-{uuid.uuid4().hex[:8]}"
    yield OutputDir(url)
    fs = fsspec.filesystem("memory")
    if fs.exists(OutputDir(url).root):
        fs.rm(OutputDir(url).root, recursive=True)


def put(out: OutputDir, relpath: str, data: bytes = b"x") -> None:
    out.fs.makedirs(os.path.dirname(out.path(relpath)), exist_ok=True)
    out.fs.pipe_file(out.path(relpath), data)


def listing(out: OutputDir) -> set[str]:
    return {out.relative(p) for p in out.fs.find(out.root)}


def test_a_part_appears_only_when_closed_with_its_bytes_and_hash(out):
    part = PartFile(out.fs, out.root, "documents/part-00000-0000000000.parquet", DECLARED)
    # batches of other (castable) types land in the declared schema, one row group each
    part.write(pa.record_batch({"doc_id": pa.array(["a", "b"], pa.large_string()),
                                "n": pa.array([1, 2], pa.int32())}))
    part.write(pa.table({"doc_id": ["c"], "n": pa.array([None], pa.int16())}))
    [pending] = listing(out)
    assert pending.startswith("documents/.tmp-") and pending.endswith(".parquet")
    info = part.close()
    assert listing(out) == {"documents/part-00000-0000000000.parquet"}
    data = out.fs.cat_file(out.path(info.path))
    assert (info.rows, info.bytes, info.sha256) == (3, len(data), hashlib.sha256(data).hexdigest())
    table = read_table(out.fs, out.path(info.path))
    assert table.schema.equals(DECLARED)
    assert table.to_pydict() == {"doc_id": ["a", "b", "c"], "n": [1, 2, None]}
    with out.fs.open(out.path(info.path), "rb") as handle:
        assert pq.ParquetFile(handle).metadata.num_row_groups == 2


def test_cleanup_keeps_recorded_files_and_removes_any_other(out):
    recorded = {"documents/part-00000-0000000000.parquet",
                "mentions/part-00000-0000000000.parquet",
                "_progress/partials/part-00000-0000000000.parquet"}
    strays = {"documents/part-00001-0000000000.parquet", "documents/part-beam-3f2a-00001.parquet",
              "documents/part-ray-7-00000.parquet", "mentions/.tmp-0d1e.parquet",
              "aggregates/part-00000.parquet", "_progress/partials/part-00001-0000000000.parquet"}
    others = {"_progress/_run.json", "_progress/fragment-00000.json", "README.txt"}
    for path in recorded | strays | others:
        put(out, path, b"" if ".tmp-" in path else b"x")
    put(out, "mentions/beam-temp-abc/shard-0.parquet")
    removed = out.cleanup(keep=recorded)
    assert set(removed) == strays | {"mentions/beam-temp-abc"}
    assert listing(out) == recorded | others


def test_location_is_one_string_however_the_output_is_spelled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spellings = ["out", "out/", "./out", "./out//", str(tmp_path / "out"),
                 f"file://{tmp_path}/out/"]
    assert {OutputDir(s).location for s in spellings} == {f"file://{tmp_path}/out"}
    assert OutputDir("memory://bucket/out/").location == OutputDir("memory://bucket/out").location
    assert OutputDir("out").location != OutputDir("out2").location


FINGERPRINT = {"model": "ner", "decoder": "greedy", "max_length": 64}


def started(out: OutputDir, fingerprint=FINGERPRINT) -> RunState:
    state = RunState("run-1", fingerprint, "2026-01-01T00:00:00+00:00", ())
    out.start(state)
    return state


def ended(complete: bool = True) -> Manifest:
    """The manifest of a run with nothing in it."""
    return Manifest(run_id="run-1", seqlab_version="0.1.0", schema_version=2,
                    complete=complete, engine="test", attempts=(),
                    model=ModelInfo("ner", "r1", "iob2", ("O",)), config={},
                    resume=Resume((), ()), processed_at="2026-01-01T00:00:00+00:00",
                    finished_at="2026-01-01T00:00:01+00:00", elapsed_s=1.0, rows=Rows(0, 0),
                    counts={}, inputs=(), failed_inputs=(), tables={}, aggregates=())


def test_a_fresh_location_and_an_unfinished_run_with_the_same_options(out):
    assert check_resumable(out, FINGERPRINT, overwrite=False) is None
    state = started(out)
    assert check_resumable(out, dict(FINGERPRINT), overwrite=False) == state


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_location_that_is_a_file_is_refused_and_left_alone(overwrite, out):
    out.fs.makedirs(os.path.dirname(out.root), exist_ok=True)
    out.fs.pipe_file(out.root, b"mine")
    with pytest.raises(OutputError, match="is a file, not a directory") as error:
        check_resumable(out, FINGERPRINT, overwrite=overwrite)
    assert out.url in error.value.message and "directory as OUTPUT" in error.value.fix
    assert out.fs.cat_file(out.root) == b"mine"


def test_a_finished_run_is_never_replaced_without_overwrite(out):
    started(out)
    out.finish(ended())
    with pytest.raises(OutputError, match="already holds a finished run.*run-1") as error:
        check_resumable(out, FINGERPRINT, overwrite=False)
    assert "--overwrite" in error.value.fix
    assert out.manifest() is not None  # refused before touching anything


def test_a_run_that_ended_with_failed_fragments_resumes(out):
    state = started(out)
    out.finish(ended(complete=False), keep_progress=True)
    assert check_resumable(out, FINGERPRINT, overwrite=False) == state
    out.fs.rm(out.path("_progress"), recursive=True)  # its state lost: it is finished
    with pytest.raises(OutputError, match="finished run"):
        check_resumable(out, FINGERPRINT, overwrite=False)


def test_a_different_configuration_is_refused_naming_what_differs(out):
    started(out)
    now = {**FINGERPRINT, "decoder": "viterbi", "max_length": 128}
    with pytest.raises(OutputError) as error:
        check_resumable(out, now, overwrite=False)
    message = error.value.message
    assert "decoder: 'greedy' then, 'viterbi' now" in message
    assert "max_length: 64 then, 128 now" in message
    assert "model" not in message.split("configuration")[1]


def test_overwrite_clears_the_run_and_its_tables(out):
    started(out)
    put(out, "documents/part-00000-0000000000.parquet")
    out.finish(ended())
    put(out, "elsewhere.txt")
    assert check_resumable(out, {"model": "upos"}, overwrite=True) is None
    assert listing(out) == {"elsewhere.txt"}


def test_records_round_trip_through_progress(out):
    part = PartInfo("documents/part-00002-0000000000.parquet", 4, 100, "ab" * 32)
    record = FragmentRecord("b.parquet", 2, 4, {"documents": [part], "mentions": []},
                            {"documents": 4}, ["_progress/partials/part-00002-0000000000.parquet"])
    out.record(record)
    assert out.done_fragments() == {"b.parquet": record}
    assert record.files() == {part.path, *record.partials}
    saved = json.loads(out.fs.cat_file(out.path("_progress/fragment-00002.json")))
    assert saved["parts"]["documents"][0]["sha256"] == "ab" * 32


class FullDisk:
    """A file whose writes fail as a full disk fails them: without naming the file."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def unraisable(monkeypatch):
    """What garbage collection could not raise (a writer that fails to close when dropped)."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


ROWS = pa.table({"doc_id": [f"d{i}" for i in range(100)], "n": list(range(100))})


def test_a_part_whose_write_fails_names_itself_and_leaves_nothing(out, unraisable):
    relpath = "documents/part-00000-0000000000.parquet"
    part = PartFile(out.fs, out.root, relpath, DECLARED)
    part.write(ROWS)
    part.sink.inner = FullDisk(part.sink.inner)
    with pytest.raises(OSError) as error:
        part.write(ROWS)
    assert (error.value.errno, error.value.filename) == (errno.ENOSPC, out.path(relpath))
    assert listing(out) == set()  # the temporary file is gone
    del part
    gc.collect()
    assert not unraisable  # the abandoned writer wrote no footer when collected


def test_a_part_dropped_unclosed_is_abandoned_quietly(out, unraisable):
    """A run stopped by an error elsewhere drops its open parts: they write nothing more
    (the disk may be full) and leave no temporary file."""
    part = PartFile(out.fs, out.root, "mentions/part-00000-0000000000.parquet", DECLARED)
    part.write(ROWS)
    part.sink.inner = FullDisk(part.sink.inner)
    del part
    gc.collect()
    assert not unraisable
    assert listing(out) == set()


def test_a_small_file_whose_write_fails_names_itself_and_leaves_nothing(out, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(out.fs, "mv", full)
    with pytest.raises(OSError) as error:
        started(out)
    assert error.value.filename == out.path("_progress", "_run.json")
    assert listing(out) == set()
