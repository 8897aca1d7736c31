"""Build the compact form of a trained model, the form ``seqlab.models.shipped`` loads.

Two sources: a ``seqlab train --lora-r`` output, whose adapter is kept as it is, and a full
fine-tune, whose change from the base encoder is factorised to low rank (SVD) and stored in
LoRA's tensor layout, int8 by default. Either way the directory keeps the config, tokenizer and
``seqlab.json``, and pins the base encoder's weights by hash instead of copying them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForTokenClassification

from seqlab.errors import ModelError
from seqlab.models.metadata import BasePin, ModelMetadata, read_metadata, write_metadata
from seqlab.models.shipped import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    BASE_HUB_ID,
    BASE_PACKAGE,
    base_tagger,
    resolve_base,
)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt")


def export_adapter_model(trained: str | Path, target: str | Path,
                         hub_id: str | None = "default", package: str | None = "default") -> Path:
    """A compact model directory from a ``seqlab train --lora-r`` output.

    Keeps the adapter, config, tokenizer and metadata, and pins the base weights by hash.
    """
    trained, target = Path(trained), Path(target)
    if not (trained / "adapter" / ADAPTER_CONFIG).is_file():
        raise ModelError(f"{trained} has no adapter/ directory",
                         fix="train with --lora-r to get an adapter")
    target.mkdir(parents=True, exist_ok=True)
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        shutil.copyfile(trained / "adapter" / name, target / name)
    _finish_export(trained, target, hub_id, package, "LoRA adapter and head trained over the "
                   "pinned base encoder")
    return target


def export_low_rank_model(trained: str | Path, target: str | Path, rank: int, bits: int = 8,
                          hub_id: str | None = "default",
                          package: str | None = "default") -> Path:
    """A compact model directory from a full fine-tune: each changed weight matrix of the
    encoder layers stored as a rank-``rank`` factorisation (SVD) of its difference from the
    base, in LoRA's tensor layout; other changed tensors (head, biases, norms) stored whole.

    ``bits=8`` stores each factor as int8 with one fp32 scale per row (half the size of
    ``bits=16``, fp16 factors); the rounding error is far below the truncation error."""
    if bits not in (8, 16):
        raise ModelError(f"bits={bits} is not supported", fix="use bits=8 or bits=16")
    trained, target = Path(trained), Path(target)
    # the pin as training recorded it: the shipped models' base resolves to its package
    base_dir = resolve_base(read_metadata(str(trained)).base or BasePin())
    tuned = AutoModelForTokenClassification.from_pretrained(str(trained), dtype=torch.float32)
    base_params = dict(base_tagger(base_dir, tuned.config).named_parameters())
    tensors, targets, whole = {}, [], []
    for name, weight in tuned.named_parameters():
        delta = weight.detach() - base_params[name].detach()
        if not delta.any():
            continue
        module = name.rsplit(".", 1)[0]
        if _factorise(name, delta, rank):
            up, singular, down = torch.linalg.svd(delta, full_matrices=False)
            root = singular[:rank].sqrt()
            for side, matrix in (("A", root[:, None] * down[:rank]), ("B", up[:, :rank] * root)):
                tensors.update(_stored(f"base_model.model.{module}.lora_{side}", matrix, bits))
            targets.append(module)
        else:
            tensors[f"base_model.model.{name}"] = weight.detach().clone().contiguous()
            whole.append(name)
    target.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target / ADAPTER_WEIGHTS))
    settings = {"peft_type": "LORA", "task_type": "TOKEN_CLS", "r": rank, "lora_alpha": rank,
                "target_modules": sorted(targets), "whole_tensors": sorted(whole), "bits": bits,
                "base_model_name_or_path": None}
    (target / ADAPTER_CONFIG).write_text(json.dumps(settings, indent=2) + "\n")
    precision = "int8" if bits == 8 else "fp16"
    _finish_export(trained, target, hub_id, package, f"rank-{rank} factorisation ({precision} "
                   "factors) of a full fine-tune over the pinned base encoder")
    return target


def _stored(prefix: str, matrix: torch.Tensor, bits: int) -> dict[str, torch.Tensor]:
    """A factor as ``{prefix}.weight`` in fp16, or in int8 with a per-row ``{prefix}.scale``."""
    if bits == 16:
        return {f"{prefix}.weight": matrix.half().contiguous()}
    scale = matrix.abs().amax(dim=1).clamp_min(1e-12) / 127
    quantised = torch.round(matrix / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return {f"{prefix}.weight": quantised.contiguous(), f"{prefix}.scale": scale.float()}


def _factorise(name: str, delta: torch.Tensor, rank: int) -> bool:
    return (delta.dim() == 2 and ".encoder." in name and name.endswith(".weight")
            and min(delta.shape) > 2 * rank)


def _pin(metadata: ModelMetadata, hub_id: str | None, package: str | None) -> BasePin:
    base = metadata.base or BasePin()
    return BasePin(name=hub_id or base.name, sha256=base.sha256, hub_id=hub_id, package=package)


def _finish_export(trained: Path, target: Path, hub_id: str | None, package: str | None,
                   form: str) -> None:
    hub_id = BASE_HUB_ID if hub_id == "default" else hub_id
    package = BASE_PACKAGE if package == "default" else package
    for name in ("config.json", *TOKENIZER_FILES):
        if (trained / name).is_file():
            shutil.copyfile(trained / name, target / name)
    metadata = read_metadata(str(trained))
    settings = json.loads((target / ADAPTER_CONFIG).read_text())
    settings["base_model_name_or_path"] = hub_id or (metadata.base or BasePin()).name
    (target / ADAPTER_CONFIG).write_text(json.dumps(settings, indent=2) + "\n")
    write_metadata(target, metadata.updated(base=_pin(metadata, hub_id, package), form=form))
