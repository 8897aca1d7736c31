"""The Ray Data engine: the seqlab stages on a Ray cluster (or a local Ray started on the fly).

    fragments ─► read + tokenize ─► tag + decode ──► documents (write_parquet, declared schema)
    (one item    CPU tasks          actor pool:        │ read back
     per file)   (map_batches)      model loaded       ├─► mentions (map_batches, write_parquet)
                                    once per actor     └─► aggregates (groupby + Sum)

Rows never pass through the driver: it only lists the parts Ray wrote, asks Ray tasks for their
row counts, hashes and status counts, and writes ``_manifest.json`` through ``finish_run``.

Ray Data spreads a fragment's rows over several files, so Ray parts belong to the run, not to a
fragment. They are written to a staging folder under ``_progress/`` and moved into
``documents/``, ``mentions/`` and ``aggregates/`` only when every table is complete; a crashed
run leaves nothing in the table folders, and a rerun starts the unfinished fragments over
(fragments a previous local run recorded as done are kept).
"""

from __future__ import annotations

import logging
import os
import posixpath
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from ray.data import ActorPoolStrategy, DataContext, Dataset
from ray.data.context import ShuffleStrategy
from ray.data.aggregate import Sum
from ray.data.datasource import FilenameProvider

from seqlab import aggregate, schema
from seqlab.errors import ConfigError
from seqlab.output import PROGRESS, TABLES, FragmentRecord, write_table
from seqlab.run import RunPlan, finish_run
from seqlab.stages import mentions

from pipelines.ray_output import discard_unrecorded, publish, rows_to_read

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (documents, words) done since the last call

# Test-only fault injection: the first incarnation of a tagging actor exits its process on
# this batch number, so tests can check that a restarted actor redoes the lost batch exactly once.
FAULT_ENV = "SEQLAB_FAULT_EXIT_AFTER_BATCHES"
MAX_RESTARTS = 3  # per tagging actor: a crash is retried, a crash loop fails the run
MAX_TASK_RETRIES = 3
ROWS_PER_AGGREGATE_PARTITION = 2_000_000  # documents per groupby partition, roughly
ENTITY_COLUMNS = [schema.DOC_ID, "entities", *[f.name for f in schema.PROVENANCE]]
READ_CPUS = 0.5  # reading written parts back: light, and never starves the other stages


@dataclass(frozen=True)
class RaySettings:
    """How the run is laid out on the cluster (``--tag-actors``, ``--cpus-per-actor``...)."""

    address: str | None
    tag_actors: int
    gpus_per_actor: float
    cpus_per_actor: float
    tokenize_cpus: float


def resolve_settings(options: dict[str, Any], resources: dict[str, float],
                     local: bool) -> RaySettings:
    """Fill in defaults from the cluster's resources and refuse layouts that cannot run.

    >>> s = resolve_settings({}, {"CPU": 2.0}, local=True)
    >>> (s.tag_actors, s.cpus_per_actor, s.gpus_per_actor, s.tokenize_cpus)
    (1, 1.0, 0.0, 0.5)
    >>> resolve_settings({}, {"CPU": 16.0, "GPU": 4.0}, local=False).tag_actors
    4
    """
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    gpus_per_actor = float(options.get("gpus_per_actor") or (1.0 if gpus else 0.0))
    default_actors = int(gpus // gpus_per_actor) if gpus_per_actor and gpus else 1
    tag_actors = int(options.get("tag_actors") or max(1, default_actors))
    cpus_per_actor = float(options.get("cpus_per_actor") or min(1.0, cpus / 2) or 1.0)
    left = cpus - tag_actors * cpus_per_actor
    tokenize_cpus = float(options.get("tokenize_cpus") or (1.0 if left >= 2 else 0.5))
    settings = RaySettings(options.get("address"), tag_actors, gpus_per_actor, cpus_per_actor,
                           tokenize_cpus)
    problem = _layout_problem(settings, cpus, gpus)
    if problem and local:
        raise ConfigError(problem, fix="lower --tag-actors or --cpus-per-actor (or "
                          "--gpus-per-actor), or run on a cluster with --address")
    if problem:  # an autoscaling cluster may still grow to fit
        log.warning("%s; waiting for the cluster to scale up", problem)
    return settings


def _layout_problem(s: RaySettings, cpus: float, gpus: float) -> str | None:
    if s.tag_actors < 1 or s.cpus_per_actor <= 0 or s.tokenize_cpus <= 0:
        return "--tag-actors, --cpus-per-actor and --tokenize-cpus must be positive"
    if s.tag_actors * s.gpus_per_actor > gpus:
        return (f"{s.tag_actors} tagging actors x {s.gpus_per_actor:g} GPUs need "
                f"{s.tag_actors * s.gpus_per_actor:g} GPUs; the cluster has {gpus:g}")
    if s.tag_actors * s.cpus_per_actor + s.tokenize_cpus > cpus:
        # an actor pool holding every CPU leaves the read tasks unscheduled: Ray waits forever
        return (f"{s.tag_actors} tagging actors x {s.cpus_per_actor:g} CPUs plus "
                f"{s.tokenize_cpus:g} CPUs for reading and tokenizing exceed the cluster's "
                f"{cpus:g} CPUs")
    return None


def run(plan: RunPlan, progress: Progress | None = None) -> dict:
    """Annotate every unfinished fragment of the plan on Ray; return the manifest."""
    address = plan.config.engine_options.get("address")
    started_here = _connect(address)
    try:
        settings = resolve_settings(plan.config.engine_options, ray.cluster_resources(),
                                    local=started_here)
        log.info("ray: %d tagging actors x (%g CPU, %g GPU), %g CPU per tokenize task",
                 settings.tag_actors, settings.cpus_per_actor, settings.gpus_per_actor,
                 settings.tokenize_cpus)
        return _annotate(plan, settings, progress)
    finally:
        if started_here:
            ray.shutdown()


def _connect(address: str | None) -> bool:
    """Join the given cluster, the one a Ray job runs in, or start a local one; True if started."""
    if ray.is_initialized():
        return False
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=True)
        return False
    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False)
    return True


def _annotate(plan: RunPlan, settings: RaySettings, progress: Progress | None) -> dict:
    discard_unrecorded(plan)
    takes = rows_to_read(plan)
    records = list(plan.done.values()) + [
        FragmentRecord(f.name, f.index, take) for f, take in takes]
    work = [{"index": f.index, "take": take} for f, take in takes if take]
    staging = posixpath.join(PROGRESS, f"ray-{uuid.uuid4().hex[:12]}")
    _run_datasets(plan, settings, work, staging, sum(r.rows_in for r in records), progress)
    parts, counts = publish(plan, staging)
    if not parts["aggregates"]:  # no entities at all: land an empty table, as the local engine
        parts["aggregates"] = [write_table(plan.out.fs, plan.out.root,
                                           "aggregates/part-00000.parquet",
                                           aggregate.finalize(aggregate.merge([])))]
    aggregates = parts.pop("aggregates")
    return finish_run(plan, records, aggregates, engine="ray", parts=parts, counts=counts,
                      extra={"ray": asdict(settings)})


def _run_datasets(plan: RunPlan, settings: RaySettings, work: list[dict], staging: str,
                  rows: int, progress: Progress | None) -> None:
    """Documents, then mentions and aggregates from the documents written."""
    out, arrow_fs = plan.out, _arrow_fs(plan.out.fs)
    staged = {t: out.path(staging, t) for t in TABLES}
    clock = time.monotonic()
    if work:
        with _reporting(progress) as counter:
            _write(_documents(plan, settings, work, counter), staged["documents"], arrow_fs,
                   plan.documents_schema, plan)
        log.info("documents written in %.1f s", time.monotonic() - clock)
    new_docs = out.fs.glob(posixpath.join(staged["documents"], "*.parquet"))
    all_docs = [out.path(p.path) for r in plan.done.values()
                for p in r.parts.get("documents", [])] + new_docs
    if new_docs:
        _write(_read(plan, new_docs, ENTITY_COLUMNS).map_batches(
            mentions, batch_format="pyarrow"), staged["mentions"], arrow_fs, schema.MENTIONS,
            plan)
    if all_docs:
        with _shuffle_strategy(ShuffleStrategy.SORT_SHUFFLE_PULL_BASED):
            _write(_aggregates(_read(plan, all_docs, ENTITY_COLUMNS), rows),
                   staged["aggregates"], arrow_fs, schema.AGGREGATES, plan)
    log.info("documents, mentions and aggregates done in %.1f s", time.monotonic() - clock)


@contextmanager
def _shuffle_strategy(strategy: ShuffleStrategy) -> Iterator[None]:
    """Run the aggregate groupby with plain tasks: its input is one small row per (document,
    entity key), and the hash shuffle's aggregator actors take seconds to start (measured on
    Ray 2.60). The caller's Ray Data context is left as it was."""
    context = DataContext.get_current()
    before = context.shuffle_strategy
    context.shuffle_strategy = strategy
    try:
        yield
    finally:
        context.shuffle_strategy = before


def _read(plan: RunPlan, paths: list[str], columns: list[str]) -> Dataset:
    """Columns of written parts, one read task per part, in batches of ``--batch-docs`` rows.

    (Plain tasks over the part list: ``read_parquet``'s file listing and metadata tasks cost
    seconds per dataset, and the parts are known already.)"""
    items = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=len(paths))
    return items.map_batches(_read_parts, batch_size=1, batch_format="pyarrow",
                             num_cpus=READ_CPUS, fn_kwargs={
                                 "fs": plan.out.fs, "columns": columns,
                                 "batch_rows": plan.config.batch_docs})


def _read_parts(items: pa.Table, fs: fsspec.AbstractFileSystem, columns: list[str],
                batch_rows: int) -> Iterator[pa.Table]:
    for path in items.column("path").to_pylist():
        with fs.open(path, "rb") as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_rows, columns=columns):
                yield pa.Table.from_batches([batch])


def _documents(plan: RunPlan, settings: RaySettings, work: list[dict], counter) -> Dataset:
    """read -> tokenize as CPU tasks -> tag and decode on the actor pool."""
    items = ray.data.from_items(work, override_num_blocks=len(work))
    tokens = items.map_batches(_read_and_tokenize, fn_kwargs={"plan": plan}, batch_size=1,
                               batch_format="pyarrow", num_cpus=settings.tokenize_cpus)
    fault = os.environ.get(FAULT_ENV)
    with warnings.catch_warnings():
        # max_restarts / max_task_retries have no named parameter in Ray 2.60; the warning
        # announces the ** form's removal in 2.64, whose defaults (unbounded) would then apply
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        return _tag_actors(tokens, plan, settings, fault, counter)


def _tag_actors(tokens: Dataset, plan: RunPlan, settings: RaySettings, fault: str | None,
                counter) -> Dataset:
    return tokens.map_batches(
        TagActor, fn_constructor_kwargs={"plan": plan, "counter": counter},
        compute=ActorPoolStrategy(size=settings.tag_actors),
        batch_size=plan.config.batch_docs, batch_format="pyarrow",
        num_cpus=settings.cpus_per_actor, num_gpus=settings.gpus_per_actor or None,
        max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES,
        runtime_env={"env_vars": {FAULT_ENV: fault}} if fault else None,
    )


def _read_and_tokenize(work: pa.Table, plan: RunPlan) -> Iterator[pa.Table]:
    """Fragment descriptors -> tokenized batches, read by seqlab's own Reader (same ids and
    bad-row handling as the local engine)."""
    tokenize = _cached(plan, "tokenize", plan.tokenizer_stage)
    for index, take in zip(work.column("index").to_pylist(), work.column("take").to_pylist()):
        for batch in plan.reader.read(plan.fragments[index], take):
            yield pa.Table.from_batches([tokenize(batch)])


class TagActor:
    """Tagger + Decoder in one actor: the model loads once per actor, batches stream through."""

    def __init__(self, plan: RunPlan, counter=None) -> None:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # one "Loading weights" bar per actor is noise
        self.tag = plan.tagger_stage()
        self.decode = plan.decoder_stage()
        self.counter = counter
        self.batches = 0
        self.fail_at = int(os.environ.get(FAULT_ENV) or 0)

    def __call__(self, table: pa.Table) -> pa.Table:
        self.batches += 1
        if self.fail_at and self.batches >= self.fail_at and \
                not ray.get_runtime_context().was_current_actor_reconstructed:
            log.warning("%s=%d: tagging actor exits on batch %d", FAULT_ENV, self.fail_at,
                        self.batches)
            os._exit(1)
        docs = self.decode(self.tag(_as_batch(table)))
        if self.counter is not None:
            self.counter.add.remote(docs.num_rows, int(pc.sum(docs.column("n_tokens")).as_py()
                                                       or 0))
        return pa.Table.from_batches([docs])


@ray.remote(num_cpus=0)
class _Counter:
    """Documents and words tagged so far, for the progress line (a retried batch counts
    twice here; the manifest's counts are exact)."""

    def __init__(self) -> None:
        self.docs = self.words = 0

    def add(self, docs: int, words: int) -> None:
        self.docs += docs
        self.words += words

    def take(self) -> tuple[int, int]:
        taken, self.docs, self.words = (self.docs, self.words), 0, 0
        return taken


@contextmanager
def _reporting(progress: Progress | None, every_s: float = 1.0) -> Iterator[Any]:
    """A counter the tagging actors add to, passed on to ``progress`` every second."""
    if progress is None:
        yield None
        return
    counter = _Counter.remote()
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(every_s):
            progress(*ray.get(counter.take.remote()))

    thread = threading.Thread(target=report, name="seqlab-ray-progress", daemon=True)
    thread.start()
    try:
        yield counter
    finally:
        stop.set()
        thread.join()
        progress(*ray.get(counter.take.remote()))
        ray.kill(counter)


def _contributions(docs: pa.Table) -> pa.Table:
    """Per (document, label, text) sums; a document is one row, so it is counted once."""
    return aggregate.document_contributions(mentions(docs)).drop_columns([schema.DOC_ID])


def _finalize(sums: pa.Table) -> pa.Table:
    partial = pa.table({name: sums.column(name) for name in schema.AGGREGATE_PARTIAL.names})
    return aggregate.finalize(partial.cast(schema.AGGREGATE_PARTIAL))


def _aggregates(docs: Dataset, rows: int) -> Dataset:
    """Per-document contributions summed by (label, text) with Ray's groupby."""
    partitions = 1 + rows // ROWS_PER_AGGREGATE_PARTITION
    grouped = docs.map_batches(_contributions, batch_format="pyarrow").groupby(
        aggregate.KEYS, num_partitions=partitions)
    return grouped.aggregate(*[Sum(c, alias_name=c) for c in aggregate.SUMS]).map_batches(
        _finalize, batch_format="pyarrow")


class _PartNames(FilenameProvider):
    """``part-ray-<write uuid>-<task>``: unique per write, never like a local ``part-FFFFF-``."""

    def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
        return f"part-ray-{write_uuid}-{task_index:06d}"


def _write(ds: Dataset, path: str, arrow_fs: pafs.FileSystem, declared: pa.Schema,
           plan: RunPlan) -> None:
    ds.select_columns(declared.names).write_parquet(
        path, filesystem=arrow_fs, schema=declared, compression="zstd",
        filename_provider=_PartNames(), min_rows_per_file=plan.config.rows_per_part)


_STAGES: dict[tuple[str, str], Any] = {}


def _cached(plan: RunPlan, name: str, build):
    """A stage built once per worker process and run (Ray reuses task workers)."""
    key = (plan.provenance.run_id, name)
    if key not in _STAGES:
        _STAGES[key] = build()
    return _STAGES[key]


def _as_batch(table: pa.Table) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([c.combine_chunks() for c in table.columns],
                                      schema=table.schema)


def _arrow_fs(fs: fsspec.AbstractFileSystem) -> pafs.FileSystem:
    """A pyarrow filesystem for Ray's readers and writers (Arrow does not know fsspec URLs)."""
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return pafs.LocalFileSystem()
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))
