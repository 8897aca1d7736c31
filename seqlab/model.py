"""Load a token-classification model: local directory, hub id, fsspec URL or a shipped name.

Models load from safetensors only, and remote code runs only when the caller asks for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer, PreTrainedModel
from transformers import PreTrainedTokenizerBase

from seqlab.errors import ConfigError, ModelError
from seqlab.labels import LabelSet
from seqlab.shipped import ADAPTER_CONFIG, load_adapter_model, shipped_model_dir

log = logging.getLogger(__name__)

METADATA_FILE = "seqlab.json"
CACHE_DIR = Path(os.environ.get("SEQLAB_CACHE", Path.home() / ".cache" / "seqlab"))


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from and how it runs."""

    name: str
    revision: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    scheme: str | None = None
    trust_remote_code: bool = False


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    labels: LabelSet
    name: str
    revision: str
    device: torch.device
    metadata: dict = field(default_factory=dict)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {device} was asked for but torch sees no CUDA device",
            fix="pass --device cpu, or install a CUDA build of torch on a GPU machine",
        )
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """fp32 on CPU (CPUs without bf16 units run bf16 several times slower); bf16/fp16 on GPU."""
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ConfigError(f"unknown --dtype {dtype!r}", fix=f"use auto or one of {sorted(table)}")
    return table[dtype]


def local_model_dir(name: str, revision: str | None = None) -> str:
    """A local directory or hub id for ``name``; fsspec URLs are copied to a local cache."""
    shipped = shipped_model_dir(name)
    if shipped is not None:
        return str(shipped)
    if "://" not in name or name.startswith("file://"):
        return name.removeprefix("file://")
    import fsspec

    fs, path = fsspec.core.url_to_fs(name)
    key = hashlib.sha256(f"{name}@{revision}".encode()).hexdigest()[:16]
    target = CACHE_DIR / "models" / key
    if not (target / "config.json").exists():
        if not fs.exists(path):
            raise ModelError(f"no model at {name}", fix="check the URL and your credentials")
        log.info("copying model %s to %s", name, target)
        tmp = target.with_name(target.name + ".partial")
        fs.get(path.rstrip("/") + "/", str(tmp), recursive=True)
        tmp.rename(target)
    return str(target)


def load_tokenizer(name: str, revision: str | None = None,
                   trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    source = local_model_dir(name, revision)
    try:
        return AutoTokenizer.from_pretrained(
            source, revision=revision, use_fast=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load a tokenizer from {name!r}: {exc}",
            fix="pass a local model directory, an fsspec URL or a hub id that is reachable",
        ) from exc


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load model and tokenizer once; the tag stage then only runs forward passes."""
    source = local_model_dir(spec.name, spec.revision)
    tokenizer = load_tokenizer(spec.name, spec.revision, spec.trust_remote_code)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    metadata = read_metadata(source)
    try:
        if (Path(source) / ADAPTER_CONFIG).is_file():
            model = load_adapter_model(source, metadata, dtype)
        else:
            model = AutoModelForTokenClassification.from_pretrained(
                source,
                revision=spec.revision,
                use_safetensors=True,
                dtype=dtype,
                trust_remote_code=spec.trust_remote_code,
            )
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load a token-classification model from {spec.name!r}: {exc}",
            fix="pass a directory or hub id of a model saved with safetensors "
            "(model.save_pretrained(dir, safe_serialization=True))",
        ) from exc
    model.to(device).eval()
    labels = LabelSet.from_id2label(
        model.config.id2label, spec.scheme or metadata.get("scheme")
    )
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        labels=labels,
        name=spec.name,
        revision=model_revision(source, spec.revision, model),
        device=device,
        metadata=metadata,
    )


def read_metadata(source: str) -> dict:
    path = Path(source) / METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def trained_window(metadata: dict) -> int | None:
    """The example length a seqlab-trained model learned on: its natural annotate window.

    A model trained on 256-subword examples tags worse in 512-subword windows (positions it
    never learned from), so annotate and evaluate default to this length when it is known.
    """
    window = metadata.get("window")
    return int(window) if window else None


def write_metadata(directory: str | Path, metadata: dict) -> None:
    path = Path(directory) / METADATA_FILE
    path.write_text(json.dumps(metadata, indent=2, sort_keys=False) + "\n")


def model_revision(source: str, revision: str | None, model: PreTrainedModel) -> str:
    """A revision string that changes when the weights do.

    Hub models report their commit hash; local directories are identified by the hash of
    their config and weight files.
    """
    commit = getattr(model.config, "_commit_hash", None)
    if commit:
        return commit
    if revision:
        return revision
    path = Path(source)
    if not path.is_dir():
        return "unknown"
    digest = hashlib.sha256()
    for file in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.json")):
        digest.update(file.name.encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]
