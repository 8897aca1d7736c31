"""The Ray Data engine: the run contract on a Ray cluster (or a local Ray started on the fly).

    work items ─► read + tokenize ─► tag + decode ─► land ─► driver: FragmentLedger
    (one per      CPU tasks          actor pool:     CPU      records each fragment as its
     fragment)    (map_batches)      model loaded    tasks    last landing arrives
                                     once per actor
      ─► aggregates: scatter, gather tasks (pipelines.ray_aggregates) ─► finish

Rows never pass through the driver: the land tasks write the documents and mentions parts and
the aggregate partials themselves and send back only their ``Landed`` summaries (paths, rows,
hashes, counts). Fragments are recorded as they complete, so a crashed run, resumed on any
engine, redoes only the fragments that had not finished.

Progress moves inside long documents too: each tagging actor adds up the characters its
forward passes cover and sends them, at most once a second and without waiting, to a
``ProgressRelay`` actor (no CPU of its own), which a driver thread asks every second while the
driver waits for landed batches.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy, Dataset

from pipelines import ray_aggregates
from seqlab.engine import Engine, Progress
from seqlab.errors import ConfigError
from seqlab.run.annotator import FAULT_ENV as STAGE_FAULT_ENV
from seqlab.run.annotator import Annotator
from seqlab.run.finish import finish_run
from seqlab.run.land import Landed, land
from seqlab.run.ledger import FragmentLedger
from seqlab.run.models import merge_tagging, tagging_record
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
LANDED = "landed"  # the land stage's output: Landed summaries as JSON
# in a batch's first row, beside tagged rows and landed summaries: the tagging actors' records
TAGGING = "_tagging"  # (seqlab.run.models.tagging_record, JSON); each actor's latest counts
# what Ray's C++ logger writes to standard error as it reads RAY_BACKEND_LOG_LEVEL
LEVEL_NOTE = b"Set ray log level from environment variable"
RELAY_EVERY_S = 1.0  # how often a tagging actor tells the relay, and the driver asks it


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
        tagging: dict[str, dict] = {}  # tagging actor -> its latest tagging record
        if plan.work:
            ledger = FragmentLedger(plan)
            with _relayed(getattr(progress, "advance", None)) as relay:
                for landed in _landings(_landed(plan, settings, relay), tagging):
                    ledger.add(landed)
                    if progress:
                        progress.update(landed.counts)
        return finish_run(plan, engine="ray", extra={
            "ray": asdict(settings), "tagging": merge_tagging(list(tagging.values()))},
            aggregates=ray_aggregates.merge(plan))
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
    with nullcontext() if verbose else _without_level_note():
        if address or os.environ.get("RAY_ADDRESS"):
            ray.init(address=address, log_to_driver=verbose, logging_level=level)
            return False
        # "local": always a new Ray of our own. A bare ray.init() would instead join the
        # cluster named in Ray's temp folder (ray_current_cluster, left by a running or stale
        # `ray start`) and then refuse num_cpus.
        ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False,
                 log_to_driver=verbose, logging_level=level)
    return True


@contextmanager
def _without_level_note() -> Iterator[None]:
    """The process's standard error, written while Ray starts, without the one line Ray's C++
    logger writes there because ``RAY_BACKEND_LOG_LEVEL`` is set (``logging.cc: Set ray log
    level from environment variable ...``: it reports the variable as it reads it, before the
    level it sets holds). Everything else written meanwhile follows once Ray has started."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            os.write(2, b"".join(line for line in caught.read().splitlines(keepends=True)
                                 if LEVEL_NOTE not in line))


def _quiet_ray(verbose: bool) -> None:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = verbose
    context.print_on_execution_start = verbose
    if not verbose:
        # the driver's C++ core prints its errors to the terminal (e.g. that the tagging
        # actors' constructor arguments live in the object store); read when it starts
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _landed(plan: RunPlan, settings: RaySettings, relay: ray.actor.ActorHandle | None = None
            ) -> Dataset:
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
            TagActor, fn_constructor_kwargs={"plan": plan, "relay": relay},
            compute=ActorPoolStrategy(size=settings.tag_actors),
            batch_size=plan.config.batch_docs, batch_format="pyarrow",
            num_cpus=settings.cpus_per_actor, num_gpus=settings.gpus_per_actor or None,
            max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES,
            runtime_env=runtime_env)
    return tagged.map_batches(_land, fn_kwargs={"plan": plan}, batch_size=None,
                              batch_format="pyarrow", num_cpus=LAND_CPUS)


def _landings(landed: Dataset, tagging: dict[str, dict]) -> Iterator[Landed]:
    """The landed summaries; ``tagging`` keeps each tagging actor's latest record."""
    for batch in landed.iter_batches(batch_size=None, batch_format="pyarrow"):
        for records in filter(None, batch.column(TAGGING).to_pylist()):
            for record in json.loads(records):
                actor = record.pop("actor")
                if record["windows"] >= tagging.get(actor, {}).get("windows", -1):
                    tagging[actor] = record
        for value in filter(None, batch.column(LANDED).to_pylist()):
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

    def __init__(self, plan: RunPlan, relay: ray.actor.ActorHandle | None = None) -> None:
        _no_loading_bars()
        self.actor = uuid.uuid4().hex
        self.annotate = Annotator(plan, load=True,
                                  on_tagged=None if relay is None else RelaySender(relay))
        self.batches = 0
        self.fail_at = int(os.environ.get(FAULT_ENV) or 0)

    def __call__(self, table: pa.Table) -> pa.Table:
        self.batches += 1
        if self.fail_at and self.batches >= self.fail_at and \
                not ray.get_runtime_context().was_current_actor_reconstructed:
            log.warning("%s=%d: tagging actor exits on batch %d", FAULT_ENV, self.fail_at,
                        self.batches)
            os._exit(1)
        tagged = pa.Table.from_batches([self.annotate.tag_decode(_as_batch(table))])
        record = {"actor": self.actor, **tagging_record(self.annotate)}
        return tagged.append_column(TAGGING, _first_row(json.dumps([record]), tagged.num_rows))


def _no_loading_bars() -> None:
    """No "Loading weights" bar per actor: set through the environment where transformers is
    not imported yet, so that an actor that runs a cached int8 graph never imports it."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def _land(documents: pa.Table, plan: RunPlan) -> pa.Table:
    """Land the rows; pass the tagging records they carry on to the driver."""
    records = [r for value in filter(None, documents.column(TAGGING).to_pylist())
               for r in json.loads(value)]
    landed = [json.dumps(item.to_dict()) for item in land(plan, documents.drop_columns(TAGGING))]
    rows = max(1, len(landed))
    return pa.table({LANDED: pa.array(landed + [None] * (rows - len(landed)), pa.string()),
                     TAGGING: _first_row(json.dumps(records) if records else None, rows)})


def _first_row(value: str | None, rows: int) -> pa.Array:
    """A string column of ``rows`` rows, ``value`` in its first."""
    return pa.array([value] + [None] * (rows - 1) if rows else [], pa.string())


@ray.remote(num_cpus=0)
class ProgressRelay:
    """Characters of text the tagging actors have tagged since the driver last asked. It asks
    for no CPU, so it takes nothing from the layout ``resolve_settings`` checked."""

    def __init__(self) -> None:
        self.characters = 0

    def add(self, characters: int) -> None:
        self.characters += characters

    def take(self) -> int:
        taken, self.characters = self.characters, 0
        return taken


class RelaySender:
    """A tagging actor's ``on_tagged``: adds characters up and sends them to the relay at most
    once per ``every_s`` seconds, without waiting for it (what is still unsent when the actor
    stops is counted when its rows land)."""

    def __init__(self, relay: ray.actor.ActorHandle, every_s: float = RELAY_EVERY_S) -> None:
        self.relay, self.every_s = relay, every_s
        self.pending, self.sent = 0, float("-inf")

    def __call__(self, characters: int) -> None:
        self.pending += characters
        now = time.monotonic()
        if now - self.sent >= self.every_s:
            with suppress(Exception):  # progress must never fail a batch
                self.relay.add.remote(self.pending)
            self.pending, self.sent = 0, now


@contextmanager
def _relayed(advance: Callable[[int], None] | None) -> Iterator[ray.actor.ActorHandle | None]:
    """A relay for the run's tagging actors and a driver thread that hands what it holds to
    ``advance`` every ``RELAY_EVERY_S`` seconds; no relay where there is no ``advance``."""
    if advance is None:
        yield None
        return
    relay = ProgressRelay.remote()
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(RELAY_EVERY_S):
            with suppress(Exception):  # progress must never fail the run
                if characters := ray.get(relay.take.remote(), timeout=5):
                    advance(characters)

    thread = threading.Thread(target=poll, name="seqlab-ray-progress", daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        stop.set()
        thread.join()
        with suppress(Exception):  # never hides why the run stopped
            ray.kill(relay)


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
