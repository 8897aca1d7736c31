"""Training on several labelled sets at once, each with its own label set.

``seqlab train --train SPEC --train SPEC ...`` names each set as ``PATH[:OPTION]...`` with its
format, label mapping and weight (``seqlab.training.specs``).

The first set's types (after its mapping) are the model's; every other set must map onto them,
and a set that does not is refused before any work, with the mapping that would fit. A set
annotates the model types it holds: its ``O`` words and its ``?`` spans may still be any model
type it does not annotate, so they are trained on label sets (``seqlab.training.partial``):
Universal NER's ``O`` and ``OTH`` words never teach the model that a MISC-like name is ``O``.

The dev file (``--dev``, one spec; no ``?`` spans, no weight) is scored as in any run.
``mixture_data`` returns the run's ``TaskData``, whose ``record`` is what ``seqlab.json`` keeps
of the mix: each set's path, format, mapping, weight, sha256 and sentence counts.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from seqlab.errors import ConfigError
from seqlab.labels import OUTSIDE, chunks, detect_scheme
from seqlab.training.formats import Sentence, documents, format_of, read_sentences
from seqlab.training.partial import UNKNOWN, allowed_labels
from seqlab.training.specs import MAPPINGS, TrainSet

if TYPE_CHECKING:
    from seqlab.training.config import TrainConfig
    from seqlab.training.data import TaskData


@dataclass
class _Read:
    """A set read: its sentences' spans in model types (``?`` for unknown)."""

    spec: TrainSet
    sentences: list[Sentence]
    spans: list[list[tuple[str, int, int]]]
    format: str

    @property
    def types(self) -> set[str]:
        return {t for spans in self.spans for t, _, _ in spans} - {UNKNOWN}


def _read(spec: TrainSet, config: TrainConfig) -> _Read:
    fmt = format_of(spec.path, spec.format or config.format)
    sentences = read_sentences(spec.path, fmt, config.column)
    if detect_scheme({label for s in sentences[:5000] for label in s.labels}) == "tags":
        raise ConfigError(f"{spec.path} holds plain tags, not entity spans",
                          fix="a training mixture learns entities: pass NER files")
    mapping = dict(spec.mapping)
    spans = [[(mapping.get(t, t), a, b) for t, a, b in chunks(s.labels)
              if mapping.get(t, t) != OUTSIDE] for s in sentences]
    return _Read(spec, sentences, spans, fmt)


def _check_types(read: _Read, types: set[str], first: str) -> None:
    extra = read.types - types
    if not extra:
        return
    raw = {t for s in read.sentences for t, _, _ in chunks(s.labels)}
    fits = [name for name, m in MAPPINGS.items() if m and set(m) >= (raw - types)]
    hint = f"add :{fits[0]} to it, or " if fits else ""
    raise ConfigError(
        f"{read.spec.path} has entity types {sorted(extra)} that the model does not learn "
        f"(its types are those of the first --train, {first}: {sorted(types)})",
        fix=f"{hint}map them: :labels={','.join(f'{t}=TYPE' for t in sorted(extra))}, "
        "TYPE one of the model's types, ? (a type this set cannot tell) or O (not an entity)")


def _sampled(sentences: list[Sentence], weight: float, key: int, seed: int) -> list[Sentence]:
    """The set's documents ``weight`` times over (a seeded share of them for the fraction),
    each copy a document of its own (ids prefixed by set and copy)."""
    groups = documents(sentences)
    whole, part = int(weight), weight - int(weight)
    chosen = [(copy, g) for copy in range(whole) for g in groups]
    if part:
        picked = random.Random(seed * 1000 + key).sample(range(len(groups)),
                                                         round(part * len(groups)))
        chosen += [(whole, groups[i]) for i in sorted(picked)]
    return [dataclasses.replace(s, document=None if s.document is None
                                else f"{key}.{copy}:{s.document}")
            for copy, group in chosen for s in group]


def model_labels(types: set[str]) -> list[str]:
    """``O``, then ``B-``/``I-`` of each type, types sorted (``label_list``'s IOB2 order)."""
    return [OUTSIDE] + [f"{p}-{t}" for t in sorted(types) for p in "BI"]


def mixture_data(config: TrainConfig) -> TaskData:
    """The sentences of every ``--train`` set with their allowed labels, sampled by weight,
    the dev sentences, the model labels and the record ``seqlab.json`` keeps."""
    from seqlab.training.data import TaskData

    if config.scheme not in (None, "iob2", "bio", "iob"):
        raise ConfigError(f"--scheme {config.scheme}: a training mixture learns IOB2",
                          fix="leave --scheme out")
    sets = [TrainSet.parse(spec) for spec in config.train_specs]
    reads = [_read(spec, config) for spec in sets]
    types = reads[0].types
    for read in reads[1:]:
        _check_types(read, types, sets[0].path)
    labels = model_labels(types)
    train: list[Sentence] = []
    records = []
    for key, read in enumerate(reads):
        covered = read.types
        allowed = [Sentence(s.words, tuple(allowed_labels(len(s.words), spans, labels, covered)),
                            s.document) for s, spans in zip(read.sentences, read.spans)]
        sampled = _sampled(allowed, read.spec.weight, key, config.seed)
        train += sampled
        records.append(set_record(read, len(sampled)))
    dev, dev_format = _dev(config, types, sets[0].path)
    record = {"train": {"mix": records, "seed": config.seed,
                        "sentences": len(train), "words": sum(len(s.words) for s in train),
                        "partial_labels": True},
              "dev": file_record(config.dev_path, dev_format, dev)}
    return TaskData(train, dev, labels, "iob2", record)


def _dev(config: TrainConfig, types: set[str], first: str) -> tuple[list[Sentence], str]:
    spec = TrainSet.parse(config.dev, "--dev")
    if spec.weight != 1.0:
        raise ConfigError(f"--dev {config.dev}: a dev file takes no weight",
                          fix="leave weight= out of --dev")
    read = _read(spec, config)
    if any(t == UNKNOWN for spans in read.spans for t, _, _ in spans):
        raise ConfigError(f"--dev {config.dev} maps some spans to ?, which cannot be scored",
                          fix="map them to a model type or to O in the --dev spec")
    _check_types(read, types, first)
    dev = [Sentence(s.words, tuple(allowed_labels(len(s.words), spans, model_labels(types),
                                                  types)), s.document)
           for s, spans in zip(read.sentences, read.spans)]
    return dev, read.format


def file_record(path: str, fmt: str, sentences: list[Sentence]) -> dict[str, Any]:
    """What ``seqlab.json`` records of a data file: path, format, hash and counts."""
    from seqlab.models.shipped import file_sha256

    return {"path": path, "format": fmt, "sha256": file_sha256(path),
            "sentences": len(sentences), "words": sum(len(s.words) for s in sentences)}


def set_record(read: _Read, sampled: int) -> dict[str, Any]:
    """A mixture set as ``seqlab.json`` records it: its file, mapping, weight, the sentences
    an epoch takes from it, the model types it annotates and its spans of unknown type."""
    spec = read.spec
    return {**file_record(spec.path, read.format, read.sentences),
            "labels": dict(spec.mapping), "weight": spec.weight, "epoch_sentences": sampled,
            "types": sorted(read.types),
            "unknown_spans": sum(t == UNKNOWN for spans in read.spans for t, _, _ in spans)}
