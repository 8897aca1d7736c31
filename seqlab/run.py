"""A run's plan and its end: everything checked before work starts, the manifest written last.

``plan_run`` does every check that can fail a run (input exists and has the text column, the
model has a fast tokenizer and a known label scheme, the output can take the run) before any
document is touched, and returns a picklable ``RunPlan`` from which each engine builds the
stages in its own workers. ``finish_run`` checks ``rows in == rows out`` and writes the manifest.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
from transformers import AutoConfig

from seqlab import __version__, schema
from seqlab.combine import merge_counts
from seqlab.config import AnnotateConfig
from seqlab.errors import ModelError, RunError
from seqlab.io import Fragment, Reader, discover
from seqlab.labels import LabelSet
from seqlab.model import (LoadedModel, ModelSpec, load_model, load_tokenizer, local_model_dir,
                          model_revision, read_metadata, trained_window)
from seqlab.output import FragmentRecord, OutputDir, PartInfo
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
        return Decoder(self.labels, self.documents_schema, self.provenance,
                       self.config.decoder, self.config.aggregation)


def plan_run(config: AnnotateConfig) -> RunPlan:
    """Check everything that can be checked up front, then claim the output location."""
    fs, fragments = discover(config.input, config.storage_options)
    reader = Reader(fs, fragments, config.text_column, config.id_column, config.batch_docs)
    source = local_model_dir(config.model, config.model_revision)
    metadata = read_metadata(source)
    config = config.with_window(trained_window(metadata))
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
    fingerprint = {**config.fingerprint(), "model_revision": revision,
                   "fragments": [f.name for f in fragments]}
    state = out.prepare(fingerprint, config.overwrite)
    if state is None:
        state = {"run_id": _new_run_id(), "fingerprint": fingerprint,
                 "processed_at": datetime.now(timezone.utc).isoformat()}
        out.start(state)
        done = {}
    else:
        done = out.done_fragments()
        log.info("resuming run %s: %d of %d fragments already done", state["run_id"],
                 len(done), len(fragments))
    provenance = Provenance(state["run_id"], config.model, revision,
                            datetime.fromisoformat(state["processed_at"]))
    return RunPlan(config, reader, out, labels, provenance, done)


class _ConfigOnly:
    """Lets ``model_revision`` read a config's commit hash without loading weights."""

    def __init__(self, config) -> None:
        self.config = config


def _new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


def finish_run(plan: RunPlan, records: list[FragmentRecord], aggregates: list,
               engine: str, extra: dict | None = None,
               parts: dict[str, list[PartInfo]] | None = None,
               counts: dict[str, int] | None = None) -> dict:
    """Check the run's invariants and write the manifest; return it.

    ``parts`` and ``counts`` are output that belongs to the run as a whole rather than to one
    fragment: an engine that shuffles rows between files (Ray Data) cannot name the fragment
    of a part. Their documents rows count towards ``rows out`` like the fragments' own.
    """
    rows_in = sum(r.rows_in for r in records)
    rows_out = sum(p.rows for r in records for p in r.parts.get("documents", []))
    rows_out += sum(p.rows for p in (parts or {}).get("documents", []))
    counts = merge_counts([*(r.counts for r in records), counts or {}])
    if rows_in != rows_out:
        raise RunError(
            f"the run read {rows_in} rows but wrote {rows_out} documents rows",
            fix="this is a bug in seqlab; please report it with the run's logs",
        )
    elapsed = time.time() - plan.started
    manifest = {
        "run_id": plan.provenance.run_id,
        "seqlab_version": __version__,
        "schema_version": schema.SCHEMA_VERSION,
        "engine": engine,
        "model": {"name": plan.config.model, "revision": plan.provenance.model_revision,
                  "scheme": plan.labels.scheme, "labels": list(plan.labels.labels)},
        "config": plan.config.to_dict(),
        "processed_at": plan.provenance.processed_at.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "elapsed_s": round(elapsed, 3),
        "rows": {"in": rows_in, "out": rows_out},
        "counts": counts,
        "inputs": [
            {"fragment": r.fragment, "rows": r.rows_in,
             "parts": {k: [vars(p) for p in v] for k, v in r.parts.items()}}
            for r in sorted(records, key=lambda r: r.index)
        ],
        "aggregates": [vars(p) for p in aggregates],
        **({"parts": {k: [vars(p) for p in v] for k, v in parts.items()}} if parts else {}),
        **(extra or {}),
    }
    plan.out.finish(manifest)
    return manifest
