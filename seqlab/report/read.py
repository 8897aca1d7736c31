"""Reading a run's Parquet files for the report: one file at a time through fsspec, only the
columns (and nested fields) asked for, and single rows found by their ids without reading
the row groups that do not hold them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seqlab import schema
from seqlab.store.outdir import OutputDir


@contextmanager
def open_parquet(out: OutputDir, path: str) -> Iterator[pq.ParquetFile]:
    with out.fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        try:
            yield parquet
        finally:
            parquet.close()


def leaf(parquet: pq.ParquetFile, column: str, name: str) -> str | None:
    """The Parquet path of a nested column's field (``entities.list.element.label``,
    ``predicate.text``), so that only that field is read; None when it is not there."""
    return next((c.path for c in (parquet.schema.column(i) for i in range(len(parquet.schema)))
                 if c.path.startswith(f"{column}.") and c.path.endswith(f".{name}")), None)


def value_counts(column: pa.Array) -> tuple[list, list]:
    counts = pc.value_counts(column)
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()


def read_rows(parquet: pq.ParquetFile, ids: set[str], columns: list[str], tokens: str | None
              ) -> dict[str, dict]:
    """The rows with these ids: ``columns`` that the file has, with the text (or, in a run
    with --drop-text, the ``tokens`` column to rebuild it from), reading only the row groups
    that hold them."""
    names = parquet.schema_arrow.names
    wanted = [schema.DOC_ID] + [c for c in columns if c in names]
    if schema.TEXT in names:
        wanted.append(schema.TEXT)
    elif tokens and tokens in names and tokens not in wanted:
        wanted.append(tokens)
    rows: dict[str, dict] = {}
    for group in range(parquet.num_row_groups):
        found = pc.is_in(parquet.read_row_group(group, columns=[schema.DOC_ID])
                         .column(schema.DOC_ID), pa.array(sorted(ids), pa.string()))
        if pc.any(found).as_py():
            table = parquet.read_row_group(group, columns=wanted)
            rows.update((row[schema.DOC_ID], row) for row in table.filter(found).to_pylist())
        if len(rows) == len(ids):
            break
    return rows


def find_row(out: OutputDir, files: list[str], doc_id: str, columns: list[str],
             tokens: str | None) -> dict | None:
    """The documents row ``doc_id``, looked for file after file."""
    for path in files:
        with open_parquet(out, path) as parquet:
            rows = read_rows(parquet, {doc_id}, columns, tokens)
        if doc_id in rows:
            return rows[doc_id]
    return None
