"""Parts, written atomically and hashed as they are written, and the records that list them."""

from __future__ import annotations

import hashlib
import io
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
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


@contextmanager
def naming(path: str) -> Iterator[None]:
    """An OSError raised inside names ``path`` when it names no file: a write that fails on a
    full disk says only "No space left on device"."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            exc.filename = path
        raise


class _HashingFile(io.RawIOBase):
    """A write-only file that hashes and counts what passes through it; once ``discarding``,
    it takes writes without passing them on (an abandoned part's writer may still close)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.digest = hashlib.sha256()
        self.size = 0
        self.discarding = False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data)
        if self.discarding:
            return len(view)
        self.digest.update(view)
        self.inner.write(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        try:
            if not self.closed:
                self.inner.close()
        finally:
            super().close()


class PartFile:
    """One Parquet part written batch by batch (one row group each) to a temporary name and
    renamed into place by ``close``: memory holds one batch, not the whole part.

    A part whose write fails, or that is dropped unclosed (the run stopped on another error),
    is abandoned: its temporary file removed, its writer closed without writing, so that
    nothing writes to the storage (a full disk, say) once the error is on its way up, and
    garbage collection prints no traceback of a writer that could not close. The error names
    the part."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, relpath: str,
                 schema: pa.Schema) -> None:
        self.fs, self.root, self.relpath, self.schema = fs, root, relpath, schema
        self.final = posixpath.join(root, relpath)
        self.tmp = posixpath.join(posixpath.dirname(self.final),
                                  f".tmp-{uuid.uuid4().hex}.parquet")
        self.ended = False
        with naming(self.final):
            fs.makedirs(posixpath.dirname(self.final), exist_ok=True)
            self.sink = _HashingFile(fs.open(self.tmp, "wb"))
        with self._abandoned_on_error():
            self.writer = pq.ParquetWriter(self.sink, schema, compression="zstd")
        self.rows = 0

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
        if not table.schema.equals(self.schema):
            table = pa.Table.from_arrays(
                [table.column(f.name).cast(f.type) for f in self.schema], schema=self.schema)
        with self._abandoned_on_error():
            self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> PartInfo:
        with self._abandoned_on_error():
            self.writer.close()
            self.sink.close()
            self.fs.mv(self.tmp, self.final)
        self.ended = True
        return PartInfo(self.relpath, self.rows, self.sink.size, self.sink.digest.hexdigest())

    def abandon(self) -> None:
        """Drop the part: nothing more reaches the storage and its temporary file goes.
        Never raises (it runs while another error is on its way up); a file it could not
        remove is removed by the next attempt's cleanup."""
        if getattr(self, "ended", True):
            return
        self.ended = True
        sink = getattr(self, "sink", None)
        if sink is None:
            return
        sink.discarding = True
        if getattr(self, "writer", None) is not None:
            with suppress(Exception):
                self.writer.close()
        with suppress(Exception):
            sink.close()
        with suppress(Exception):
            self.fs.rm(self.tmp)

    def __del__(self) -> None:
        try:
            self.abandon()
        except Exception:  # noqa: BLE001, S110 - at interpreter exit even suppress may be gone
            pass

    @contextmanager
    def _abandoned_on_error(self) -> Iterator[None]:
        try:
            with naming(self.final):
                yield
        except BaseException:
            self.abandon()
            raise


def write_table(fs: fsspec.AbstractFileSystem, root: str, relpath: str,
                table: pa.Table) -> PartInfo:
    """Write one Parquet file atomically: to a temporary name, then renamed into place."""
    part = PartFile(fs, root, relpath, table.schema)
    part.write(table)
    return part.close()


def read_table(fs: fsspec.AbstractFileSystem, path: str,
               columns: list[str] | None = None) -> pa.Table:
    """A whole Parquet file, read through ``ParquetFile``: ``pq.read_table`` on a Python file
    object reads it on pyarrow's dataset threads, which can still be alive when the interpreter
    exits and then abort it ("terminate called without an active exception",
    apache/arrow#39162)."""
    with fs.open(path, "rb") as handle:
        return pq.ParquetFile(handle).read(columns=columns)
