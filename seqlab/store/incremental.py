"""Incremental runs: an OUTPUT that accumulates runs over a growing corpus.

With ``--incremental`` the output is a table root. Each run annotates only the input files that
no earlier run annotated with the same configuration, matched by name, size and version (ETag
or modification time, ``seqlab.run.sources.identity``), and lands them in its own partition:

    OUT/documents/run_date=YYYY-MM-DD/part-RUNID-FFFFF-RRRRRRRRRR.parquet
    OUT/mentions/run_date=YYYY-MM-DD/part-RUNID-FFFFF-RRRRRRRRRR.parquet
    OUT/aggregates/run_date=YYYY-MM-DD/part-RUNID-FFFFF.parquet   sums of one input file
    OUT/_runs/RUNID/manifest.json      what the run read, wrote and superseded
    OUT/_runs/RUNID/files.parquet      the files it wrote and superseded (seqlab.store.runfiles)
    OUT/_runs/RUNID/_SUCCESS           written last: the run ended (what a sensor waits on)
    OUT/_runs/latest.json              the last ended run
    OUT/_index/                        what the table holds now (seqlab.store.index)
    OUT/_superseded/RUNID/...          earlier parts of inputs that RUNID annotated again

A changed input file is annotated again; once its new parts have landed, its earlier parts
(documents, mentions and its aggregate sums alike) move under ``_superseded/``, which loaders
skip like every ``_`` folder, so ``documents/**/*.parquet`` holds each current input row exactly
once and totals are a plain ``SUM`` over the aggregate partitions. With ``--prune`` the parts of
input files that are gone move there too; without it their rows stay. With
``--table-format iceberg`` the files stay in place (older snapshots still read them) and the
run's one commit per table replaces them (``seqlab.store.iceberg``).

The run contract is unchanged: the files a run will annotate are fixed when it starts (in its
``_progress/`` state), so rerunning the same command after a crash resumes that run and never
annotates a file twice; files that arrived meanwhile wait for the next run.

A run is planned from the table's index (the live inputs and files) and the last run's
manifest (the table's settings), never from the earlier manifests, so planning follows the
live table, not its history. The plan keeps the index version it read; the finish builds the
next version from that one and writes it before the manifest, so a finish retried after a
crash writes the same version again. A table written before it had an index gets one folded
from its run manifests at its next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone

import pyarrow as pa

from seqlab.config import TABLE_OPTIONS  # not in the configuration key; a table keeps them
from seqlab.errors import OutputError
from seqlab.run.sources import Fragment
from seqlab.store.index import (
    CURRENT,
    TableIndex,
    current_version,
    from_manifests,
    read_index,
    read_version,
    version_files,
)
from seqlab.store.layout import PROGRESS, RUNS, SUPERSEDED
from seqlab.store.manifest import IncrementalRun, Manifest, file_name
from seqlab.store.outdir import INDEX, LATEST, OutputDir
from seqlab.store.parts import PartInfo, write_table

log = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"


@dataclass
class Increment:
    """What one incremental run does, fixed when it starts (and kept in its state)."""

    run_date: str
    config_key: str
    inputs: list[Fragment]  # to annotate, indexed 0.. in this run
    replaces: dict[str, list[str]] = field(default_factory=dict)  # input -> its earlier files
    pruned: dict[str, list[str]] = field(default_factory=dict)  # gone input -> its files
    unchanged: int = 0
    index_version: int = 0  # the index version planned on (0: none yet, or an empty table)
    held: list[str] = field(default_factory=list)  # the tables that have live files

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Increment:
        inputs = [Fragment(**{**f, "identity": tuple(f["identity"]) if f.get("identity")
                              else None}) for f in data["inputs"]]
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "earlier_files" in data:  # planned by a seqlab without an index: version 0
            known["held"] = sorted({path.split("/")[0] for path in data["earlier_files"]})
        return cls(**{**known, "inputs": inputs})

    def leaving(self, annotated: set[str]) -> list[str]:
        """The input files whose earlier rows this run takes out of the table, given those
        it annotated: a changed file once its new parts landed (if it failed now, its rows
        stay), and the pruned ones."""
        return sorted((set(self.replaces) & annotated) | set(self.pruned))


def config_key(fingerprint: dict) -> str:
    """A short hash of the options that decide what an input file's rows become.

    >>> config_key({"model": "ner", "fragments": ["a"]}) == config_key({"model": "ner"})
    True
    """
    kept = config_key_options(fingerprint)
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_key_options(fingerprint: dict) -> dict:
    """The options of ``fingerprint`` that decide what an input file's rows become."""
    return {k: v for k, v in fingerprint.items()
            if k not in ("fragments", "output", *TABLE_OPTIONS)}


def run_manifests(out: OutputDir) -> list[Manifest]:
    """The manifests of the table's ended runs, in the order they ended (runs of a table
    follow one another: a second start resumes the unfinished one)."""
    ended = out.run_manifests()
    for path, manifest in ended:
        if manifest.incremental is None:
            raise OutputError(f"{file_name(out.fs, path)} has no field 'incremental': it is "
                              "not the manifest of a run of an incremental table",
                              fix="restore the file from a copy, or start the incremental "
                              "table in a new OUTPUT")
    return [manifest for _, manifest in ended]


def _increment(manifest: Manifest) -> IncrementalRun:
    """The ``incremental`` section that ``run_manifests`` checked every run has."""
    assert manifest.incremental is not None
    return manifest.incremental


_FOLDED: dict[tuple, tuple] = {}  # the last fold of run manifests, as Arrow, per process


def folded(out: OutputDir, skip: str | None = None) -> TableIndex:
    """The index folded from the table's run manifests (but run ``skip``'s): a table's state
    before it had an index. Kept for the process, so that a run that gives a table its index
    reads the history once, not at its plan, cleanup and finish each."""
    paths = frozenset(path for path in out.fs.glob(out.path(RUNS, "*", "manifest.json"))
                      if path.split("/")[-2] != skip)
    key = (out.location, paths)
    if key not in _FOLDED:
        index = from_manifests([m for m in run_manifests(out) if m.run_id != skip])
        _FOLDED.clear()
        _FOLDED[key] = (index.to_arrow(), index.last_run)
    table, last = _FOLDED[key]
    index = TableIndex.from_arrow(table, 0)
    index.last_run = last
    return index


def current_index(out: OutputDir, last: Manifest | None) -> TableIndex:
    """What the table holds now: its index (``last``: the last ended run). A table written
    before it had one gets it folded from its run manifests, once: the run's finish writes it."""
    index = read_index(out)
    if index is None:
        if last is None:
            return TableIndex()
        index = folded(out)
        log.info("%s has no index yet: folded from its run manifests; written as version 1 "
                 "when this run ends", out.url)
        return index
    if last is not None and index.last_run not in (None, last.run_id):
        raise OutputError(
            f"the index of {out.url} ({CURRENT}) holds the table as run {index.last_run} left "
            f"it, but run {last.run_id} ended after it (a run of a seqlab that writes no index?)",
            fix=f"remove {out.path(INDEX)} so that the next run folds the index again from the "
            "run manifests")
    return index


def base_index(out: OutputDir, increment: Increment, run_id: str) -> TableIndex:
    """The index version ``increment`` was planned on, from which its finish builds the next:
    the same however often the finish is retried."""
    _check_base(out, increment, run_id)
    if increment.index_version:
        return read_version(out, increment.index_version)
    return folded(out, skip=run_id)


def live_files(out: OutputDir, increment: Increment, run_id: str) -> set[str]:
    """The table's live files as the run was planned on them (relative paths): the paths of
    ``base_index``, without reading the rest of the index."""
    _check_base(out, increment, run_id)
    if increment.index_version:
        return version_files(out, increment.index_version)
    return set(folded(out, skip=run_id).files)


def _check_base(out: OutputDir, increment: Increment, run_id: str) -> None:
    """The index has not moved on past the version the run was planned on (nor has another
    run written the version after it)."""
    current = current_version(out)
    mine = increment.index_version + 1
    if current.get("version", 0) > mine or (current.get("version") == mine and
                                            current.get("last_run") != run_id):
        raise OutputError(
            f"the index of {out.url} is at version {current['version']} "
            f"({current.get('run_id')}), but run {run_id} was planned on version "
            f"{increment.index_version}: the table changed while the run was unfinished",
            fix=f"remove {out.path(PROGRESS)} so that the run is planned again on the table as "
            "it is (its files then move to _quarantine/)")


def last_run(out: OutputDir) -> Manifest | None:
    """The summary of the table's last ended run (its files not read)."""
    return out.manifest(files=False)


def plan_increment(out: OutputDir, fragments: list[Fragment], key: str, run_date: str,
                   prune: bool, table: dict, fingerprint: dict | None = None) -> Increment:
    """Which input files this run annotates (new, changed, or annotated with another
    configuration) and which earlier files it will supersede, from the table's index and the
    last run's summary. ``fingerprint``: the options ``key`` hashes, to name those that
    changed since the last run."""
    last = last_run(out)
    if last is not None:
        _check_same_table(last, table)
        if _increment(last).config_key != key:
            _warn_changed(last, fingerprint or {})
    index = current_index(out, last)
    live = index.inputs
    present = out.table_files() if live else set()
    todo: list[Fragment] = []
    replaces: dict[str, list[str]] = {}
    for fragment in fragments:
        before = live.get(fragment.name)
        if before and before.identity == fragment.identity and before.config_key == key:
            lost = sorted(set(before.files) - present)
            if not lost:
                continue
            # a live file deleted by hand: its input is annotated again, its other files
            # superseded, so the table holds each of its rows once more
            log.warning("%s, a live file of input %s, is missing: annotating %s again",
                        file_name(out.fs, out.path(lost[0])), fragment.name, fragment.name)
        todo.append(replace(fragment, index=len(todo)))
        if before:
            replaces[fragment.name] = before.files
    names = {f.name for f in fragments}
    pruned = {name: a.files for name, a in live.items() if name not in names} if prune else {}
    held = sorted({kind for kind, _ in index.files.values()})
    return Increment(run_date, key, todo, replaces, pruned, len(fragments) - len(todo),
                     index.version, held)


def _warn_changed(last: Manifest, fingerprint: dict) -> None:
    """Say which options make every input file of the table be annotated again (a new model
    is often meant; a changed default after an upgrade seldom is)."""
    def plain(value):
        return json.loads(json.dumps(value, default=str))

    changed = sorted(k for k in config_key_options(fingerprint)
                     if plain(fingerprint[k]) != plain(last.config.get(k)))
    shown = "; ".join(f"--{k.replace('_', '-')}: {last.config.get(k)!r} then, "
                      f"{fingerprint[k]!r} now" for k in changed[:5]) or "options changed"
    log.warning("run %s annotated this table with other options (%s): every input file is "
                "annotated again; to keep the table's annotations, pass the earlier values",
                last.run_id, shown)


def _check_same_table(last: Manifest, table: dict) -> None:
    """A table keeps its columns and its table format from run to run."""
    before = last.table or {}
    differ = sorted(k for k in table if before.get(k) != table[k])
    if differ:
        shown = "; ".join(f"{k}: {before.get(k)!r} then, {table[k]!r} now" for k in differ)
        raise OutputError(
            f"this incremental table was written by run {last.run_id} with other table "
            f"settings ({shown})",
            fix="run with the settings the table was started with, or write to a new OUTPUT")


def holds(increment: Increment, table: str) -> bool:
    """Whether the table had live files of ``table`` when the run was planned."""
    return table in increment.held


def empty_part(out: OutputDir, table: str, declared: pa.Schema) -> PartInfo:
    """The first run of a table that finds no entities (or frames) still gives the table a
    schema-bearing file (a loader pointed at the prefix needs one)."""
    relpath = posixpath.join(out.layout.folder(table), f"part-{out.layout.run_id}-empty.parquet")
    return write_table(out.fs, out.root, relpath, declared.empty_table())


def supersede(out: OutputDir, paths: list[str]) -> None:
    """Move earlier files out of the live prefix, under ``_superseded/RUNID/``. Idempotent: a
    finish retried after a crash moves what is left."""
    for relpath in paths:
        source = out.path(relpath)
        if out.fs.exists(source):
            target = out.path(SUPERSEDED, out.layout.run_id, relpath)
            out.fs.makedirs(posixpath.dirname(target), exist_ok=True)
            out.fs.mv(source, target)


def mark_ended(out: OutputDir, manifest: Manifest) -> None:
    """Written after the manifest: the run's ``_SUCCESS`` marker and ``_runs/latest.json``."""
    run = posixpath.join(RUNS, manifest.run_id)
    with out.fs.open(out.path(run, SUCCESS), "wb"):
        pass
    out.write_json(LATEST, {"run_id": manifest.run_id, "run_date": manifest.run_date,
                            "complete": manifest.complete,
                            "manifest": posixpath.join(run, "manifest.json"),
                            "finished_at": manifest.finished_at})


def list_runs(out: OutputDir) -> list[dict]:
    """One summary per run of the table, oldest first; an unfinished run last."""
    manifests = run_manifests(out)
    superseded_by: dict[str, str] = {}
    for manifest in manifests:
        for path in _increment(manifest).superseded:
            superseded_by[path] = manifest.run_id
    runs = []
    for m in manifests:
        runs.append({
            "run_id": m.run_id, "run_date": m.run_date, "status":
            "complete" if m.complete else f"{len(m.failed_inputs)} inputs failed",
            "engine": m.engine, "finished_at": m.finished_at,
            "inputs": len(m.inputs), "unchanged": _increment(m).unchanged,
            "rows": m.rows.written, "entities": m.counts.get("entities", 0),
            "superseded": len(_increment(m).superseded),
            "replaced_later": sum(path in superseded_by for path in m.files()),
        })
    state = out.state()
    if state and not any(r["run_id"] == state.run_id for r in runs):
        increment = Increment.from_dict(state.increment) if state.increment else None
        runs.append({"run_id": state.run_id,
                     "run_date": increment.run_date if increment else None,
                     "status": "unfinished",
                     "engine": state.attempts[-1].engine if state.attempts else None,
                     "finished_at": None, "inputs": len(increment.inputs) if increment else 0,
                     "unchanged": increment.unchanged if increment else None, "rows": None,
                     "entities": None, "superseded": None, "replaced_later": 0})
    return runs


def today() -> str:
    return datetime.now(timezone.utc).date().isoformat()
