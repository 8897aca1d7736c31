"""Fine-tuning a semantic role labeller: ``seqlab train --task srl``.

The model is the token classifier of ``seqlab.training.train`` (encoder + per-token softmax over
IOB2 role labels) trained on one example per frame, the predicate given by
``TrainConfig.predicate_encoding`` (``seqlab.srl.examples``). The recipe is seqlab's: the case
feature, frozen word embeddings, warmup and decay, length-grouped batches, the best epoch by
dev role F1 (CoNLL-2005: labelled argument spans, exact match, the ``V`` span not counted).
The saved ``seqlab.json`` says ``task: srl`` and how the predicate is encoded, which the frame
tagger (``seqlab.srl.tag``) reads. These are the hooks of the ``srl`` task
(``seqlab.training.tasks.SrlTask``), which ``seqlab.training.train`` runs.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from transformers import Trainer

from seqlab.errors import ConfigError
from seqlab.srl.data import predicate_sentences, read_srl, role_labels
from seqlab.srl.examples import check_encoding, encode_frames, widen_token_types
from seqlab.training.config import TrainConfig
from seqlab.training.data import Prepared, TaskData, TrainTask, fast_tokenizer

log = logging.getLogger(__name__)


def srl_config(config: TrainConfig) -> TrainConfig:
    """The case feature as the predicate encoding allows it: the segment pair takes the token
    types, so it runs without (asked for explicitly, that is an error)."""
    check_encoding(config.predicate_encoding)
    if config.predicate_encoding == "segment":
        if config.case_feature:
            raise ConfigError("the segment-pair predicate encoding uses the token types the "
                              "case feature needs", fix="pass --no-case-feature, or "
                              "--predicate-encoding indicator")
        return dataclasses.replace(config, case_feature=False)
    return config


def prepare_srl(config: TrainConfig, task: TrainTask) -> Prepared:
    """Frames of the train and dev files encoded as examples; ``TaskData`` holds the sentences
    (their predicate words as labels) for the metadata's counts. ``task``: the one preparing
    them (``Prepared.task``)."""
    train, dev = read_srl(config.train), read_srl(config.dev)
    labels = role_labels(train + dev)
    tokenizer = fast_tokenizer(config.base)
    label2id = {label: i for i, label in enumerate(labels)}
    options = dict(max_length=config.max_length, encoding=config.predicate_encoding,
                   case_feature=bool(config.case_feature))
    data = TaskData(predicate_sentences(train), predicate_sentences(dev), labels, "iob2")
    prepared = Prepared(data, tokenizer,
                        encode_frames(train, tokenizer, label2id, caseless=config.caseless,
                                      seed=config.seed, **options),
                        encode_frames(dev, tokenizer, label2id, **options), task)
    log.info("%d train frames, %d dev frames", len(prepared.train_set), len(prepared.dev_set))
    return prepared


def srl_model(trainer: Trainer, config: TrainConfig) -> None:
    """The trainer's model made ready for frames: token types widened for the indicator."""
    if config.predicate_encoding == "indicator":
        widen_token_types(trainer.model.get_base_model() if config.lora_r else trainer.model)


def srl_metadata(config: TrainConfig, prepared: Prepared) -> dict[str, Any]:
    """What only an SRL model's ``seqlab.json`` has: the predicate encoding, frame counts."""
    return {"predicate_encoding": config.predicate_encoding,
            "frames": {"train": len(prepared.train_set), "dev": len(prepared.dev_set)}}
