"""The output location: atomic Parquet parts, per-fragment records, cleanup and the manifest.

Layout (see the README):

    OUT/documents/part-FFFFF-RRRRRRRRRR.parquet   rows of input fragment FFFFF from row R on
    OUT/mentions/part-FFFFF-RRRRRRRRRR.parquet    the entities of the same rows
    OUT/frames/part-FFFFF-RRRRRRRRRR.parquet      their SRL frames (runs with an SRL model)
    OUT/aggregates/part-BBBBB.parquet             one row per (label, normalised text), K files
                                                  partitioned by key hash
    OUT/_progress/                                the run's state while it is unfinished
    OUT/_manifest.json                            written last: its presence means the run ended

An incremental OUTPUT (``--incremental``, ``seqlab.store.incremental``) is a table root that
accumulates runs: parts land in ``TABLE/run_date=YYYY-MM-DD/part-RUNID-FFFFF-RRRRRRRRRR.parquet``,
each run's manifest in ``_runs/RUNID/manifest.json`` with its files listed beside it in
``files.parquet`` (``seqlab.store.runfiles``), and what the table holds now in ``_index/``
(``seqlab.store.index``).

Parts are written under a temporary name and renamed when complete, so a reader never sees a
half-written file. A fragment counts as finished only once its record (every part with rows,
bytes and sha256) is in ``_progress/``; ``OutputDir.cleanup`` removes everything in the table
folders that no record names, whichever engine (or crashed attempt) left it there, so the
table folders of a finished run hold exactly the manifest's files.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import uuid
from contextlib import suppress
from dataclasses import asdict
from typing import Any

import fsspec

from seqlab.errors import OutputError
from seqlab.store import runfiles
from seqlab.store.layout import (
    MANIFEST,
    PARTIALS,
    PROGRESS,
    RUN_STATE,
    RUNS,
    SUPERSEDED,
    TABLES,
    Layout,
)
from seqlab.store.manifest import (
    MANIFEST_FIX,
    Manifest,
    RunState,
    file_name,
    read_manifest,
    read_object,
    read_run_state,
)
from seqlab.store.parts import FailedFragment, FragmentRecord, naming, write_table

log = logging.getLogger(__name__)

DELTA_LOG = "_delta_log"  # a Delta table's log, in its table folder (seqlab.store.delta)
LATEST = posixpath.join(RUNS, "latest.json")  # an incremental table's last ended run
INDEX = "_index"  # an incremental table's index: what it holds now (seqlab.store.index)
QUARANTINE = "_quarantine"  # files no record names, moved aside rather than deleted
_RUN_PART = re.compile(r"^part-(\d{8}T\d{6}Z-[0-9a-f]{8})-")  # an incremental run's part
RECORD_FIX = ("remove the file and rerun the same command: that input file is then annotated "
              "again")


class OutputDir:
    """An output location on any fsspec URL, with the run's state in it."""

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.root = self.root.rstrip("/") or "/"
        self.layout = Layout()
        self.quarantined: list[str] = []  # what this run moved to _quarantine/

    @property
    def location(self) -> str:
        """The output as one canonical string (``OUT/``, ``./OUT`` and its absolute path are
        one location), for comparing runs."""
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{protocol}://{self.root}"

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def relative(self, path: str) -> str:
        return posixpath.relpath(path, self.root)

    def url_of(self, relpath: str) -> str:
        """The full URL of a file of the output (``file:///...``, ``s3://...``)."""
        return self.fs.unstrip_protocol(self.path(relpath))

    # ------------------------------------------------------------------ the run's state

    def check_folder(self) -> None:
        """Refuse a location that is an existing file: a run's tables, state and manifest
        are files in a directory."""
        if self.fs.isfile(self.root):
            raise OutputError(f"{self.url} is a file, not a directory",
                              fix="pass a directory as OUTPUT: a new one, or an earlier run's")

    def manifest(self, files: bool = True) -> Manifest | None:
        """This run's manifest; for an incremental table not given a run, its latest one
        (``files=False``: its summary alone, ``read_manifest``)."""
        if self.layout.run_id is None and self.incremental():
            latest = self.read_json(LATEST)
            if latest is None:  # lost: the last run to end is the one whose manifest says so
                return self._last_ended()
            if not isinstance(latest.get("manifest"), str):
                raise OutputError(f"{file_name(self.fs, self.path(LATEST))} has no field "
                                  "'manifest' naming the latest run's manifest", fix=MANIFEST_FIX)
            return self.read_manifest(latest["manifest"], files)
        return self.read_manifest(self.layout.manifest(), files)

    def _last_ended(self) -> Manifest | None:
        ended = self.run_manifests()
        return ended[-1][1] if ended else None

    def run_manifests(self) -> list[tuple[str, Manifest]]:
        """The manifests under ``_runs/`` with their paths, in the order their runs ended: the
        table's whole history (``seqlab runs``, ``seqlab verify``, and the index of a table
        that has none yet), never read to plan a run."""
        paths = self.fs.glob(self.path(RUNS, "*", "manifest.json"))
        found = [(path, read_manifest(self.fs, path)) for path in paths]
        return sorted(found, key=lambda item: (item[1].finished_at, item[1].run_id))

    def ended(self, run_id: str) -> bool:
        """Whether run ``run_id`` of the table ended (its manifest is there)."""
        return self.fs.exists(self.path(RUNS, run_id, "manifest.json"))

    def table_files(self) -> set[str]:
        """The files in the table folders (relative paths): one listing per table; a Delta
        table's log (``TABLE/_delta_log/``, ``seqlab.store.delta``) is not among them."""
        prefix = self.path("")  # the root and a slash: found paths start with it
        found = {path[len(prefix):] if path.startswith(prefix) else self.relative(path)
                 for table in TABLES if self.fs.exists(self.path(table))
                 for path in self.fs.find(self.path(table))}
        return {path for path in found if path.split("/")[1] != DELTA_LOG}

    def read_manifest(self, relpath: str, files: bool = True) -> Manifest | None:
        """The manifest at ``relpath``, None where there is none; ``files=False``: an
        incremental run's summary alone (``seqlab.store.manifest.read_manifest``)."""
        path = self.path(relpath)
        return read_manifest(self.fs, path, files) if self.fs.exists(path) else None

    def incremental(self) -> bool:
        """Whether the location is an incremental table root (it has ``_runs/``)."""
        return self.fs.exists(self.path(RUNS))

    def state(self) -> RunState | None:
        """The unfinished run's state, None where no run is under way."""
        path = self.path(PROGRESS, RUN_STATE)
        return read_run_state(self.fs, path) if self.fs.exists(path) else None

    def clear(self) -> None:
        for name in (*TABLES, PROGRESS, RUNS, SUPERSEDED, INDEX):
            if self.fs.exists(self.path(name)):
                self.fs.rm(self.path(name), recursive=True)
        if self.fs.exists(self.path(MANIFEST)):
            self.fs.rm(self.path(MANIFEST))

    def start(self, state: RunState) -> None:
        """Write the run's state."""
        self.write_json(posixpath.join(PROGRESS, RUN_STATE), state.to_dict())

    def reopen(self) -> None:
        """An ended run with failed fragments is being retried: it is unfinished again."""
        if self.fs.exists(self.path(self.layout.manifest())):
            self.fs.rm(self.path(self.layout.manifest()))

    def done_fragments(self) -> dict[str, FragmentRecord]:
        records = {}
        for path in self.fs.glob(self.path(PROGRESS, "fragment-*.json")):
            record = _record(FragmentRecord, self.fs, path)
            records[record.fragment] = record
        return records

    def failed_fragments(self) -> list[FailedFragment]:
        return sorted((_record(FailedFragment, self.fs, path)
                       for path in self.fs.glob(self.path(PROGRESS, "failed-*.json"))),
                      key=lambda f: f.index)

    def record(self, record: FragmentRecord) -> None:
        self.write_json(posixpath.join(PROGRESS, f"fragment-{record.index:05d}.json"),
                        asdict(record))

    def record_failure(self, failure: FailedFragment) -> None:
        self.write_json(posixpath.join(PROGRESS, f"failed-{failure.index:05d}.json"),
                        asdict(failure))

    def forget_failures(self) -> None:
        """Failed fragments are retried by the next attempt: drop their records."""
        for path in self.fs.glob(self.path(PROGRESS, "failed-*.json")):
            self.fs.rm(path)

    def cleanup(self, keep: set[str], run_id: str | None = None) -> list[str]:
        """Remove every file of the table folders and partials that ``keep`` does not name:
        parts of unfinished fragments (any engine's names), temporary files of a crashed
        write, staging folders. Returns what was removed (relative paths).

        In an incremental table (``run_id``: the run cleaning up) only this run's own parts
        and temporary files are removed. A part of another run that ended stays where it is
        (an Iceberg table's superseded files stay in place for its older snapshots). Any
        other file ``keep`` does not name (another run's part whose manifest is missing, a
        file copied in by hand) holds data of unknown standing: it moves to ``_quarantine/``
        (its path kept below it), with a warning, and the run goes on."""
        removed: list[str] = []
        folders = {posixpath.dirname(path) for path in keep}
        kept_below = {parent for folder in folders for parent in _parents(folder)}
        ended: dict[str, bool] = {}

        def foreign(relpath: str) -> bool:
            name = posixpath.basename(relpath)
            match = _RUN_PART.match(name)
            own = (match is not None and match.group(1) == run_id) or name.startswith(".tmp-")
            return run_id is not None and relpath.split("/")[0] in TABLES and not own

        def earlier(relpath: str) -> bool:
            """A part of another run of the table that ended."""
            match = _RUN_PART.match(posixpath.basename(relpath))
            if match is None or run_id is None:
                return False
            if match.group(1) not in ended:
                ended[match.group(1)] = self.ended(match.group(1))
            return ended[match.group(1)]

        def sweep(folder: str) -> None:
            for entry in self.fs.ls(self.path(folder), detail=True):
                relpath = self.relative(entry["name"])
                if relpath.split("/")[1:] == [DELTA_LOG]:
                    continue  # a Delta table's log: the table's, not a run's
                if entry["type"] == "directory" and (relpath in kept_below or run_id):
                    sweep(relpath)  # look inside: kept parts, or another run's parts
                    if relpath not in kept_below and not self.fs.ls(entry["name"]):
                        self.fs.rm(entry["name"], recursive=True)
                elif entry["type"] == "file" and relpath not in keep and foreign(relpath):
                    if earlier(relpath):
                        continue
                    self.quarantine(relpath, "no manifest lists it (a run's manifest under "
                                    "_runs/ missing, or a file copied in? seqlab verify "
                                    "checks the table)")
                elif relpath not in keep or entry["type"] != "file":
                    self.fs.rm(entry["name"], recursive=entry["type"] == "directory")
                    removed.append(relpath)

        for folder in (*TABLES, PARTIALS):
            if self.fs.exists(self.path(folder)):
                sweep(folder)
        if removed:
            log.info("removed %d files left by an unfinished attempt", len(removed))
        return removed

    def quarantine(self, relpath: str, why: str = "no record names it") -> str:
        """Move a file to ``_quarantine/``, its path kept below it, rather than delete data
        whose state is missing; returns its new relative path."""
        target = posixpath.join(QUARANTINE, relpath)
        self.fs.makedirs(posixpath.dirname(self.path(target)), exist_ok=True)
        self.fs.mv(self.path(relpath), self.path(target))
        log.warning("moved %s to %s: %s", file_name(self.fs, self.path(relpath)), target, why)
        self.quarantined.append(target)
        return target

    def finish(self, manifest: Manifest, keep_progress: bool = False) -> None:
        """Write the manifest last, then drop the progress records it replaces (kept while
        failed fragments wait to be retried). An incremental run's files are listed in
        Parquet beside it, written first (``seqlab.store.runfiles``)."""
        if self.layout.run_date is None:
            self.write_json(self.layout.manifest(), manifest.to_dict())
        else:
            summary, listing = runfiles.split(manifest.to_dict())
            write_table(self.fs, self.root, posixpath.join(
                posixpath.dirname(self.layout.manifest()), runfiles.FILES), listing)
            self.write_json(self.layout.manifest(), summary)
        if not keep_progress:
            self.drop_progress()

    def drop_progress(self) -> None:
        if self.fs.exists(self.path(PROGRESS)):
            self.fs.rm(self.path(PROGRESS), recursive=True)

    # ------------------------------------------------------------------ small files

    def read_json(self, relpath: str) -> dict[str, Any] | None:
        """A small JSON file holding one object, None where there is none."""
        path = self.path(relpath)
        return read_object(self.fs, path) if self.fs.exists(path) else None

    def write_json(self, relpath: str, data: dict) -> None:
        """Write a small JSON file atomically (to a temporary name, then renamed); an OSError
        names the file, and the temporary file does not outlive a failed write."""
        final = self.path(relpath)
        tmp = posixpath.join(posixpath.dirname(final), f".tmp-{uuid.uuid4().hex}.json")
        with naming(final):
            self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
            try:
                with self.fs.open(tmp, "w") as handle:
                    handle.write(json.dumps(data, indent=2, default=str) + "\n")
                self.fs.mv(tmp, final)
            except BaseException:
                with suppress(Exception):
                    self.fs.rm(tmp)
                raise


def _parents(folder: str) -> list[str]:
    """``folder`` and the folders above it, relative paths.

    >>> _parents("documents/run_date=2026-12-02")
    ['documents/run_date=2026-12-02', 'documents']
    """
    parents = []
    while folder:
        parents.append(folder)
        folder = posixpath.dirname(folder)
    return parents


def check_resumable(out: OutputDir, fingerprint: dict, overwrite: bool) -> RunState | None:
    """Check the location can take this run; return the unfinished run's state to resume
    (None: a new run).

    A location that is a file is refused, ``overwrite`` or not (it replaces runs, not files).
    A finished run is never replaced without ``overwrite``; an unfinished one (crashed, or
    ended with failed fragments) is resumed only with the same configuration, and the refusal
    names the options that differ.
    """
    out.check_folder()
    if overwrite:
        out.clear()
        return None
    manifest, state = out.read_manifest(MANIFEST), out.state()
    if manifest is not None and (manifest.complete or state is None):
        raise OutputError(
            f"{out.url} already holds a finished run (run {manifest.run_id})",
            fix="pass --overwrite to replace it, or choose another OUTPUT",
        )
    if state is None and manifest is None and not out.incremental():
        files = out.table_files()
        held = [table for table in TABLES if any(f.startswith(f"{table}/") for f in files)]
        if held:  # a run's files with neither its manifest nor its state: never remove them
            raise OutputError(
                f"{out.url} holds {', '.join(held)} files but no manifest or run state: "
                "whose files they are is unknown (was _manifest.json deleted?)",
                fix="restore the manifest, move those folders away, or pass --overwrite to "
                "replace them")
    if state is None:
        return None
    then = state.fingerprint
    differ = sorted(k for k in set(fingerprint) | set(then)
                    if fingerprint.get(k) != then.get(k))
    if differ:
        shown = "; ".join(f"{k}: {then.get(k)!r} then, {fingerprint.get(k)!r} now"
                          for k in differ)
        raise OutputError(
            f"{out.url} holds an unfinished run (run {state.run_id}) with a different "
            f"configuration ({shown})",
            fix="rerun with the options it was started with to resume it, or pass --overwrite",
        )
    return state


def _record(kind: type, fs: fsspec.AbstractFileSystem, path: str):
    """A fragment record (finished or failed) from its file; a damaged one names the file."""
    data = read_object(fs, path, fix=RECORD_FIX)
    try:
        return kind.from_dict(data) if hasattr(kind, "from_dict") else kind(**data)
    except (KeyError, TypeError, ValueError) as exc:
        raise OutputError(f"{file_name(fs, path)} is not a seqlab fragment record ({exc!r})",
                          fix=RECORD_FIX) from exc
