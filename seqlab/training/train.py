"""Fine-tuning a BERT-family encoder for token classification with transformers' ``Trainer``.

The recipe: labels converted to the scheme the model will predict (IOB2 for span data unless
asked otherwise), the label on each word's first subword and -100 on the others (ignored by the
loss), dynamic padding over length-grouped batches, linear warmup and decay, evaluation on dev
after every epoch, the best epoch kept by dev F1 (accuracy for plain tags), early stopping.
Over an uncased encoder, each subword's casing goes in as its token type id (``case_feature``;
examples are built in ``seqlab.training.examples``). ``lora_r`` trains a PEFT LoRA adapter and
the head instead of all weights; the saved model is then the merged, normal checkpoint, with the
compact adapter kept next to it in ``adapter/``.

The saved directory is a plain Hugging Face checkpoint (safetensors, ``id2label``, fast
tokenizer) plus ``seqlab.json``: task, scheme, base encoder, data files with hashes,
hyper-parameters, dev metrics, and whether the tag stage must pass the case feature.

Several labelled sets can be learned at once (``seqlab.training.mixture``): words a set cannot
label fully carry the set of labels they may have, and the loss is then ``-log`` of the
probability mass on that set (``seqlab.training.partial``); the head and decoding are the same.
The base may also be a trained model, a shipped one in compact form included, to go on from.

What differs between ``--task tagging``, ``srl`` and ``predicates`` (how the data is read and
encoded, changes to the model, task-specific metadata) is the task object's
(``seqlab.training.tasks``), looked up by name once per run; the recipe here is shared.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import shutil
import time
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    EarlyStoppingCallback,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
    set_seed,
)

from seqlab.errors import ConfigError, missing_extra
from seqlab.models.load import load_tokenizer, local_model_dir
from seqlab.models.metadata import ModelMetadata, read_metadata, write_metadata
from seqlab.models.shipped import ADAPTER_CONFIG, ADAPTER_WEIGHTS, file_sha256, load_adapter_model
from seqlab.stages.tokenize import lower_cases
from seqlab.training.config import TRAIN_ENGINES, TrainConfig
from seqlab.training.data import Prepared, TaskData, TrainTask
from seqlab.training.formats import Sentence
from seqlab.training.metrics import score
from seqlab.training.partial import PartialLoss
from seqlab.training.tasks import label_list, target_scheme, task_of  # noqa: F401 - importable here too

log = logging.getLogger(__name__)

ENGINES = TRAIN_ENGINES  # ``seqlab train --engine`` choices
# Engines other than local are installed beside seqlab and found by name in this entry-point
# group, so that seqlab never imports them: ``ray`` is the Ray Train engine (seqlab[ray]).
TRAINERS = "seqlab.trainers"


def prepare_data(config: TrainConfig) -> TaskData:
    """The sentences and labels of ``config.task`` (``TrainTask.data``)."""
    return task_of(config.task).data(config)


def build_model(base: str, labels: list[str], lora_r: int | None,
                train_embeddings: bool = True) -> PreTrainedModel:
    source = local_model_dir(base)
    if (Path(source) / ADAPTER_CONFIG).is_file():
        model = adapter_tagger(source, labels)
    else:
        model = AutoModelForTokenClassification.from_pretrained(
            source, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)}, use_safetensors=True,
            ignore_mismatched_sizes=True)  # a base that is already a tagger gets a new head
    if not train_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if not lora_r:
        return model
    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ModuleNotFoundError as exc:
        raise missing_extra("peft", "train") from exc
    lora = LoraConfig(task_type=TaskType.TOKEN_CLS, r=lora_r, lora_alpha=2 * lora_r,
                      lora_dropout=0.1, target_modules="all-linear",
                      modules_to_save=["classifier"])
    model = get_peft_model(model, lora)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA r=%d: %d of %d parameters trainable", lora_r, trainable, total)
    return model


def adapter_tagger(source: str, labels: list[str]) -> PreTrainedModel:
    """A model in compact form (a shipped model: its adapter merged into the pinned base) to
    train on: its head is kept when it predicts ``labels`` in this order, else replaced by a
    new one."""
    model = load_adapter_model(source, read_metadata(source), torch.float32)
    if [model.config.id2label[i] for i in range(model.config.num_labels)] == labels:
        return model
    log.info("%s predicts %s: a new head for %s", source, list(model.config.id2label.values()),
             labels)
    head = torch.nn.Linear(model.classifier.in_features, len(labels))
    with torch.no_grad():
        head.weight.normal_(0.0, model.config.initializer_range)
        head.bias.zero_()
    model.classifier = head
    model.config.num_labels = len(labels)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {label: i for i, label in enumerate(labels)}
    model.num_labels = len(labels)
    return model


def compute_metrics_fn(labels: list[str], has_entities: bool, ignore: tuple[str, ...] = ()):
    names = np.asarray(labels, dtype=object)

    def compute(prediction) -> dict[str, float]:
        predicted, gold_ids = prediction.predictions, prediction.label_ids
        gold, pred = [], []
        for p_row, g_row in zip(predicted, gold_ids):
            keep = g_row != -100
            gold.append(names[g_row[keep]].tolist())
            pred.append(names[p_row[keep]].tolist())
        scores = score(gold, pred, has_entities, ignore)
        return {k: scores[k] for k in ("f1", "precision", "recall", "accuracy")}

    return compute


def argmax_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return logits.argmax(dim=-1)


def training_arguments(config: TrainConfig, output_dir: str, best_metric: str,
                       use_bf16: bool) -> TrainingArguments:
    """Trainer arguments; sampler and warmup names changed across transformers 5.x."""
    params = inspect.signature(TrainingArguments.__init__).parameters
    options: dict = dict(
        output_dir=output_dir, learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=max(16, config.batch_size * 2), num_train_epochs=config.epochs,
        weight_decay=config.weight_decay, lr_scheduler_type="linear",
        eval_strategy="epoch", save_strategy="epoch", save_total_limit=1, save_only_model=True,
        load_best_model_at_end=True, metric_for_best_model=best_metric, greater_is_better=True,
        seed=config.seed, data_seed=config.seed, bf16=use_bf16, use_cpu=not config.use_gpu,
        report_to="none", logging_steps=50, dataloader_num_workers=0)
    if config.max_steps:
        options["max_steps"] = config.max_steps
    if "train_sampling_strategy" in params:
        options["train_sampling_strategy"] = "group_by_length"
    elif "group_by_length" in params:
        options["group_by_length"] = True
    if "warmup_ratio" in params:
        options["warmup_ratio"] = config.warmup
    else:
        options["warmup_steps"] = config.warmup  # a float below 1 is a ratio of all steps
    return TrainingArguments(**options)


def prepare(config: TrainConfig) -> Prepared:
    """The run's examples, as its task prepares them (also called by each Ray Train worker)."""
    return task_of(config.task).prepare(config)


def build_trainer(config: TrainConfig, prepared: Prepared, output_dir: str,
                  callbacks: list | None = None) -> Trainer:
    """Model and ``Trainer`` for a prepared run, the model adapted by its task (also used by
    each Ray Train worker)."""
    set_seed(config.seed)
    data, task = prepared.data, prepared.task
    model = build_model(config.base, data.labels, config.lora_r, config.train_embeddings)
    use_bf16 = bool(config.use_gpu and torch.cuda.is_available()
                    and torch.cuda.is_bf16_supported())
    best = "f1" if data.has_entities else "accuracy"
    collator = DataCollatorForTokenClassification(
        prepared.tokenizer, pad_to_multiple_of=8 if config.use_gpu else None)
    trainer = Trainer(
        model=model, args=training_arguments(config, output_dir, best, use_bf16),
        train_dataset=prepared.train_set, eval_dataset=prepared.dev_set,
        data_collator=collator, processing_class=prepared.tokenizer,
        compute_metrics=compute_metrics_fn(data.labels, data.has_entities, task.unscored),
        preprocess_logits_for_metrics=argmax_logits,
        # words of a training mixture may allow several labels: -log of their summed mass
        compute_loss_func=(PartialLoss(data.labels, prepared.label_sets)
                           if prepared.label_sets else None),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=config.patience),
                   *(callbacks or [])])
    task.adapt(trainer, config)
    return trainer


def metadata(config: TrainConfig, prepared: Prepared, best: dict, epochs: list[dict],
             seconds: float, steps: dict | None = None) -> dict:
    """What ``seqlab.json`` records about a trained model, the task's own entries last."""
    import transformers

    from seqlab import __version__

    data, task = prepared.data, prepared.task

    def data_file(path: str, sentences: list[Sentence]) -> dict:
        return {"path": path, "format": task.data_format(path, config),
                "sha256": file_sha256(path), "sentences": len(sentences),
                "words": sum(len(s.words) for s in sentences)}

    return {
        "task": task.model_task(config, data),
        "scheme": data.scheme,
        "labels": data.labels,
        "base": base_record(config.base),
        "data": data.record or {"train": data_file(config.train, data.train),
                                "dev": data_file(config.dev, data.dev)},
        "hyper_parameters": config.hyper_parameters(),
        # examples were up to this many subwords: annotate's default window for this model
        "window": config.max_length,
        # the tag stage must then pass seqlab.stages.casing.case_types as token type ids
        "case_feature": config.case_feature,
        "dev_metrics": best,
        "dev_history": epochs,
        "train_seconds": round(seconds, 1),
        **({"train_steps": steps} if steps else {}),
        "versions": {"seqlab": __version__, "transformers": transformers.__version__,
                     "torch": torch.__version__},
        **task.metadata(config, prepared),
    }


def base_record(base: str) -> dict:
    """The base encoder's name and, when its weights are local, their hash. A base in compact
    form (a shipped model) records the encoder it rests on, which the trained model's own
    compact form is exported over, and itself as ``initialised_from``."""
    source = Path(local_model_dir(base))
    if (source / ADAPTER_CONFIG).is_file():
        pin = read_metadata(str(source)).base
        return {**(pin.to_dict() if pin else {}), "initialised_from": {
            "name": base, "sha256": file_sha256(str(source / ADAPTER_WEIGHTS))}}
    weights = source / "model.safetensors"
    return {"name": base, "sha256": file_sha256(str(weights)) if weights.is_file() else None}


def history(trainer: Trainer) -> list[dict]:
    """Dev scores after each epoch, from the trainer's log."""
    return [{k.removeprefix("eval_"): round(v, 5) if isinstance(v, float) else v
             for k, v in entry.items() if k.startswith("eval_") or k == "epoch"}
            for entry in trainer.state.log_history if "eval_loss" in entry]


def steps_record(trainer: Trainer) -> dict:
    """Optimizer steps taken and their pace, from the trainer's log, the dev evaluations
    between epochs apart (data preparation is in neither): what a longer run of the same
    recipe would take."""
    log_history = trainer.state.log_history
    final = next((e for e in reversed(log_history) if "train_runtime" in e), {})
    evaluating = sum(e.get("eval_runtime", 0.0) for e in log_history)
    seconds = max(0.0, float(final.get("train_runtime", 0.0)) - evaluating)
    steps = trainer.state.global_step
    return {"steps": steps, "seconds": round(seconds, 3), "eval_seconds": round(evaluating, 3),
            "steps_per_second": round(steps / seconds, 4) if seconds else None,
            "examples_per_step": trainer.args.per_device_train_batch_size}


def save_trained(trainer: Trainer, prepared: Prepared, config: TrainConfig,
                 seconds: float) -> ModelMetadata:
    """Write the best model as a plain checkpoint (+ ``adapter/`` for LoRA) and its metadata."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    model = trainer.model
    if config.lora_r:
        model.save_pretrained(out / "adapter", safe_serialization=True)
        model = model.merge_and_unload()
    model.save_pretrained(out, safe_serialization=True)
    prepared.tokenizer.save_pretrained(out)
    epochs = history(trainer)
    best_key = "f1" if prepared.data.has_entities else "accuracy"
    best = max(epochs, key=lambda e: e[best_key]) if epochs else {}
    meta = ModelMetadata.from_dict(
        metadata(config, prepared, best, epochs, seconds, steps_record(trainer)),
        str(out / "seqlab.json"))
    write_metadata(out, meta)
    log.info("saved %s (dev %s %.4f, %.0f s)", out, best_key, best.get(best_key, 0.0), seconds)
    return meta


def settle_case_feature(config: TrainConfig) -> TrainConfig:
    """``case_feature`` decided: as asked, or on when the base tokenizer lower-cases text and
    the encoder has a second token type to carry the casing (BERT's ``type_vocab_size``)."""
    if config.case_feature is False:
        return config
    types = getattr(AutoConfig.from_pretrained(local_model_dir(config.base)),
                    "type_vocab_size", 0) or 0
    if types < 2:
        if config.case_feature:
            raise ConfigError(f"{config.base!r} has no second token type to carry the casing",
                              fix="pass --no-case-feature for this encoder")
        return dataclasses.replace(config, case_feature=False)
    return dataclasses.replace(
        config, case_feature=bool(config.case_feature or lower_cases(load_tokenizer(config.base))))


def train(config: TrainConfig) -> ModelMetadata:
    """Fine-tune, save the best model to ``config.out`` and return its metadata."""
    if config.use_gpu and config.engine == "local" and not torch.cuda.is_available():
        raise ConfigError("--use-gpu was given but torch sees no CUDA device",
                          fix="leave --use-gpu out, or install a CUDA build of torch")
    task = task_of(config.task)
    config = settle_case_feature(task.settle(config))
    if config.engine != "local":
        return ModelMetadata.of(trainer_of(config.engine)(config))
    return train_local(config, task)


def trainer_of(engine: str) -> Callable[[TrainConfig], ModelMetadata]:
    """The ``train(config) -> metadata`` function an installed engine registers in the
    ``seqlab.trainers`` entry points."""
    found = {point.name: point for point in entry_points(group=TRAINERS)}
    if engine not in found:
        raise ConfigError(f"no trainer for --engine {engine} is installed (entry point "
                          f"{engine!r} of group {TRAINERS!r})",
                          fix=f"install it with: pip install 'seqlab[{engine}]' (from a source "
                          f"checkout: pip install -e '.[{engine}]')")
    try:
        return found[engine].load()
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == engine:
            raise missing_extra(engine, engine) from exc
        raise


def train_local(config: TrainConfig, task: TrainTask | None = None) -> ModelMetadata:
    """Train in this process (``train`` has settled ``config``); ``task``: the registered
    task named by ``config.task``, looked up when not given."""
    started = time.time()
    prepared = (task or task_of(config.task)).prepare(config)
    checkpoints = Path(config.out) / "checkpoints"
    trainer = build_trainer(config, prepared, str(checkpoints))
    trainer.train()
    meta = save_trained(trainer, prepared, config, time.time() - started)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return meta

