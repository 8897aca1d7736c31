"""The run's aggregates, merged where the rows are, in bounded memory.

Every landing leaves an aggregate partial under ``_progress/partials/`` (``seqlab.run.land``).
A single run's partials are hash-partitioned by key (``stages.aggregate.key_hash`` of label and
text) into K buckets, and each bucket is summed on its own, in two steps of plain tasks that
any engine maps over its workers:

1. scatter: one task per group of partial files (``PARTIALS_PER_GROUP`` consecutive ones, by
   fragment index) folds them and writes each bucket's rows to
   ``_progress/buckets/BBBBB/part-GGGGG-SSSSS.parquet`` (``S``: a spill, written whenever the
   running sum reaches ``SPILL_KEYS`` keys, so a task never holds more);
2. gather: one task per bucket folds its scatter files, ``finalize``s them and writes
   ``aggregates/part-BBBBB.parquet``: one row per (label, text) of that bucket, sorted by key.
   Every one of the K files is written, an empty one with its schema, so the table is K files
   whatever the data.

A task takes and returns small things (paths, bucket numbers, a ``PartInfo``): the process
that plans the tasks and ends the run does work that grows with the input files and K, never
with rows or keys. Sums are exact (integer micro-units) and the buckets depend on nothing but
the keys and K, so every engine, however it batched and grouped the rows, writes the same K
files, byte for byte.

An incremental run's aggregates are one part per annotated input file (``aggregates/
run_date=D/part-RUNID-FFFFF.parquet``), so that a changed file's sums leave the table with its
rows: there is no scatter, and each gather task folds one input file's partials.

The partials stay until the manifest is written, so a run that stopped anywhere in the merge
redoes it from them: ``plan_merge`` clears ``_progress/buckets/`` first, and every file is
written atomically under a name that depends only on the data.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import pyarrow as pa

from seqlab.errors import ConfigError
from seqlab.pause import pause_at
from seqlab.run.plan import RunPlan
from seqlab.stages import aggregate
from seqlab.store.layout import PROGRESS
from seqlab.store.outdir import OutputDir
from seqlab.store.parts import PartInfo, read_table, write_table

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
Mapper = Callable[[Callable[[T], R], Sequence[T]], list[R]]

# K = ceil(entities / MENTIONS_PER_BUCKET), at most MAX_BUCKETS. A bucket holds at most its
# share of the distinct keys, as distinct keys never outnumber mentions, and every task folds
# at most FOLD_ROWS rows at a time into a sum of at most SPILL_KEYS keys: at ~400 bytes a key
# in memory, a task holds tens of MB whatever the run's size, so the memory of the process
# that runs it stays flat from a thousand keys to billions. Texts repeat (30 Wikipedia
# articles: 11,977 mentions of 5,315 keys, a share that falls as a corpus grows), so most
# buckets hold far fewer keys than mentions. MAX_BUCKETS bounds the files: beyond 400 M
# mentions the buckets grow instead (the ~400 M distinct keys projected for 1 B articles
# come from ~10^11 mentions: ~100,000 keys a bucket).
MENTIONS_PER_BUCKET = 100_000
MAX_BUCKETS = 4096
SPILL_KEYS = 100_000  # the most keys a scatter task sums before it writes them out
PARTIALS_PER_GROUP = 256  # partial files per scatter task
FOLD_CHUNK = 64  # files read and merged at a time (aggregate.fold's chunk)...
FOLD_ROWS = 100_000  # ...or fewer, once they hold this many rows
BUCKETS = posixpath.join(PROGRESS, "buckets")
# Several buckets on a small run: the mentions per bucket, instead of MENTIONS_PER_BUCKET
# (tests set it; the files and their sums are the same for any K)
BUCKETS_ENV = "SEQLAB_MENTIONS_PER_BUCKET"


@dataclass(frozen=True)
class Scatter:
    """Fold a group of partial files and split the sums into ``buckets`` buckets."""

    group: int
    partials: tuple[str, ...]  # relative paths
    buckets: int


@dataclass(frozen=True)
class Scattered:
    """What a scatter task wrote: for each of its spills, the buckets it wrote a file of."""

    group: int
    spills: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Gather:
    """Fold ``sources`` (scatter files, or an input file's partials) into the aggregates
    part ``target``."""

    target: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Merge:
    """The merge a run's records call for: K and the scatter tasks of a single run, or the
    per-input-file folds of an incremental run (``buckets`` 0)."""

    buckets: int
    scatters: tuple[Scatter, ...] = ()
    folds: tuple[Gather, ...] = ()


def bucket_count(entities: int) -> int:
    """K for a run that found ``entities`` mentions (``counts["entities"]``, the same on every
    engine): ``ceil(entities / MENTIONS_PER_BUCKET)``, from 1 to ``MAX_BUCKETS``.

    >>> bucket_count(0), bucket_count(100_000), bucket_count(100_001), bucket_count(10**12)
    (1, 1, 2, 4096)
    """
    per = os.environ.get(BUCKETS_ENV) or str(MENTIONS_PER_BUCKET)
    if not per.isdigit() or int(per) < 1:
        raise ConfigError(f"{BUCKETS_ENV}={per!r} is not a positive whole number",
                          fix=f"unset {BUCKETS_ENV}, or set it to mentions per bucket, e.g. "
                          f"{MENTIONS_PER_BUCKET}")
    return min(max(1, -(-entities // int(per))), MAX_BUCKETS)


def bucket_part(bucket: int) -> str:
    """A single run's aggregates file of one bucket.

    >>> bucket_part(3)
    'aggregates/part-00003.parquet'
    """
    return f"aggregates/part-{bucket:05d}.parquet"


def scatter_file(bucket: int, group: int, spill: int) -> str:
    return posixpath.join(BUCKETS, f"{bucket:05d}", f"part-{group:05d}-{spill:05d}.parquet")


def scatter_tasks(partials: Sequence[str], buckets: int) -> tuple[Scatter, ...]:
    """Groups of ``PARTIALS_PER_GROUP`` consecutive partial files, in the order given."""
    return tuple(Scatter(group, tuple(paths), buckets) for group, paths in
                 enumerate(aggregate.chunks(partials, PARTIALS_PER_GROUP)))


def plan_merge(plan: RunPlan) -> Merge:
    """The merge of the run's recorded fragments (read from their records, sorted by
    fragment index), after clearing what an earlier attempt's merge left."""
    out = plan.out
    records = sorted(out.done_fragments().values(), key=lambda r: r.index)
    clear(out)
    if plan.increment is not None:
        return Merge(0, folds=tuple(
            Gather(out.layout.part("aggregates", r.index), tuple(r.partials))
            for r in records if r.partials))
    buckets = bucket_count(sum(r.counts.get("entities", 0) for r in records))
    return Merge(buckets, scatter_tasks([p for r in records for p in r.partials], buckets))


def gather_tasks(merge: Merge, scattered: Iterable[Scattered]) -> list[Gather]:
    """The gather tasks once every scatter task has returned: one per bucket, each with its
    scatter files in group order (an incremental run's: its folds). Every engine calls it
    once, between its two steps (a test can stop the process there: ``seqlab.pause``)."""
    pause_at("aggregates-scatter")
    if not merge.buckets:
        return list(merge.folds)
    sources: dict[int, list[str]] = defaultdict(list)
    for done in sorted(scattered, key=lambda s: s.group):
        for spill, buckets in enumerate(done.spills):
            for bucket in buckets:
                sources[bucket].append(scatter_file(bucket, done.group, spill))
    return [Gather(bucket_part(b), tuple(sources[b])) for b in range(merge.buckets)]


def scatter(out: OutputDir, task: Scatter) -> Scattered:
    """Run one scatter task: its partials folded, a spill written per ``SPILL_KEYS`` keys."""
    spills: list[tuple[int, ...]] = []

    def spill(total: pa.Table) -> None:
        written = []
        for bucket, rows in aggregate.split(total, task.buckets):
            write_table(out.fs, out.root, scatter_file(bucket, task.group, len(spills)), rows)
            written.append(bucket)
        spills.append(tuple(written))

    total = aggregate.merge([])
    tables = (read_table(out.fs, out.path(path)) for path in task.partials)
    for group in aggregate.chunks(tables, FOLD_CHUNK, FOLD_ROWS):
        total = aggregate.merge([total, *group])
        if total.num_rows >= SPILL_KEYS:
            spill(total)
            total = aggregate.merge([])
    if total.num_rows:
        spill(total)
    return Scattered(task.group, tuple(spills))


def gather(out: OutputDir, task: Gather) -> PartInfo:
    """Run one gather task: its sources folded into one aggregates part."""
    tables = (read_table(out.fs, out.path(path)) for path in task.sources)
    summed = aggregate.fold(tables, FOLD_CHUNK, FOLD_ROWS)
    return write_table(out.fs, out.root, task.target, aggregate.finalize(summed))


def in_turn(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """The local engine's mapper: one task after another, in this process."""
    return [fn(item) for item in items]


def run_merge(out: OutputDir, merge: Merge, mapper: Mapper = in_turn) -> list[PartInfo]:
    """Both steps of ``merge``, each task run by ``mapper(fn, tasks) -> results`` (in task
    order): the aggregates parts, with rows, bytes and sha256."""
    scattered = mapper(partial(scatter, out), merge.scatters)
    landed = mapper(partial(gather, out), gather_tasks(merge, scattered))
    log.debug("aggregates: %d files from %d scatter tasks", len(landed), len(merge.scatters))
    return landed


def merge(plan: RunPlan, mapper: Mapper = in_turn) -> list[PartInfo]:
    """The run's aggregates merged, each task run by ``mapper`` (default: in this process)."""
    return run_merge(plan.out, plan_merge(plan), mapper)


def merge_local(out: OutputDir, partials: Sequence[str], buckets: int) -> list[PartInfo]:
    """Partial files (paths relative to ``out``) merged into ``aggregates/part-00000`` to
    ``part-{buckets-1}`` of ``out``, in this process, as the local engine merges a run's
    (other files under ``aggregates/`` are left as they are); returns their ``PartInfo``s.
    For measuring the merge on partials made without a run."""
    clear(out)
    return run_merge(out, Merge(buckets, scatter_tasks(partials, buckets)))


def clear(out: OutputDir) -> None:
    """Remove the scatter files (of an earlier attempt, or of the merge just ended)."""
    if out.fs.exists(out.path(BUCKETS)):
        out.fs.rm(out.path(BUCKETS), recursive=True)
