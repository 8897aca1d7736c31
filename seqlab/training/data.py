"""What a training run works on: the task's sentences and labels, and their encoded examples."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from seqlab.training.examples import Encoded
from seqlab.training.formats import Sentence


@dataclass
class TaskData:
    """Train and dev sentences in the model's scheme, and the labels in id order."""

    train: list[Sentence]
    dev: list[Sentence]
    labels: list[str]
    scheme: str

    @property
    def has_entities(self) -> bool:
        return self.scheme != "tags"


@dataclass
class Prepared:
    data: TaskData
    tokenizer: PreTrainedTokenizerBase
    train_set: Encoded
    dev_set: Encoded
