"""Reading documents from Parquet or JSON Lines on any fsspec URL.

An input is a file, a directory or a glob. Each file is a *fragment*: the unit of resumption
and of output naming. Rows come out in the reader schema (``seqlab.schema.read_schema``): a
string ``doc_id``, the passthrough columns, ``text``, and a ``status``/``error`` that already
marks rows that could not be read (a bad JSON line, text that is not a string or not UTF-8).
Such rows still travel through the pipeline, so every input row lands as one output row.
"""

from __future__ import annotations

import gzip
import json
import logging
import lzma
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from seqlab import schema
from seqlab.errors import ConfigError, InputError
from seqlab.run.sources import COMPRESSIONS, PARQUET, Fragment, FragmentError

log = logging.getLogger(__name__)

SAMPLE_ROWS = 1000

# What a file whose bytes are wrong raises (truncated or corrupt Parquet, a broken compressed
# stream). Such a fragment fails alone; an OSError from the storage itself (an endpoint that
# went away) is not one of them: it stops the run, and a rerun resumes it.
CONTENT_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, EOFError,
                  gzip.BadGzipFile, zlib.error, lzma.LZMAError, UnicodeDecodeError)


@dataclass
class Reader:
    """Reads fragments as batches in the reader schema."""

    fs: fsspec.AbstractFileSystem
    fragments: list[Fragment]
    text_column: str = "text"
    id_column: str | None = None
    batch_rows: int = 256
    # the passthrough columns when already known (an incremental run reads the schema from
    # every input file, and then only the new ones), else probed from the fragments
    known: pa.Schema | None = None

    def __post_init__(self) -> None:
        self.passthrough = self.known if self.known is not None else self._passthrough_schema()
        self.schema = schema.read_schema(self.passthrough)

    def _passthrough_schema(self) -> pa.Schema:
        """The passthrough columns, from the first fragment that can be read (a corrupt file
        fails as a fragment when it is read, not the whole run)."""
        columns, first, problem = None, self.fragments[0], None
        for fragment in self.fragments:
            try:
                columns, first = self._columns(fragment), fragment
                break
            except FragmentError as exc:
                problem = problem or exc
        if columns is None:
            raise InputError(problem.message, fix=problem.fix)
        if self.text_column not in columns.names:
            raise ConfigError(
                f"input {first.path} has no text column {self.text_column!r} "
                f"(columns: {', '.join(columns.names)})",
                fix="name the text column with --text-column",
            )
        if self.id_column and self.id_column not in columns.names:
            raise ConfigError(
                f"input {first.path} has no id column {self.id_column!r} "
                f"(columns: {', '.join(columns.names)})",
                fix="name the id column with --id-column, or leave it out for file:row ids",
            )
        keep = [f for f in columns if f.name not in (self.text_column, self.id_column)]
        schema.check_passthrough([f.name for f in keep])
        return pa.schema([f.with_type(schema.warehouse_type(f.type)) for f in keep])

    def _columns(self, fragment: Fragment) -> pa.Schema:
        try:
            if fragment.format == PARQUET:
                with self.fs.open(fragment.path, "rb") as handle:
                    return pq.read_schema(handle)
            rows = list(_json_lines(self.fs, fragment.path, SAMPLE_ROWS))
        except CONTENT_ERRORS as exc:
            raise FragmentError(f"cannot read {fragment.path}: {exc}",
                                fix="check that the file is valid Parquet or JSON Lines") from exc
        good = [r for r in rows if isinstance(r, dict)]
        names = list(dict.fromkeys(k for r in good for k in r))
        return pa.schema(
            [(n, _infer([r.get(n) for r in good])) for n in names]
        )

    def text_size(self, fragment: Fragment) -> int | None:
        """About how many characters of text a fragment holds, known without reading it: the
        text column's uncompressed size in a Parquet footer (less each value's 4-byte length),
        the size of an uncompressed JSON Lines file; None when it cannot be told."""
        try:
            if fragment.format != PARQUET:
                if fragment.path.lower().endswith(COMPRESSIONS):
                    return None
                return int(self.fs.size(fragment.path))
            with self.fs.open(fragment.path, "rb") as handle:
                meta = pq.ParquetFile(handle).metadata
            column = meta.schema.to_arrow_schema().get_field_index(self.text_column)
            if column < 0:
                return 0
            return sum(max(0, meta.row_group(g).column(column).total_uncompressed_size
                           - 4 * meta.row_group(g).num_rows)
                       for g in range(meta.num_row_groups))
        except (OSError, *CONTENT_ERRORS):
            return None

    def count_rows(self, fragment: Fragment) -> int | None:
        """Rows of a fragment: from the footer for Parquet, by reading for JSON Lines; None
        when the file cannot be read."""
        try:
            if fragment.format == PARQUET:
                with self.fs.open(fragment.path, "rb") as handle:
                    return pq.ParquetFile(handle).metadata.num_rows
            return sum(batch.num_rows for batch in self.read(fragment))
        except (FragmentError, *CONTENT_ERRORS):
            return None

    def read(self, fragment: Fragment, limit: int | None = None) -> Iterator[pa.RecordBatch]:
        """Batches of one fragment, at most ``limit`` rows in all."""
        rows = 0
        for batch in self._raw_batches(fragment):
            if limit is not None and rows + batch.num_rows > limit:
                batch = batch.slice(0, limit - rows)
            if batch.num_rows:
                yield batch
            rows += batch.num_rows
            if limit is not None and rows >= limit:
                return

    def _raw_batches(self, fragment: Fragment) -> Iterator[pa.RecordBatch]:
        if fragment.format == PARQUET:
            yield from self._parquet(fragment)
            return
        try:
            yield from self._jsonl(fragment)
        except CONTENT_ERRORS as exc:  # a broken compressed stream
            raise FragmentError(f"cannot read {fragment.path}: {exc}",
                                fix="replace the file with a valid one, then rerun the same "
                                "command to retry it") from exc

    def _parquet(self, fragment: Fragment) -> Iterator[pa.RecordBatch]:
        offset = 0
        try:
            with self.fs.open(fragment.path, "rb") as handle:
                file = pq.ParquetFile(handle)
                present = set(file.schema_arrow.names)
                wanted = [n for n in self._source_names() if n in present]
                for raw in file.iter_batches(batch_size=self.batch_rows, columns=wanted):
                    columns = {n: raw.column(n) for n in raw.schema.names}
                    text = columns.pop(self.text_column, None)
                    ids = columns.pop(self.id_column, None) if self.id_column else None
                    yield self._normalize(
                        raw.num_rows, columns, _column_values(text),
                        ids.cast(pa.string()).to_pylist() if ids is not None else None,
                        fragment, offset, {},
                    )
                    offset += raw.num_rows
        except (*CONTENT_ERRORS, OSError) as exc:
            if isinstance(exc, OSError) and not self._reachable(fragment):
                raise  # the storage failed, not the file: the run stops, a rerun resumes it
            raise FragmentError(f"cannot read {fragment.path} after {offset} rows: {exc}",
                                fix="replace the file with a valid Parquet file, then rerun "
                                "the same command to retry it") from exc

    def _reachable(self, fragment: Fragment) -> bool:
        """Whether the storage still answers for the file. pyarrow reports a corrupt page as
        a plain OSError, like a storage failure; a file the storage still describes is one
        whose bytes are wrong."""
        try:
            self.fs.invalidate_cache(fragment.path)
            self.fs.info(fragment.path)
            return True
        except Exception:  # noqa: BLE001 - any failure to answer means the storage is down
            return False

    def _jsonl(self, fragment: Fragment) -> Iterator[pa.RecordBatch]:
        offset = 0
        chunk: list[object] = []
        for record in _json_lines(self.fs, fragment.path):
            chunk.append(record)
            if len(chunk) == self.batch_rows:
                yield self._from_records(chunk, fragment, offset)
                offset += len(chunk)
                chunk = []
        if chunk:
            yield self._from_records(chunk, fragment, offset)

    def _from_records(self, records: list[object], fragment: Fragment,
                      offset: int) -> pa.RecordBatch:
        errors: dict[int, str] = {}
        statuses: dict[int, str] = {}
        rows: list[dict] = []
        for i, record in enumerate(records):
            if isinstance(record, dict):
                rows.append(record)
                continue
            if isinstance(record, _BadLine):
                errors[i], statuses[i] = record.error, record.status
            else:
                errors[i] = f"line is JSON {type(record).__name__}, expected an object"
            rows.append({})
        columns = {
            f.name: _to_array(f.name, [r.get(f.name) for r in rows], f.type, errors)
            for f in self.passthrough
        }
        ids = None
        if self.id_column:
            ids = [None if r.get(self.id_column) is None else str(r[self.id_column])
                   for r in rows]
        texts = [r.get(self.text_column) for r in rows]
        return self._normalize(len(rows), columns, texts, ids, fragment, offset, errors,
                               statuses)

    def _source_names(self) -> list[str]:
        return [n for n in [self.text_column, self.id_column, *self.passthrough.names] if n]

    def _normalize(self, n: int, columns: dict[str, pa.Array], texts: list | None,
                   ids: list[str | None] | None, fragment: Fragment, offset: int,
                   errors: dict[int, str],
                   known: dict[int, str] | None = None) -> pa.RecordBatch:
        """File columns -> reader schema: ids, decoded text, per-row read status."""
        arrays: dict[str, pa.Array] = {}
        for field in self.passthrough:
            column = columns.get(field.name)
            arrays[field.name] = _cast(field.name, column, field.type, errors) \
                if column is not None else pa.nulls(n, field.type)
        statuses = [schema.OK] * n
        for i, status in (known or {}).items():
            statuses[i] = status
        decoded: list[str | None] = [None] * n
        if texts is None:
            errors.update(dict.fromkeys(range(n), f"file has no text column {self.text_column!r}"))
        else:
            _decode_texts(texts, decoded, statuses, errors)
        for i in errors:
            if statuses[i] == schema.OK:
                statuses[i] = schema.BAD_RECORD
            decoded[i] = None
        default_ids = [f"{fragment.name}:{offset + i}" for i in range(n)]
        if ids is not None:
            default_ids = [g if g is not None else d for g, d in zip(ids, default_ids)]
        arrays = {schema.DOC_ID: pa.array(default_ids, pa.string()), **arrays}
        arrays[schema.TEXT] = pa.array(decoded, pa.string())
        arrays[schema.STATUS] = pa.array(statuses, pa.string())
        arrays[schema.ERROR] = pa.array([errors.get(i) for i in range(n)], pa.string())
        return pa.RecordBatch.from_arrays([arrays[f.name] for f in self.schema],
                                          schema=self.schema)


class _BadLine:
    def __init__(self, error: str, status: str = schema.BAD_RECORD) -> None:
        self.error = error
        self.status = status


def _json_lines(fs: fsspec.AbstractFileSystem, path: str,
                limit: int | None = None) -> Iterator[object]:
    """Parsed JSON lines; a line that is not valid UTF-8 JSON becomes a ``_BadLine``."""
    with fs.open(path, "rb", compression="infer") as handle:
        for number, line in enumerate(handle, start=1):
            if limit is not None and number > limit:
                return
            if not line.strip():
                continue
            try:
                yield json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield _BadLine(f"line {number} is not valid UTF-8: {exc}", schema.BAD_ENCODING)
            except json.JSONDecodeError as exc:
                yield _BadLine(f"line {number} is not valid JSON: {exc}")


def _column_values(column: pa.Array | None) -> list | None:
    """Python values of a text column; string columns come as bytes, decoded (and checked) later."""
    if column is None:
        return None
    type_ = column.type
    if pa.types.is_dictionary(type_):
        column, type_ = column.dictionary_decode(), type_.value_type
    if pa.types.is_string(type_) or pa.types.is_large_string(type_) \
            or pa.types.is_binary(type_) or pa.types.is_large_binary(type_):
        return column.cast(pa.large_binary()).to_pylist()
    return column.to_pylist()


def _decode_texts(values: list, texts: list, statuses: list, errors: dict) -> None:
    for i, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, bytes):
            try:
                texts[i] = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                statuses[i], errors[i] = schema.BAD_ENCODING, f"text is not UTF-8: {exc}"
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
                texts[i] = value
            except UnicodeEncodeError as exc:
                statuses[i], errors[i] = schema.BAD_ENCODING, f"text is not valid Unicode: {exc}"
        else:
            statuses[i] = schema.BAD_TYPE
            errors[i] = f"text is {type(value).__name__} {str(value)[:40]!r}, expected a string"


def _infer(values: list) -> pa.DataType:
    try:
        return pa.array(values).type if any(v is not None for v in values) else pa.string()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.string()  # mixed types: carried as text (see _to_array)


def _cast(name: str, column: pa.Array, target: pa.DataType, errors: dict[int, str]) -> pa.Array:
    """A Parquet passthrough column in the run's type (the first file's); a value that does not
    fit (``'circa 1900'`` where the first file had integers) fails its row as ``bad_record``."""
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    fixed = []
    for i, value in enumerate(column):
        try:
            fixed.append(pa.array([value.as_py()], column.type).cast(target)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            errors.setdefault(i, f"column {name!r}: {value.as_py()!r} does not fit {target}: "
                              f"{exc}")
            fixed.append(None)
    return pa.array(fixed, target)


def _to_array(name: str, values: list, target: pa.DataType,
              errors: dict[int, str]) -> pa.Array:
    """Values of one JSON passthrough column as Arrow; a value that does not fit fails its row."""
    if pa.types.is_string(target):
        values = [v if isinstance(v, str) or v is None else json.dumps(v) for v in values]
    try:
        return pa.array(values, target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        fixed = []
        for i, value in enumerate(values):
            try:
                pa.array([value], target)
                fixed.append(value)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                errors.setdefault(i, f"column {name!r}: {exc}")
                fixed.append(None)
        return pa.array(fixed, target)
