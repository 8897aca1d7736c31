"""Load a token-classification model: local directory, hub id, fsspec URL or a shipped name.

Models load from safetensors only, and remote code runs only when the caller asks for it.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import fsspec
import torch
from huggingface_hub import HfApi, try_to_load_from_cache
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from seqlab.config import normalize_precision
from seqlab.errors import ConfigError, ModelError
from seqlab.labels import LabelSet
from seqlab.models.metadata import ModelMetadata, read_metadata
from seqlab.models.quantize import int8_recipe, onnxruntime_available, require_backend
from seqlab.models.shipped import (
    ADAPTER_CONFIG,
    load_adapter_model,
    shipped_model_dir,
    shipped_names,
)

log = logging.getLogger(__name__)

CACHE_DIR = Path(os.environ.get("SEQLAB_CACHE", Path.home() / ".cache" / "seqlab"))

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")

# The one request that tells whether a hub model exists: a hub that has not answered in this
# long counts as out of reach.
HUB_TIMEOUT = 5.0


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
    tokenizer: PreTrainedTokenizerBase
    labels: LabelSet
    name: str
    revision: str
    device: torch.device
    metadata: ModelMetadata = field(default_factory=ModelMetadata)  # its seqlab.json
    precision: str = "fp32"  # what the forward pass runs in: fp32, bf16, fp16 or int8


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {device} was asked for but torch sees no CUDA device",
            fix="pass --device cpu, or install a CUDA build of torch on a GPU machine",
        )
    return torch.device(device)


TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
                # int8 loads in fp32, then seqlab.models.quantize converts it
                "int8": torch.float32}


def resolve_precision(precision: str, device: torch.device,
                      metadata: ModelMetadata | dict) -> str:
    """What the forward pass runs in. ``auto``: bf16 on GPU (fp16 where bf16 is missing); on
    CPU int8 where the model's ``seqlab.json`` records (``precision.cpu``) that int8 was
    measured on its dev set to stay within 0.3 F1 or 0.1 accuracy points of fp32 and its
    backend is installed, else fp32 (CPUs without bf16 units run bf16 several times slower).
    int8 is a CPU path (``seqlab.models.quantize``)."""
    precision = normalize_precision(precision)
    metadata = ModelMetadata.of(metadata)
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if metadata.cpu_precision != "int8":
            return "fp32"
        if int8_recipe(metadata)["backend"] == "onnxruntime" and not onnxruntime_available():
            log.info("precision auto: fp32, since int8 runs on ONNX Runtime, which is not "
                     "installed (pip install 'seqlab[onnx]')")
            return "fp32"
        return "int8"
    if precision == "int8" and device.type != "cpu":
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


def looks_like_path(name: str) -> bool:
    """Whether ``name`` can only mean a local path, not a hub id (``name`` or ``org/name``): it
    starts as paths do, breaks the hub's rules for ids (more than one ``/``, a space, ``--``),
    or its first part is a directory here (``models/ner-v2`` with ``models/`` present).

    >>> [looks_like_path(n) for n in ("nerr", "dslim/bert-base-NER", "./m", "../m", "/m", "~/m")]
    [False, False, True, True, True, True]
    >>> looks_like_path("runs/2024/ner"), looks_like_path("my model"), looks_like_path("C:/m")
    (True, True, True)
    """
    if name.startswith(("/", "~", ".")) or not is_hub_id(name):
        return True
    return "/" in name and os.path.isdir(name.split("/")[0])


def is_hub_id(name: str) -> bool:
    """Whether the hub would take ``name`` as a model id (its own rules, not a lookup)."""
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def missing_directory(path: str) -> ModelError:
    """The error for a model path that does not exist: which part is missing, and the name
    that part most likely has."""
    wanted = Path(path)
    missing = next(p for p in (wanted, *wanted.parents) if p.parent.exists())
    where = "" if missing == wanted else f": there is no {missing}"
    siblings = [p.name for p in missing.parent.iterdir() if p.is_dir()] \
        if missing.parent.is_dir() else []
    close = difflib.get_close_matches(missing.name, siblings, n=1)
    fix = f"did you mean {missing.with_name(close[0])}? " if close else ""
    return ModelError(f"the model directory {path} does not exist{where}",
                      fix=fix + "pass an existing directory (it holds config.json and the "
                      f"weights), a shipped name ({', '.join(shipped_names())}), a hub id or an "
                      "fsspec URL")


def hub_offline() -> bool:
    """Whether the hub is off limits: HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set (now, or
    when huggingface_hub read them at import)."""
    return hf_constants.HF_HUB_OFFLINE or any(
        os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")
        for name in OFFLINE_VARIABLES)


def hub_model(name: str, revision: str | None) -> str:
    """``name`` as a hub id once one quick request (or the cache, offline) says it can be had.

    Left to transformers, a name on an unreachable hub costs most of a minute of retries before
    the error, and a mistyped name offline is reported as a missing connection.
    """
    cached = try_to_load_from_cache(name, "config.json", revision=revision)
    cached = cached if isinstance(cached, str) else None
    if hub_offline():
        if cached:
            return name
        raise unknown_model(name, "a model in the hub cache (the hub is not asked: "
                            "HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set)",
                            "or unset HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE to download it")
    status, detail = hub_status(name, revision)
    if status == "found":
        return name
    if status == "unreachable" and cached:
        log.warning("the hub cannot be reached (%s): %s loads from the cache", detail, name)
        return str(Path(cached).parent)
    if status == "unreachable":
        raise unknown_model(name, f"a cached hub model, and {hf_constants.ENDPOINT} "
                            f"cannot be reached ({detail})",
                            "or check the network connection (proxies, HF_ENDPOINT)")
    if status == "no_revision":
        raise ModelError(f"the hub model {name} has no revision {revision!r}",
                         fix="pass --model-revision with a branch, tag or commit of it")
    raise unknown_model(name, "a model on the hub",
                        "or check the hub id (org/name); a private model needs `hf auth login`")


@lru_cache(maxsize=32)
def hub_status(name: str, revision: str | None) -> tuple[str, str]:
    """``("found" | "missing" | "no_revision" | "unreachable", detail)`` from one request to
    the hub, without retries, remembered for the process (a run resolves its model several
    times). An answer other than not-found (gated, rate-limited, server error) counts as found:
    transformers reports those better."""
    try:
        HfApi().model_info(name, revision=revision, timeout=HUB_TIMEOUT)
    except GatedRepoError:
        return "found", "gated"
    except RepositoryNotFoundError:
        return "missing", ""
    except RevisionNotFoundError:
        return "no_revision", ""
    except HfHubHTTPError as exc:
        return "found", str(exc)
    except Exception as exc:  # noqa: BLE001 - a failure of any kind to get an answer
        return "unreachable", str(exc) or type(exc).__name__
    return "found", ""


def unknown_model(name: str, reason: str, otherwise: str) -> ModelError:
    """The error for a name that is no model anywhere, with the shipped name it is close to."""
    names = shipped_names()
    close = difflib.get_close_matches(name.lower(), names, n=1)
    fix = f"did you mean {close[0]!r}? " if close else ""
    return ModelError(
        f"{name!r} is not a shipped model ({', '.join(names)}), a local directory or {reason}",
        fix=fix + "pass a shipped name, a model directory, a hub id or an fsspec URL, "
        + otherwise)


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
    metadata = read_metadata(source)
    precision = resolve_precision(spec.precision, device, metadata)
    if precision == "int8" and int8_recipe(metadata)["backend"] == "onnxruntime":
        model, revision = load_onnx_int8(spec, source, metadata)
    else:
        model = load_torch_model(spec, source, metadata, TORCH_DTYPES[precision])
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

    try:
        config = AutoConfig.from_pretrained(source, revision=spec.revision,
                                            trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the config of {spec.name!r}: {exc}",
                         fix="pass a directory or hub id of a token-classification model") \
            from exc
    revision = model_revision(source, spec.revision, SimpleNamespace(config=config))
    graph = int8_graph(CACHE_DIR / "onnx", revision, int8_recipe(metadata),
                       lambda: load_torch_model(spec, source, metadata, torch.float32))
    return OnnxTagger(graph, config), revision


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
