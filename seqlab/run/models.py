"""The models of a run: each one settled before work starts, and the stages that add its columns.

``seqlab annotate --model ner,upos,srl`` reads and tokenizes every document once and runs each
model's tag and decode stages on the same subwords and windows; the models must therefore share
one tokenizer (their full tokenizer definitions are compared) and run in one window (the
shortest any of them was trained on). Alone, a model fills the columns it always has
(``tokens`` and ``entities``; ``frames`` for a semantic role labeller); with several, each
model's columns go behind its key: ``ner_tokens``, ``ner_entities``, ``upos_tokens`` (a model
whose labels are no spans has no ``entities`` column there), ``srl_frames``. The key is the
shipped model's name or the model directory's, or the one given as ``KEY=MODEL``.

A semantic role labeller (``seqlab.json`` task ``srl``) brings its predicate labeller (the
model its ``"predicates"`` names, or ``--predicate-model``), which finds the predicates of the
text; each predicate's frame is then labelled by the SRL model (``seqlab.srl.stage``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from seqlab import schema
from seqlab.config import AnnotateConfig, settle_decoder
from seqlab.errors import ConfigError, ModelError
from seqlab.labels import LabelSet
from seqlab.models.load import (
    ModelSpec,
    load_config,
    load_tokenizer,
    local_model_dir,
    model_revision,
)
from seqlab.models.metadata import ModelMetadata, read_metadata
from seqlab.store.manifest import ModelSummary

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SRL_TASK = "srl"


@dataclass(frozen=True)
class ModelPlan:
    """One model of a run, settled: where it comes from, its labels, decoder and columns."""

    key: str  # the name of its columns in a run of several models
    name: str  # as given: a shipped name, a directory, an fsspec URL or a hub id
    revision: str  # the revision it resolved to
    labels: LabelSet
    task: str | None  # seqlab.json "task"
    decoder: str
    prefix: str = ""  # before its column names: "" alone, "KEY_" with others
    window: int | None = None  # the window it was trained on
    predicates: ModelPlan | None = None  # a semantic role labeller's predicate labeller
    asked_revision: str | None = None  # --model-revision, in a run of one model

    @property
    def kind(self) -> str:
        return schema.KIND_FRAMES if self.task == SRL_TASK else schema.KIND_TAGS

    @property
    def fields(self) -> list[pa.Field]:
        """The documents columns this model fills."""
        return schema.output_fields(self.kind, self.prefix,
                                    entities=not self.prefix or self.labels.has_entities)

    def column(self, name: str) -> str | None:
        """This model's column ``name`` (``entities``, ``frames``...), if it has one."""
        return next((f.name for f in self.fields if f.name == self.prefix + name), None)

    def spec(self, config: AnnotateConfig) -> ModelSpec:
        """How to load it, with the run's device and precision."""
        return ModelSpec(self.name, self.asked_revision, config.device, config.precision,
                         self.labels.scheme, config.trust_remote_code)

    def summary(self) -> ModelSummary:
        """The model as the manifest records it."""
        return ModelSummary(self.key, self.name, self.revision, self.task, self.labels.scheme,
                            self.decoder, tuple(self.labels.labels),
                            tuple(f.name for f in self.fields),
                            self.predicates.summary() if self.predicates is not None else None)


def model_names(value: str) -> list[tuple[str, str]]:
    """``--model``'s value as ``(key, model)`` pairs, in order.

    >>> model_names("ner,upos")
    [('ner', 'ner'), ('upos', 'upos')]
    >>> model_names("people=/models/ner-v2/, srl")
    [('people', '/models/ner-v2/'), ('srl', 'srl')]
    """
    pairs = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, sep, name = item.partition("=")
        if not sep or "/" in key or ":" in key:
            key, name = _key_of(item), item
        pairs.append((key.strip(), name.strip()))
    if not pairs:
        raise ConfigError("--model names no model", fix="pass --model ner, or several as "
                          "--model ner,upos,srl")
    keys = [key for key, _ in pairs]
    bad = [key for key in keys if not re.fullmatch(r"[a-z][a-z0-9_]*", key)]
    if bad:
        raise ConfigError(f"model keys {bad} are not column names",
                          fix="name the model KEY=MODEL with KEY of lower-case letters, digits "
                          "and _ (e.g. --model people=/models/ner-v2)")
    clash = sorted({key for key in keys if keys.count(key) > 1})
    if clash:
        raise ConfigError(f"two models of --model would both be {clash[0]!r}",
                          fix="name them apart as KEY=MODEL (e.g. --model a=DIR1,b=DIR2)")
    return pairs


def _key_of(name: str) -> str:
    """A column key from a model's name: its last path part, lower-cased, ``_`` for others.

    >>> _key_of("/models/My-NER.v2/"), _key_of("dslim/bert-base-NER")
    ('my_ner_v2', 'bert_base_ner')
    """
    base = name.rstrip("/").rsplit("/", 1)[-1].lower()
    key = re.sub(r"[^a-z0-9_]+", "_", base).strip("_")
    return key if key[:1].isalpha() else f"m_{key}"


def plan_models(config: AnnotateConfig) -> list[ModelPlan]:
    """Every model of ``--model``, checked and settled (refusing a mix they cannot share)."""
    pairs = model_names(config.model)
    several = len(pairs) > 1
    if several:
        given = [flag for flag, value in (("--model-revision", config.model_revision),
                                          ("--scheme", config.scheme)) if value]
        if given:
            raise ConfigError(f"{', '.join(given)} applies to one model, and --model names "
                              f"{len(pairs)}", fix="drop it, or run that model on its own")
    plans = [_plan_model(key, name, config, f"{key}_" if several else "")
             for key, name in pairs]
    if config.predicates != "all" and not any(p.kind == schema.KIND_FRAMES for p in plans):
        raise ConfigError(f"--predicates {config.predicates} applies to semantic role labellers",
                          fix="add an SRL model to --model (e.g. --model srl), or drop it")
    _check_shared_tokenizer(plans, config)
    return plans


def _plan_model(key: str, name: str, config: AnnotateConfig, prefix: str,
                labeller: bool = False) -> ModelPlan:
    """``labeller``: the model is an SRL model's predicate labeller."""
    revision = config.model_revision if name == config.model else None
    source = local_model_dir(name, revision)
    metadata = read_metadata(source)
    if labeller and metadata.task not in (None, "predicates"):
        raise ModelError(f"{name} is a {metadata.task} model, not a predicate labeller",
                         fix="pass --predicate-model DIR of a model trained with seqlab train "
                         "--task predicates")
    model_config = load_config(name, source, revision, config.trust_remote_code)
    labels = LabelSet.from_id2label(model_config.id2label, config.scheme or metadata.scheme)
    plan = ModelPlan(key, name, model_revision(source, revision, model_config),
                     labels, metadata.task, settle_decoder(config.decoder, metadata.decoder),
                     prefix, metadata.window, asked_revision=revision)
    if plan.task != SRL_TASK:
        return plan
    encoding = metadata.predicate_encoding
    if encoding != "indicator":
        raise ModelError(f"{name} is an SRL model with the predicate encoding {encoding!r}, "
                         "which annotating does not run", fix="annotate with an SRL model "
                         "trained with seqlab train --task srl (the indicator encoding)")
    labeller = predicate_labeller(name, source, metadata, config.predicate_model)
    predicates = _plan_model(f"{key}_predicates", labeller, _alone(config), "", labeller=True)
    return dataclasses.replace(plan, predicates=predicates)


def _alone(config: AnnotateConfig) -> AnnotateConfig:
    """The settings a predicate labeller takes: the run's, but its own decoder and scheme."""
    return dataclasses.replace(config, decoder=None, scheme=None, model_revision=None)


def predicate_labeller(name: str, source: str, metadata: ModelMetadata,
                       given: str | None) -> str:
    """An SRL model's predicate labeller: the one given, else the directory its
    ``seqlab.json`` ``"predicates"`` names (relative to the model's own)."""
    if given:
        return given
    relative = metadata.predicates
    if not relative:
        raise ConfigError(f"{name} names no predicate labeller (seqlab.json \"predicates\")",
                          fix="pass --predicate-model DIR (a model trained with seqlab train "
                          "--task predicates)")
    return str(Path(source) / relative)


def _check_shared_tokenizer(plans: list[ModelPlan], config: AnnotateConfig) -> None:
    everyone = [p for plan in plans for p in (plan, plan.predicates) if p is not None]
    if len(everyone) < 2:
        return
    seen: dict[str, str] = {}
    for plan in everyone:
        tokenizer = load_tokenizer(plan.name, plan.asked_revision, config.trust_remote_code,
                                   cached=True)
        seen.setdefault(tokenizer_fingerprint(tokenizer), plan.name)
    if len(seen) > 1:
        names = list(seen.values())
        raise ConfigError(f"the models {names[0]} and {names[1]} use different tokenizers, and "
                          "one run tokenizes each document once for all its models",
                          fix="run them in separate seqlab annotate runs, or pass models "
                          "fine-tuned from the same base encoder")


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of what splits text into subwords: the fast tokenizer's full definition (vocab,
    normalizer, pre-tokenizer, model), without its truncation and padding settings."""
    definition = json.loads(tokenizer.backend_tokenizer.to_str())
    definition.pop("truncation", None)
    definition.pop("padding", None)
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


def shared_window(plans: list[ModelPlan]) -> int | None:
    """The window every model runs in: the shortest one any was trained on."""
    windows = [w for plan in plans for p in (plan, plan.predicates) if p is not None
               for w in [p.window] if w]
    return min(windows) if windows else None


COUNTERS = ("windows", "padded_tokens", "content_tokens")  # Annotator.tagging's sums


def tagging_record(annotate: Any) -> dict[str, Any]:
    """What the forward passes of an ``Annotator`` (``seqlab.run.annotator``), whose models
    are loaded, ran, for the manifest's ``tagging``: its counters and precision
    (``Annotator.tagging``), the backends, and per model key (a semantic role labeller's
    predicate labeller as ``KEY_predicates``) its name, precision, backend and int8 recipe."""
    record = dict(annotate.tagging())
    models: dict[str, Any] = {}
    for model, (tag, _) in zip(annotate.plan.models, annotate.stages):
        keys = [model.predicates.key, model.key] if model.predicates is not None \
            else [model.key]
        for key, tagger in zip(keys, getattr(tag, "taggers", [tag])):
            models[key] = {"name": tagger.loaded.name, **tagger.loaded.describe()}
    record["backend"] = ",".join(dict.fromkeys(m["backend"] for m in models.values()))
    record["models"] = models
    return record


def merge_tagging(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``tagging_record`` of a run from those of its workers: the counters summed, the
    precisions and backends each worker ran joined (``int8`` where all ran int8), and each
    model as the first worker to report it ran it.

    >>> a = {"windows": 2, "padded_tokens": 64, "content_tokens": 50, "precision": "int8",
    ...      "backend": "onnxruntime", "models": {"ner": {"precision": "int8"}}}
    >>> merged = merge_tagging([a, {**a, "windows": 3}])
    >>> merged["windows"], merged["precision"], merged["models"]
    (5, 'int8', {'ner': {'precision': 'int8'}})
    >>> merge_tagging([])["windows"]
    0
    """
    merged: dict[str, Any] = {name: sum(r.get(name, 0) for r in records) for name in COUNTERS}
    for name in ("precision", "backend"):
        merged[name] = ",".join(dict.fromkeys(
            part for r in records for part in (r.get(name) or "").split(",") if part))
    merged["models"] = {}
    for record in records:
        for key, model in (record.get("models") or {}).items():
            merged["models"].setdefault(key, model)
    return merged
