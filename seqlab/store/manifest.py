"""The run manifest and the run state: the JSON files that say what a run is and what it did.

The manifest is written last, once every part of the run has landed: ``OUT/_manifest.json``
for a single run, ``OUT/_runs/RUNID/manifest.json`` for each run of an incremental table. Its
presence means the run ended; warehouse loaders, sensors, ``seqlab report`` and ``seqlab runs``
read it to learn which files hold the run's rows (``tables``: path, rows, bytes and sha256 of
each), what failed (``failed_inputs``) and how the run was configured. It is a public,
versioned format: ``schema_version`` is the version of the tables' schema (``seqlab.schema``),
``seqlab_version`` the version of the writer.

The run state, ``OUT/_progress/_run.json``, is written when a run starts and rewritten by each
attempt; while it exists the run is unfinished, and a rerun resumes it only with the same
``fingerprint`` (the options that decide what lands).

The dataclasses below are the files' schema: a record's fields are its JSON keys in the order
they are written (``Rows`` names its keys ``in`` and ``out``). A field that defaults to None
is written only when set (``models`` is absent in manifests older than several-model runs;
``identity``, ``run_date``, ``table``, ``incremental`` and ``iceberg`` belong to incremental
runs), while ``X | None`` without a default is written as null. A newer seqlab may add
fields, so a reader must take a newer writer's file: ``Manifest.extra`` and ``RunState.extra`` hold
the top-level keys they do not declare, written back where ``extra`` stands (the engine's
sections, ``tagging`` on the local engine, ``ray``, ``beam``, are such keys), and the nested
records ignore keys they do not declare.

Each file has one writer, ``to_dict`` (the JSON as written, key order included), and one
reader (``read_manifest``, ``read_run_state``; ``from_dict`` for JSON already parsed). An
incremental run's manifest lists its files in Parquet beside its JSON (``files.parquet``,
``seqlab.store.runfiles``); ``read_manifest`` joins the two into one ``Manifest``. A
missing field, a value of the wrong type or a file that is not JSON (a copy cut short) raises
``OutputError`` naming the file and the field, rather than a ``KeyError`` far from the cause.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, TypeVar

import fsspec

from seqlab.errors import OutputError
from seqlab.store import runfiles
from seqlab.store.parts import read_table

MANIFEST_FIX = ("restore the file from a copy; without one, annotate the input again (into a "
                "new OUTPUT, or over a single run's OUTPUT with --overwrite)")
STATE_FIX = ("restore the file from a copy; a single run's OUTPUT can also start the run over "
             "with --overwrite")

_SCALARS: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
          list: "a list", dict: "an object"}


def _is(value: object, kind: type) -> bool:
    """JSON's types: a bool is no integer, an integer is a number."""
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    return isinstance(value, (int, float) if kind is float else kind)


def _kind(value: object) -> str:
    """What a JSON value is, for an error message.

    >>> _kind(None), _kind(True), _kind(3), _kind("x"), _kind([])
    ('null', 'true or false', 'an integer', 'a string', 'a list')
    """
    if value is None:
        return "null"
    return next((name for kind, name in _NAMES.items() if _is(value, kind)), type(value).__name__)


@dataclass(frozen=True)
class _Place:
    """Where a value being read is: its file, its field (``inputs[2].parts``) and the fix."""

    source: str
    fix: str
    where: str = ""

    def at(self, key: str | int) -> _Place:
        if isinstance(key, int):
            return _Place(self.source, self.fix, f"{self.where}[{key}]")
        return _Place(self.source, self.fix, f"{self.where}.{key}" if self.where else key)

    def expect(self, value: object, kind: type) -> Any:
        if not _is(value, kind):
            what = f"field {self.where!r}" if self.where else "the top level"
            raise OutputError(f"{self.source}: {what} is {_kind(value)}, not {_NAMES[kind]}",
                              fix=self.fix)
        return value


def _key(f: Field) -> str:
    return f.metadata.get("key", f.name)


def _decode(value: object, hint: str, place: _Place) -> Any:
    """A JSON value as the type hint ``hint`` declares it, checked."""
    if hint.endswith(" | None"):
        return None if value is None else _decode(value, hint.removesuffix(" | None"), place)
    if hint in _SCALARS:
        return place.expect(value, _SCALARS[hint])
    if hint == "Any":
        return copy.deepcopy(value)
    if hint.startswith("Mapping[str, "):
        inner = hint.removeprefix("Mapping[str, ")[:-1]
        return {k: _decode(v, inner, place.at(k)) for k, v in place.expect(value, dict).items()}
    if hint.startswith("tuple["):
        inner = hint.removeprefix("tuple[")[:-1].split(", ")
        items = place.expect(value, list)
        if inner[-1] != "..." and len(items) != len(inner):
            raise OutputError(f"{place.source}: field {place.where!r} holds {len(items)} values, "
                              f"not {len(inner)}", fix=place.fix)
        return tuple(_decode(v, inner[0] if inner[-1] == "..." else inner[i], place.at(i))
                     for i, v in enumerate(items))
    return globals()[hint].parse(value, place)


def _encode(value: object) -> Any:
    """A value as JSON holds it: records as objects, tuples as lists, fresh containers."""
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    return value


R = TypeVar("R", bound="_Record")


class _Record:
    """A JSON object read and written by its dataclass fields (see the module docstring)."""

    def to_dict(self) -> dict[str, Any]:
        """The record as written: a fresh dict, keys in the file's order."""
        found: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name == "extra":
                found.update(_encode(value))
            elif value is not None or f.default is not None:
                found[_key(f)] = _encode(value)
        return found

    @classmethod
    def parse(cls: type[R], value: object, place: _Place) -> R:
        """The record in ``value``; unknown keys go to ``extra`` where it has one."""
        data = place.expect(value, dict)
        declared = fields(cls)  # type: ignore[arg-type]
        found: dict[str, Any] = {}
        for f in declared:
            key = _key(f)
            if f.name == "extra":
                known = {_key(g) for g in declared}
                found["extra"] = {k: copy.deepcopy(v) for k, v in data.items() if k not in known}
            elif key in data:
                found[f.name] = _decode(data[key], str(f.type), place.at(key))
            elif f.default is None:
                found[f.name] = None
            elif f.default is MISSING:
                raise OutputError(f"{place.source} has no field {place.at(key).where!r}",
                                  fix=place.fix)
        return cls(**found)


@dataclass(frozen=True)
class Part(_Record):
    """One landed Parquet file: its path relative to the output root, rows, size and hash."""

    path: str
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Attempt(_Record):
    """One attempt at the run: the engine it ran on and when it started (ISO time)."""

    engine: str
    started_at: str


@dataclass(frozen=True)
class ModelInfo(_Record):
    """``model``: the run's model (its first, in a run of several), as the rows name it."""

    name: str
    revision: str
    scheme: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class ModelSummary(_Record):
    """One entry of ``models``: a model of the run, its key (the prefix of its columns in a run
    of several), the documents columns it fills and, for a semantic role labeller, the
    predicate labeller it ran with."""

    key: str
    name: str
    revision: str
    task: str | None
    scheme: str
    decoder: str
    labels: tuple[str, ...]
    columns: tuple[str, ...]
    predicates: ModelSummary | None = None


@dataclass(frozen=True)
class Resume(_Record):
    """``resume``: the options a resumed run must keep and those it may change."""

    must_match: tuple[str, ...]
    may_change: tuple[str, ...]


@dataclass(frozen=True)
class Rows(_Record):
    """``rows``: the rows read (``in``) and the documents rows written (``out``): equal."""

    read: int = field(metadata={"key": "in"})
    written: int = field(metadata={"key": "out"})


@dataclass(frozen=True)
class InputEntry(_Record):
    """One entry of ``inputs``: an input file, its rows and the parts they landed in. An
    incremental run adds the file's ``identity``, its (size, version), which the next run
    compares to tell a changed file."""

    fragment: str
    rows: int
    parts: Mapping[str, tuple[Part, ...]]
    identity: tuple[int, str] | None = None

    def files(self) -> list[str]:
        """The paths of the file's parts, every table's."""
        return [p.path for parts in self.parts.values() for p in parts]


@dataclass(frozen=True)
class FailedInput(_Record):
    """One entry of ``failed_inputs``: an input file that could not be read, with the row
    count its footer announces when it could be read."""

    fragment: str
    index: int
    error: str
    rows: int | None


@dataclass(frozen=True)
class IncrementalRun(_Record):
    """``incremental``: what a run of an incremental table changed in it."""

    config_key: str
    unchanged: int  # input files an earlier run annotated as they are now
    replaced: tuple[str, ...]  # input files annotated again (changed, or another config)
    pruned: tuple[str, ...]  # input files gone, whose rows left the table (--prune)
    superseded: tuple[str, ...]  # earlier files this run moved out of the table


@dataclass(frozen=True, kw_only=True)
class Manifest(_Record):
    """A run's manifest, its keys in the file's order. ``complete`` is false when some input
    files could not be read (``failed_inputs``); ``config`` is the configuration with storage
    option values redacted; ``counts`` the run counters (documents, tokens, entities,
    ``status.*``); ``tables`` every landed file per table, ``inputs`` the same per input file."""

    run_id: str
    seqlab_version: str
    schema_version: int
    complete: bool
    engine: str  # the engine that finished the run
    attempts: tuple[Attempt, ...]  # every attempt that contributed, in order
    model: ModelInfo
    models: tuple[ModelSummary, ...] | None = None
    config: Mapping[str, Any]
    resume: Resume
    processed_at: str  # ISO time the run started: the rows' processed_at
    finished_at: str
    elapsed_s: float
    rows: Rows
    counts: Mapping[str, int]
    inputs: tuple[InputEntry, ...]
    failed_inputs: tuple[FailedInput, ...]
    tables: Mapping[str, tuple[Part, ...]]
    aggregates: tuple[Part, ...]  # the aggregates table's files, as under tables
    extra: Mapping[str, Any] = field(default_factory=dict)
    run_date: str | None = None
    table: Mapping[str, Any] | None = None  # the table's settings, kept from run to run
    incremental: IncrementalRun | None = None
    iceberg: Mapping[str, Any] | None = None  # the Iceberg commit (seqlab.store.iceberg)
    # files the run moved to _quarantine/ rather than delete: another run's parts that no
    # manifest listed (seqlab.store.outdir.OutputDir.cleanup)
    quarantined: tuple[str, ...] | None = None
    # a single run's aggregates: K files partitioned by key hash (seqlab.run.aggregates)
    aggregate_buckets: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "the manifest") -> Manifest:
        """The manifest in ``data`` (parsed JSON); ``source`` names it in errors."""
        return cls.parse(data, _Place(source, MANIFEST_FIX))

    def files(self) -> list[str]:
        """The paths of every file the run landed (relative to the output root), by table."""
        return [p.path for parts in self.tables.values() for p in parts]


@dataclass(frozen=True)
class RunState(_Record):
    """An unfinished run's state. ``fingerprint``: the options a resumed run must match;
    ``processed_at``: when its first attempt started. An incremental run adds the
    ``increment`` it fixed when it started (``seqlab.store.incremental.Increment.to_dict()``)
    and its ``table`` settings."""

    run_id: str
    fingerprint: Mapping[str, Any]
    processed_at: str
    attempts: tuple[Attempt, ...]
    increment: Mapping[str, Any] | None = None
    table: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "the run state") -> RunState:
        """The state in ``data`` (parsed JSON); ``source`` names it in errors."""
        return cls.parse(data, _Place(source, STATE_FIX))


def file_name(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A file as errors name it: its local path, or its URL (``s3://...``) elsewhere."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return path if "file" in protocols else fs.unstrip_protocol(path)


def read_object(fs: fsspec.AbstractFileSystem, path: str, fix: str = MANIFEST_FIX
                ) -> dict[str, Any]:
    """A JSON file holding one object; one that is not JSON (cut short) raises OutputError."""
    try:
        data = json.loads(fs.cat_file(path))
    except ValueError as exc:
        raise OutputError(f"{file_name(fs, path)} is not readable JSON ({exc}): it was cut "
                          "short or damaged", fix=fix) from exc
    return _Place(file_name(fs, path), fix).expect(data, dict)


def read_manifest(fs: fsspec.AbstractFileSystem, path: str, files: bool = True) -> Manifest:
    """The manifest at ``path`` (FileNotFoundError where there is none), with the files its
    listing beside it holds where it is split (an incremental run's, ``seqlab.store.runfiles``);
    ``files=False`` reads the summary alone (``inputs`` and ``tables`` then empty)."""
    data = read_object(fs, path)
    if runfiles.LISTING in data:
        listing = None
        described = data[runfiles.LISTING]
        if not isinstance(described, dict) or not isinstance(described.get("path"), str):
            raise OutputError(f"{file_name(fs, path)}: field 'files' does not name the list "
                              "of the run's files", fix=MANIFEST_FIX)
        if files:
            listed = runfiles.listing_path(path, data)
            if not fs.exists(listed):
                raise OutputError(f"{file_name(fs, listed)}, the list of the files of the run "
                                  f"{file_name(fs, path)} describes, is missing",
                                  fix=MANIFEST_FIX)
            listing = read_table(fs, listed)
        data = runfiles.join(data, listing)
    return Manifest.from_dict(data, source=file_name(fs, path))


def read_run_state(fs: fsspec.AbstractFileSystem, path: str) -> RunState:
    """The run state at ``path`` (FileNotFoundError where there is none)."""
    return RunState.from_dict(read_object(fs, path, STATE_FIX), source=file_name(fs, path))
