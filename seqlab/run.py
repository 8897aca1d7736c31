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
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
from transformers import AutoConfig

import fsspec

from seqlab import __version__, aggregate, schema
from seqlab.config import RESUMABLE, AnnotateConfig
from seqlab.errors import ModelError, RunError
from seqlab.fragments import WorkItem, work_items
from seqlab.io import Fragment, Reader, discover
from seqlab.labels import LabelSet
from seqlab.landing import merge_counts
from seqlab.model import (LoadedModel, ModelSpec, load_model, load_tokenizer, local_model_dir,
                          model_revision, read_metadata, recommended_decoder, trained_window)
from seqlab.output import FragmentRecord, OutputDir, check_resumable, read_table, write_table
from seqlab.stages import Decoder, Provenance
from seqlab.tag import Tagger
from seqlab.tokenize import Tokenizer, WindowSpec

log = logging.getLogger(__name__)


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

    @property
    def fragments(self) -> list[Fragment]:
        return self.reader.fragments

    @property
    def todo(self) -> list[Fragment]:
        return [f for f in self.fragments if f.name not in self.done]

    @property
    def documents_schema(self) -> pa.Schema:
        return schema.documents_schema(self.reader.passthrough, self.config.keep_text)

    def expected_characters(self) -> int | None:
        """About how many characters of text the work holds (for progress and its ETA); None
        when unknown (a compressed JSON Lines file, or a --limit that stops inside a file)."""
        if self.config.limit is not None:
            return None
        sizes = [self.reader.text_size(item.fragment) for item in self.work]
        return None if any(size is None for size in sizes) else sum(sizes)

    def model_spec(self) -> ModelSpec:
        c = self.config
        return ModelSpec(c.model, c.model_revision, c.device, c.dtype, self.labels.scheme,
                         c.trust_remote_code)

    def window_spec(self) -> WindowSpec:
        return WindowSpec(self.config.max_length, self.config.stride, self.config.max_chars)

    def tokenizer_stage(self) -> Tokenizer:
        c = self.config
        return Tokenizer(load_tokenizer(c.model, c.model_revision, c.trust_remote_code),
                         self.window_spec())

    def load_model(self) -> LoadedModel:
        return load_model(self.model_spec())

    def tagger_stage(self, loaded: LoadedModel | None = None) -> Tagger:
        return Tagger(loaded or self.load_model(), self.config.batch_tokens)

    def decoder_stage(self) -> Decoder:
        c = self.config
        return Decoder(self.labels, self.documents_schema, self.provenance, c.decoder,
                       c.aggregation, min_score=c.min_score, top_k=c.top_k)


def plan_run(config: AnnotateConfig) -> RunPlan:
    """Check everything that can be checked up front, then claim the output location."""
    fs, fragments = discover(config.input, config.storage_options)
    reader = Reader(fs, fragments, config.text_column, config.id_column, config.batch_docs)
    source = local_model_dir(config.model, config.model_revision)
    metadata = read_metadata(source)
    config = config.with_window(trained_window(metadata))
    config = config.with_decoder(recommended_decoder(metadata))
    tokenizer = load_tokenizer(config.model, config.model_revision, config.trust_remote_code)
    Tokenizer(tokenizer, WindowSpec(config.max_length, config.stride, config.max_chars))
    try:
        model_config = AutoConfig.from_pretrained(
            source, revision=config.model_revision, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the model config of {config.model!r}: {exc}",
                         fix="pass a model directory or hub id with a config.json") from exc
    labels = LabelSet.from_id2label(model_config.id2label, config.scheme or metadata.get("scheme"))
    revision = model_revision(source, config.model_revision, _ConfigOnly(model_config))

    out = OutputDir(config.output, config.storage_options)
    fingerprint = {**config.fingerprint(), "input": canonical(config.input, fs),
                   "output": out.location, "model_revision": revision,
                   "fragments": [f.name for f in fragments]}
    state = check_resumable(out, fingerprint, config.overwrite)
    attempt = {"engine": config.engine, "started_at": datetime.now(timezone.utc).isoformat()}
    if state is None:
        state = {"run_id": _new_run_id(), "fingerprint": fingerprint,
                 "processed_at": attempt["started_at"], "attempts": []}
        done: dict[str, FragmentRecord] = {}
    else:
        done = out.done_fragments()
        out.reopen()
        out.forget_failures()
        log.info("resuming run %s: %d of %d fragments already done", state["run_id"],
                 len(done), len(fragments))
    state["attempts"] = [*state.get("attempts", []), attempt]
    out.start(state)
    out.cleanup(keep={path for record in done.values() for path in record.files()})
    provenance = Provenance(state["run_id"], config.model, revision,
                            datetime.fromisoformat(state["processed_at"]))
    plan = RunPlan(config, reader, out, labels, provenance, done)
    plan.work = work_items(plan)
    return plan


def canonical(url: str, fs: fsspec.AbstractFileSystem) -> str:
    """A URL as one string however it is spelled (trailing slash, relative or absolute path).

    >>> import os, fsspec
    >>> canonical("data/", fsspec.filesystem("file")) == "file://" + os.path.abspath("data")
    True
    """
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return f"{protocol}://{fs._strip_protocol(url).rstrip('/') or '/'}"


class _ConfigOnly:
    """Lets ``model_revision`` read a config's commit hash without loading weights."""

    def __init__(self, config) -> None:
        self.config = config


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
    out.cleanup(keep={path for record in records for path in record.files()})
    rows_in = sum(r.rows_in for r in records)
    rows_out = sum(p.rows for r in records for p in r.parts.get("documents", []))
    if rows_in != rows_out:
        raise RunError(
            f"the run read {rows_in} rows but wrote {rows_out} documents rows",
            fix="this is a bug in seqlab; please report it with the run's logs",
        )
    tables = {table: [p for r in records for p in r.parts.get(table, [])]
              for table in ("documents", "mentions")}
    if not tables["mentions"]:  # a loader pointed at an empty prefix needs a schema
        tables["mentions"] = [write_table(out.fs, out.root, "mentions/part-empty.parquet",
                                          schema.MENTIONS.empty_table())]
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
    out.finish(manifest, keep_progress=bool(failed))
    if failed:
        log.warning("%d input files could not be read (see failed_inputs in %s); rerun the "
                    "same command to retry them", len(failed), out.url)
    return manifest
