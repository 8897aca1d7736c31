"""The Ray engine's output bookkeeping: which rows to read, what a crashed run left, and the
parts Ray wrote (moved into place, described, counted) for the manifest.

Everything here touches files or footers only; rows stay in Ray's tasks.
"""

from __future__ import annotations

import logging
import posixpath
from concurrent.futures import ThreadPoolExecutor

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from seqlab import schema
from seqlab.combine import merge_counts
from seqlab.io import PARQUET, Fragment
from seqlab.output import PROGRESS, TABLES, PartInfo, describe_part
from seqlab.run import RunPlan

log = logging.getLogger(__name__)

COUNT_COLUMNS = [schema.STATUS, "n_tokens", "entities"]


def _status_counts(docs: pa.Table) -> pa.Table:
    """Documents, tokens and entities per status in one block."""
    table = pa.table({
        "status": docs.column(schema.STATUS),
        "tokens": docs.column("n_tokens").cast(pa.int64()),
        "entities": pc.list_value_length(docs.column("entities")).fill_null(0)
        .cast(pa.int64()),
    })
    sums = table.group_by("status", use_threads=False).aggregate(
        [("tokens", "count"), ("tokens", "sum"), ("entities", "sum")])
    return sums.rename_columns({"tokens_count": "documents", "tokens_sum": "tokens",
                                "entities_sum": "entities"})


def _describe(fs: fsspec.AbstractFileSystem, root: str,
              relpath: str) -> tuple[PartInfo, dict[str, int]]:
    """A part's rows, bytes and hash; for documents parts also the manifest's counts."""
    info = describe_part(fs, root, relpath)
    counts: dict[str, int] = {}
    if relpath.startswith("documents/"):
        with fs.open(posixpath.join(root, relpath), "rb") as handle:
            table = pq.read_table(handle, columns=COUNT_COLUMNS)
        for row in _status_counts(table).to_pylist():
            for key, name in (("documents", f"status.{row['status']}"),
                              ("documents", "documents"), ("tokens", "tokens"),
                              ("entities", "entities")):
                counts[name] = counts.get(name, 0) + int(row[key])
    return info, counts


def publish(plan: RunPlan, staging: str) -> tuple[dict[str, list[PartInfo]], dict[str, int]]:
    """Move the staged parts into the table folders; describe them (rows, bytes, sha256) and
    count documents per status, tokens and entities, in Ray tasks (one per part)."""
    out = plan.out
    moved: dict[str, list[str]] = {}
    for table in TABLES:
        moved[table] = []
        for path in sorted(out.fs.glob(out.path(staging, table, "*.parquet"))):
            relpath = posixpath.join(table, posixpath.basename(path))
            out.fs.makedirs(out.path(table), exist_ok=True)
            out.fs.mv(path, out.path(relpath))
            moved[table].append(relpath)
    if out.fs.exists(out.path(staging)):
        out.fs.rm(out.path(staging), recursive=True)
    describe = ray.remote(num_cpus=0.25)(_describe)
    found = iter(ray.get([describe.remote(out.fs, out.root, p)
                          for table in TABLES for p in moved[table]]))
    parts = {table: [next(found) for _ in moved[table]] for table in TABLES}
    counts = merge_counts(part_counts for _, part_counts in parts["documents"])
    return {table: [info for info, _ in described] for table, described in parts.items()}, counts


def rows_to_read(plan: RunPlan) -> list[tuple[Fragment, int]]:
    """Rows each unfinished fragment contributes, with ``--limit`` applied in fragment order
    as the local engine does. Parquet rows come from the footers (read on a few driver
    threads); JSON Lines files are counted by Ray tasks, as only their Reader knows which
    lines make rows."""
    count = ray.remote(num_cpus=0.25)(_count_rows)
    pending = {f.index: count.remote(plan, f) for f in plan.todo if f.format != PARQUET}
    with ThreadPoolExecutor(max_workers=16) as pool:
        footers = dict(zip(
            [f.index for f in plan.todo if f.format == PARQUET],
            pool.map(lambda f: _count_rows(plan, f),
                     [f for f in plan.todo if f.format == PARQUET])))
    counted = {**footers, **dict(zip(pending, ray.get(list(pending.values()))))}
    limit = plan.config.limit
    left = None if limit is None else limit - sum(r.rows_in for r in plan.done.values())
    takes = []
    for fragment in plan.todo:
        if left is not None and left <= 0:
            break
        take = counted[fragment.index] if left is None else min(counted[fragment.index], left)
        takes.append((fragment, take))
        if left is not None:
            left -= take
    return takes


def _count_rows(plan: RunPlan, fragment: Fragment) -> int:
    if fragment.format == PARQUET:
        with plan.reader.fs.open(fragment.path, "rb") as handle:
            return pq.ParquetFile(handle).metadata.num_rows
    return sum(batch.num_rows for batch in plan.reader.read(fragment))


def discard_unrecorded(plan: RunPlan) -> None:
    """Remove what a crashed run left: staged Ray parts, parts no progress record names, and
    the aggregates (always recomputed over every documents part)."""
    out = plan.out
    kept = {p.path for r in plan.done.values() for parts in r.parts.values() for p in parts}
    for path in out.fs.glob(out.path(PROGRESS, "ray-*")):
        out.fs.rm(path, recursive=True)
    for table in TABLES:
        for path in out.fs.glob(out.path(table, "*.parquet")):
            if posixpath.relpath(path, out.root) not in kept:
                log.info("removing %s, left by an unfinished run", path)
                out.fs.rm(path)
