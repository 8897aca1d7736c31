"""The Apache Beam engine: the run contract as a Beam graph, for Dataflow, Flink, Spark or local.

    work items ─► Read (read_slices) ─► Reshuffle ─► Annotate (tokenize, tag, decode)
      ─► Land (parts + partials, one Landed summary each) ─► GroupByKey(fragment)
      ─► Record (FragmentLedger) ─► ToList ─► Finish (finish_run: aggregates, manifest)

Every step is a ``seqlab`` piece; the graph only wires them. Each worker process loads the
model once (``shared.Shared``) and runs the whole row-level chain on a read batch, with the
dead letter inside it; the land step writes Arrow batches straight to Parquet. The manifest is
written by the pipeline's last step, so it also lands when the launcher does not wait (flex
templates). Locally the graph runs on the in-process FnApiRunner: Beam's default runner first
tries to download the Prism binary, which fails offline.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.utils import shared

from seqlab.engine import Engine, Progress
from seqlab.errors import ConfigError, RunError
from seqlab.run.annotator import Annotator
from seqlab.run.finish import finish_run
from seqlab.run.land import Landed, land
from seqlab.run.ledger import FragmentLedger
from seqlab.run.plan import RunPlan
from seqlab.run.work import WorkItem, read_slices
from seqlab.store.layout import MANIFEST

log = logging.getLogger(__name__)

NAMESPACE = "seqlab"
LOCAL_RUNNERS = (None, "", "FnApiRunner")

_ANNOTATORS = shared.Shared()  # one model per worker process


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
    """A read batch -> its documents rows (tokenize, tag, decode, the dead letter inside)."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        self.documents = Metrics.counter(NAMESPACE, "documents")

    def setup(self) -> None:
        self.annotate = _ANNOTATORS.acquire(lambda: Annotator(self.plan),
                                            tag=f"annotator-{self.plan.provenance.run_id}")

    def process(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        self.documents.inc(batch.num_rows)
        yield self.annotate(batch)


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


def finish(recorded: list[int], plan: RunPlan, runner: str) -> dict:
    """The pipeline's last step: write the manifest (``finish_run`` checks it all first)."""
    log.info("beam: %d fragments recorded in this attempt", len(recorded))
    return finish_run(plan, engine="beam", extra={"beam": {"runner": runner}})


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


def build(pipeline: beam.Pipeline, plan: RunPlan, runner: str) -> None:
    items = [(item.fragment.index, item.limit) for item in plan.work]
    _ = (pipeline
         | "WorkItems" >> beam.Create(items)
         | "Read" >> beam.ParDo(ReadFragment(plan))
         | "Spread" >> beam.Reshuffle()
         | "Annotate" >> beam.ParDo(Annotate(plan))
         | "Land" >> beam.ParDo(Land(plan))
         | "ByFragment" >> beam.GroupByKey()
         | "Record" >> beam.ParDo(Record(plan))
         | "Recorded" >> beam.combiners.ToList()
         | "Finish" >> beam.Map(finish, plan, runner))


def pipeline_options(options: BeamOptions) -> tuple[Any, PipelineOptions]:
    """The runner and options: ``--runner`` and the Beam arguments given after ``--``."""
    pipeline = PipelineOptions(list(options.beam_args or []))
    runner = options.runner or pipeline.view_as(StandardOptions).runner
    if runner in LOCAL_RUNNERS:
        runner = FnApiRunner()  # in-process: needs no runner binary and no network
    return runner, pipeline


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
    runner, pipeline_opts = pipeline_options(options or BeamOptions())
    beam_root(plan)
    name = runner if isinstance(runner, str) else type(runner).__name__
    pipeline = beam.Pipeline(runner=runner, options=pipeline_opts)
    build(pipeline, plan, name)
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
        progress.update(manifest.counts)
    return manifest.to_dict()


ENGINE = Engine("beam", run, BeamOptions)

if __name__ == "__main__":
    # run through the importable modules, so workers unpickle the DoFns by name
    from pipelines.beam_cli import main

    sys.exit(main())
