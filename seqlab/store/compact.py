"""Compaction: an incremental table's small files rewritten into files of a target size.

Every input file of an incremental table lands its own documents, mentions (and frames) parts,
however small: a day of 3,000 one-document files is 3,000 documents files, where warehouses
and lakehouse engines read best files of 128 MB-1 GB. ``compact`` rewrites, per table and per
``run_date=`` partition, the files smaller than half the target into files of about the
target size, one input's rows after another (inputs ordered by name, each input's rows in
their order), so that each input's rows in a compacted file are one contiguous span, which
the table's index records (``seqlab.store.index.Span``):

    OUT/documents/run_date=D/part-compact-ID-NNNNN.parquet   the compacted files
    OUT/_compact/state.json                                  the compaction under way
    OUT/_superseded/ID/...                                   the files it replaced

Aggregates parts stay one per input file: an input's sums leave the table with the input.

Each step can crash; the next ``seqlab compact`` (or the next run of the table, which
finishes a compaction it finds before planning) finishes the same compaction:

1. the plan (which files, which inputs' spans) is written to the state first;
2. the new files are written (atomically, each recorded in the state as it closes);
3. the index version that swaps them in is written: readers of the index switch at once;
4. the old files leave the live prefix (moved under ``_superseded/ID/``), or, for an Iceberg
   table, one commit per table removes them and adds the new ones (``iceberg.commit_run``,
   the compaction id as its run id: committed once; a Delta table's commit comes first,
   ``delta.commit_compaction``, then the files move);
5. the state is removed.

A plan that no longer holds when it is resumed (the table changed before its swap) is
dropped, its unswapped files removed. A compacted table compacts to nothing (idempotent).
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from seqlab.config import DEFAULT_TARGET_FILE_SIZE
from seqlab.errors import ConfigError, OutputError
from seqlab.pause import pause_at
from seqlab.store import incremental
from seqlab.store.index import CURRENT, Span, TableIndex, read_index, write_index
from seqlab.store.layout import ROW_TABLES, SUPERSEDED
from seqlab.store.lease import held
from seqlab.store.outdir import OutputDir
from seqlab.store.parts import PartInfo
from seqlab.store.spans import SpanWriter, row_group_bytes, schema_of

log = logging.getLogger(__name__)

STATE = posixpath.join("_compact", "state.json")


def current_index(out: OutputDir) -> TableIndex:
    """The table's index; a table written before it had one, folded from its run manifests
    (``incremental.folded``: once per process, however often a compaction asks)."""
    return read_index(out) or incremental.folded(out)


def compact(url: str, target_bytes: int = DEFAULT_TARGET_FILE_SIZE,
            storage_options: dict | None = None, take_over: bool = False) -> dict[str, Any]:
    """Compact the incremental table at ``url`` (files below half of ``target_bytes`` into
    files of about ``target_bytes``), holding its lease; return a summary: the compaction id,
    ``status`` (``compacted`` or ``unchanged``), live files per table before and after, the
    files written and retired, bytes written and seconds."""
    out = OutputDir(url, storage_options)
    if not out.incremental():
        raise OutputError(f"{url} is not an incremental table (it has no _runs/)",
                          fix="point seqlab compact at the OUTPUT of seqlab annotate "
                          "--incremental")
    with held(out, "compact", take_over):
        return compact_table(out, target_bytes)


def compact_table(out: OutputDir, target_bytes: int) -> dict[str, Any]:
    """``compact`` for a caller that holds the table's lease."""
    started = time.time()
    if target_bytes <= 0:
        raise ConfigError(f"--target-file-size must be positive, not {target_bytes}",
                          fix="pass a size such as 512MB, 1GiB or 200000000")
    unfinished = out.state()
    if unfinished is not None:
        raise OutputError(f"run {unfinished.run_id} of {out.url} has not ended",
                          fix="rerun the seqlab annotate command that started it (it resumes "
                          "and ends the run), then compact")
    before = current_index(out)
    jobs = [job for job in (finish_pending(out),) if job is not None]
    index = current_index(out) if jobs else before  # a finished job swapped files in
    groups = plan(index, target_bytes)
    if groups:
        jobs.append({"id": _new_id(), "target_bytes": target_bytes,
                     "base_version": index.version,
                     "started_at": datetime.now(timezone.utc).isoformat(), "groups": groups})
        out.write_json(STATE, jobs[-1])
        pause_at("compact-planned")
        _execute(out, jobs[-1])
        index = current_index(out)
    outputs = [o for job in jobs for g in job["groups"] for o in g["outputs"]]
    return {"compaction_id": jobs[-1]["id"] if jobs else None,
            "status": "compacted" if jobs else "unchanged", "target_bytes": target_bytes,
            "files_before": _counts(before), "files_after": _counts(index),
            "written": len(outputs),
            "retired": sum(len(g["sources"]) for job in jobs for g in job["groups"]),
            "bytes_written": sum(o["bytes"] for o in outputs),
            "seconds": round(time.time() - started, 3)}


def finish_pending(out: OutputDir) -> dict[str, Any] | None:
    """Finish the compaction a crash left in the state (the caller holds the lease); return
    it as its state held it, None where there was none or its plan no longer holds (it is
    then dropped)."""
    job = out.read_json(STATE)
    if job is None:
        return None
    index = current_index(out)
    if not _swapped(out, job, index) and not _plan_holds(job, index):
        log.warning("compaction %s was planned on a table that changed before its files were "
                    "swapped in: dropping it", job["id"])
        _drop(out, job, index)
        return None
    log.info("finishing compaction %s", job["id"])
    _execute(out, job)
    return job


def plan(index: TableIndex, target_bytes: int) -> list[dict[str, Any]]:
    """Per partition, the small documents files to rewrite (at least two, each below half the
    target and holding only input files' rows) with the mentions and frames files of the same
    names, and each input's spans in them: inputs by name, an input's spans in their order.

    A mentions or frames file keeps the name of the documents file whose rows it annotates
    (as a run lands them), so they are rewritten together, cut where the documents file is.
    A table's empty, schema-bearing part of no input stays."""
    users: dict[str, list[tuple[str, Span]]] = {}
    for entry in index.inputs.values():
        for span in entry.spans:
            users.setdefault(span.path, []).append((entry.name, span))

    def placed(path: str) -> bool:
        return path in users and sum(s.rows for _, s in users[path]) == index.files[path][1].rows

    small: dict[str, list[str]] = {}
    for path, (table, info) in index.files.items():
        rest = path.partition("/")[2]
        companions = [f"{t}/{rest}" for t in ROW_TABLES[1:] if f"{t}/{rest}" in index.files]
        names = {name for name, _ in users.get(path, [])}
        if table == "documents" and info.bytes < target_bytes / 2 and placed(path) and all(
                placed(c) and {n for n, _ in users[c]} <= names for c in companions):
            small.setdefault(posixpath.dirname(rest), []).extend([path, *companions])
    groups = []
    for folder, paths in sorted(small.items()):
        if sum(path.startswith("documents/") for path in paths) < 2:
            continue
        inputs: dict[str, list[list]] = {}
        for path in sorted(paths):
            for name, span in users[path]:
                inputs.setdefault(name, []).append([path, span.first_row, span.rows])
        groups.append({"folder": folder, "sources": sorted(paths),
                       "inputs": [[name, sorted(spans)] for name, spans in
                                  sorted(inputs.items())], "outputs": []})
    return groups


def _execute(out: OutputDir, job: dict[str, Any]) -> None:
    for group in job["groups"]:
        for table in ROW_TABLES:  # a crashed write's leftovers
            for tmp in out.fs.glob(out.path(table, group["folder"], ".tmp-*")):
                out.fs.rm(tmp)
    for group in job["groups"]:
        _write_group(out, job, group)
    pause_at("compact-written")
    index = current_index(out)
    if not _swapped(out, job, index):
        if not _plan_holds(job, index):
            raise OutputError(f"the table changed while compaction {job['id']} wrote its files",
                              fix="rerun seqlab compact: it drops this compaction and plans "
                              "again")
        _swap(index, job)
        write_index(out, index, job["id"])
    pause_at("compact-indexed")
    _retire(out, job)
    out.fs.rm(out.path(STATE))


def _write_group(out: OutputDir, job: dict[str, Any], group: dict[str, Any]) -> None:
    """Write the group's files not yet recorded, cut once the documents file reaches the
    target; the files of each cut are recorded in the state together as they close, so a
    rerun goes on from the next cut."""
    done = {name for output in group["outputs"] for name, _, _ in output["spans"]}
    todo = [(name, spans) for name, spans in group["inputs"] if name not in done]
    if not todo:
        return
    first = {}  # each table's first source gives its files' schema
    for path in group["sources"]:
        first.setdefault(path.partition("/")[0], path)
    target = job["target_bytes"]
    cut = sum(o["table"] == "documents" for o in group["outputs"])
    writers: dict[str, SpanWriter] = {}
    for name, spans in todo:
        for table in ROW_TABLES:
            mine = [(out.path(p), f, r) for p, f, r in spans if p.startswith(table + "/")]
            if not mine:
                continue
            if table not in writers:
                relpath = posixpath.join(table, group["folder"],
                                         f"part-compact-{job['id']}-{cut:05d}.parquet")
                writers[table] = SpanWriter(out, relpath, schema_of(out.fs, out.path(
                    first[table])), row_group_bytes(target))
            writers[table].copy(name, mine)
        if writers["documents"].size >= target:
            _record(out, job, group, writers)
            writers, cut = {}, cut + 1
    if writers:
        _record(out, job, group, writers)


def _record(out: OutputDir, job: dict[str, Any], group: dict[str, Any],
            writers: dict[str, SpanWriter]) -> None:
    for table, writer in writers.items():
        info = writer.close()
        group["outputs"].append({"table": table, "path": info.path, "rows": info.rows,
                                 "bytes": info.bytes, "sha256": info.sha256,
                                 "spans": [list(s) for s in writer.spans]})
    out.write_json(STATE, job)
    pause_at("compact-file-written")


def _planned(job: dict[str, Any]) -> tuple[set[str], set[tuple]]:
    sources = {path for group in job["groups"] for path in group["sources"]}
    spans = {(name, path, first, rows) for group in job["groups"]
             for name, listed in group["inputs"] for path, first, rows in listed}
    return sources, spans


def _plan_holds(job: dict[str, Any], index: TableIndex) -> bool:
    """Whether the index still holds the planned files with exactly the planned spans."""
    sources, planned = _planned(job)
    found = {(entry.name, span.path, span.first_row, span.rows)
             for entry in index.inputs.values() for span in entry.spans if span.path in sources}
    return sources <= set(index.files) and found == planned


def _swapped(out: OutputDir, job: dict[str, Any], index: TableIndex) -> bool:
    """Whether the index version that swaps the job's files in was written."""
    current = out.read_json(CURRENT) or {}
    return current.get("run_id") == job["id"] or any(
        output["path"] in index.files for group in job["groups"] for output in group["outputs"])


def _swap(index: TableIndex, job: dict[str, Any]) -> None:
    """The index with the new files in place of the old: each input's spans moved."""
    sources, _ = _planned(job)
    for entry in index.inputs.values():
        if any(span.path in sources for span in entry.spans):
            entry.spans = [span for span in entry.spans if span.path not in sources]
    for path in sources:
        index.files.pop(path, None)
    for group in job["groups"]:
        for output in group["outputs"]:
            index.files[output["path"]] = (output["table"], PartInfo(
                output["path"], output["rows"], output["bytes"], output["sha256"]))
            for name, first, rows in output["spans"]:
                index.inputs[name].spans.append(Span(output["path"], first, rows))


def _retire(out: OutputDir, job: dict[str, Any]) -> None:
    """The old files leave the table: one Iceberg commit per table, or moved aside."""
    settings = _table_settings(out)
    if settings.get("table_format") == "iceberg":
        from seqlab.store import iceberg  # pyiceberg only where Iceberg tables are asked for

        changes: dict[str, iceberg.TableChange] = {}
        for group in job["groups"]:
            for output in group["outputs"]:
                change = changes.setdefault(output["table"], iceberg.TableChange(
                    schema_of(out.fs, out.path(output["path"]))))
                change.added.append(out.url_of(output["path"]))
            for path in group["sources"]:
                changes.setdefault(path.partition("/")[0], iceberg.TableChange(
                    schema_of(out.fs, out.path(path)))).removed.append(out.url_of(path))
        iceberg.commit_run(settings["catalog"], settings.get("namespace") or "seqlab",
                           job["id"], changes, {"seqlab.operation": "compact",
                                                "seqlab.output": out.location})
        return
    if settings.get("table_format") == "delta":  # the Delta log drops them, then they move
        from seqlab.store import delta  # deltalake only where Delta tables are asked for

        delta.commit_compaction(out, job)
    for group in job["groups"]:
        for path in group["sources"]:
            source = out.path(path)
            if out.fs.exists(source):
                target = out.path(SUPERSEDED, job["id"], path)
                out.fs.makedirs(posixpath.dirname(target), exist_ok=True)
                out.fs.mv(source, target)
                pause_at("compact-moving")


def _drop(out: OutputDir, job: dict[str, Any], index: TableIndex) -> None:
    """Remove a dropped job's files that no index lists (written, recorded or not)."""
    for group in job["groups"]:
        for table in ROW_TABLES:
            pattern = out.path(table, group["folder"], f"part-compact-{job['id']}-*.parquet")
            for path in out.fs.glob(pattern):
                if out.relative(path) not in index.files:
                    out.fs.rm(path)
    out.fs.rm(out.path(STATE))


def _table_settings(out: OutputDir) -> dict[str, Any]:
    """The table's settings (``table_format``, ``catalog``...), as its last run kept them."""
    manifest = out.manifest()
    return dict(manifest.table or {}) if manifest is not None else {}


def _counts(index: TableIndex) -> dict[str, int]:
    """Live files per table."""
    return dict(sorted(Counter(table for table, _ in index.files.values()).items()))


def _new_id() -> str:
    """A compaction id, shaped like a run id (when, then a random tag)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


# ------------------------------------------------------------ inputs leaving a compacted file

def release(out: OutputDir, index: TableIndex, names: list[str], run_id: str) -> list[str]:
    """Take the inputs ``names`` out of ``index``; return the files that leave the table.

    A file only these inputs use leaves as it is. A compacted file shared with other inputs
    is rewritten without the released inputs' rows, as ``part-RUNID-rewrite-*.parquet`` in
    its folder (the other inputs' spans moved to it in the index), and the old file leaves.
    A finish retried after the old file was moved aside reads it from ``_superseded/RUNID/``.
    """
    gone = [index.inputs.pop(name) for name in names if name in index.inputs]
    paths = sorted({span.path for entry in gone for span in entry.spans} & set(index.files))
    kept: dict[str, list[tuple[Any, Span]]] = {}
    for entry in index.inputs.values():
        for span in entry.spans:
            if span.path in paths:
                kept.setdefault(span.path, []).append((entry, span))
    for path in paths:
        table, _ = index.files.pop(path)
        if path in kept:
            _rewrite(out, index, table, path, kept[path], run_id)
    return paths


def rewritten(index: TableIndex, run_id: str) -> dict[str, list[str]]:
    """The live files ``release`` wrote for run ``run_id``, per table (an Iceberg commit adds
    them)."""
    found: dict[str, list[str]] = {}
    for path, (table, _) in sorted(index.files.items()):
        if posixpath.basename(path).startswith(f"part-{run_id}-rewrite-"):
            found.setdefault(table, []).append(path)
    return found


def _rewrite(out: OutputDir, index: TableIndex, table: str, path: str,
             kept: list[tuple[Any, Span]], run_id: str) -> None:
    source = out.path(path)
    if not out.fs.exists(source):
        source = out.path(SUPERSEDED, run_id, path)
    # named after the file's path below its table: a documents file and its mentions and
    # frames files keep sharing one name
    tag = hashlib.sha256(path.partition("/")[2].encode()).hexdigest()[:8]
    relpath = posixpath.join(posixpath.dirname(path), f"part-{run_id}-rewrite-{tag}.parquet")
    kept = sorted(kept, key=lambda item: item[1].first_row)
    writer = SpanWriter(out, relpath, schema_of(out.fs, source),
                        row_group_bytes(DEFAULT_TARGET_FILE_SIZE))
    for entry, span in kept:
        writer.copy(entry.name, [(source, span.first_row, span.rows)])
    info = writer.close()
    index.files[relpath] = (table, info)
    for (entry, span), (_, first, rows) in zip(kept, writer.spans):
        entry.spans[entry.spans.index(span)] = Span(relpath, first, rows)
