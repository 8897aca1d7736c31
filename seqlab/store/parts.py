"""Parts, written atomically and hashed as they are written, and the records that list them."""

from __future__ import annotations

import hashlib
import io
import posixpath
import uuid
from dataclasses import dataclass, field

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq


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
    partials: list[str] = field(default_factory=list)  # aggregate partial files, relative

    @classmethod
    def from_dict(cls, data: dict) -> FragmentRecord:
        parts = {k: [PartInfo(**p) for p in v] for k, v in data.get("parts", {}).items()}
        return cls(data["fragment"], data["index"], data["rows_in"], parts,
                   data.get("counts", {}), data.get("partials", []))

    def files(self) -> set[str]:
        return {p.path for parts in self.parts.values() for p in parts} | set(self.partials)


@dataclass
class FailedFragment:
    """An input fragment that could not be read (e.g. a truncated Parquet file).

    None of its rows land; a rerun of the same command retries it. ``rows`` is the row count
    its footer announces, when it could be read."""

    fragment: str
    index: int
    error: str
    rows: int | None = None


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


class PartFile:
    """One Parquet part written batch by batch (one row group each) to a temporary name and
    renamed into place by ``close``: memory holds one batch, not the whole part."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, relpath: str,
                 schema: pa.Schema) -> None:
        self.fs, self.root, self.relpath, self.schema = fs, root, relpath, schema
        self.final = posixpath.join(root, relpath)
        self.tmp = posixpath.join(posixpath.dirname(self.final),
                                  f".tmp-{uuid.uuid4().hex}.parquet")
        fs.makedirs(posixpath.dirname(self.final), exist_ok=True)
        self.sink = _HashingFile(fs.open(self.tmp, "wb"))
        self.writer = pq.ParquetWriter(self.sink, schema, compression="zstd")
        self.rows = 0

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
        if not table.schema.equals(self.schema):
            table = pa.Table.from_arrays(
                [table.column(f.name).cast(f.type) for f in self.schema], schema=self.schema)
        self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> PartInfo:
        self.writer.close()
        self.sink.close()
        self.fs.mv(self.tmp, self.final)
        return PartInfo(self.relpath, self.rows, self.sink.size, self.sink.digest.hexdigest())


def write_table(fs: fsspec.AbstractFileSystem, root: str, relpath: str,
                table: pa.Table) -> PartInfo:
    """Write one Parquet file atomically: to a temporary name, then renamed into place."""
    part = PartFile(fs, root, relpath, table.schema)
    part.write(table)
    return part.close()


def read_table(fs: fsspec.AbstractFileSystem, path: str,
               columns: list[str] | None = None) -> pa.Table:
    with fs.open(path, "rb") as handle:
        return pq.read_table(handle, columns=columns)
