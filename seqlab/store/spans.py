"""Rows of Parquet files copied span by span into a new file, in bounded memory.

An incremental table's index records where each input file's rows lie in a live file
(``seqlab.store.index.Span``: ``first_row`` and ``rows``). Compacting a table concatenates
such spans of many small files into one large file; taking an input out of a compacted file
copies the other inputs' spans into a new one. Both read one row group at a time and write
row groups of a bounded size, so memory holds at most one source row group and one output
row group, however large the files.
"""

from __future__ import annotations

from collections.abc import Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from seqlab.errors import OutputError
from seqlab.store.manifest import file_name
from seqlab.store.outdir import OutputDir
from seqlab.store.parts import PartFile, PartInfo

ROW_GROUP_BYTES = 64 * 2**20  # the largest output row group held in memory (Arrow bytes)
MIN_ROW_GROUP_BYTES = 2**10


def row_group_bytes(target_bytes: int) -> int:
    """The in-memory size of an output row group for files of ``target_bytes``: an eighth of
    the target (a file holds several row groups, and overshoots its target by at most one),
    within 1 KiB and 64 MiB.

    >>> row_group_bytes(512 * 2**20) == ROW_GROUP_BYTES, row_group_bytes(80_000)
    (True, 10000)
    """
    return max(MIN_ROW_GROUP_BYTES, min(ROW_GROUP_BYTES, target_bytes // 8))


def schema_of(fs: fsspec.AbstractFileSystem, path: str) -> pa.Schema:
    """The Arrow schema of a Parquet file, from its footer."""
    with fs.open(path, "rb") as handle:
        return pq.ParquetFile(handle).schema_arrow


def read_rows(fs: fsspec.AbstractFileSystem, path: str, first_row: int,
              rows: int) -> Iterator[pa.Table]:
    """Rows ``[first_row, first_row + rows)`` of a Parquet file, one row group at a time."""
    end = first_row + rows
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        if parquet.metadata.num_rows < end:
            raise OutputError(
                f"{file_name(fs, path)} holds {parquet.metadata.num_rows} rows, but the "
                f"table's index places rows {first_row}-{end - 1} in it",
                fix="run seqlab verify on the table: the file was changed after it landed")
        start = 0
        for group in range(parquet.num_row_groups):
            size = parquet.metadata.row_group(group).num_rows
            low, high = max(first_row, start), min(end, start + size)
            if low < high:
                yield parquet.read_row_group(group).slice(low - start, high - low)
            start += size
            if start >= end:
                return


class SpanWriter:
    """One new Parquet file written from spans of others (atomically, through ``PartFile``),
    with where each input's rows land in it."""

    def __init__(self, out: OutputDir, relpath: str, schema: pa.Schema,
                 group_bytes: int) -> None:
        self.fs = out.fs
        self.part = PartFile(out.fs, out.root, relpath, schema)
        self.schema = schema
        self.group_bytes = group_bytes
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        self.rows = 0
        self.spans: list[tuple[str, int, int]] = []  # (input, first_row, rows), in order

    @property
    def size(self) -> int:
        """Bytes written so far (row groups flushed; the footer comes at ``close``)."""
        return self.part.sink.size

    def copy(self, name: str, sources: list[tuple[str, int, int]]) -> None:
        """Append one input's rows: ``sources`` are (full path, first row, rows) in order, and
        land as one contiguous span of the new file."""
        first = self.rows
        try:
            for path, first_row, rows in sources:
                for table in read_rows(self.fs, path, first_row, rows):
                    self._add(table)
        except BaseException:
            self.part.abandon()
            raise
        self.spans.append((name, first, self.rows - first))

    def _add(self, table: pa.Table) -> None:
        if not table.schema.equals(self.schema):
            table = pa.Table.from_arrays(
                [table.column(f.name).cast(f.type) for f in self.schema], schema=self.schema)
        self.buffer.append(table)
        self.buffered += table.nbytes
        self.rows += table.num_rows
        if self.buffered >= self.group_bytes:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one row group."""
        if self.buffer:
            self.part.write(pa.concat_tables(self.buffer).combine_chunks())
            self.buffer, self.buffered = [], 0

    def close(self) -> PartInfo:
        self.flush()
        return self.part.close()

    def abandon(self) -> None:
        self.part.abandon()
