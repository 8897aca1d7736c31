"""Typed training configuration: what ``seqlab train`` flags map onto."""

from __future__ import annotations

from dataclasses import dataclass

from seqlab.errors import ConfigError

TRAIN_ENGINES = ("local", "ray")

# A small encoder (all-MiniLM-L6-v2: 6 layers, 384 wide) tuned for three epochs takes a larger
# peak step than run_ner.py's 5e-5 for BERT-base; the warmup starts it gently.
FULL_LR = 1.5e-4

# LoRA adapters train few weights from a zero start; they need a larger step than full tuning.
LORA_LR = 1e-3


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; ``seqlab train`` flags map one to one.

    ``train`` is one labelled file, or the ``PATH[:OPTION]...`` specs of a training mixture
    (``seqlab.training.specs``): several sets, each with its format, label mapping and
    weight, learned at once with partial labels (``seqlab.training.mixture``)."""

    train: str | tuple[str, ...]
    dev: str
    base: str
    out: str
    format: str | None = None
    scheme: str | None = None
    column: str | None = None
    epochs: float = 3
    lr: float | None = None
    # An example is up to max_length subwords of one document (~200 on CoNLL-2003): two of
    # them make a step about as large as 16 sentences.
    batch_size: int = 2
    max_length: int = 256
    context: str = "document"
    seed: int = 42
    lora_r: int | None = None
    engine: str = "local"
    num_workers: int = 2
    use_gpu: bool = False
    warmup: float = 0.1
    weight_decay: float = 0.01
    patience: int = 2
    # Stop after this many optimizer steps (None: run all epochs); a short run to check a
    # recipe on real data, or to measure its speed.
    max_steps: int | None = None
    # Word embeddings are kept from the base by default: the difference from the base encoder
    # then sits in the transformer layers, where a low-rank factorisation stores it compactly
    # (seqlab.models.shipped), and a step skips the gradient of the largest matrix.
    train_embeddings: bool = False
    # Upper-case letters reach the model as token type ids (``seqlab.stages.casing.case_types``):
    # uncased vocabularies lower-case the text and lose them otherwise. None (the default):
    # on when the tokenizer lower-cases and the encoder has a second token type.
    case_feature: bool | None = None
    # The share of training examples shown without casing, as if lower-cased: a model that
    # always saw capitals would lean on them and fail on text that has none.
    caseless: float = 0.25
    # a task registered in seqlab.training.tasks (TRAIN_TASKS), looked up when training starts
    task: str = "tagging"
    # how an SRL frame's predicate reaches the encoder (seqlab.srl.examples.ENCODINGS)
    predicate_encoding: str = "indicator"

    def __post_init__(self) -> None:
        from seqlab.training.formats import (
            CONTEXTS,  # here: formats imports pyarrow, --help must not
        )

        if self.context not in CONTEXTS:
            raise ConfigError(f"unknown context {self.context!r}", fix=f"use one of {CONTEXTS}")
        if self.engine not in TRAIN_ENGINES:
            raise ConfigError(f"unknown --engine {self.engine!r}",
                              fix=f"use one of {TRAIN_ENGINES}")
        if not 0 <= self.caseless <= 1:
            raise ConfigError(f"--caseless {self.caseless} is not a share",
                              fix="pass a value between 0 and 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"--max-steps {self.max_steps} is not a number of steps",
                              fix="pass a positive number, or leave --max-steps out")
        self._settle_train()

    def _settle_train(self) -> None:
        """A mixture of one set without options is that set's file; a mixture is for
        ``--task tagging``."""
        from seqlab.training.specs import is_mixture

        if isinstance(self.train, str):
            return
        if not self.train:
            raise ConfigError("no --train file was given", fix="pass --train PATH")
        if not is_mixture(self.train):
            object.__setattr__(self, "train", self.train[0])
            return
        object.__setattr__(self, "train", tuple(self.train))
        if self.task != "tagging":
            raise ConfigError(f"--task {self.task} trains on one --train file, not a mixture",
                              fix="pass one --train PATH without options")

    @property
    def mixture(self) -> bool:
        """Whether ``train`` names a training mixture (several sets, or one with options)."""
        return isinstance(self.train, tuple)

    @property
    def train_specs(self) -> tuple[str, ...]:
        """The ``--train`` specs, one per set."""
        return self.train if isinstance(self.train, tuple) else (self.train,)

    @property
    def dev_path(self) -> str:
        """The dev file, without the options a mixture's ``--dev`` spec may carry."""
        if not self.mixture:
            return self.dev
        from seqlab.training.specs import TrainSet

        return TrainSet.parse(self.dev, "--dev").path

    @property
    def learning_rate(self) -> float:
        return self.lr or (LORA_LR if self.lora_r else FULL_LR)

    def hyper_parameters(self) -> dict:
        keep = ("epochs", "batch_size", "max_length", "context", "seed", "lora_r", "warmup",
                "weight_decay", "patience", "train_embeddings", "case_feature", "caseless",
                "engine", "num_workers", "use_gpu", "task", "predicate_encoding")
        steps = {"max_steps": self.max_steps} if self.max_steps else {}
        return {"lr": self.learning_rate, **{k: getattr(self, k) for k in keep}, **steps}
