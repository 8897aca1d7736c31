"""The output directory: atomic Parquet parts, per-fragment progress, and the run manifest.

Layout (see the README):

    OUT/documents/part-FFFFF-SSSS.parquet   one row per input row
    OUT/mentions/part-FFFFF-SSSS.parquet    one row per entity
    OUT/aggregates/part-00000.parquet       one row per (label, normalised text)
    OUT/_progress/                          per-fragment records while a run is unfinished
    OUT/_manifest.json                      written last: its presence means the run finished

Parts are written under a temporary name and renamed when complete, so a reader never sees a
half-written file. ``FFFFF`` is the input fragment's index, so a rerun after a crash deletes a
fragment's leftover parts before redoing it and never duplicates rows.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import posixpath
import uuid
from dataclasses import asdict, dataclass, field

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from seqlab.errors import OutputError

log = logging.getLogger(__name__)

TABLES = ("documents", "mentions", "aggregates")
MANIFEST = "_manifest.json"
PROGRESS = "_progress"
RUN_STATE = "_run.json"


@dataclass
class PartInfo:
    path: str  # relative to the output root
    rows: int
    bytes: int
    sha256: str


@dataclass
class FragmentRecord:
    """What one input fragment produced; written when all its parts are final."""

    fragment: str
    index: int
    rows_in: int
    parts: dict[str, list[PartInfo]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> FragmentRecord:
        parts = {k: [PartInfo(**p) for p in v] for k, v in data.get("parts", {}).items()}
        return cls(data["fragment"], data["index"], data["rows_in"], parts,
                   data.get("counts", {}))


class _HashingFile(io.RawIOBase):
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.inner.write(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        if not self.closed:
            self.inner.close()
        super().close()


def write_table(fs: fsspec.AbstractFileSystem, root: str, relpath: str,
                table: pa.Table) -> PartInfo:
    """Write one Parquet file atomically: to a temporary name, then renamed into place."""
    final = posixpath.join(root, relpath)
    tmp = posixpath.join(posixpath.dirname(final), f".tmp-{uuid.uuid4().hex}.parquet")
    fs.makedirs(posixpath.dirname(final), exist_ok=True)
    sink = _HashingFile(fs.open(tmp, "wb"))
    with pq.ParquetWriter(sink, table.schema, compression="zstd") as writer:
        writer.write_table(table)
    sink.close()
    fs.mv(tmp, final)
    return PartInfo(relpath, table.num_rows, sink.size, sink.digest.hexdigest())


def describe_part(fs: fsspec.AbstractFileSystem, root: str, relpath: str) -> PartInfo:
    """Rows, bytes and sha256 of a Parquet file written by someone else (e.g. Ray Data)."""
    path = posixpath.join(root, relpath)
    digest = hashlib.sha256()
    size = 0
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
        handle.seek(0)
        rows = pq.ParquetFile(handle).metadata.num_rows
    return PartInfo(relpath, rows, size, digest.hexdigest())


class PartWriter:
    """Writes one table of one fragment as parts of at most ``rows_per_part`` rows."""

    def __init__(self, out: OutputDir, table: str, schema: pa.Schema, fragment_index: int,
                 rows_per_part: int = 100_000) -> None:
        self.out = out
        self.table = table
        self.schema = schema
        self.prefix = f"part-{fragment_index:05d}"
        self.rows_per_part = rows_per_part
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.parts: list[PartInfo] = []

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        batches = data.to_batches() if isinstance(data, pa.Table) else [data]
        for batch in batches:
            if batch.schema != self.schema:
                batch = pa.RecordBatch.from_arrays(
                    [batch.column(f.name).cast(f.type) for f in self.schema], schema=self.schema)
            self.pending.append(batch)
            self.pending_rows += batch.num_rows
        if self.pending_rows >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        table = pa.Table.from_batches(self.pending, schema=self.schema)
        relpath = f"{self.table}/{self.prefix}-{len(self.parts):04d}.parquet"
        self.parts.append(write_table(self.out.fs, self.out.root, relpath, table))
        self.pending, self.pending_rows = [], 0

    def close(self) -> list[PartInfo]:
        if self.pending_rows or not self.parts:
            self.flush()  # a fragment always lands at least one (maybe empty) part
        return self.parts


class OutputDir:
    """An output location on any fsspec URL, with the run's state in it."""

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.root = self.root.rstrip("/") or "/"

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def prepare(self, fingerprint: dict, overwrite: bool) -> dict | None:
        """Check the location can take this run; return the unfinished run's state to resume.

        A finished run is never replaced without ``overwrite``; an unfinished one is resumed
        only when it was started with the same configuration.
        """
        manifest = self.read_json(MANIFEST)
        state = self.read_json(posixpath.join(PROGRESS, RUN_STATE))
        if overwrite:
            self.clear()
            return None
        if manifest is not None:
            raise OutputError(
                f"{self.url} already holds a finished run (run {manifest.get('run_id')})",
                fix="pass --overwrite to replace it, or choose another OUTPUT",
            )
        if state is not None:
            if state.get("fingerprint") != fingerprint:
                raise OutputError(
                    f"{self.url} holds an unfinished run with a different configuration",
                    fix="rerun with the same options to resume it, or pass --overwrite",
                )
            return state
        return None

    def clear(self) -> None:
        for name in (*TABLES, PROGRESS):
            if self.fs.exists(self.path(name)):
                self.fs.rm(self.path(name), recursive=True)
        if self.fs.exists(self.path(MANIFEST)):
            self.fs.rm(self.path(MANIFEST))

    def start(self, state: dict) -> None:
        self.write_json(posixpath.join(PROGRESS, RUN_STATE), state)

    def done_fragments(self) -> dict[str, FragmentRecord]:
        records = {}
        for path in self.fs.glob(self.path(PROGRESS, "fragment-*.json")):
            record = FragmentRecord.from_dict(json.loads(self.fs.cat_file(path)))
            records[record.fragment] = record
        return records

    def discard_parts(self, fragment_index: int) -> None:
        """Remove a fragment's leftover parts from a crashed attempt."""
        for table in TABLES:
            for path in self.fs.glob(self.path(table, f"part-{fragment_index:05d}-*.parquet")):
                self.fs.rm(path)

    def record(self, record: FragmentRecord) -> None:
        self.write_json(posixpath.join(PROGRESS, f"fragment-{record.index:05d}.json"),
                        asdict(record))

    def finish(self, manifest: dict) -> None:
        """Write the manifest last, then drop the progress records it replaces."""
        self.write_json(MANIFEST, manifest)
        if self.fs.exists(self.path(PROGRESS)):
            self.fs.rm(self.path(PROGRESS), recursive=True)

    def read_json(self, relpath: str) -> dict | None:
        path = self.path(relpath)
        if not self.fs.exists(path):
            return None
        return json.loads(self.fs.cat_file(path))

    def write_json(self, relpath: str, data: dict) -> None:
        final = self.path(relpath)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        tmp = posixpath.join(posixpath.dirname(final), f".tmp-{uuid.uuid4().hex}.json")
        with self.fs.open(tmp, "w") as handle:
            handle.write(json.dumps(data, indent=2, default=str) + "\n")
        self.fs.mv(tmp, final)
