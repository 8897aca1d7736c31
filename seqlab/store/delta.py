"""Committing a run's landed Parquet files to Delta Lake tables, through deltalake.

Each table folder of an incremental table is a Delta table root, partitioned by ``run_date``
(a DATE): the Hive folders seqlab writes anyway. Delta keeps partition values in its log, so
the files stay as they landed, without the column, and no byte of them is rewritten:

    OUT/documents/_delta_log/00000000000000000000.json   the table's commits, one per run
    OUT/documents/run_date=YYYY-MM-DD/part-*.parquet      named by add actions, below the root

A reader of ``documents/**/*.parquet`` and a Delta reader both see each current row once: no
Parquet file is ever written under ``_delta_log/`` (the commits create no checkpoint, and the
tables set ``delta.checkpointInterval`` to its largest value so that other Delta writers do not
either: a checkpoint is a Parquet file that ``**/*.parquet`` globs would read), loaders skip
``_`` folders, and the files a run supersedes leave the Delta table in the run's commit, then
the live prefix (moved under ``_superseded/``, as without Delta).

- One commit per table (``create_write_transaction``; the first creates the table): the
  ``add`` actions of the files the run landed (size, partition value and ``numRecords`` from
  each footer, whose schema must be the table's), the ``remove`` actions of the files it
  supersedes, and a ``txn`` action whose app id is the run id. A compaction's commit adds and
  removes with ``dataChange`` false (``seqlab.operation=compact`` in the commit info).
- Idempotent: a table whose log holds the run's app id is left alone, so a run that stopped
  after committing some tables commits only the others when rerun. deltalake retries a commit
  that meets another writer's; one that conflicts (another attempt of the run, a table created
  meanwhile) is tried again from the reloaded table, after checking the run id again.
- The schema is ``seqlab.schema``'s, converted by deltalake and checked by converting it back.

Tables commit one after another (documents, mentions, frames, aggregates); Delta has no commit
across tables, so a reader that must see one run in all of them waits for the run manifest.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from seqlab.errors import ConfigError, RunError, missing_extra
from seqlab.store.changes import ATTEMPTS, check_change, check_listing, wait_after_conflict
from seqlab.store.layout import TABLES
from seqlab.store.outdir import OutputDir

log = logging.getLogger(__name__)

PARTITION = "run_date"
LOG = "_delta_log"
RUN_ID = "seqlab.run_id"  # in each commit's info, beside the txn action
CONFIGURATION = {"delta.checkpointInterval": str(2**31 - 1)}  # no checkpoint in _delta_log/
_FOLDER = re.compile(rf"^{PARTITION}=(\d{{4}}-\d{{2}}-\d{{2}})$")


@dataclass
class TableChange:
    """What one run changes in one table: the files it landed and those it supersedes, as
    paths relative to the output (``documents/run_date=.../part-....parquet``). ``schema``:
    the Arrow schema the files were written with (None: the table's, which must exist)."""

    schema: pa.Schema | None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def commit_run(out: OutputDir, run_id: str, tables: Mapping[str, TableChange],
               properties: Mapping[str, str] | None = None,
               compaction: bool = False) -> dict[str, Any]:
    """Commit a run's files to the Delta tables ``OUT/<table>/``, one commit per table, and
    return what was committed: per table its status (``committed``, ``already_committed`` by
    an earlier attempt of the run, ``unchanged`` when it neither adds nor removes a file), the
    version, and the file and record counts. ``properties`` go into each commit's info."""
    if not run_id:
        raise ConfigError("a Delta commit needs the run id", fix="pass the run's id")
    _check_changes(tables)
    extra = {**(properties or {}), RUN_ID: run_id}
    result: dict[str, Any] = {"run_id": run_id, "tables": {}}
    for name in sorted(tables, key=TABLES.index):
        change = tables[name]
        if not change.added and not change.removed:
            result["tables"][name] = {"table": out.url_of(name), "status": "unchanged"}
            continue
        result["tables"][name] = {"table": out.url_of(name),
                                  **_commit_table(out, name, change, run_id, extra, compaction)}
    return result


def commit_compaction(out: OutputDir, job: dict[str, Any]) -> dict[str, Any]:
    """Commit a compaction (``seqlab.store.compact``'s job): per table, one commit removing
    the small files and adding the compacted ones, the job id as run id."""
    changes: dict[str, TableChange] = {}
    for group in job["groups"]:
        for output in group["outputs"]:
            changes.setdefault(output["table"], TableChange(None)).added.append(output["path"])
        for path in group["sources"]:
            changes.setdefault(path.partition("/")[0], TableChange(None)).removed.append(path)
    return commit_run(out, job["id"], changes, {"seqlab.operation": "compact"},
                      compaction=True)


def open_table(out: OutputDir, name: str):
    """The Delta table ``OUT/<name>/`` (a ``deltalake.DeltaTable``), None where there is none."""
    deltalake = _deltalake()
    uri, options = out.url_of(name), storage_options(out)
    if not deltalake.DeltaTable.is_deltatable(uri, options):
        return None
    return deltalake.DeltaTable(uri, storage_options=options)


def live_files(out: OutputDir, name: str) -> set[str]:
    """The files the Delta table ``name`` holds now, relative to the output."""
    table = open_table(out, name)
    return set(_live(table, name)) if table is not None else set()


def storage_options(out: OutputDir) -> dict[str, str]:
    """deltalake's options for the output's store, from fsspec's: S3 credentials, endpoint
    and region; elsewhere (and for what is not given) deltalake reads the environment, as the
    cloud SDKs do (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_*``)."""
    if out.location.split("://")[0] not in ("s3", "s3a"):
        return {}
    given = dict(getattr(out.fs, "storage_options", None) or {})
    client = given.get("client_kwargs") or {}
    endpoint = given.get("endpoint_url") or client.get("endpoint_url")
    found = {"AWS_ACCESS_KEY_ID": given.get("key"), "AWS_SECRET_ACCESS_KEY": given.get("secret"),
             "AWS_SESSION_TOKEN": given.get("token"), "AWS_ENDPOINT_URL": endpoint,
             "AWS_REGION": client.get("region_name"),
             "AWS_ALLOW_HTTP": "true" if str(endpoint).startswith("http://") else None}
    return {key: str(value) for key, value in found.items() if value}


def table_schema(declared: pa.Schema):
    """The Delta schema (a ``deltalake.Schema``) of a table whose files have the Arrow schema
    ``declared``, with the ``run_date`` partition column; converted back, it must give every
    column its Arrow type again."""
    return _table_schema(declared.remove_metadata())


@cache
def _table_schema(declared: pa.Schema):
    deltalake = _deltalake()
    if PARTITION in declared.names:
        raise ConfigError(f"the table has a column {PARTITION!r}, the name of the Delta "
                          "tables' partition column",
                          fix=f"rename the input's {PARTITION!r} column, or use "
                          "--table-format parquet or iceberg")
    arrow = pa.schema([*declared, pa.field(PARTITION, pa.date32())])
    try:
        schema = deltalake.Schema.from_arrow(arrow)
    except Exception as exc:  # a type Delta has no counterpart for (time, null, ...)
        raise ConfigError(f"a column's type has no Delta Lake type: {exc}",
                          fix="cast or drop that input column, or use --table-format "
                          "parquet or iceberg") from exc
    for mine, theirs in zip(arrow, pa.schema(schema.to_arrow())):
        if not _same_type(mine.type, theirs.type) or mine.nullable != theirs.nullable:
            raise ConfigError(f"column {mine.name!r} ({mine.type}) reads back from Delta Lake "
                              f"as {theirs.type}", fix="cast the input column to a type "
                              "warehouses share (string, int64, float64, timestamp[us, UTC])")
    return schema


def _same_type(mine: pa.DataType, theirs: pa.DataType) -> bool:
    """Arrow types alike but for the names of list items."""
    if pa.types.is_list(mine) and pa.types.is_list(theirs):
        return (mine.value_field.nullable == theirs.value_field.nullable
                and _same_type(mine.value_type, theirs.value_type))
    if pa.types.is_struct(mine) and pa.types.is_struct(theirs):
        return len(mine) == len(theirs) and all(
            a.name == b.name and a.nullable == b.nullable and _same_type(a.type, b.type)
            for a, b in zip(mine, theirs))
    return mine.equals(theirs)


def _same(one, other) -> bool:
    """Whether two Delta schemas are the same columns."""
    return pa.schema(one.to_arrow()).equals(pa.schema(other.to_arrow()))


def _commit_table(out: OutputDir, name: str, change: TableChange, run_id: str,
                  extra: dict[str, Any], compaction: bool) -> dict[str, Any]:
    """Commit one table's change, tried again on conflicts, rechecking the run id each time."""
    from deltalake.exceptions import CommitFailedError, DeltaError, DeltaProtocolError
    from deltalake.transaction import (
        CommitProperties,
        PostCommitHookProperties,
        Transaction,
        create_table_with_add_actions,
    )

    added = None
    conflict: Exception | None = None
    hooks = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)
    for attempt in range(1, ATTEMPTS + 1):
        if conflict is not None:
            wait_after_conflict(attempt, "Delta", name, conflict)
        table = open_table(out, name)
        if table is not None and table.transaction_version(run_id) is not None:
            log.info("%s already holds run %s", name, run_id)
            return _report(table, run_id, "already_committed", attempt)
        schema = _schema(out, name, change, table)
        if added is None:  # the footers are read once, whatever the conflicts
            added = _added(out, name, change.added, schema, compaction)
        removed = _removed(out, name, change, table, compaction)
        rows = sum(json.loads(a.stats)["numRecords"] for a in added)
        properties = CommitProperties(app_transactions=[Transaction(run_id, 0)], custom_metadata={
            **extra, "operationMetrics": {"numAddedFiles": str(len(added)),
                                          "numRemovedFiles": str(len(removed)),
                                          "numOutputRows": str(rows)}})
        try:
            if table is None:
                create_table_with_add_actions(
                    out.url_of(name), schema, added, mode="error", partition_by=[PARTITION],
                    name=name, configuration=CONFIGURATION, storage_options=storage_options(out),
                    commit_properties=properties, post_commithook_properties=hooks)
            else:
                table.create_write_transaction(
                    added + removed, mode="append", schema=schema, partition_by=[PARTITION],
                    commit_properties=properties, post_commithook_properties=hooks)
        except DeltaProtocolError as exc:  # a table feature deltalake does not write
            raise ConfigError(f"the Delta table {out.url_of(name)} refuses the commit: {exc}",
                              fix="lift the table setting it names, or write to a new OUTPUT"
                              ) from exc
        except CommitFailedError as exc:  # another attempt of the run, a concurrent delete
            conflict = exc
            continue
        except DeltaError as exc:
            if table is None and open_table(out, name) is not None:  # created meanwhile
                conflict = exc
                continue
            raise RunError(f"the commit to the Delta table {out.url_of(name)} failed: {exc}",
                           fix="check that OUTPUT is writable with the run's storage options, "
                           "then rerun the same command") from exc
        log.info("committed run %s to the Delta table %s", run_id, name)
        return _report(open_table(out, name), run_id, "committed", attempt)
    raise RunError(f"Delta commit of run {run_id} to {name} failed {ATTEMPTS} times on "
                   f"conflicting commits: {conflict}",
                   fix="rerun the same command: the tables committed so far keep the run, the "
                   "others commit once the other writers are done") from conflict


def _schema(out: OutputDir, name: str, change: TableChange, table):
    """The table's Delta schema: the one it has, which must be the run's, or the run's."""
    where = out.url_of(name)
    if table is None:
        if change.schema is None:
            raise RunError(f"{where} holds no Delta table to change",
                           fix="commit a run's files first: its commit creates the table")
        return table_schema(change.schema)
    if list(table.metadata().partition_columns) != [PARTITION]:
        raise ConfigError(f"the Delta table {where} is not partitioned by {PARTITION} alone",
                          fix="write to a new OUTPUT: seqlab's Delta tables are partitioned "
                          f"by {PARTITION}")
    schema = table.schema()
    if change.schema is not None and not _same(schema, table_schema(change.schema)):
        raise ConfigError(f"the Delta table {where} has other columns than the run's files",
                          fix="run with the options the table was started with, or write to "
                          "a new OUTPUT")
    return schema


def _added(out: OutputDir, name: str, paths: list[str], schema, compaction: bool) -> list:
    """The ``add`` actions of the files, from their footers (each checked to fit)."""
    from deltalake.transaction import AddAction

    actions = []
    for relpath in paths:
        try:
            with out.fs.open(out.path(relpath), "rb") as handle:
                footer = pq.ParquetFile(handle)
                file_schema, rows = footer.schema_arrow, footer.metadata.num_rows
            size = out.fs.size(out.path(relpath))
        except FileNotFoundError as exc:
            raise RunError(f"{name}: a file the run adds does not exist: {relpath}",
                           fix="commit only files that landed (the run manifest lists them)"
                           ) from exc
        if not _same(table_schema(file_schema), schema):
            raise ConfigError(f"{name}: {relpath} does not fit the Delta table's columns",
                              fix="write the files with the table's schema, or write to a new "
                              "OUTPUT")
        below = _below(name, relpath)
        actions.append(AddAction(below, size, {PARTITION: _date(below)}, _now_ms(),
                                 not compaction, json.dumps({"numRecords": rows})))
    return actions


def _removed(out: OutputDir, name: str, change: TableChange, table, compaction: bool) -> list:
    """The ``remove`` actions of the files the run supersedes, each a live file of the table
    (and no file it adds one)."""
    from deltalake.transaction import RemoveAction

    live = _live(table, name) if table is not None else {}
    check_change(f"the Delta table {out.url_of(name)}", change.added, change.removed, live,
                 "another writer replaced them (an OPTIMIZE, a rewrite): compact the tables "
                 "with seqlab compact only, or start a new OUTPUT")
    config = table.metadata().configuration if table is not None else {}
    if change.removed and not compaction and config.get("delta.appendOnly") == "true":
        raise ConfigError(f"the Delta table {out.url_of(name)} is append-only "
                          "(delta.appendOnly), and the run supersedes files of it",
                          fix="unset delta.appendOnly on the table, or write to a new OUTPUT")
    now = _now_ms()
    return [RemoveAction(live[p]["path"], not compaction, now, live[p]["size_bytes"],
                         {PARTITION: _date(live[p]["path"])}) for p in change.removed]


def _live(table, name: str) -> dict[str, dict[str, Any]]:
    """The table's live files (paths relative to the output) with their add actions."""
    adds = pa.table(table.get_add_actions(flatten=True)).select(
        ["path", "size_bytes", "num_records"]).to_pylist()
    return {f"{name}/{add['path']}": add for add in adds}


def _report(table, run_id: str, status: str, attempts: int) -> dict[str, Any]:
    """The commit of ``run_id`` (the latest one carrying it) and the table after it."""
    commit = next((c for c in table.history() if c.get(RUN_ID) == run_id), {})
    metrics = commit.get("operationMetrics") or {}
    adds = pa.table(table.get_add_actions(flatten=True))
    return {"status": status, "version": commit.get("version"),
            "committed_at": datetime.fromtimestamp(commit.get("timestamp", 0) / 1000,
                                                   timezone.utc).isoformat(),
            "added_files": int(metrics.get("numAddedFiles", 0)),
            "removed_files": int(metrics.get("numRemovedFiles", 0)),
            "added_records": int(metrics.get("numOutputRows", 0)),
            "total_files": adds.num_rows,
            "total_records": sum(n or 0 for n in adds.column("num_records").to_pylist()),
            "attempts": attempts}


def _check_changes(tables: Mapping[str, TableChange]) -> None:
    """``check_listing``, and every path a file of its table's ``run_date=`` partitions."""
    check_listing(tables)
    for name, change in tables.items():
        for path in (*change.added, *change.removed):
            _date(_below(name, path))


def _below(name: str, relpath: str) -> str:
    """A file's path below its table's root."""
    table, _, below = relpath.partition("/")
    if table != name or not below:
        raise ConfigError(f"{relpath} is not a file of the {name} table",
                          fix=f"list {name}/run_date=YYYY-MM-DD/... files for {name}")
    return below


def _date(below: str) -> str:
    """The partition value of a file, from its ``run_date=`` folder."""
    match = _FOLDER.match(below.split("/")[0])
    if match is None or "/" not in below:
        raise ConfigError(f"{below} is not in a {PARTITION}=YYYY-MM-DD folder",
                          fix=f"commit the files of incremental runs: they land in {PARTITION}"
                          "= partitions")
    return match.group(1)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _deltalake():
    try:
        import deltalake
    except ImportError as exc:
        raise missing_extra("deltalake", "delta") from exc
    return deltalake
