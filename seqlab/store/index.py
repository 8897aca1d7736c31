"""An incremental table's index: what the table holds now, in one compact Parquet file.

    OUT/_index/v-0000000042.parquet   the table as version 42 left it
    OUT/_index/current.json           names the current version: written after its file

The index is the table's state, the way an Iceberg manifest list is: which input files the
table holds (each with the identity and configuration it was annotated with, and by which run),
and in which live files their rows are. Planning a run reads it instead of every earlier run's
manifest, so the time to plan follows the live table, not its history.

One row per (input file, live file) pair, ``first_row`` and ``rows`` giving where the input's
rows lie in the file (a file written by a run holds one input's rows from row 0; a compacted
file holds several inputs' rows one after the other). An input file without rows has one row
with no file; a file of no input (a table's empty, schema-bearing part) has no input.

A new version is written whole, then ``current.json`` is switched to it; the version before
stays, so a crash at any moment leaves a complete, readable index. Versions older than the
one before are removed.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa

from seqlab.errors import OutputError
from seqlab.store.manifest import Manifest
from seqlab.store.outdir import OutputDir
from seqlab.store.parts import PartInfo, read_table, write_table

INDEX = "_index"
CURRENT = posixpath.join(INDEX, "current.json")
KEPT_VERSIONS = 2  # the current version and the one before

SCHEMA = pa.schema([
    pa.field("input", pa.string()),  # the input file's name; null for a file of no input
    pa.field("identity", pa.string()),  # JSON [size, version] of the input as annotated
    pa.field("run_id", pa.string()),  # the run that annotated the input
    pa.field("config_key", pa.string()),
    pa.field("table", pa.string()),  # null for an input file without rows
    pa.field("path", pa.string()),
    pa.field("first_row", pa.int64()),  # where the input's rows start in the file
    pa.field("rows", pa.int64()),  # the input's rows in the file
    pa.field("file_rows", pa.int64()),
    pa.field("bytes", pa.int64()),
    pa.field("sha256", pa.string()),
])


@dataclass(frozen=True)
class Span:
    """Rows ``[first_row, first_row + rows)`` of a live file belong to one input file."""

    path: str
    first_row: int
    rows: int


@dataclass
class Entry:
    """One input file as the table holds it now."""

    name: str
    identity: tuple
    run_id: str
    config_key: str
    spans: list[Span] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        return [span.path for span in self.spans]


@dataclass
class TableIndex:
    """The table's live input files and live files; ``version`` 0 is an empty table."""

    version: int = 0
    inputs: dict[str, Entry] = field(default_factory=dict)
    files: dict[str, tuple[str, PartInfo]] = field(default_factory=dict)  # path -> (table, info)

    def table_of(self, path: str) -> str:
        return self.files[path][0]

    def holds(self, table: str) -> bool:
        """Whether the table has live files of ``table``."""
        return any(kind == table for kind, _ in self.files.values())

    def add(self, entry: Entry, parts: dict[str, list[PartInfo]]) -> None:
        """Put ``entry`` in the table with the files of its rows (each holding only its rows),
        in place of what the table held for that input."""
        self.drop(entry.name)
        entry.spans = []
        for table, listed in parts.items():
            for part in listed:
                self.files[part.path] = (table, part)
                entry.spans.append(Span(part.path, 0, part.rows))
        self.inputs[entry.name] = entry

    def add_file(self, table: str, part: PartInfo) -> None:
        """A live file of no input (a table's empty, schema-bearing part)."""
        self.files[part.path] = (table, part)

    def drop(self, name: str) -> list[str]:
        """Take input ``name`` out of the table; return its files no other input shares."""
        entry = self.inputs.pop(name, None)
        if entry is None:
            return []
        shared = {span.path for other in self.inputs.values() for span in other.spans} \
            if any(self._shared(entry)) else set()
        alone = [path for path in entry.files if path not in shared]
        for path in alone:
            self.files.pop(path, None)
        return alone

    def _shared(self, entry: Entry):
        """Whether some file of ``entry`` holds rows of other inputs (a compacted file)."""
        return (span.first_row > 0 or span.rows < self.files[span.path][1].rows
                for span in entry.spans if span.path in self.files)

    def live_files(self) -> list[str]:
        return sorted(self.files)

    def to_arrow(self) -> pa.Table:
        rows: list[dict] = []
        listed: set[str] = set()
        for entry in self.inputs.values():
            base = {"input": entry.name, "identity": json.dumps(list(entry.identity)),
                    "run_id": entry.run_id, "config_key": entry.config_key}
            if not entry.spans:
                rows.append(base)
            for span in entry.spans:
                table, info = self.files[span.path]
                rows.append({**base, "table": table, "path": span.path,
                             "first_row": span.first_row, "rows": span.rows,
                             "file_rows": info.rows, "bytes": info.bytes, "sha256": info.sha256})
                listed.add(span.path)
        for path, (table, info) in self.files.items():
            if path not in listed:
                rows.append({"table": table, "path": path, "first_row": 0, "rows": info.rows,
                             "file_rows": info.rows, "bytes": info.bytes,
                             "sha256": info.sha256})
        return pa.Table.from_pylist(rows, schema=SCHEMA)

    @classmethod
    def from_arrow(cls, table: pa.Table, version: int) -> TableIndex:
        index = cls(version)
        columns = {name: table.column(name).to_pylist() for name in SCHEMA.names}
        for i in range(table.num_rows):
            path, name = columns["path"][i], columns["input"][i]
            if path is not None:
                index.files[path] = (columns["table"][i], PartInfo(
                    path, columns["file_rows"][i], columns["bytes"][i], columns["sha256"][i]))
            if name is None:
                continue
            entry = index.inputs.get(name)
            if entry is None:
                entry = index.inputs[name] = Entry(
                    name, tuple(json.loads(columns["identity"][i])), columns["run_id"][i],
                    columns["config_key"][i])
            if path is not None:
                entry.spans.append(Span(path, columns["first_row"][i], columns["rows"][i]))
        return index


def version_path(version: int) -> str:
    return posixpath.join(INDEX, f"v-{version:010d}.parquet")


def read_index(out: OutputDir) -> TableIndex | None:
    """The table's current index; None where the table has none yet."""
    current = out.read_json(CURRENT)
    if current is None:
        return None
    path = out.path(current["path"])
    if not out.fs.exists(path):
        raise OutputError(f"{current['path']}, the index {CURRENT} names, is missing",
                          fix=f"remove {CURRENT} to rebuild the index from the run manifests "
                          "on the next run")
    return TableIndex.from_arrow(read_table(out.fs, path), current["version"])


def write_index(out: OutputDir, index: TableIndex, run_id: str | None) -> int:
    """Write ``index`` as the version after its own, switch ``current.json`` to it, remove
    versions older than the one before; return the new version. Writing the same index again
    (a finish retried after a crash) rewrites the same version."""
    version = index.version + 1
    write_table(out.fs, out.root, version_path(version), index.to_arrow())
    out.write_json(CURRENT, {"version": version, "path": version_path(version),
                             "run_id": run_id, "inputs": len(index.inputs),
                             "files": len(index.files),
                             "written_at": datetime.now(timezone.utc).isoformat()})
    for old in out.fs.glob(out.path(INDEX, "v-*.parquet")):
        number = int(posixpath.basename(old)[2:12])
        if number <= version - KEPT_VERSIONS:
            out.fs.rm(old)
    return version


def from_manifests(manifests: list[Manifest]) -> TableIndex:
    """The index of a table written before it had one: its ended runs' manifests folded in the
    order they ended (a later annotation of an input replaces an earlier one, a prune removes
    it, a superseded file leaves). Read once, when such a table is first used."""
    index = TableIndex()
    for manifest in manifests:
        increment = manifest.incremental
        if increment is None:
            continue
        for name in increment.pruned:
            index.drop(name)
        for path in increment.superseded:
            index.files.pop(path, None)
        owned = set()
        for entry in manifest.inputs:
            parts = {table: [PartInfo(p.path, p.rows, p.bytes, p.sha256) for p in listed]
                     for table, listed in entry.parts.items()}
            index.add(Entry(entry.fragment, tuple(entry.identity or ()), manifest.run_id,
                            increment.config_key), parts)
            owned.update(entry.files())
        for table, listed in manifest.tables.items():
            for p in listed:
                if p.path not in owned:
                    index.add_file(table, PartInfo(p.path, p.rows, p.bytes, p.sha256))
    return index
