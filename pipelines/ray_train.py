"""``seqlab train --engine ray``: the same Trainer recipe on Ray Train workers.

``TorchTrainer`` starts ``num_workers`` workers (one GPU each with ``--use-gpu``) and sets up
torch.distributed between them; each worker builds the data, model and ``Trainer`` with
``seqlab.training.train`` exactly as a local run does (the run's task, ``seqlab.training.tasks``,
included), so the two engines differ only in where the steps run. Rank 0 saves the best model to
``--out`` (a path every worker can reach: local disk on a single machine, a shared filesystem on
a cluster).

``seqlab.training.train`` finds ``run`` as the ``ray`` entry point of the ``seqlab.trainers``
group, so the library never imports this engine.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import ray
import ray.train
from ray.train import RunConfig, ScalingConfig
from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer
from ray.train.torch import TorchTrainer

from seqlab.models.metadata import ModelMetadata, read_metadata
from seqlab.training.train import TrainConfig, build_trainer, prepare, save_trained

log = logging.getLogger(__name__)


def train_loop(options: dict) -> None:
    """Runs on every worker."""
    config = TrainConfig(**options)
    started = time.time()
    prepared = prepare(config)
    checkpoints = tempfile.mkdtemp(prefix="seqlab-train-")
    trainer = build_trainer(config, prepared, checkpoints, callbacks=[RayTrainReportCallback()])
    trainer = prepare_trainer(trainer)
    trainer.train()
    if ray.train.get_context().get_world_rank() == 0:
        save_trained(trainer, prepared, config, time.time() - started)
    shutil.rmtree(checkpoints, ignore_errors=True)


def _absolute(path: str) -> str:
    return path if "://" in path or not os.path.exists(path) else os.path.abspath(path)


def run(config: TrainConfig) -> ModelMetadata:
    """Train on Ray Train and return the saved model's metadata."""
    config = dataclasses.replace(
        config, train=_absolute(config.train), dev=_absolute(config.dev),
        base=_absolute(config.base), out=os.path.abspath(config.out))
    storage = Path(config.out) / "ray"
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=dataclasses.asdict(config),
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu),
        run_config=RunConfig(name="seqlab-train", storage_path=str(storage)),
    )
    # as annotate's Ray engine: without RAY_ADDRESS, a Ray of its own, whatever cluster a
    # stale `ray start` left recorded in Ray's temp folder (Ray Train would join that one)
    started = not ray.is_initialized() and not os.environ.get("RAY_ADDRESS")
    if started:
        ray.init(address="local", include_dashboard=False)
    try:
        result = trainer.fit()
    finally:
        if started:
            ray.shutdown()
    if result.error:
        raise result.error
    shutil.rmtree(storage, ignore_errors=True)
    return read_metadata(config.out)
