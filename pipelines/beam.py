"""The Apache Beam engine: the seqlab stages as a Beam graph, for Dataflow, Flink, Spark or local.

    fragments ─► Read (seqlab Reader) ─► Reshuffle ─► Tokenize ─► RunInference(TaggerHandler)
      ─► Decode ─► documents ─┬─► WriteToParquet(documents/)
                              ├─► mentions ─► WriteToParquet(mentions/)
                              └─► contributions ─► CombinePerKey(SumsFn) ─► aggregates/
    failures of any row-level step ─► dead letter ─► documents rows with status "failed"
    input row counts + written files (rows, bytes, sha256) + counts ─► Finish (manifest)

Reading goes through ``seqlab.io.Reader`` in a DoFn over the input fragments, so document ids
(``file:row``), JSON Lines inputs and bad-row statuses are exactly the other engines'. One
element after tokenization is one document; ``RunInference`` batches documents by padded
tokens and the tag stage runs them. The manifest is written by the pipeline's last step, from
the files the writes produced, so it also lands when the launcher does not wait (flex
templates). Locally the graph runs on the in-process FnApiRunner: Beam's default runner
first tries to download the Prism binary, which fails offline.
"""

from __future__ import annotations

import argparse
import logging
import posixpath
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.utils import shared

from seqlab import combine, schema
from seqlab.errors import ConfigError, RunError
from seqlab.io import Fragment
from seqlab.output import MANIFEST, TABLES, FragmentRecord, PartInfo, describe_part
from seqlab.run import RunPlan, finish_run
from seqlab.stages import mentions
from seqlab.tag import PAD_MULTIPLE, Tagger

log = logging.getLogger(__name__)

NAMESPACE = "seqlab"
PART_PREFIX = "part-beam"
FAILED = "failed"
INPUTS = "inputs"
CONTRIBUTIONS = "contributions"
COUNTS = "counts"
LOCAL_RUNNERS = (None, "", "FnApiRunner")

_TAGGERS = shared.Shared()  # one model per worker process, shared by tagging and retagging


class SeqlabBeamOptions(PipelineOptions):
    """Beam pipeline options of the seqlab engine (given after ``--`` or to pipelines.beam)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--model_copies", type=int, default=None,
            help="share this many model copies among all SDK processes of a worker machine "
            "(e.g. 1 per GPU); default: each SDK process loads its own")


# ---------------------------------------------------------------------------- row-level steps

def _apply_safely(stage, batch: pa.RecordBatch,
                  step: str) -> Iterator[tuple[pa.RecordBatch, str | None]]:
    """``(stage(batch), None)``, or on failure each row alone; a row that still fails comes
    back unchanged with its error."""
    try:
        yield stage(batch), None
    except Exception as exc:  # noqa: BLE001 - a failing row goes to the dead letter
        if batch.num_rows == 1:
            log.warning("%s failed for %s: %s", step, batch.column(schema.DOC_ID)[0], exc)
            yield batch, f"{step} failed: {type(exc).__name__}: {exc}"
            return
        for row in range(batch.num_rows):
            yield from _apply_safely(stage, batch.slice(row, 1), step)


def _rows(batch: pa.RecordBatch) -> list[pa.RecordBatch]:
    return [batch.slice(row, 1) for row in range(batch.num_rows)]


class ReadFragment(beam.DoFn):
    """(fragment, limit) -> reader-schema batches; the fragment's row count to ``inputs``."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan

    def process(self, item: tuple[Fragment, int | None]) -> Iterator[Any]:
        fragment, limit = item
        rows = 0
        for batch in self.plan.reader.read(fragment, limit):
            rows += batch.num_rows
            yield batch
        yield beam.pvalue.TaggedOutput(INPUTS, (fragment.index, fragment.name, rows))


class TokenizeDocs(beam.DoFn):
    """Reader batch -> one tokenized single-row batch per document."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        self.windows = Metrics.counter(NAMESPACE, "windows")
        self.subwords = Metrics.counter(NAMESPACE, "subwords")

    def setup(self) -> None:
        self.tokenize = self.plan.tokenizer_stage()

    def process(self, batch: pa.RecordBatch) -> Iterator[Any]:
        for out, error in _apply_safely(self.tokenize, batch, "tokenization"):
            if error:
                yield beam.pvalue.TaggedOutput(FAILED, (out, error))
                continue
            lens = [v for v in out.column("_win_lens").to_pylist() if v]
            self.windows.inc(sum(map(len, lens)))
            self.subwords.inc(sum(map(sum, lens)))
            yield from _rows(out)


class DocTokens:
    """The element size RunInference batches by: a document's padded tokens (at least 1)."""

    def __init__(self, n_special: int) -> None:
        self.n_special = n_special

    def __call__(self, doc: pa.RecordBatch) -> int:
        lens = doc.column("_win_lens")[0].as_py() or []
        step = PAD_MULTIPLE
        return max(1, sum(-(-(n + self.n_special) // step) * step for n in lens))


def shared_tagger(plan: RunPlan) -> Tagger:
    """The worker process's tag stage, loaded on first use (``Tagger`` is weak-referenceable,
    as ``shared.Shared`` and RunInference require)."""
    return _TAGGERS.acquire(plan.tagger_stage, tag=f"tagger-{plan.provenance.run_id}")


class TaggerHandler(ModelHandler[pa.RecordBatch, pa.RecordBatch, Tagger]):
    """RunInference over seqlab's tag stage: a batch of tokenized documents -> tagged ones.

    Batches hold about ``batch_tokens`` padded tokens; a longer document is a batch alone and
    the tag stage splits its windows into micro-batches within the same budget.
    """

    def __init__(self, plan: RunPlan, n_special: int, model_copies: int | None = None) -> None:
        budget = plan.config.batch_tokens
        super().__init__(min_batch_size=budget, max_batch_size=budget,
                         element_size_fn=DocTokens(n_special), model_copies=model_copies)
        self.plan = plan
        self.size = DocTokens(n_special)

    def load_model(self) -> Tagger:
        return shared_tagger(self.plan)

    def run_inference(self, batch: Sequence[pa.RecordBatch], model: Tagger,
                      inference_args: dict | None = None) -> list[pa.RecordBatch]:
        if not batch:  # BatchElements emits an empty batch before an oversized first element
            return []
        Metrics.distribution(NAMESPACE, "batch_documents").update(len(batch))
        Metrics.distribution(NAMESPACE, "batch_tokens").update(sum(map(self.size, batch)))
        return _rows(model(pa.concat_batches(list(batch))))

    def get_num_bytes(self, batch: Sequence[pa.RecordBatch]) -> int:
        return sum(doc.nbytes for doc in batch)

    def get_metrics_namespace(self) -> str:
        return NAMESPACE


class RetagOneByOne(beam.DoFn):
    """RunInference's dead letter holds whole failed batches: tag their documents one by one
    so only the documents that fail alone are lost to the dead letter."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan

    def process(self, failed: tuple[Sequence[pa.RecordBatch], Any]) -> Iterator[Any]:
        docs, (_, reason, _) = failed
        log.warning("a tagging batch of %d documents failed (%s); retrying one by one",
                    len(docs), reason)
        tagger = shared_tagger(self.plan)
        for doc in docs:
            for out, error in _apply_safely(tagger, doc, "tagging"):
                yield beam.pvalue.TaggedOutput(FAILED, (out, error)) if error else out


class DecodeDocs(beam.DoFn):
    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan

    def setup(self) -> None:
        self.decode = self.plan.decoder_stage()

    def process(self, doc: pa.RecordBatch) -> Iterator[Any]:
        for out, error in _apply_safely(self.decode, doc, "decoding"):
            yield beam.pvalue.TaggedOutput(FAILED, (out, error)) if error else out


def dead_letter(failed: tuple[pa.RecordBatch, str], plan: RunPlan) -> pa.RecordBatch:
    """A row that failed a step -> its ``documents`` row: status ``failed``, the error, no
    annotations (as the decode stage lands every row that is not ``ok``)."""
    batch, error = failed
    n = batch.num_rows
    Metrics.counter(NAMESPACE, "failed_rows").inc(n)
    columns = {name: batch.column(name) for name in plan.reader.schema.names}
    columns.update({
        schema.STATUS: pa.array([schema.FAILED] * n, pa.string()),
        schema.ERROR: pa.array([error] * n, pa.string()),
        "n_tokens": pa.array([0] * n, pa.int32()),
        **plan.provenance.columns(n),
    })
    target = plan.documents_schema
    return pa.RecordBatch.from_arrays(
        [columns[f.name].cast(f.type) if f.name in columns else pa.nulls(n, f.type)
         for f in target], schema=target)


# ---------------------------------------------------------------------------- landing

def document_rows(docs: pa.RecordBatch, declared: pa.Schema) -> list[dict]:
    """Rows for ``WriteToParquet``, checked against the declared schema first: Beam's writer
    would silently null a missing key and drop an extra one."""
    if not docs.schema.equals(declared):
        raise ValueError(f"documents batch does not match the declared schema:\n{docs.schema}")
    rows = docs.to_pylist()
    names = set(declared.names)
    for row in rows:
        if set(row) != names:
            raise ValueError(f"documents row keys {sorted(row)} != schema {sorted(names)}")
    return rows


class MentionsOf(beam.DoFn):
    """documents -> mentions rows; aggregate contributions and run counts as side outputs."""

    def __init__(self) -> None:
        self.documents = Metrics.counter(NAMESPACE, "documents")
        self.tokens = Metrics.counter(NAMESPACE, "tokens")
        self.entities = Metrics.counter(NAMESPACE, "entities")
        self.not_ok = Metrics.counter(NAMESPACE, "not_ok_rows")

    def process(self, docs: pa.RecordBatch) -> Iterator[Any]:
        found = mentions(docs)
        words = sum(docs.column("n_tokens").to_pylist())
        statuses = docs.column(schema.STATUS).to_pylist()
        counts = {"documents": docs.num_rows, "tokens": words, "entities": found.num_rows}
        for status in statuses:
            counts[f"status.{status}"] = counts.get(f"status.{status}", 0) + 1
        self.documents.inc(docs.num_rows)
        self.tokens.inc(words)
        self.entities.inc(found.num_rows)
        self.not_ok.inc(sum(s != schema.OK for s in statuses))
        yield beam.pvalue.TaggedOutput(COUNTS, counts)
        for pair in combine.contributions(found):
            yield beam.pvalue.TaggedOutput(CONTRIBUTIONS, pair)
        yield from found.to_pylist()


class SumsFn(beam.CombineFn):
    """Associative, commutative sums per (label, text): see ``seqlab.combine``."""

    def create_accumulator(self) -> combine.Sums:
        return combine.ZERO

    def add_input(self, acc: combine.Sums, value: combine.Sums) -> combine.Sums:
        return combine.add(acc, value)

    def merge_accumulators(self, accs: Iterable[combine.Sums]) -> combine.Sums:
        return combine.merge(accs)

    def extract_output(self, acc: combine.Sums) -> combine.Sums:
        return acc


def done_contributions(relpath: str, plan: RunPlan) -> Iterator[tuple[combine.Key, combine.Sums]]:
    """Contributions of a mentions part an earlier, resumed run landed (whole documents)."""
    import pyarrow.parquet as pq

    with plan.out.fs.open(plan.out.path(relpath), "rb") as handle:
        yield from combine.contributions(pq.read_table(handle))


def finish(items: list[tuple[str, Any]], plan: RunPlan, runner: str) -> dict:
    """The pipeline's last step: every input count and written part is known; write the
    manifest (``finish_run`` checks rows in == rows out first)."""
    records = list(plan.done.values())
    parts: dict[str, list[PartInfo]] = {table: [] for table in TABLES}
    counts: list[dict[str, int]] = []
    for kind, value in items:
        if kind == INPUTS:
            index, name, rows = value
            records.append(FragmentRecord(name, index, rows))
        elif kind == COUNTS:
            counts.append(value)
        else:
            parts[kind].append(value)
    for table in parts.values():
        table.sort(key=lambda p: p.path)
    aggregates = parts.pop("aggregates")
    return finish_run(plan, records, aggregates, engine="beam", extra={"beam": {"runner": runner}},
                      parts=parts, counts=combine.merge_counts(counts))


# ---------------------------------------------------------------------------- the graph

def beam_root(plan: RunPlan) -> str:
    """The output location as Beam's filesystems name it; refuse one they cannot write."""
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


def write(rows: beam.PCollection, plan: RunPlan, table: str, table_schema: pa.Schema,
          **shards: Any) -> beam.PCollection:
    """Write rows with the declared schema; return ``(table, PartInfo)`` of each landed file."""
    prefix = posixpath.join(beam_root(plan), table, shards.pop("prefix", PART_PREFIX))
    files = rows | f"Write {table}" >> beam.io.WriteToParquet(
        prefix, table_schema, codec="zstd", use_compliant_nested_type=True,
        file_name_suffix=".parquet", **shards)
    return files | f"Describe {table}" >> beam.Map(
        lambda name: (table, describe_part(plan.out.fs, plan.out.root,
                                           f"{table}/{posixpath.basename(name)}")))


def tag(tokenized: beam.PCollection, plan: RunPlan,
        handler: TaggerHandler) -> tuple[beam.PCollection, beam.PCollection]:
    """RunInference, with failed batches retried document by document."""
    tagged, dlq = tokenized | "Tag" >> RunInference(handler).with_exception_handling()
    retried = dlq.failed_inferences | "Retag" >> beam.ParDo(RetagOneByOne(plan)).with_outputs(
        FAILED, main="docs")
    return (tagged, retried.docs) | "Tagged" >> beam.Flatten(), retried[FAILED]


def build(pipeline: beam.Pipeline, plan: RunPlan, limits: dict[int, int | None],
          handler: TaggerHandler, runner: str) -> None:
    todo = [(f, limits[f.index]) for f in plan.todo if f.index in limits]
    read = (pipeline | "Fragments" >> beam.Create(todo)
            | "Read" >> beam.ParDo(ReadFragment(plan)).with_outputs(INPUTS, main="batches"))
    tokenized = (read.batches | "Spread" >> beam.Reshuffle()
                 | "Tokenize" >> beam.ParDo(TokenizeDocs(plan)).with_outputs(FAILED, main="docs"))
    tagged, failed_tagging = tag(tokenized.docs, plan, handler)
    decoded = tagged | "Decode" >> beam.ParDo(DecodeDocs(plan)).with_outputs(FAILED, main="docs")
    dead = ((tokenized[FAILED], failed_tagging, decoded[FAILED]) | "Failures" >> beam.Flatten()
            | "DeadLetter" >> beam.Map(dead_letter, plan))
    documents = (decoded.docs, dead) | "Documents" >> beam.Flatten()

    declared = plan.documents_schema
    rows = documents | "DocumentRows" >> beam.FlatMap(document_rows, declared)
    found = documents | "Mentions" >> beam.ParDo(MentionsOf()).with_outputs(
        CONTRIBUTIONS, COUNTS, main="mentions")
    contributions = [found[CONTRIBUTIONS]]
    done = [p.path for r in plan.done.values() for p in r.parts.get("mentions", [])]
    if done:
        contributions.append(pipeline | "DoneParts" >> beam.Create(done)
                             | "DoneContributions" >> beam.FlatMap(done_contributions, plan))
    aggregates = (contributions | "Contributions" >> beam.Flatten()
                  | "Aggregate" >> beam.CombinePerKey(SumsFn())
                  | "AllKeys" >> beam.combiners.ToList()
                  | "AggregateRows" >> beam.FlatMap(
                      lambda items: combine.aggregates_table(items).to_pylist()))

    landed = [
        write(rows, plan, "documents", declared),
        write(found.mentions, plan, "mentions", schema.MENTIONS),
        write(aggregates, plan, "aggregates", schema.AGGREGATES, prefix="part-00000",
              shard_name_template=""),
        read[INPUTS] | "Inputs" >> beam.Map(lambda value: (INPUTS, value)),
        found[COUNTS] | "Count" >> beam.CombineGlobally(combine.merge_counts)
        | "Counts" >> beam.Map(lambda value: (COUNTS, value)),
    ]
    _ = (landed | "Landed" >> beam.Flatten() | "Summary" >> beam.combiners.ToList()
         | "Finish" >> beam.Map(finish, plan, runner))


# ---------------------------------------------------------------------------- driver

def fragment_limits(plan: RunPlan) -> dict[int, int | None]:
    """Rows to read per unfinished fragment: ``--limit`` takes the first rows in fragment
    order, as the local engine does; a fragment left out is not read at all."""
    if plan.config.limit is None:
        return {f.index: None for f in plan.todo}
    left = plan.config.limit - sum(r.rows_in for r in plan.done.values())
    limits: dict[int, int | None] = {}
    for fragment in plan.todo:
        if left <= 0:
            break
        limits[fragment.index] = left
        left -= sum(b.num_rows for b in plan.reader.read(fragment, left))
    return limits


def discard_leftovers(plan: RunPlan) -> None:
    """Remove what a crashed Beam attempt landed: it never recorded fragments, so a rerun
    redoes them all and must not find their rows twice."""
    fs = plan.out.fs
    for pattern in ("*/" + PART_PREFIX + "-*", "*/beam-temp-*", "aggregates/*"):
        for path in fs.glob(plan.out.path(pattern)):
            fs.rm(path, recursive=True)


def pipeline_options(engine_options: dict) -> tuple[Any, PipelineOptions]:
    """The runner and options: ``--runner`` and the Beam arguments given after ``--``."""
    options = PipelineOptions(list(engine_options.get("beam_args") or []))
    runner = engine_options.get("runner") or options.view_as(StandardOptions).runner
    if runner in LOCAL_RUNNERS:
        runner = FnApiRunner()  # in-process: needs no runner binary and no network
    return runner, options


def collect_metrics(result: beam.runners.runner.PipelineResult) -> dict[str, Any]:
    """The seqlab namespace's counters and distributions (committed where the runner has them)."""
    found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    metrics: dict[str, Any] = {}
    for counter in found["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        metrics[counter.key.metric.name] = metrics.get(counter.key.metric.name, 0) + value
    for dist in found["distributions"]:
        value = dist.committed if dist.committed is not None else dist.attempted
        if value is not None and value.count:
            metrics[dist.key.metric.name] = {"count": value.count, "sum": value.sum,
                                             "min": value.min, "max": value.max,
                                             "mean": round(value.sum / value.count, 3)}
    return metrics


def run(plan: RunPlan, progress=None) -> dict:
    """Run the plan on Beam; return the manifest its last step wrote."""
    # Beam logs every postponed annotation of this module at INFO; they tell a user nothing
    logging.getLogger("apache_beam.typehints.native_type_compatibility").setLevel(
        logging.WARNING)
    runner, options = pipeline_options(plan.config.engine_options)
    beam_root(plan)
    discard_leftovers(plan)
    n_special = plan.tokenizer_stage().n_special
    handler = TaggerHandler(plan, n_special, options.view_as(SeqlabBeamOptions).model_copies)
    name = runner if isinstance(runner, str) else type(runner).__name__
    pipeline = beam.Pipeline(runner=runner, options=options)
    build(pipeline, plan, fragment_limits(plan), handler, name)
    started = time.time()
    result = pipeline.run()
    state = result.wait_until_finish()
    log.info("beam pipeline %s on %s in %.1f s", state, name, time.time() - started)
    metrics = collect_metrics(result)
    log.info("beam metrics: %s", ", ".join(f"{k}={v}" for k, v in sorted(metrics.items())))
    manifest = plan.out.read_json(MANIFEST)
    if manifest is None or manifest.get("run_id") != plan.provenance.run_id:
        raise RunError(f"the Beam pipeline ended ({state}) without writing {MANIFEST}",
                       fix="look at the runner's logs for the failed step, then rerun")
    if progress:
        progress(manifest["counts"].get("documents", 0), manifest["counts"].get("tokens", 0))
    return manifest


if __name__ == "__main__":
    # run through the importable modules, so workers unpickle the DoFns by name
    from pipelines.beam_cli import main

    sys.exit(main())
