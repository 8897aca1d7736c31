"""A run's plan and its end: everything checked before work starts, the manifest written last.

``plan_run`` does every check that can fail a run (input exists and has the text column, the
model has a fast tokenizer and a known label scheme, the output can take the run) before any
document is touched, removes what an unfinished earlier attempt left unrecorded, and returns a
picklable ``RunPlan`` from which each engine builds the stages in its own workers.
``finish_run`` checks that every fragment finished or failed and ``rows in == rows out``,
lists the aggregates the engine merged (``seqlab.run.aggregates``), and writes the manifest.

The run contract every engine keeps, in terms of these pieces:

    plan_run ─► work_items ─► read_slices ─► Annotator ─► land ─► FragmentLedger ─► finish_run
    checks,     fragments     batches with   tokenize,    parts,   fragment          aggregates,
    cleanup     + budgets     locations      tag, decode  partials records           manifest
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import fsspec
import pyarrow as pa

from seqlab import schema
from seqlab.config import TABLE_OPTIONS, AnnotateConfig
from seqlab.errors import ConfigError, OutputError
from seqlab.labels import LabelSet
from seqlab.models.load import load_model, load_tokenizer
from seqlab.run.models import ModelPlan, plan_models, shared_window
from seqlab.run.read import Reader
from seqlab.run.sources import Fragment, discover
from seqlab.stages.tag import PAD_MULTIPLE, Tagger
from seqlab.stages.tokenize import Tokenizer, WindowSpec
from seqlab.stages.tokens import Documents, Provenance, TokenDecoder
from seqlab.store import incremental
from seqlab.store.layout import MANIFEST, Layout
from seqlab.store.manifest import Attempt, RunState
from seqlab.store.outdir import OutputDir, check_resumable
from seqlab.store.parts import FragmentRecord

log = logging.getLogger(__name__)

Stage = Callable[[pa.RecordBatch], pa.RecordBatch]


@dataclass(frozen=True)
class WorkItem:
    """One fragment to annotate and the most rows to read from it (None: all)."""

    fragment: Fragment
    limit: int | None = None


def work_items(plan: RunPlan) -> list[WorkItem]:
    """The unfinished fragments with their ``--limit`` budgets. Rows are counted only when
    a limit is given (Parquet footers; JSON Lines files are read to count their rows)."""
    limit = plan.config.limit
    if limit is None:
        return [WorkItem(f) for f in plan.todo]
    left = limit - sum(r.rows_in for r in plan.done.values())
    items = []
    for fragment in plan.todo:
        if left <= 0:
            break
        items.append(WorkItem(fragment, left))
        left -= plan.reader.count_rows(fragment) or 0
    return items


@dataclass
class RunPlan:
    """What every engine needs to run the stages; safe to pickle to workers."""

    config: AnnotateConfig
    reader: Reader
    out: OutputDir
    labels: LabelSet
    provenance: Provenance
    done: dict[str, FragmentRecord] = field(default_factory=dict)
    work: list[WorkItem] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    # an incremental run: which input files it annotates and which earlier files it replaces
    increment: incremental.Increment | None = None
    table: dict = field(default_factory=dict)  # an incremental table's settings
    models: list[ModelPlan] = field(default_factory=list)  # --model's, in order

    @property
    def fragments(self) -> list[Fragment]:
        return self.reader.fragments

    @property
    def todo(self) -> list[Fragment]:
        return [f for f in self.fragments if f.name not in self.done]

    @property
    def documents_schema(self) -> pa.Schema:
        return schema.documents_schema(self.reader.passthrough, self.config.keep_text,
                                       self.output_fields)

    @property
    def output_fields(self) -> list[pa.Field]:
        """The models' documents columns, in ``--model``'s order."""
        return [f for model in self.models for f in model.fields]

    def span_columns(self, name: str) -> list[tuple[str, tuple[str, str] | None]]:
        """The documents columns holding ``entities`` or ``frames`` lists, each with the
        (model, revision) its flattened rows name (None: the documents rows' own)."""
        several = len(self.models) > 1
        return [(column, (model.name, model.revision) if several else None)
                for model in self.models for column in [model.column(name)] if column]

    def expected_characters(self) -> int | None:
        """About how many characters of text the work holds (for progress and its ETA); None
        when unknown (a compressed JSON Lines file, or a --limit that stops inside a file)."""
        if self.config.limit is not None:
            return None
        sizes = [self.reader.text_size(item.fragment) for item in self.work]
        return None if any(size is None for size in sizes) else sum(sizes)


    def window_spec(self) -> WindowSpec:
        c = self.config
        return WindowSpec(c.max_length, c.stride, c.max_chars, c.window_cuts)

    def tokenizer_stage(self) -> Tokenizer:
        c = self.config
        first = self.models[0]  # the models share the tokenizer (seqlab.run.models)
        return Tokenizer(load_tokenizer(first.name, first.asked_revision, c.trust_remote_code,
                                        cached=True), self.window_spec())




    def model_stages(self, model: ModelPlan, loaded: Stage | None = None
                     ) -> tuple[Stage, Stage | None]:
        """One model's tag stage (which loads it; ``loaded``: one already built) and decode
        stage (None where the tag stage adds the model's columns itself, as the frames stage
        does)."""
        c = self.config
        if model.kind == schema.KIND_FRAMES:
            from seqlab.srl.stage import FrameStage  # the frames stages only where asked for

            frames = loaded or FrameStage(
                load_model(model.predicates.spec(c)), load_model(model.spec(c)), c.batch_tokens,
                model.decoder, model.predicates.decoder, verbs_only=c.predicates == "verbs",
                prefix=model.prefix)
            return frames, None
        entities = model.column(schema.ENTITIES) is not None
        return (loaded or Tagger(load_model(model.spec(c)), c.batch_tokens),
                TokenDecoder(model.labels, model.decoder, c.aggregation, c.min_score, c.top_k,
                             model.prefix, entities))

    def documents_stage(self) -> Documents:
        return Documents(self.documents_schema, self.provenance,
                         [f.name for f in self.output_fields])


def plan_run(config: AnnotateConfig) -> RunPlan:
    """Check everything that can be checked up front, then claim the output location."""
    fs, fragments = discover(config.input, config.storage_options)
    reader = Reader(fs, fragments, config.text_column, config.id_column, config.batch_docs)
    models = plan_models(config)
    schema.check_passthrough(reader.passthrough.names, [f.name for m in models for f in m.fields])
    config = config.with_window(shared_window(models))
    _check_batch_holds_window(config)
    if len(models) == 1:  # the decoder as settled for it (a run of several records each's)
        config = config.with_decoder(models[0].decoder)
    tokenizer = load_tokenizer(models[0].name, models[0].asked_revision,
                               config.trust_remote_code, cached=True)
    Tokenizer(tokenizer, WindowSpec(config.max_length, config.stride, config.max_chars,
                                    config.window_cuts))
    labels = models[0].labels
    revision = ",".join(m.revision for m in models)

    out = OutputDir(config.output, config.storage_options)
    _check_table_kind(out, config)
    fingerprint = {**config.fingerprint(), "input": canonical(config.input, fs),
                   "output": out.location, "model_revision": revision,
                   "fragments": [f.name for f in fragments]}
    if config.incremental:  # the run's files are fixed in its state, not by this listing
        del fingerprint["fragments"]
    state = check_resumable(out, fingerprint, config.overwrite)
    attempt = Attempt(config.engine, datetime.now(timezone.utc).isoformat())
    if state is None:
        state = RunState(_new_run_id(), fingerprint, attempt.started_at, ())
        if config.incremental:
            table = {"documents_schema": _columns(schema.documents_schema(
                reader.passthrough, config.keep_text, [f for m in models for f in m.fields])),
                     **{k: getattr(config, k) for k in TABLE_OPTIONS}}
            state = replace(state, table=table, increment=incremental.plan_increment(
                out, fragments, incremental.config_key(fingerprint),
                config.run_date or incremental.today(), config.prune, table,
                fingerprint).to_dict())
        done: dict[str, FragmentRecord] = {}
    else:
        done = out.done_fragments()
        out.reopen()
        out.forget_failures()
        log.info("resuming run %s: %d of %d fragments already done", state.run_id,
                 len(done), len((state.increment or {}).get("inputs", fragments)))
    state = replace(state, attempts=(*state.attempts, attempt))
    increment = None
    if state.increment is not None:
        increment = incremental.Increment.from_dict(state.increment)
        out.layout = Layout(increment.run_date, state.run_id)
        reader = Reader(fs, increment.inputs, config.text_column, config.id_column,
                        config.batch_docs, known=reader.passthrough)
        if increment.run_date != (config.run_date or incremental.today()):
            log.warning("finishing the unfinished run %s of %s first (seqlab.annotate then "
                        "starts the run of %s)", state.run_id, increment.run_date,
                        config.run_date or incremental.today())
    out.start(state)
    out.cleanup(keep=kept_files(out, done.values(), increment),
                run_id=state.run_id if increment is not None else None)
    provenance = Provenance(state.run_id, config.model, revision,
                            datetime.fromisoformat(state.processed_at))
    plan = RunPlan(config, reader, out, labels, provenance, done, increment=increment,
                   table=dict(state.table or {}), models=models)
    plan.work = work_items(plan)
    return plan


def _check_batch_holds_window(config: AnnotateConfig) -> None:
    """A micro-batch of ``--batch-tokens`` padded tokens must hold one window, padded as the
    tag stage pads it."""
    padded = -(-config.max_length // PAD_MULTIPLE) * PAD_MULTIPLE
    if config.batch_tokens < padded:
        raise ConfigError(
            f"--batch-tokens {config.batch_tokens} cannot hold one window of "
            f"--max-length {config.max_length} ({padded} tokens once padded to a multiple "
            f"of {PAD_MULTIPLE})",
            fix=f"pass --batch-tokens {padded} or more")


def _check_table_kind(out: OutputDir, config: AnnotateConfig) -> None:
    """An incremental table root and a single run's output are not mistaken for each other."""
    if config.overwrite:
        return
    if out.incremental() and not config.incremental:
        raise OutputError(f"{out.url} is an incremental table (it has _runs/)",
                          fix="add --incremental to add a run to it, or choose another OUTPUT")
    if config.incremental and out.fs.exists(out.path(MANIFEST)):
        raise OutputError(f"{out.url} holds a single run written without --incremental",
                          fix="start the incremental table in a new OUTPUT")


def kept_files(out: OutputDir, records: Iterable[FragmentRecord],
               increment: incremental.Increment | None) -> set[str]:
    """The files cleanup keeps: those of finished fragments (and their aggregates part, which
    a retried finish rewrites in place), and the table's live files (its index; the earlier
    runs' files it no longer holds are left alone by ``OutputDir.cleanup``)."""
    kept = {path for record in records for path in record.files()}
    if increment is not None:
        kept |= incremental.live_files(out, increment, out.layout.run_id)
        kept |= {out.layout.part("aggregates", record.index) for record in records}
    return kept


def _columns(declared: pa.Schema) -> list[str]:
    return [f"{f.name}: {f.type}" for f in declared]


def canonical(url: str, fs: fsspec.AbstractFileSystem) -> str:
    """A URL as one string however it is spelled (trailing slash, relative or absolute path).

    >>> import os, fsspec
    >>> canonical("data/", fsspec.filesystem("file")) == "file://" + os.path.abspath("data")
    True
    """
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return f"{protocol}://{fs._strip_protocol(url).rstrip('/') or '/'}"


def _new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]
