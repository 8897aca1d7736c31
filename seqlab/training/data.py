"""What a training run works on: its task, the task's sentences and labels, and their encoded
examples.

``TrainTask`` is the base of the tasks ``seqlab train --task`` learns (the concrete ones and
their registry are in ``seqlab.training.tasks``). It lives here, beside ``Prepared``, because a
prepared run carries the task that prepared it: the shared recipe (``seqlab.training.train``,
also run by each Ray Train worker) then asks that object, not the task's name, how to adapt
the model and what to record. The SRL hooks (``seqlab.srl.train``) build on it too, and the
registry builds on them, so the base sits below both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from seqlab.errors import ConfigError
from seqlab.training.formats import Sentence

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, Trainer

    from seqlab.training.config import TrainConfig
    from seqlab.training.examples import Encoded


@dataclass
class TaskData:
    """Train and dev sentences in the model's scheme, and the labels in id order.

    A training mixture's train words may carry label sets (``seqlab.training.partial``), and
    its ``record`` is what ``seqlab.json`` keeps as ``data`` (None: the two files' records)."""

    train: list[Sentence]
    dev: list[Sentence]
    labels: list[str]
    scheme: str
    record: dict[str, Any] | None = None

    @property
    def has_entities(self) -> bool:
        return self.scheme != "tags"


@dataclass
class Prepared:
    """A run's data encoded, and the task that prepared it: the trainer asks it to adapt the
    model, the saved ``seqlab.json`` takes its entries. ``label_sets``: the label sets the
    train examples carry as ids ``len(data.labels)`` on (the loss reads them as masks)."""

    data: TaskData
    tokenizer: PreTrainedTokenizerBase
    train_set: Encoded
    dev_set: Encoded
    task: TrainTask
    label_sets: tuple[str, ...] = ()


class TrainTask:
    """What one ``--task`` does differently from the shared recipe; the defaults are those
    most tasks share (labelled sentences, encoded one word label per first subword).

    - ``settle``: the configuration it needs (SRL's segment encoding takes the token types the
      case feature would use);
    - ``data`` and ``prepare``: its files read into labelled sentences and encoded as examples;
    - ``adapt``: changes to the freshly built model, and ``unscored``: labels the dev score
      leaves out;
    - ``data_format``, ``model_task`` and ``metadata``: what ``seqlab.json`` records.
    """

    name: str = ""
    unscored: tuple[str, ...] = ()  # labels whose spans the dev score leaves out

    def settle(self, config: TrainConfig) -> TrainConfig:
        """``config`` as this task trains with it (checked, its open choices decided)."""
        return config

    def data(self, config: TrainConfig) -> TaskData:
        """Train and dev sentences in the model's scheme, and the labels in id order."""
        raise NotImplementedError(f"task {self.name!r} prepares its examples itself")

    def prepare(self, config: TrainConfig) -> Prepared:
        """The task's data and its encoded train and dev examples."""
        from seqlab.training.examples import encode
        from seqlab.training.partial import label_ids

        data = self.data(config)
        tokenizer = fast_tokenizer(config.base)
        label2id = label_ids(data.labels, (label for s in data.train for label in s.labels))
        return Prepared(
            data, tokenizer,
            encode(data.train, tokenizer, label2id, config.max_length, config.context,
                   config.case_feature, config.caseless, config.seed),
            encode(data.dev, tokenizer, label2id, config.max_length, config.context,
                   config.case_feature), self,
            tuple(label2id)[len(data.labels):])

    def adapt(self, trainer: Trainer, config: TrainConfig) -> None:
        """Change the model ``trainer`` has just built, before it trains."""

    def data_format(self, path: str, config: TrainConfig) -> str:
        """The format ``seqlab.json`` records for the data file ``path``."""
        from seqlab.training.formats import format_of

        return format_of(path, config.format)

    def model_task(self, config: TrainConfig, data: TaskData) -> str:
        """``seqlab.json`` ``task``: what the trained model labels."""
        return self.name

    def metadata(self, config: TrainConfig, prepared: Prepared) -> dict[str, Any]:
        """Entries of ``seqlab.json`` that only this task's models have."""
        return {}


def fast_tokenizer(base: str) -> PreTrainedTokenizerBase:
    """The base encoder's tokenizer; examples need a fast one (word ids of each subword)."""
    from seqlab.models.load import load_tokenizer

    tokenizer = load_tokenizer(base)
    if not tokenizer.is_fast:
        raise ConfigError(f"the tokenizer of {base!r} is not a fast tokenizer",
                          fix="use a base encoder that ships tokenizer.json")
    return tokenizer
