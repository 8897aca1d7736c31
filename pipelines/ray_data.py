"""The Ray Data engine: the run contract on a Ray cluster (or a local Ray started on the fly).

    work items ─► read + tokenize ─► tag + decode ─► land ─► driver: FragmentLedger ─► finish
    (one per      CPU tasks          actor pool:     CPU      records each fragment as its
     fragment)    (map_batches)      model loaded    tasks    last landing arrives
                                     once per actor

Rows never pass through the driver: the land tasks write the documents and mentions parts and
the aggregate partials themselves and send back only their ``Landed`` summaries (paths, rows,
hashes, counts). Fragments are recorded as they complete, so a crashed run, resumed on any
engine, redoes only the fragments that had not finished.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy, Dataset

from seqlab.engine import Engine, Progress
from seqlab.errors import ConfigError
from seqlab.run.annotator import FAULT_ENV as STAGE_FAULT_ENV
from seqlab.run.annotator import Annotator
from seqlab.run.finish import finish_run
from seqlab.run.land import Landed, land
from seqlab.run.ledger import FragmentLedger
from seqlab.run.plan import RunPlan
from seqlab.run.work import WorkItem, read_slices

log = logging.getLogger(__name__)

# Test-only fault injection: the first incarnation of a tagging actor exits its process on
# this batch number, so tests can check that a restarted actor redoes the lost batch exactly once.
FAULT_ENV = "SEQLAB_FAULT_EXIT_AFTER_BATCHES"
MAX_RESTARTS = 3  # per tagging actor: a crash is retried, a crash loop fails the run
# A batch whose actor died or cannot be reached is retried for as long as the actor can come back
# (MAX_RESTARTS bounds that): a lost node refuses connections for seconds before Ray declares it
# dead and restarts its actors elsewhere, and a fixed count of retries runs out in that time,
# failing the run. Exceptions raised by seqlab's own code are never retried by Ray.
MAX_TASK_RETRIES = -1
LAND_CPUS = 0.25  # writing Parquet parts: light, and never starves the other stages
LANDED = "landed"  # the one column of the land stage's output: Landed summaries as JSON


@dataclass(frozen=True)
class RayOptions:
    """``--address``, ``--tag-actors``, ``--gpus-per-actor``, ``--cpus-per-actor``,
    ``--tokenize-cpus``; unset ones are filled in from the cluster's resources."""

    address: str | None = None
    tag_actors: int | None = None
    gpus_per_actor: float | None = None
    cpus_per_actor: float | None = None
    tokenize_cpus: float | None = None


@dataclass(frozen=True)
class RaySettings:
    """How the run is laid out on the cluster, every value settled."""

    address: str | None
    tag_actors: int
    gpus_per_actor: float
    cpus_per_actor: float
    tokenize_cpus: float


def resolve_settings(options: RayOptions, resources: dict[str, float],
                     local: bool) -> RaySettings:
    """Fill in defaults from the cluster's resources and refuse layouts that cannot run.

    >>> s = resolve_settings(RayOptions(), {"CPU": 2.0}, local=True)
    >>> (s.tag_actors, s.cpus_per_actor, s.gpus_per_actor, s.tokenize_cpus)
    (1, 1.0, 0.0, 0.5)
    >>> resolve_settings(RayOptions(), {"CPU": 16.0, "GPU": 4.0}, local=False).tag_actors
    4
    """
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    gpus_per_actor = float(options.gpus_per_actor or (1.0 if gpus else 0.0))
    default_actors = int(gpus // gpus_per_actor) if gpus_per_actor and gpus else 1
    tag_actors = int(options.tag_actors or max(1, default_actors))
    cpus_per_actor = float(options.cpus_per_actor or min(1.0, cpus / 2) or 1.0)
    left = cpus - tag_actors * cpus_per_actor
    tokenize_cpus = float(options.tokenize_cpus or (1.0 if left >= 2 else 0.5))
    settings = RaySettings(options.address, tag_actors, gpus_per_actor, cpus_per_actor,
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
    if s.tag_actors * s.cpus_per_actor + s.tokenize_cpus + LAND_CPUS > cpus:
        # an actor pool holding every CPU leaves the read tasks unscheduled: Ray waits forever
        return (f"{s.tag_actors} tagging actors x {s.cpus_per_actor:g} CPUs plus "
                f"{s.tokenize_cpus:g} CPUs for reading and tokenizing and {LAND_CPUS:g} for "
                f"writing exceed the cluster's {cpus:g} CPUs")
    return None


def run(plan: RunPlan, options: RayOptions | None = None,
        progress: Progress | None = None) -> dict:
    """Annotate every unfinished fragment of the plan on Ray; return the manifest."""
    options = options or RayOptions()
    started_here = _connect(options.address)
    try:
        settings = resolve_settings(options, ray.cluster_resources(), local=started_here)
        log.info("ray: %d tagging actors x (%g CPU, %g GPU), %g CPU per tokenize task",
                 settings.tag_actors, settings.cpus_per_actor, settings.gpus_per_actor,
                 settings.tokenize_cpus)
        if plan.work:
            ledger = FragmentLedger(plan)
            for landed in _landings(_landed(plan, settings)):
                ledger.add(landed)
                if progress:
                    progress.update(landed.counts)
        return finish_run(plan, engine="ray", extra={"ray": asdict(settings)})
    finally:
        if started_here:
            ray.shutdown()


def _connect(address: str | None) -> bool:
    """Join the given cluster (``--address``, or ``RAY_ADDRESS``, as a Ray job's driver has), or
    start a local Ray of our own; True if started.

    Ray's own logging (progress tables, start-up notes, its C++ core's warnings) shows only
    with debug logging (``seqlab -v``): seqlab reports the run's progress itself."""
    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    _quiet_ray(verbose)
    if ray.is_initialized():
        return False
    level = logging.INFO if verbose else logging.ERROR
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=verbose, logging_level=level)
        return False
    # "local": always a new Ray of our own. A bare ray.init() would instead join the cluster
    # named in Ray's temp folder (ray_current_cluster, left by a running or stale `ray start`)
    # and then refuse num_cpus.
    ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False,
             log_to_driver=verbose, logging_level=level)
    return True


def _quiet_ray(verbose: bool) -> None:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = verbose
    context.print_on_execution_start = verbose
    if not verbose:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # read when the driver starts
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _landed(plan: RunPlan, settings: RaySettings) -> Dataset:
    """read -> tokenize as CPU tasks -> tag and decode on the actor pool -> land as CPU tasks.

    Ray regroups rows into blocks and batches as it likes; the location columns let the land
    stage name each fragment's rows whatever batch they arrive in."""
    env = {name: os.environ[name] for name in (FAULT_ENV, STAGE_FAULT_ENV) if name in os.environ}
    runtime_env = {"env_vars": env} if env else None
    items = ray.data.from_items(
        [{"index": item.fragment.index, "limit": -1 if item.limit is None else item.limit}
         for item in plan.work], override_num_blocks=len(plan.work))
    tokens = items.map_batches(_read_and_tokenize, fn_kwargs={"plan": plan}, batch_size=1,
                               batch_format="pyarrow", num_cpus=settings.tokenize_cpus,
                               runtime_env=runtime_env)
    with warnings.catch_warnings():
        # max_restarts / max_task_retries have no named parameter in Ray 2.60; the warning
        # announces the ** form's removal in 2.64, whose defaults (unbounded) would then apply
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        tagged = tokens.map_batches(
            TagActor, fn_constructor_kwargs={"plan": plan},
            compute=ActorPoolStrategy(size=settings.tag_actors),
            batch_size=plan.config.batch_docs, batch_format="pyarrow",
            num_cpus=settings.cpus_per_actor, num_gpus=settings.gpus_per_actor or None,
            max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES,
            runtime_env=runtime_env)
    return tagged.map_batches(_land, fn_kwargs={"plan": plan}, batch_size=None,
                              batch_format="pyarrow", num_cpus=LAND_CPUS)


def _landings(landed: Dataset) -> Iterator[Landed]:
    for batch in landed.iter_batches(batch_size=None, batch_format="pyarrow"):
        for value in batch.column(LANDED).to_pylist():
            yield Landed.from_dict(json.loads(value))


def _read_and_tokenize(work: pa.Table, plan: RunPlan) -> Iterator[pa.Table]:
    """Work items -> tokenized read batches with their locations (seqlab's own Reader: the
    same ids and bad-row handling as every engine)."""
    annotate = _cached(plan, "annotate", lambda: Annotator(plan))
    for index, limit in zip(work.column("index").to_pylist(), work.column("limit").to_pylist()):
        item = WorkItem(plan.fragments[index], None if limit < 0 else limit)
        for batch in read_slices(plan, item):
            yield pa.Table.from_batches([annotate.tokenize(batch)])


class TagActor:
    """Tag and decode in one actor: the model loads once per actor, batches stream through."""

    def __init__(self, plan: RunPlan) -> None:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # one "Loading weights" bar per actor is noise
        self.annotate = Annotator(plan, load=True)
        self.batches = 0
        self.fail_at = int(os.environ.get(FAULT_ENV) or 0)

    def __call__(self, table: pa.Table) -> pa.Table:
        self.batches += 1
        if self.fail_at and self.batches >= self.fail_at and \
                not ray.get_runtime_context().was_current_actor_reconstructed:
            log.warning("%s=%d: tagging actor exits on batch %d", FAULT_ENV, self.fail_at,
                        self.batches)
            os._exit(1)
        return pa.Table.from_batches([self.annotate.tag_decode(_as_batch(table))])


def _land(documents: pa.Table, plan: RunPlan) -> pa.Table:
    landed = land(plan, documents)
    return pa.table({LANDED: pa.array([json.dumps(item.to_dict()) for item in landed],
                                      pa.string())})


_STAGES: dict[tuple[str, str], object] = {}


def _cached(plan: RunPlan, name: str, build):
    """A stage built once per worker process and run (Ray reuses task workers)."""
    key = (plan.provenance.run_id, name)
    if key not in _STAGES:
        _STAGES[key] = build()
    return _STAGES[key]


def _as_batch(table: pa.Table) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([c.combine_chunks() for c in table.columns],
                                      schema=table.schema)


ENGINE = Engine("ray", run, RayOptions)
