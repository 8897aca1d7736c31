"""Committing a run's landed Parquet files to Iceberg tables, through pyiceberg.

The files are written by the engines' workers first (seqlab's own zstd Parquet, no Iceberg
field ids); ``commit_run`` then registers them, without rewriting a byte, in one commit per
table: the table's snapshot removes the files the run supersedes and adds the new ones
together, so a reader of any snapshot sees each input row once. The catalog is the one
pyiceberg users already configure (``~/.pyiceberg.yaml``, or ``PYICEBERG_CATALOG__<NAME>__*``
environment variables), so any catalog pyiceberg supports (REST, Glue, Hive, SQL, ...) works.

- Tables are created on first use, named after seqlab's tables, with the Arrow schema the
  files were written with. They are unpartitioned: seqlab's Hive-style folders
  (``run_date=YYYY-MM-DD/``) are partitions of the path only, a column the files do not hold,
  and Iceberg derives a file's partition from its own columns (a value every row of the file
  shares); the row columns that could serve (``processed_at``) are not constant within a
  file (a run may cross midnight). Scans still skip files by the per-column bounds that the
  manifests keep for every file.
- Files without field ids are read through the table's name mapping
  (``schema.name-mapping.default``), set in the first commit, as pyiceberg's ``add_files``
  sets it: columns and nested fields are matched by name.
- Idempotent: every snapshot carries ``seqlab.run_id`` in its summary, and a table whose
  snapshots since the last other seqlab run's commit hold the run is left alone (the whole
  history is not read: runs commit one after another). A run that stopped after committing
  some tables commits only the others when rerun.
- Concurrent writers: a commit that loses a race (``CommitFailedException``, or a REST
  catalog's unknown outcome) is retried from a freshly loaded table, after checking the run id
  again, with exponential backoff. pyiceberg's own retry (``commit.retry.num-retries``) is off
  for these commits: it rebuilds the snapshot on the new head without knowing the run id, so
  an append could land twice when two attempts of one run race.

Tables commit one after another (documents, mentions, aggregates); Iceberg has no commit
across tables, so a reader that must see one run in all three waits for the run manifest.

Paths are taken literally, as pyiceberg's FileIO does: ``file:///out/documents/run_date=...``,
not percent-quoted (``pathlib.Path.as_uri`` quotes ``=``), and a superseded file is found by
the exact path it was committed with. Superseded files stay referenced by older snapshots
(time travel) until those expire; moving or deleting them earlier breaks reads of those
snapshots, not of the current one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from seqlab.errors import ConfigError, RunError, missing_extra
from seqlab.store.changes import ATTEMPTS, check_change, check_listing, wait_after_conflict
from seqlab.store.layout import TABLES

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table
    from pyiceberg.table.metadata import TableMetadata
    from pyiceberg.table.snapshots import Snapshot

log = logging.getLogger(__name__)

RUN_ID = "seqlab.run_id"  # the snapshot summary property that makes commits idempotent
NAME_MAPPING = "schema.name-mapping.default"
CONFIG_FIX = ("configure the catalog as pyiceberg reads it: in ~/.pyiceberg.yaml (or "
              "$PYICEBERG_HOME/.pyiceberg.yaml) under catalog: {name}: uri: ..., or with "
              "environment variables PYICEBERG_CATALOG__{env}__URI (e.g. "
              "sqlite:////path/catalog.db, https://rest-catalog, thrift://metastore:9083) and "
              "PYICEBERG_CATALOG__{env}__WAREHOUSE (e.g. s3://bucket/warehouse)")


@dataclass
class TableChange:
    """What one run changes in one table: files it landed and files it supersedes."""

    schema: pa.Schema  # the Arrow schema the files were written with
    added: list[str] = field(default_factory=list)  # full URLs of new Parquet files
    removed: list[str] = field(default_factory=list)  # full URLs of files already in the table


def commit_run(catalog: str, namespace: str, run_id: str, tables: Mapping[str, TableChange],
               properties: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Commit a run's files to the tables ``namespace.<table>`` of the pyiceberg catalog
    named ``catalog``, one snapshot per table, and return what was committed.

    ``properties`` go into every snapshot's summary next to ``seqlab.run_id`` (the model, the
    output location, ...). The result, for the run manifest, gives per table its status
    (``committed``, ``already_committed`` by an earlier attempt of the run, or ``unchanged``
    when the run neither adds nor removes a file), the snapshot id and the file and record
    counts of the snapshot.
    """
    if not run_id:
        raise ConfigError("an Iceberg commit needs the run id", fix="pass the run's id")
    check_listing(tables)
    summary = _summary_properties(run_id, properties)
    iceberg = load(catalog)
    ensure_namespace(iceberg, namespace)
    result: dict[str, Any] = {"catalog": catalog, "namespace": namespace, "run_id": run_id,
                              "tables": {}}
    for name in sorted(tables, key=TABLES.index):
        change = tables[name]
        identifier = f"{namespace}.{name}"
        if not change.added and not change.removed:
            result["tables"][name] = {"table": identifier, "status": "unchanged"}
            continue
        table = ensure_table(iceberg, identifier, change.schema)
        result["tables"][name] = {"table": identifier,
                                  **_commit_table(iceberg, table, change, run_id, summary)}
    return result


def load(name: str) -> Catalog:
    """The pyiceberg catalog called ``name``, configured as pyiceberg users configure it."""
    try:
        from pyiceberg.catalog import load_catalog
        from pyiceberg.exceptions import NotInstalledError
        from pyiceberg.utils.config import Config
    except ImportError as exc:
        raise missing_extra("pyiceberg", "iceberg") from exc
    fix = CONFIG_FIX.format(name=name, env=name.upper().replace("-", "_"))
    # read now, not at pyiceberg's import: a process may set its environment later
    config = Config().get_catalog_config(name)
    if config is None:
        raise ConfigError(f"no Iceberg catalog named {name!r} is configured", fix=fix)
    try:
        return load_catalog(name, **config)
    except NotInstalledError as exc:  # e.g. the SQL catalog without SQLAlchemy
        raise ConfigError(f"Iceberg catalog {name!r} needs a package that is not installed: "
                          f"{exc}", fix="install the pyiceberg extra the message names") from exc
    except Exception as exc:  # any failure to open the catalog is a configuration to fix
        raise ConfigError(f"Iceberg catalog {name!r} could not be opened: "
                          f"{type(exc).__name__}: {exc}", fix=fix) from exc


def ensure_namespace(catalog: Catalog, namespace: str) -> None:
    """Create the namespace unless it exists (checked first: a catalog may grant use of a
    namespace without the right to create one)."""
    if not catalog.namespace_exists(namespace):
        catalog.create_namespace_if_not_exists(namespace)


def ensure_table(catalog: Catalog, identifier: str, schema: pa.Schema) -> Table:
    """The table, created unpartitioned with ``schema`` (field ids assigned by the catalog)
    unless it exists."""
    if catalog.table_exists(identifier):
        return catalog.load_table(identifier)
    log.info("creating Iceberg table %s", identifier)
    return catalog.create_table_if_not_exists(identifier, schema=schema)


def run_snapshot(table: Table, run_id: str) -> Snapshot | None:
    """The snapshot that committed ``run_id``, if any: looked for from the current snapshot
    back to the first one of another seqlab run, not through the whole history. The runs of a
    table commit one after another, so a run that committed is never behind another's
    commit; snapshots of other writers in between are passed over."""
    snapshot = table.current_snapshot()
    while snapshot is not None:
        committed = snapshot.summary.get(RUN_ID) if snapshot.summary is not None else None
        if committed == run_id:
            return snapshot
        if committed is not None:
            return None
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    return None


def live_files(table: Table) -> dict[str, DataFile]:
    """The data files of the table's current snapshot, by path."""
    from pyiceberg.manifest import ManifestContent

    snapshot = table.current_snapshot()
    if snapshot is None:
        return {}
    files = {}
    for manifest in snapshot.manifests(table.io):
        if manifest.content == ManifestContent.DATA:
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                files[entry.data_file.file_path] = entry.data_file
    return files


def _summary_properties(run_id: str, properties: Mapping[str, str] | None) -> dict[str, str]:
    extra = dict(properties or {})
    if extra.get(RUN_ID, run_id) != run_id:
        raise ConfigError(f"properties set {RUN_ID}={extra[RUN_ID]!r} for run {run_id!r}",
                          fix=f"leave {RUN_ID} out of properties: commit_run sets it")
    return {**extra, RUN_ID: run_id}


def _commit_table(catalog: Catalog, table: Table, change: TableChange, run_id: str,
                  summary: dict[str, str]) -> dict[str, Any]:
    """Commit one table's change, retried on conflicts, rechecking the run id each time."""
    from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException

    name = ".".join(table.name())
    conflict: Exception | None = None
    for attempt in range(1, ATTEMPTS + 1):
        if conflict is not None:
            wait_after_conflict(attempt, "Iceberg", name, conflict)
            table = catalog.load_table(table.name())
        done = run_snapshot(table, run_id)
        if done is not None:
            log.info("%s already holds run %s (snapshot %d)", name, run_id, done.snapshot_id)
            return _report(done, "already_committed", attempt)
        try:
            committed = _commit_once(table, change, summary)
        except (CommitFailedException, CommitStateUnknownException) as exc:
            # an unknown outcome is retried too: the run id check above tells if it landed
            conflict = exc
            continue
        snapshot = run_snapshot(committed, run_id)
        if snapshot is None:  # the catalog took the commit but its table shows no such snapshot
            raise RunError(f"{name}: the commit of run {run_id} is not in the table's history",
                           fix="check the catalog; rerunning the same command commits it "
                           "at most once")
        log.info("committed run %s to %s: snapshot %d", run_id, name, snapshot.snapshot_id)
        return _report(snapshot, "committed", attempt)
    raise RunError(f"Iceberg commit of run {run_id} to {name} failed {ATTEMPTS} times on "
                   f"concurrent commits: {conflict}",
                   fix="rerun the same command: the tables committed so far keep the run, the "
                   "others commit once the other writers are done") from conflict


def _commit_once(table: Table, change: TableChange, summary: dict[str, str]) -> Table:
    """One commit attempt: an overwrite snapshot when files are superseded, else an append."""
    from pyiceberg.table import TableProperties

    live = live_files(table)
    _check_against(table, live, change)
    # pyiceberg reads its retry count from the table's properties; this copy of the loaded
    # metadata is only the base of this transaction (the catalog applies the updates to its
    # own), so the table's real property is untouched
    metadata = table.metadata
    table.metadata = metadata.model_copy(update={"properties": {
        **metadata.properties, TableProperties.COMMIT_NUM_RETRIES: "0"}})
    tx = table.transaction()
    if tx.table_metadata.name_mapping() is None:
        mapping = tx.table_metadata.schema().name_mapping.model_dump_json()
        tx.set_properties(**{NAME_MAPPING: mapping})
    try:
        if change.removed:
            data_files = _data_files(table, tx.table_metadata, change.added)
            with tx.update_snapshot(snapshot_properties=summary).overwrite() as overwrite:
                for path in change.removed:
                    overwrite.delete_data_file(live[path])
                for data_file in data_files:
                    overwrite.append_data_file(data_file)
        else:
            # already checked against the live files above
            tx.add_files(list(change.added), snapshot_properties=summary,
                         check_duplicate_files=False)
    except FileNotFoundError as exc:
        raise RunError(f"{'.'.join(table.name())}: a file the run adds does not exist: {exc}",
                       fix="commit only files that landed (the run manifest lists them)") from exc
    except ValueError as exc:  # pyiceberg's check of a file's schema against the table's
        raise ConfigError(f"{'.'.join(table.name())}: a file does not fit the table: {exc}",
                          fix="write the files with the table's schema, or evolve the "
                          "table's schema first (pyiceberg: table.update_schema()"
                          ".union_by_name(...))") from exc
    return tx.commit_transaction()


def _check_against(table: Table, live: dict[str, DataFile], change: TableChange) -> None:
    check_change(".".join(table.name()), change.added, change.removed, live,
                 "another writer replaced them (a compaction, a rewrite): find where their "
                 "rows went with table.inspect.files() and remove those, or commit the files "
                 "the table really holds")


def _data_files(table: Table, metadata: TableMetadata, paths: list[str]) -> list[DataFile]:
    """DataFiles of Parquet files from their footers (schema checked, column bounds), as
    ``add_files`` builds them, read in parallel."""
    from pyiceberg.io.pyarrow import parquet_file_to_data_file
    from pyiceberg.utils.concurrent import ExecutorFactory

    executor = ExecutorFactory.get_or_create()
    return list(executor.map(lambda path: parquet_file_to_data_file(table.io, metadata, path),
                             paths))


def _report(snapshot: Snapshot, status: str, attempts: int) -> dict[str, Any]:
    summary = snapshot.summary

    def count(key: str) -> int:
        return int(summary.get(key) or 0) if summary is not None else 0

    return {
        "status": status,
        "snapshot_id": snapshot.snapshot_id,
        "committed_at": datetime.fromtimestamp(snapshot.timestamp_ms / 1000,
                                               timezone.utc).isoformat(),
        "operation": str(summary.operation.value) if summary is not None else None,
        "added_files": count("added-data-files"),
        "removed_files": count("deleted-data-files"),
        "added_records": count("added-records"),
        "removed_records": count("deleted-records"),
        "total_files": count("total-data-files"),
        "total_records": count("total-records"),
        "attempts": attempts,
    }
