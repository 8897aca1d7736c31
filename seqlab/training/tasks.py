"""The tasks ``seqlab train --task`` learns, one object each, registered by name.

Every task trains the same way (``seqlab.training.train``: an encoder with a token
classification head, transformers' ``Trainer``, the best epoch by dev score, ``seqlab.json``
beside the checkpoint). A task object (``seqlab.training.data.TrainTask``) supplies only what
differs: ``tagging`` reads labelled files (CoNLL, CoNLL-U, JSON Lines...), ``srl`` encodes one
example per frame of SRL JSON Lines and widens the model's token types for the predicate
(``seqlab.srl.train``), ``predicates`` learns the predicate words of the same files.

``TRAIN_TASKS`` (the ``--task`` choices) lists the registered names; ``task_of`` finds a task
by name, refusing unknown ones before any work starts. torch and transformers are imported
inside the methods that use them, so building the command line stays cheap.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from seqlab.errors import ConfigError
from seqlab.labels import OUTSIDE, convert, detect_scheme, normalize_scheme, split_label
from seqlab.srl.frames import VERB
from seqlab.training.data import TaskData, TrainTask

if TYPE_CHECKING:
    from transformers import Trainer

    from seqlab.training.config import TrainConfig
    from seqlab.training.data import Prepared
    from seqlab.training.formats import Sentence

SRL_FORMAT = "srl-jsonl"  # the data format seqlab.json records for SRL JSON Lines files
_PREFIXES = {"iob2": "BI", "iob1": "BI", "bioes": "BIES", "io": "I"}


class TaggingTask(TrainTask):
    """Word labels of a labelled file (CoNLL, CoNLL-U, JSON Lines...): spans or plain tags; or
    entity spans of several sets at once, with partial labels (``seqlab.training.mixture``)."""

    name = "tagging"

    def data(self, config: TrainConfig) -> TaskData:
        from seqlab.training.formats import format_of, read_sentences

        if config.mixture:
            from seqlab.training.mixture import mixture_data

            return mixture_data(config)

        train = read_sentences(config.train, format_of(config.train, config.format),
                               config.column)
        dev = read_sentences(config.dev, format_of(config.dev, config.format), config.column)
        scheme = target_scheme(train, config.scheme)
        if scheme != "tags":
            train = [dataclasses.replace(s, labels=tuple(convert(s.labels, scheme)))
                     for s in train]
            dev = [dataclasses.replace(s, labels=tuple(convert(s.labels, scheme))) for s in dev]
        return TaskData(train, dev, label_list(train + dev, scheme), scheme)

    def model_task(self, config: TrainConfig, data: TaskData) -> str:
        """``ner`` for spans, the CoNLL-U column for CoNLL-U tags, else ``tagging``."""
        from seqlab.training.formats import format_of

        if config.mixture:
            return "ner"
        if config.column:
            return config.column
        if format_of(config.train, config.format) == "conllu":
            return "upos"
        return "ner" if data.has_entities else "tagging"


class SrlTask(TrainTask):
    """Semantic roles of one predicate at a time, from SRL JSON Lines (``seqlab.srl.train``)."""

    name = "srl"

    unscored = (VERB,)  # CoNLL-2005 scores no predicate span

    def settle(self, config: TrainConfig) -> TrainConfig:
        from seqlab.srl.train import srl_config

        return srl_config(config)

    def prepare(self, config: TrainConfig) -> Prepared:
        from seqlab.srl.train import prepare_srl

        return prepare_srl(config, self)

    def data_format(self, path: str, config: TrainConfig) -> str:
        return SRL_FORMAT

    def adapt(self, trainer: Trainer, config: TrainConfig) -> None:
        from seqlab.srl.train import srl_model

        srl_model(trainer, config)

    def metadata(self, config: TrainConfig, prepared: Prepared) -> dict[str, Any]:
        from seqlab.srl.train import srl_metadata

        return srl_metadata(config, prepared)


class PredicatesTask(TrainTask):
    """The predicate labeller an SRL model finds its frames with: ``B-<kind>`` on the
    predicate words of SRL JSON Lines (``seqlab.srl.data.predicate_sentences``)."""

    name = "predicates"

    def data(self, config: TrainConfig) -> TaskData:
        from seqlab.srl.data import predicate_sentences, read_srl

        train = predicate_sentences(read_srl(config.train))
        dev = predicate_sentences(read_srl(config.dev))
        return TaskData(train, dev, label_list(train + dev, "iob2"), "iob2")

    def data_format(self, path: str, config: TrainConfig) -> str:
        return SRL_FORMAT


TASKS: dict[str, TrainTask] = {}


def register(task: TrainTask) -> TrainTask:
    """Make ``task`` trainable as ``--task NAME`` (a name taken twice is refused)."""
    if not task.name or task.name in TASKS:
        raise ConfigError(f"cannot register a training task named {task.name!r}",
                          fix="give the task a name no other task has")
    TASKS[task.name] = task
    return task


def task_of(name: str) -> TrainTask:
    """The registered task ``name``."""
    if name not in TASKS:
        raise ConfigError(f"unknown --task {name!r}", fix=f"use one of {tuple(TASKS)}")
    return TASKS[name]


for _task in (TaggingTask(), SrlTask(), PredicatesTask()):
    register(_task)

# ``seqlab train --task`` choices: word labels from a labelled file, semantic roles of one
# predicate at a time, or the predicates themselves (both from SRL JSON Lines).
TRAIN_TASKS = tuple(TASKS)


def target_scheme(sentences: list[Sentence], scheme: str | None) -> str:
    """The scheme the model predicts: the one asked for, else IOB2 for spans, tags for tags."""
    found = detect_scheme({label for s in sentences[:5000] for label in s.labels})
    if scheme is None:
        return "tags" if found == "tags" else "iob2"
    wanted = normalize_scheme(scheme)
    if found == "tags" and wanted != "tags":
        raise ConfigError(f"--scheme {wanted} was asked for but the labels are plain tags",
                          fix="pass --scheme tags (or leave --scheme out)")
    return wanted


def label_list(sentences: list[Sentence], scheme: str) -> list[str]:
    """Labels in id order: ``O`` first, then each type's prefixes; plain tags sorted.

    >>> from seqlab.training.formats import Sentence
    >>> label_list([Sentence(("a", "b"), ("B-PER", "O"))], "bioes")
    ['O', 'B-PER', 'I-PER', 'E-PER', 'S-PER']
    """
    seen = {label for s in sentences for label in s.labels}
    if scheme == "tags":
        return sorted(seen)
    types = sorted({split_label(label)[1] for label in seen} - {""})
    return [OUTSIDE] + [f"{p}-{t}" for t in types for p in _PREFIXES[scheme]]
