"""Load a token-classification model: local directory, hub id, fsspec URL or a shipped name.

Models load from safetensors only, and remote code runs only when the caller asks for it.
torch, transformers and huggingface_hub are imported by the functions that use them: int8 on
ONNX Runtime from a cached graph runs on tokenizers and onnxruntime alone
(``seqlab.models.light``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec

from seqlab.config import normalize_precision
from seqlab.errors import ConfigError, ModelError
from seqlab.labels import LabelSet
from seqlab.models.hub import (  # noqa: F401 - OFFLINE_VARIABLES, hub_status: also named here
    OFFLINE_VARIABLES,
    hub_model,
    hub_status,
    looks_like_path,
    missing_directory,
)
from seqlab.models.light import cached_tokenizer, cuda_possible, read_config, remember_tokenizer
from seqlab.models.metadata import ModelMetadata, read_metadata
from seqlab.models.quantize import int8_recipe, onnxruntime_available, require_backend
from seqlab.models.shipped import ADAPTER_CONFIG, shipped_model_dir

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

CACHE_DIR = Path(os.environ.get("SEQLAB_CACHE", Path.home() / ".cache" / "seqlab"))


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from and how it runs."""

    name: str
    revision: str | None = None
    device: str = "auto"
    precision: str = "auto"
    scheme: str | None = None
    trust_remote_code: bool = False


@dataclass
class LoadedModel:
    model: PreTrainedModel  # or, in int8 on ONNX Runtime, a seqlab.models.quantize.OnnxTagger
    tokenizer: PreTrainedTokenizerBase  # or, from the cache, a seqlab.models.light one
    labels: LabelSet
    name: str
    revision: str
    device: torch.device | str  # "cpu" where ONNX Runtime runs the model
    metadata: ModelMetadata = field(default_factory=ModelMetadata)  # its seqlab.json
    precision: str = "fp32"  # what the forward pass runs in: fp32, bf16, fp16 or int8

    @property
    def backend(self) -> str:
        """What runs the forward pass: ``onnxruntime`` or ``torch``."""
        return "onnxruntime" if hasattr(self.model, "session") else "torch"

    def describe(self) -> dict[str, Any]:
        """How its forward pass runs, as the manifest records it: precision, backend and,
        in int8, the recipe (``seqlab.json`` ``precision.int8``: backend, layers kept fp32)."""
        recipe = int8_recipe(self.metadata) if self.precision == "int8" else None
        return {"precision": self.precision, "backend": self.backend,
                "recipe": None if recipe is None else {k: recipe[k] for k in ("backend", "skip")}}


def device_name(device: str) -> str:
    """``--device`` settled: ``auto`` is ``cuda`` where torch sees a CUDA device, else
    ``cpu``. torch is asked only where a GPU driver is installed (``cuda_possible``)."""
    if device == "auto":
        if not cuda_possible():
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {device} was asked for but torch sees no CUDA device",
                fix="pass --device cpu, or install a CUDA build of torch on a GPU machine",
            )
    return device


def torch_dtype(precision: str) -> torch.dtype:
    """The dtype a torch model loads in (int8 loads in fp32, then seqlab.models.quantize
    converts it)."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
            "int8": torch.float32}[precision]


def resolve_precision(precision: str, device: torch.device | str,
                      metadata: ModelMetadata | dict) -> str:
    """What the forward pass runs in. ``auto``: bf16 on GPU (fp16 where bf16 is missing); on
    CPU int8 where the model's ``seqlab.json`` records (``precision.cpu``) that int8 was
    measured on its dev set to stay within 0.3 F1 or 0.1 accuracy points of fp32 and its
    backend is installed, else fp32 (CPUs without bf16 units run bf16 several times slower).
    int8 is a CPU path (``seqlab.models.quantize``)."""
    precision = normalize_precision(precision)
    metadata = ModelMetadata.of(metadata)
    kind = str(device).split(":")[0]
    if precision == "auto":
        if kind == "cuda":
            import torch

            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if metadata.cpu_precision != "int8":
            return "fp32"
        if int8_recipe(metadata)["backend"] == "onnxruntime" and not onnxruntime_available():
            log.warning("precision auto: fp32, since int8 runs on ONNX Runtime, which is not "
                        "installed (pip install onnxruntime onnx: seqlab depends on them)")
            return "fp32"
        return "int8"
    if precision == "int8" and kind != "cpu":
        raise ConfigError(f"--precision int8 runs on CPU only, not on {device}",
                          fix="pass --precision bf16 (or auto) on a GPU, or --device cpu")
    if precision == "int8":
        require_backend(int8_recipe(metadata))
    return precision


def local_model_dir(name: str, revision: str | None = None) -> str:
    """A local directory or hub id for ``name``; fsspec URLs are copied to a local cache.

    A name that is none of these fails here, with the likely fix, rather than deep in
    transformers after its hub retries.
    """
    shipped = shipped_model_dir(name)
    if shipped is not None:
        return str(shipped)
    if "://" in name and not name.startswith("file://"):
        return copied_model(name, revision)
    path = os.path.expanduser(name.removeprefix("file://"))
    if os.path.exists(path):
        return path
    if name.startswith("file://") or looks_like_path(name):
        raise missing_directory(path)
    return hub_model(name, revision)


def copied_model(url: str, revision: str | None) -> str:
    """The local copy of a model on an fsspec URL, made on first use."""
    fs, path = fsspec.core.url_to_fs(url)
    key = hashlib.sha256(f"{url}@{revision}".encode()).hexdigest()[:16]
    target = CACHE_DIR / "models" / key
    if not (target / "config.json").exists():
        if not fs.exists(path):
            raise ModelError(f"no model at {url}", fix="check the URL and your credentials")
        log.info("copying model %s to %s", url, target)
        tmp = target.with_name(target.name + ".partial")
        fs.get(path.rstrip("/") + "/", str(tmp), recursive=True)
        tmp.rename(target)
    return str(target)


def load_tokenizer(name: str, revision: str | None = None, trust_remote_code: bool = False,
                   cached: bool = False) -> PreTrainedTokenizerBase:
    """The model's fast tokenizer. ``cached``: what annotating asks of it is enough (the
    tokenize stage's and the tag stage's needs): a local model directory's tokenizer is then
    read from ``CACHE_DIR/tokenizers`` without transformers where an earlier load stored it
    (``seqlab.models.light``), and stored there otherwise."""
    source = local_model_dir(name, revision)
    light = cached and not trust_remote_code and Path(source).is_dir()
    if light and (found := cached_tokenizer(CACHE_DIR / "tokenizers", source)) is not None:
        return found
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, revision=revision, use_fast=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load a tokenizer from {name!r}: {exc}",
            fix="pass a local model directory, an fsspec URL or a hub id that is reachable",
        ) from exc
    if light:
        remember_tokenizer(CACHE_DIR / "tokenizers", source, tokenizer)
    return tokenizer


def load_config(name: str, source: str, revision: str | None,
                trust_remote_code: bool = False) -> Any:
    """The model's config as far as a run needs it (``id2label``, the hub commit): read as
    JSON from a local directory (``seqlab.models.light.read_config``), through transformers'
    ``AutoConfig`` for hub ids and with remote code."""
    try:
        config = None if trust_remote_code else read_config(source)
        if config is None:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(source, revision=revision,
                                                trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the model config of {name!r}: {exc}",
                         fix="pass a model directory or hub id with a config.json") from exc
    return config


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load model and tokenizer once; the tag stage then only runs forward passes. int8 on
    ONNX Runtime from a cached graph imports neither torch nor transformers."""
    source = local_model_dir(spec.name, spec.revision)
    metadata = read_metadata(source)
    device: Any = device_name(spec.device)
    precision = resolve_precision(spec.precision, device, metadata)
    onnx = precision == "int8" and int8_recipe(metadata)["backend"] == "onnxruntime"
    tokenizer = load_tokenizer(spec.name, spec.revision, spec.trust_remote_code, cached=onnx)
    if onnx:
        model, revision = load_onnx_int8(spec, source, metadata)
    else:
        import torch

        device = torch.device(device)
        model = load_torch_model(spec, source, metadata, torch_dtype(precision))
        model.to(device).eval()
        if precision == "int8":
            from seqlab.models.quantize import quantize_model

            model = quantize_model(model, metadata, inplace=True)
        revision = model_revision(source, spec.revision, model)
    labels = LabelSet.from_id2label(
        model.config.id2label, spec.scheme or metadata.scheme
    )
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        labels=labels,
        name=spec.name,
        revision=revision,
        device=device,
        metadata=metadata,
        precision=precision,
    )


def load_torch_model(spec: ModelSpec, source: str, metadata: ModelMetadata,
                     dtype: torch.dtype) -> PreTrainedModel:
    """The torch token classifier at ``source`` (a shipped adapter merged into its base)."""
    from transformers import AutoModelForTokenClassification

    from seqlab.models.shipped import load_adapter_model

    try:
        if (Path(source) / ADAPTER_CONFIG).is_file():
            return load_adapter_model(source, metadata, dtype)
        return AutoModelForTokenClassification.from_pretrained(
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


def load_onnx_int8(spec: ModelSpec, source: str, metadata: ModelMetadata):
    """The model as ONNX Runtime's int8 session (``seqlab.models.quantize.OnnxTagger``) and its
    revision. The graph is built from the fp32 checkpoint on first use and cached under
    ``CACHE_DIR/onnx`` by revision and recipe; later loads read only the config and the
    graph, never the torch weights."""
    from seqlab.models.quantize import OnnxTagger, int8_graph

    config = load_config(spec.name, source, spec.revision, spec.trust_remote_code)
    revision = model_revision(source, spec.revision, config)
    graph = int8_graph(CACHE_DIR / "onnx", revision, int8_recipe(metadata),
                       lambda: load_torch_model(spec, source, metadata, torch_dtype("fp32")))
    return OnnxTagger(graph, config), revision


def model_revision(source: str, revision: str | None, model: Any) -> str:
    """A revision string that changes when the weights do. ``model``: the model, or its
    config.

    Hub models report their commit hash; local directories are identified by the hash of
    their config and weight files.
    """
    config = getattr(model, "config", model)
    commit = getattr(config, "_commit_hash", None)
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
