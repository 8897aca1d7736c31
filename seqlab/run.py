"""A run's plan and its end: everything checked before work starts, the manifest written last.

``plan_run`` does every check that can fail a run (input exists and has the text column, the
model has a fast tokenizer and a known label scheme, the output can take the run) before any
document is touched, removes what an unfinished earlier attempt left unrecorded, and returns a
picklable ``RunPlan`` from which each engine builds the stages in its own workers.
``finish_run`` checks that every fragment finished or failed and ``rows in == rows out``,
folds the aggregate partials, and writes the manifest.

The run contract every engine keeps, in terms of these pieces:

    plan_run ─► work_items ─► read_slices ─► Annotator ─► land ─► FragmentLedger ─► finish_run
    checks,     fragments     batches with   tokenize,    parts,   fragment          aggregates,
    cleanup     + budgets     locations      tag, decode  partials records           manifest
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
import fsspec

from seqlab import __version__, aggregate, incremental, schema
from seqlab.config import RESUMABLE, AnnotateConfig
from seqlab.errors import OutputError, RunError
from seqlab.fragments import WorkItem, work_items
from seqlab.io import Fragment, Reader, discover
from seqlab.labels import LabelSet
from seqlab.landing import merge_counts
from seqlab.model import LoadedModel, ModelSpec, load_model, load_tokenizer
from seqlab.output import (MANIFEST, FragmentRecord, Layout, OutputDir, check_resumable,
                           read_table, write_table)
from seqlab.stages import Decoder, Documents, Provenance, TokenDecoder
from seqlab.tag import Tagger
from seqlab.tasks import ModelPlan, plan_models, shared_window
from seqlab.tokenize import Tokenizer, WindowSpec

log = logging.getLogger(__name__)

Stage = Callable[[pa.RecordBatch], pa.RecordBatch]


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

    def model_spec(self) -> ModelSpec:
        """How the first (or only) model loads."""
        return self.models[0].spec(self.config)

    def window_spec(self) -> WindowSpec:
        c = self.config
        return WindowSpec(c.max_length, c.stride, c.max_chars, c.window_cuts)

    def tokenizer_stage(self) -> Tokenizer:
        c = self.config
        first = self.models[0]  # the models share the tokenizer (seqlab.tasks)
        return Tokenizer(load_tokenizer(first.name, first.asked_revision, c.trust_remote_code),
                         self.window_spec())

    def load_model(self) -> LoadedModel:
        return load_model(self.model_spec())

    def tagger_stage(self, loaded: LoadedModel | None = None) -> Tagger:
        """The tag stage of the first (or only) model, a tagging model."""
        return Tagger(loaded or self.load_model(), self.config.batch_tokens)

    def decoder_stage(self) -> Decoder:
        """Tagged batch -> documents, for a run of one tagging model."""
        c = self.config
        return Decoder(self.labels, self.documents_schema, self.provenance,
                       self.models[0].decoder, c.aggregation, min_score=c.min_score,
                       top_k=c.top_k)

    def model_stages(self, model: ModelPlan, loaded: Stage | None = None
                     ) -> tuple[Stage, Stage | None]:
        """One model's tag stage (which loads it; ``loaded``: one already built) and decode
        stage (None where the tag stage adds the model's columns itself, as the frames stage
        does)."""
        c = self.config
        if model.kind == schema.KIND_FRAMES:
            from seqlab.srl_stage import FrameStage  # the frames stages only where asked for

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
    if len(models) == 1:  # the decoder as settled for it (a run of several records each's)
        config = config.with_decoder(models[0].decoder)
    tokenizer = load_tokenizer(models[0].name, models[0].asked_revision,
                               config.trust_remote_code)
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
    attempt = {"engine": config.engine, "started_at": datetime.now(timezone.utc).isoformat()}
    if state is None:
        state = {"run_id": _new_run_id(), "fingerprint": fingerprint,
                 "processed_at": attempt["started_at"], "attempts": []}
        if config.incremental:
            table = {"documents_schema": _columns(schema.documents_schema(
                reader.passthrough, config.keep_text, [f for m in models for f in m.fields])),
                     **{k: getattr(config, k) for k in incremental.TABLE_OPTIONS}}
            state["increment"] = incremental.plan_increment(
                out, fragments, incremental.config_key(fingerprint),
                config.run_date or incremental.today(), config.prune, table).to_dict()
            state["table"] = table
        done: dict[str, FragmentRecord] = {}
    else:
        done = out.done_fragments()
        out.reopen()
        out.forget_failures()
        log.info("resuming run %s: %d of %d fragments already done", state["run_id"],
                 len(done), len(state.get("increment", {}).get("inputs", fragments)))
    state["attempts"] = [*state.get("attempts", []), attempt]
    increment = None
    if "increment" in state:
        increment = incremental.Increment.from_dict(state["increment"])
        out.layout = Layout(increment.run_date, state["run_id"])
        reader = Reader(fs, increment.inputs, config.text_column, config.id_column,
                        config.batch_docs, known=reader.passthrough)
        if increment.run_date != (config.run_date or incremental.today()):
            log.warning("finishing the unfinished run %s of %s first (seqlab.annotate then "
                        "starts the run of %s)", state["run_id"], increment.run_date,
                        config.run_date or incremental.today())
    out.start(state)
    out.cleanup(keep=_kept(out, done.values(), increment))
    provenance = Provenance(state["run_id"], config.model, revision,
                            datetime.fromisoformat(state["processed_at"]))
    plan = RunPlan(config, reader, out, labels, provenance, done, increment=increment,
                   table=state.get("table", {}), models=models)
    plan.work = work_items(plan)
    return plan


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


def _kept(out: OutputDir, records, increment: incremental.Increment | None) -> set[str]:
    """The files cleanup keeps: those of finished fragments (and their aggregates part, which
    a retried finish rewrites in place), and every file of the table's earlier runs."""
    kept = {path for record in records for path in record.files()}
    if increment is not None:
        kept |= set(increment.earlier_files)
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


def _redacted(config: dict) -> dict:
    """The configuration as the manifest shows it: storage option names, never their values
    (they may hold credentials).

    >>> _redacted({"storage_options": {"key": "AKIA..."}, "model": "ner"})
    {'storage_options': {'key': '<redacted>'}, 'model': 'ner'}
    """
    return {**config, "storage_options": {k: "<redacted>"
                                          for k in config.get("storage_options") or {}}}


TABLE_SCHEMAS = {"mentions": schema.MENTIONS, "frames": schema.FRAMES,
                 "aggregates": schema.AGGREGATES}


def finish_run(plan: RunPlan, engine: str, extra: dict | None = None) -> dict:
    """End the run: check its invariants, land the aggregates, write the manifest; return it.

    Every fragment of the plan's work must be recorded as finished or failed. Parts no record
    names (those of failed fragments) are removed, so the table folders hold exactly the files
    the manifest lists.
    """
    out = plan.out
    records = sorted(out.done_fragments().values(), key=lambda r: r.index)
    failed = out.failed_fragments()
    settled = {r.index for r in records} | {f.index for f in failed}
    unsettled = [item.fragment.name for item in plan.work if item.fragment.index not in settled]
    if unsettled:
        raise RunError(f"the {engine} engine ended without finishing {unsettled[:5]}",
                       fix="rerun the same command to resume; please report it with the logs")
    out.cleanup(keep=_kept(out, records, plan.increment))
    rows_in = sum(r.rows_in for r in records)
    rows_out = sum(p.rows for r in records for p in r.parts.get("documents", []))
    if rows_in != rows_out:
        raise RunError(
            f"the run read {rows_in} rows but wrote {rows_out} documents rows",
            fix="this is a bug in seqlab; please report it with the run's logs",
        )
    if plan.increment is not None:
        incremental.land_aggregates(out, records)
    row_tables = ["mentions"] + (["frames"] if plan.span_columns(schema.FRAMES_COLUMN) else [])
    tables = {table: [p for r in records for p in r.parts.get(table, [])]
              for table in ("documents", *row_tables, "aggregates")}
    for table in row_tables:  # a loader pointed at an empty prefix needs a schema
        if plan.increment is not None:
            if not tables[table] and not incremental.holds(plan.increment, table):
                tables[table] = [incremental.empty_part(out, table, TABLE_SCHEMAS[table])]
        elif not tables[table]:
            tables[table] = [write_table(out.fs, out.root, f"{table}/part-empty.parquet",
                                         TABLE_SCHEMAS[table].empty_table())]
    if plan.increment is None:
        partials = (read_table(out.fs, out.path(path)) for r in records for path in r.partials)
        tables["aggregates"] = [write_table(out.fs, out.root, "aggregates/part-00000.parquet",
                                            aggregate.finalize(aggregate.fold(partials)))]
    state = out.state() or {}
    manifest = {
        "run_id": plan.provenance.run_id,
        "seqlab_version": __version__,
        "schema_version": schema.SCHEMA_VERSION,
        "complete": not failed,
        "engine": engine,
        "attempts": state.get("attempts", []),
        "model": {"name": plan.config.model, "revision": plan.provenance.model_revision,
                  "scheme": plan.labels.scheme, "labels": list(plan.labels.labels)},
        "models": [model.summary() for model in plan.models],
        "config": _redacted(plan.config.to_dict()),
        "resume": {"must_match": sorted(state.get("fingerprint", {})),
                   "may_change": list(RESUMABLE)},
        "processed_at": plan.provenance.processed_at.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "elapsed_s": round(time.time() - plan.started, 3),
        "rows": {"in": rows_in, "out": rows_out},
        "counts": merge_counts(r.counts for r in records),
        "inputs": [{"fragment": r.fragment, "rows": r.rows_in,
                    "parts": {k: [vars(p) for p in v] for k, v in r.parts.items()}}
                   for r in records],
        "failed_inputs": [vars(f) for f in failed],
        "tables": {table: [vars(p) for p in parts] for table, parts in tables.items()},
        "aggregates": [vars(p) for p in tables["aggregates"]],
        **(extra or {}),
    }
    if plan.increment is None:
        out.finish(manifest, keep_progress=bool(failed))
    else:
        _finish_increment(plan, manifest, records)
    if failed:
        log.warning("%d input files could not be read (see failed_inputs in %s); rerun the "
                    "same command to retry them", len(failed), out.url)
    return manifest


def _finish_increment(plan: RunPlan, manifest: dict, records: list[FragmentRecord]) -> None:
    """Supersede the earlier files of what this run annotated again (moved aside, or replaced
    in the Iceberg commit), then write the manifest and the markers. Failed inputs are not
    retried by resuming this run: the next run finds them still to do."""
    out, increment = plan.out, plan.increment
    superseded = increment.superseded({r.fragment for r in records})
    identities = {f.name: f.identity for f in increment.inputs}
    for entry in manifest["inputs"]:
        entry["identity"] = identities[entry["fragment"]]
    manifest["run_date"] = increment.run_date
    manifest["table"] = plan.table
    manifest["incremental"] = {
        "config_key": increment.config_key, "unchanged": increment.unchanged,
        "replaced": sorted(set(increment.replaces) & {r.fragment for r in records}),
        "pruned": sorted(increment.pruned), "superseded": superseded}
    if plan.config.table_format == "iceberg":
        from seqlab import iceberg  # pyiceberg only where Iceberg tables are asked for

        manifest["iceberg"] = iceberg.commit_run(
            plan.config.catalog, plan.config.namespace, manifest["run_id"],
            {table: iceberg.TableChange(
                plan.documents_schema if table == "documents" else TABLE_SCHEMAS[table],
                [out.url_of(p["path"]) for p in manifest["tables"][table]],
                [out.url_of(p) for p in superseded if p.startswith(table + "/")])
             for table in manifest["tables"]},
            {"seqlab.run_date": increment.run_date, "seqlab.model": plan.config.model,
             "seqlab.model_revision": plan.provenance.model_revision,
             "seqlab.output": out.location})
    else:
        incremental.supersede(out, superseded)
    out.finish(manifest, keep_progress=True)
    incremental.mark_ended(out, manifest)
    out.drop_progress()
