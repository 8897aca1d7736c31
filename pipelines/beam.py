"""The Apache Beam engine: the run contract as a Beam graph, for Dataflow, Flink, Spark or local.

    work items ─► Read (read_slices) ─► Reshuffle ─► Annotate (tokenize, tag, decode)
      ─► Land (parts + partials, one Landed summary each) ─► GroupByKey(fragment)
      ─► Record (FragmentLedger) ─► ToList ─► PlanAggregates ─► scatter tasks ─► Reshuffle
      ─► Scatter ─► ToList ─► gather tasks ─► Reshuffle ─► Gather ─► ToList
      ─► Finish (finish_run: the manifest)

Every step is a ``seqlab`` piece; the graph only wires them. Each worker process loads the
model once (``shared.Shared``) and runs the whole row-level chain on a read batch, with the
dead letter inside it; the land step writes Arrow batches straight to Parquet. The manifest is
written by the pipeline's last step, so it also lands when the launcher does not wait (flex
templates). Locally the graph runs on the FnApiRunner (Beam's default runner first tries to
download the Prism binary, which fails offline): in-process by default, or in N worker
processes with ``--direct_running_mode=multi_processing --direct_num_workers=N``. Each worker
process unpickles the DoFns (the plan travels in them) and loads its own model; the work items,
read batches and fragment groups are spread over the workers, and the single element that
reaches ``Finish`` runs in one of them.

The aggregates are merged by the steps between Record and Finish (``seqlab.run.aggregates``):
the scatter and gather tasks travel through a Reshuffle each, so the workers share them, and
only bucket numbers and one ``PartInfo`` per aggregates file come back. That file-based
two-step merge hash-partitions keys as a ``CombinePerKey`` would, holds one bucket's keys per
task, and writes the files every other engine writes, byte for byte.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from seqlab.engine import Engine, Progress
from seqlab.errors import ConfigError, RunError
from seqlab.run import aggregates
from seqlab.run.annotator import Annotator
from seqlab.run.finish import finish_run
from seqlab.run.land import Landed, land
from seqlab.run.ledger import FragmentLedger
from seqlab.run.models import merge_tagging, tagging_record
from seqlab.run.plan import RunPlan
from seqlab.run.work import WorkItem, read_slices
from seqlab.store.layout import MANIFEST


@contextmanager
def quiet_root_warnings() -> Iterator[None]:
    """The root logger kept to errors while Beam is imported, unless debug logging is on
    (``seqlab -v``). Beam's BigQuery client warns on the root logger at import that apitools
    is not installed (``WARNING:root:apitools not found...``), which concerns only BigQuery
    IO, which seqlab does not use; with no handler on the root logger, that warning would also
    install Python's default one (``logging.warning`` calls ``basicConfig``)."""
    root = logging.getLogger()
    level = root.level
    guard = logging.NullHandler()
    if not root.handlers:
        root.addHandler(guard)
    if not root.isEnabledFor(logging.DEBUG):
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        root.removeHandler(guard)


with quiet_root_warnings():
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.metrics import Metrics
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import (
        DirectOptions,
        PipelineOptions,
        StandardOptions,
        WorkerOptions,
    )
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.runners.portability.fn_api_runner.fn_runner import ExtendedProvisionInfo
    from apache_beam.runners.portability.portable_runner import JobServiceHandle
    from apache_beam.utils import shared

log = logging.getLogger(__name__)

NAMESPACE = "seqlab"
LOCAL_RUNNERS = (None, "", "FnApiRunner")
# local worker processes log Beam's plumbing at WARNING and seqlab's own steps at INFO, unless
# the Beam options set the harness log levels
WORKER_LOG_LEVELS = {"seqlab": "INFO", "pipelines": "INFO"}

_ANNOTATORS = shared.Shared()  # one model per worker process
_ANNOTATING: set[str] = set()  # the pipelines this process has annotated rows of
# each annotator's name in the tagging records (its counters add up over its life)
_NAMES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
TAGGING = "tagging"  # the Annotate step's second output: (annotator, tagging_record) pairs


@dataclass(frozen=True)
class BeamOptions:
    """``--runner`` and the Beam pipeline options given after ``--``."""

    runner: str | None = None
    beam_args: list[str] | None = None


class ReadFragment(beam.DoFn):
    """A work item -> its read batches with their locations."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan

    def process(self, item: tuple[int, int | None]) -> Iterator[pa.RecordBatch]:
        index, limit = item
        yield from read_slices(self.plan, WorkItem(self.plan.fragments[index], limit))


class Annotate(beam.DoFn):
    """A read batch -> its documents rows (tokenize, tag, decode, the dead letter inside),
    and on the ``TAGGING`` output what the worker's annotator has run so far
    (``seqlab.run.models.tagging_record``, keyed by annotator: the latest of each counts).

    ``pipeline`` names this pipeline (one attempt of the run), so that the ``worker_processes``
    counter counts each process that annotates once; ``threads`` caps torch's threads in each
    worker process where several share one machine's CPUs (``None``: torch's default), and
    ONNX Runtime's likewise.
    """

    def __init__(self, plan: RunPlan, pipeline: str = "", threads: int | None = None) -> None:
        self.plan = plan
        self.pipeline = pipeline
        self.threads = threads
        self.documents = Metrics.counter(NAMESPACE, "documents")
        self.processes = Metrics.counter(NAMESPACE, "worker_processes")

    def setup(self) -> None:
        if self.threads:
            # read by torch when it starts and by ONNX Runtime's sessions
            # (seqlab.models.quantize.session_threads), so the int8 path need not import torch
            os.environ["OMP_NUM_THREADS"] = str(self.threads)
            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(self.threads)
        self.annotate = _ANNOTATORS.acquire(lambda: Annotator(self.plan),
                                            tag=f"annotator-{self.plan.provenance.run_id}")

    def process(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        self.documents.inc(batch.num_rows)
        if self.pipeline not in _ANNOTATING:  # once per process
            _ANNOTATING.add(self.pipeline)
            self.processes.inc()
        yield self.annotate(batch)
        name = _NAMES.setdefault(self.annotate, uuid.uuid4().hex)
        yield beam.pvalue.TaggedOutput(TAGGING, (name, tagging_record(self.annotate)))


class Land(beam.DoFn):
    """Documents rows -> parts and partials on storage, ``(fragment, Landed)`` downstream."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan

    def process(self, documents: pa.RecordBatch) -> Iterator[tuple[int, dict]]:
        for landed in land(self.plan, documents):
            yield landed.fragment, landed.to_dict()


class Record(beam.DoFn):
    """All landings of one fragment -> its record, once every row has landed (a fragment that
    failed to read never completes, and stays unrecorded)."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan

    def process(self, group: tuple[int, Iterable[dict]]) -> Iterator[int]:
        _, landings = group
        ledger = FragmentLedger(self.plan)
        for landed in landings:
            if ledger.add(Landed.from_dict(landed)) is not None:
                yield landed["fragment"]


def plan_aggregates(recorded: list[int], plan: RunPlan) -> aggregates.Merge:
    """Once every fragment is recorded: the aggregates merge its records call for."""
    return aggregates.plan_merge(plan)


def scatter_tasks(merge: aggregates.Merge) -> Iterator[aggregates.Scatter]:
    yield from merge.scatters


def gather_tasks(scattered: list, merge: aggregates.Merge) -> Iterator[aggregates.Gather]:
    """Once every scatter task has returned: a gather task per bucket."""
    yield from aggregates.gather_tasks(merge, scattered)


def run_task(task: Any, step: Any, plan: RunPlan) -> Any:
    """One scatter or gather task (``step``: ``aggregates.scatter`` or ``.gather``)."""
    return step(plan.out, task)


def finish(landed: list, plan: RunPlan, about: dict[str, Any],
           tagging: Iterable[dict] = (), recorded: list[int] | None = None) -> dict:
    """The pipeline's last step: write the manifest (``finish_run`` checks it all first).
    ``landed`` are the aggregates parts the gather tasks wrote; ``about`` is the manifest's
    ``beam`` section (the runner); ``tagging`` the latest tagging record of each annotator,
    summed into its ``tagging`` section."""
    log.info("beam: %d fragments recorded in this attempt", len(recorded or []))
    Metrics.counter(NAMESPACE, "finished").inc()  # once per run, on any number of workers
    return finish_run(plan, engine="beam", aggregates=list(landed),
                      extra={"beam": about, "tagging": merge_tagging(list(tagging))})


def latest(records: Iterable[dict]) -> dict:
    """The latest of one annotator's tagging records: the one that counts the most."""
    return max(records, key=lambda r: (r["windows"], r["padded_tokens"], r["content_tokens"]))


def beam_root(plan: RunPlan) -> str:
    """Refuse an output location Beam's filesystems cannot name (the graph writes through
    fsspec, but a runner's staging and temp locations go through Beam)."""
    protocol = plan.out.fs.protocol
    local = "file" in (protocol if isinstance(protocol, (tuple, list)) else (protocol,))
    root = plan.out.root if local else plan.out.url.rstrip("/")
    try:
        FileSystems.get_filesystem(root)
    except ValueError as exc:
        raise ConfigError(
            f"Beam cannot write to {plan.out.url!r}: {exc}",
            fix="with --engine beam write to a local path, gs://, s3://, hdfs:// or azfs://",
        ) from exc
    return root


def build(pipeline: beam.Pipeline, plan: RunPlan, about: dict[str, Any]) -> None:
    items = [(item.fragment.index, item.limit) for item in plan.work]
    annotate = Annotate(plan, uuid.uuid4().hex, worker_threads(about))
    annotated = (pipeline
                 | "WorkItems" >> beam.Create(items)
                 | "Read" >> beam.ParDo(ReadFragment(plan))
                 | "Spread" >> beam.Reshuffle()
                 | "Annotate" >> beam.ParDo(annotate).with_outputs(TAGGING, main="documents"))
    tagging = (annotated[TAGGING]
               | "LatestTagging" >> beam.CombinePerKey(latest)
               | "Tagging" >> beam.Values())
    recorded = (annotated.documents
                | "Land" >> beam.ParDo(Land(plan))
                | "ByFragment" >> beam.GroupByKey()
                | "Record" >> beam.ParDo(Record(plan))
                | "Recorded" >> beam.combiners.ToList())
    merge = recorded | "PlanAggregates" >> beam.Map(plan_aggregates, plan)
    scattered = (merge
                 | "ScatterTasks" >> beam.FlatMap(scatter_tasks)
                 | "SpreadScatter" >> beam.Reshuffle()
                 | "Scatter" >> beam.Map(run_task, aggregates.scatter, plan)
                 | "Scattered" >> beam.combiners.ToList())
    _ = (scattered
         | "GatherTasks" >> beam.FlatMap(gather_tasks, beam.pvalue.AsSingleton(merge))
         | "SpreadGather" >> beam.Reshuffle()
         | "Gather" >> beam.Map(run_task, aggregates.gather, plan)
         | "Aggregates" >> beam.combiners.ToList()
         | "Finish" >> beam.Map(finish, plan, about, beam.pvalue.AsList(tagging),
                                beam.pvalue.AsSingleton(recorded)))


def pipeline_options(options: BeamOptions) -> tuple[Any, PipelineOptions]:
    """The runner and options: ``--runner`` and the Beam arguments given after ``--``."""
    pipeline = PipelineOptions(list(options.beam_args or []))
    runner = options.runner or pipeline.view_as(StandardOptions).runner
    if runner in LOCAL_RUNNERS:
        runner = local_runner(pipeline)  # needs no runner binary and no network
    return runner, pipeline


def local_runner(pipeline: PipelineOptions) -> FnApiRunner:
    """Beam's FnApiRunner, in-process, or with ``--direct_running_mode=multi_processing
    --direct_num_workers=N`` in N worker processes (``python -m
    apache_beam.runners.worker.sdk_worker_main``, started by the runner with this process's
    environment and working directory).

    The FnApiRunner hands its worker processes the pipeline options of its provision info,
    which are empty unless given: they get the run's Beam options here (``--pickle_library``,
    the harness log levels, filesystem options), and quieter harness logs by default.
    """
    if pipeline.view_as(DirectOptions).direct_running_mode == "multi_processing":
        worker = pipeline.view_as(WorkerOptions)
        if worker.default_sdk_harness_log_level is None:
            worker.default_sdk_harness_log_level = "WARNING"
            worker.sdk_harness_log_level_overrides = {
                **WORKER_LOG_LEVELS, **(worker.sdk_harness_log_level_overrides or {})}
    options = JobServiceHandle.encode_pipeline_options(pipeline.get_all_options(drop_default=True))
    return FnApiRunner(provision_info=ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(retrieval_token="unused-retrieval-token",
                                             pipeline_options=options)))


def describe(runner: Any, pipeline: PipelineOptions) -> dict[str, Any]:
    """The manifest's ``beam`` section: the runner, and for the local FnApiRunner its running
    mode and number of workers (``--direct_num_workers=0``: one per CPU, as Beam does)."""
    about: dict[str, Any] = {"runner": runner if isinstance(runner, str) else type(runner).__name__}
    if isinstance(runner, FnApiRunner):
        direct = pipeline.view_as(DirectOptions)
        about["running_mode"] = direct.direct_running_mode
        about["workers"] = direct.direct_num_workers or os.cpu_count() or 1
    return about


def worker_threads(about: dict[str, Any]) -> int | None:
    """Torch threads per local worker process: this machine's CPUs shared among the workers,
    unless ``OMP_NUM_THREADS`` says otherwise (``None``: leave torch's default)."""
    if about.get("running_mode") != "multi_processing" or "OMP_NUM_THREADS" in os.environ:
        return None
    return max(1, (os.cpu_count() or 1) // about["workers"])


def collect_metrics(result: beam.runners.runner.PipelineResult) -> dict[str, Any]:
    """The seqlab namespace's counters (committed where the runner has them)."""
    found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    metrics: dict[str, Any] = {}
    for counter in found["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        metrics[counter.key.metric.name] = metrics.get(counter.key.metric.name, 0) + value
    return metrics


def run(plan: RunPlan, options: BeamOptions | None = None,
        progress: Progress | None = None) -> dict:
    """Run the plan on Beam; return the manifest its last step wrote (as a plain dict)."""
    # Beam logs every postponed annotation of this module at INFO; they tell a user nothing
    logging.getLogger("apache_beam.typehints.native_type_compatibility").setLevel(
        logging.WARNING)
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        # nor do its other INFO lines (state cache sizes, worker start-up): `seqlab -v` shows
        # them; seqlab reports the run itself
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
    runner, pipeline_opts = pipeline_options(options or BeamOptions())
    beam_root(plan)
    about = describe(runner, pipeline_opts)
    name = about["runner"] + (f" ({about['workers']} worker processes)"
                              if about.get("running_mode") == "multi_processing" else "")
    pipeline = beam.Pipeline(runner=runner, options=pipeline_opts)
    build(pipeline, plan, about)
    started = time.time()
    result = pipeline.run()
    state = result.wait_until_finish()
    log.info("beam pipeline %s on %s in %.1f s", state, name, time.time() - started)
    metrics = collect_metrics(result)
    log.info("beam metrics: %s", ", ".join(f"{k}={v}" for k, v in sorted(metrics.items())))
    manifest = plan.out.manifest()
    if manifest is None or manifest.run_id != plan.provenance.run_id:
        raise RunError(f"the Beam pipeline ended ({state}) without writing {MANIFEST}",
                       fix="look at the runner's logs for the failed step, then rerun")
    if progress:  # the runner lands everything before the driver hears of it
        own = manifest.extra.get("attempt")  # a resumed run: what this attempt annotated
        progress.update(manifest.counts if own is None else {
            "documents": own["documents"], "tokens": own["words"],
            "characters": own["characters"]})
    return manifest.to_dict()


ENGINE = Engine("beam", run, BeamOptions)

if __name__ == "__main__":
    # run through the importable modules, so workers unpickle the DoFns by name
    from pipelines.beam_cli import main

    sys.exit(main())
