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
one before are removed. ``current.json`` also names the last run whose end the index holds
(``last_run``), so a run that ended without writing the index (an older seqlab's) is noticed.

Each incremental run's finish writes the next version (``seqlab.run.finish``); a table written
before it had an index gets one folded from its run manifests (``from_manifests``), once.
``seqlab verify`` checks the index against that fold (``compare``).
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa

from seqlab.errors import OutputError
from seqlab.pause import pause_at
from seqlab.store.manifest import Manifest
from seqlab.store.outdir import INDEX, OutputDir
from seqlab.store.parts import PartInfo, read_table, write_table

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
    """The table's live input files and live files; ``version`` 0 is an empty table (or one
    folded from run manifests, not yet written). ``last_run``: the last run whose end it holds."""

    version: int = 0
    inputs: dict[str, Entry] = field(default_factory=dict)
    files: dict[str, tuple[str, PartInfo]] = field(default_factory=dict)  # path -> (table, info)
    last_run: str | None = None

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

    def add_run(self, manifest: Manifest) -> None:
        """Put in the input files a run annotated, with the files its manifest lists for
        them, and its files of no input; what it replaced or pruned must be dropped first."""
        increment = manifest.incremental
        config = increment.config_key if increment is not None else ""
        owned = set()
        for entry in manifest.inputs:
            parts = {table: [PartInfo(p.path, p.rows, p.bytes, p.sha256) for p in listed]
                     for table, listed in entry.parts.items()}
            self.add(Entry(entry.fragment, tuple(entry.identity or ()), manifest.run_id, config),
                     parts)
            owned.update(entry.files())
        for table, listed in manifest.tables.items():
            for p in listed:
                if p.path not in owned:
                    self.add_file(table, PartInfo(p.path, p.rows, p.bytes, p.sha256))
        self.last_run = manifest.run_id

    def rows(self, name: str) -> dict[str, int]:
        """Input ``name``'s rows per table, wherever they lie."""
        counts: Counter[str] = Counter()
        for span in self.inputs[name].spans:
            counts[self.files[span.path][0] if span.path in self.files else "?"] += span.rows
        return dict(counts)

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
    index = TableIndex.from_arrow(read_table(out.fs, path), current["version"])
    index.last_run = current.get("last_run", current.get("run_id"))
    return index


def read_version(out: OutputDir, version: int) -> TableIndex:
    """Version ``version`` of the index (the current one or the one before), as written."""
    index = TableIndex.from_arrow(_version_table(out, version), version)
    current = out.read_json(CURRENT) or {}
    if current.get("version") == version:
        index.last_run = current.get("last_run", current.get("run_id"))
    return index


def version_files(out: OutputDir, version: int) -> set[str]:
    """The live files of version ``version`` (relative paths): its ``path`` column alone."""
    paths = _version_table(out, version, ["path"]).column("path")
    return {path for path in paths.to_pylist() if path is not None}


def _version_table(out: OutputDir, version: int, columns: list[str] | None = None) -> pa.Table:
    relpath = version_path(version)
    if not out.fs.exists(out.path(relpath)):
        raise OutputError(f"{relpath}, the version of the index this run was planned on, is "
                          "missing", fix="remove _progress/ to plan the run again (its files "
                          "then move to _quarantine/ and its inputs are annotated again)")
    return read_table(out.fs, out.path(relpath), columns)


def current_version(out: OutputDir) -> dict:
    """What ``current.json`` says (version, last_run...); empty where there is no index."""
    return out.read_json(CURRENT) or {}


def write_index(out: OutputDir, index: TableIndex, run_id: str | None) -> int:
    """Write ``index`` as the version after its own, switch ``current.json`` to it, remove
    versions older than the one before; return the new version. Writing the same index again
    (a finish retried after a crash) rewrites the same version."""
    version = index.version + 1
    write_table(out.fs, out.root, version_path(version), index.to_arrow())
    pause_at("index-written")  # a test kills the process here
    out.write_json(CURRENT, {"version": version, "path": version_path(version),
                             "run_id": run_id, "last_run": index.last_run,
                             "inputs": len(index.inputs), "files": len(index.files),
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
        index.add_run(manifest)
    return index


def compare(index: TableIndex, folded: TableIndex, written: set[str]) -> list[tuple[str, str]]:
    """Where ``index`` differs from ``folded``, the fold of the run manifests: (input or
    file, what differs). ``written``: every file the manifests list. Inputs are compared by
    their identity, run, configuration and rows per table, not by the paths of their files, as
    compaction moves rows into other files; a file is wrong where a manifest wrote it and the
    fold has it no longer live (superseded, pruned), or where the two differ on a file of no
    input."""
    found = []
    for name in sorted(set(index.inputs) | set(folded.inputs)):
        mine, theirs = index.inputs.get(name), folded.inputs.get(name)
        if mine is None or theirs is None:
            held, by = ("the run manifests", "the index") if mine is None else \
                ("the index", "the run manifests")
            found.append((name, f"input held by {held}, not by {by}"))
            continue
        for what in ("identity", "run_id", "config_key"):
            if getattr(mine, what) != getattr(theirs, what):
                found.append((name, f"the index has {what} {getattr(mine, what)!r}, the run "
                              f"manifests {getattr(theirs, what)!r}"))
        if index.rows(name) != folded.rows(name):
            found.append((name, f"the index has rows {index.rows(name)}, the run manifests "
                          f"{folded.rows(name)}"))
    for path in sorted(set(index.files) & written - set(folded.files)):
        found.append((path, "live in the index, but superseded or pruned by the run manifests"))
    reported = {where for where, _ in found}
    for path in sorted({p for p, _ in _unowned(index) ^ _unowned(folded)} - reported):
        found.append((path, "a file of no input in only one of the index and the run manifests"))
    return found


def _unowned(index: TableIndex) -> set[tuple[str, str]]:
    """The files of no input (a table's empty, schema-bearing parts), with their table."""
    owned = {span.path for entry in index.inputs.values() for span in entry.spans}
    return {(path, table) for path, (table, _) in index.files.items() if path not in owned}
