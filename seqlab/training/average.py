"""One model from several fine-tunes: the element-wise mean of their weights (a uniform "model
soup", Wortsman et al., ICML 2022).

Models tuned from the same base encoder on the same labels, with different seeds, end close
enough in weight space that their mean is itself a good model, often better than each of them,
and it is exactly as large and as fast as one: unlike an ensemble, annotation pays nothing for
it. The ingredients may be ``seqlab train`` outputs or models in compact form (the shipped
ones); the soup is written as a plain checkpoint, like a ``seqlab train`` output, for
``seqlab export`` to store compactly and ``seqlab evaluate`` to score. Its ``seqlab.json`` is
the first ingredient's, with what no longer holds (dev scores, calibration, precision
recipe, storage form) removed, the seeds listed in ``hyper_parameters.seeds``, the training
time summed, and each ingredient recorded under ``averaged_from``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from seqlab.errors import ModelError
from seqlab.models.export import TOKENIZER_FILES
from seqlab.models.load import ModelSpec, load_torch_model, local_model_dir
from seqlab.models.metadata import ModelMetadata, read_metadata, write_metadata
from seqlab.models.shipped import ADAPTER_CONFIG, ADAPTER_WEIGHTS, file_sha256

# what an ingredient's seqlab.json says of that model alone, not of their mean
NOT_INHERITED = ("dev_metrics", "dev_history", "dev_scores", "calibration", "precision",
                 "decoder", "form", "train_steps", "predicates")
# entries that must agree for the weights to mean the same thing
MUST_AGREE = ("task", "scheme", "labels", "case_feature", "predicate_encoding")


def average_models(sources: list[str], target: str | Path) -> ModelMetadata:
    """Write the mean of ``sources``' weights to ``target`` and return its metadata."""
    if len(sources) < 2:
        raise ModelError(f"averaging needs two models or more, got {len(sources)}",
                         fix="pass the directories of several fine-tunes of one base")
    directories = [local_model_dir(source) for source in sources]
    metadata = [read_metadata(directory) for directory in directories]
    check_compatible(sources, metadata)
    total: dict[str, torch.Tensor] = {}
    first = None
    for source, directory, meta in zip(sources, directories, metadata):
        model = load_torch_model(ModelSpec(source), directory, meta, torch.float32)
        state = model.state_dict()
        if first is None:
            first, total = model, {k: v.detach().clone() for k, v in state.items()}
            continue
        if state.keys() != total.keys() or any(state[k].shape != total[k].shape for k in total):
            raise ModelError(f"{source} does not have {sources[0]}'s architecture",
                             fix="average models tuned from one base encoder")
        for key, value in state.items():
            if value.is_floating_point():
                total[key] += value
    with torch.no_grad():
        first.load_state_dict({k: v / len(sources) if v.is_floating_point() else v
                               for k, v in total.items()})
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    first.save_pretrained(target, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (Path(directories[0]) / name).is_file():
            shutil.copyfile(Path(directories[0]) / name, target / name)
    # the recipe is the first ingredient's; the seed is each one's
    recipe = {k: v for k, v in metadata[0].hyper_parameters.items() if k != "seed"}
    soup = metadata[0].updated(
        **dict.fromkeys(NOT_INHERITED),
        hyper_parameters={**recipe, "seeds": [m.hyper_parameters.get("seed") for m in metadata]},
        train_seconds=sum(m.train_seconds or 0.0 for m in metadata) or None,
        averaged_from=[ingredient(source, directory, meta)
                       for source, directory, meta in zip(sources, directories, metadata)])
    write_metadata(target, soup)
    return read_metadata(str(target))


def check_compatible(sources: list[str], metadata: list[ModelMetadata]) -> None:
    """Models whose weights can be averaged: one task, label order, casing input and base."""
    first = metadata[0]
    for source, meta in zip(sources[1:], metadata[1:]):
        for key in MUST_AGREE:
            if getattr(meta, key) != getattr(first, key):
                raise ModelError(
                    f"{source} has {key} {getattr(meta, key)!r}, {sources[0]} "
                    f"{getattr(first, key)!r}: their weights do not mean the same thing",
                    fix="average models trained on one label set with one recipe")
        if base_hash(meta) != base_hash(first):
            raise ModelError(f"{source} was tuned from another base encoder than {sources[0]}",
                             fix="average fine-tunes of one base encoder (seqlab.json base)")


def base_hash(metadata: ModelMetadata) -> str | None:
    """The hash of the base encoder's weights a model was tuned from."""
    return metadata.base.sha256 if metadata.base else None


def ingredient(source: str, directory: str, metadata: ModelMetadata) -> dict:
    """What ``averaged_from`` records of one ingredient: where it came from, its weights'
    hash, its seed and the dev scores it had alone."""
    weights = Path(directory) / ("model.safetensors" if not
                                 (Path(directory) / ADAPTER_CONFIG).is_file() else
                                 ADAPTER_WEIGHTS)
    scores = metadata.dev_scores or metadata.dev_metrics
    return {"model": source, "sha256": file_sha256(str(weights)),
            "seed": metadata.hyper_parameters.get("seed"),
            "epochs": metadata.hyper_parameters.get("epochs"),
            **({"dev": dict(scores)} if scores else {})}
