"""int8 on CPU: a BERT-family tagger with its linear layers in int8.

Two backends, chosen by the model's recipe (``seqlab.json`` ``precision.int8.backend``):

- ``onnxruntime`` (the default; onnxruntime and onnx come with seqlab): the fp32 checkpoint is
  exported to ONNX (``torch.onnx.export``) and quantized by ONNX Runtime's
  ``quantize_dynamic``: weights int8 with one scale per output channel, activations uint8
  with a scale and zero point taken on the fly for each micro-batch. ONNX Runtime then fuses
  the quantize, integer matrix multiply and rescale into one kernel. The graph is built once
  per model revision and recipe at load time and cached on disk
  (``$SEQLAB_CACHE/onnx/KEY/model.int8.onnx``); later loads read it without touching the
  torch weights, and the tag stage feeds it numpy arrays: a run on a cached graph imports
  neither torch nor transformers' model code (``seqlab.models.light``).
- ``torch``: torch's dynamically quantized ``nn.Linear`` (fbgemm/x86), per-channel weights.

Linear layers whose module names match a pattern of the recipe's ``skip`` (regular
expressions searched in names such as ``bert.encoder.layer.0.output.dense``) stay in fp32.
The defaults are what measured best on the shipped models' dev sets
(``benchmarks/precision.py``): ONNX Runtime keeps only the classification head in fp32; torch
also needs both output projections kept, since its kernels quantize activations to 7 bits.

Windows, stitching and decoding are those of fp32, and every input row still gives one row.
What differs from fp32 beyond the int8 rounding: the activation scale is taken over a whole
forward pass (a slice of at most ``seqlab.stages.tag.CPU_RUN_TOKENS`` padded tokens of a
micro-batch), so a window's scores move slightly with its neighbours in the pass (as kernel
choices make them move on GPU); labels rarely do.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqlab.errors import ConfigError
from seqlab.models.metadata import INT8_BACKENDS, ModelMetadata

if TYPE_CHECKING:  # torch is imported where a torch model is built or run, not by the int8 path
    import torch
    from torch import nn

log = logging.getLogger(__name__)

BACKENDS = INT8_BACKENDS  # checked when seqlab.json is read
# Patterns (re.search in module names) of the linear layers left in fp32 unless the model's
# recipe says otherwise. torch: the classification head and the two projections that write
# into the residual stream (attention output, feed-forward output), whose inputs carry the
# outliers that a 7-bit activation scale handles worst. ONNX Runtime (8-bit activations): the
# head only, since keeping the output projections too costs a third of the speed for little
# F1 (benchmarks/precision.py measures every recipe; the README has the table).
SKIP: tuple[str, ...] = ("classifier", r"\.output\.dense$")
DEFAULT_SKIP = {"onnxruntime": ("classifier",), "torch": SKIP}
INSTALL_FIX = ("pip install onnxruntime onnx (dependencies of seqlab that this environment "
               "lacks), or pass --precision fp32")
# Bumped when the way graphs are built changes, so that cached graphs are rebuilt.
GRAPH_FORMAT = 1
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def int8_recipe(metadata: ModelMetadata | dict) -> dict:
    """The model's int8 recipe (``seqlab.json`` ``precision.int8``), else the default:
    ``{"backend": ..., "skip": [...]}``. A plain dict is read as ``seqlab.json`` would be.

    >>> int8_recipe(ModelMetadata()) == {"backend": "onnxruntime", "skip": ["classifier"]}
    True
    >>> torch_recipe = ModelMetadata(precision={"int8": {"backend": "torch"}})
    >>> int8_recipe(torch_recipe)["skip"] == list(SKIP)
    True
    >>> int8_recipe({"precision": {"int8": {"skip": []}}})["skip"]
    []
    """
    recipe = dict(ModelMetadata.of(metadata).int8)
    backend = recipe.setdefault("backend", "onnxruntime")
    recipe["skip"] = list(recipe.get("skip", DEFAULT_SKIP[backend]))
    return recipe


def onnxruntime_available() -> bool:
    """Whether the ``onnxruntime`` backend can run here (onnxruntime and onnx installed).
    Asked of the import system without importing them: onnx alone takes a second to import,
    and a run on a cached graph never needs it."""
    try:
        return all(importlib.util.find_spec(name) is not None
                   for name in ("onnxruntime", "onnx"))
    except (ImportError, ValueError):  # a module set to None in sys.modules, or no spec
        return False


def require_backend(recipe: dict) -> None:
    """Fail, with the install command, when the recipe's backend is not installed."""
    if recipe["backend"] == "onnxruntime" and not onnxruntime_available():
        raise ConfigError("--precision int8 runs on ONNX Runtime, which is not installed",
                          fix=INSTALL_FIX)


def quantizable_layers(model: nn.Module, skip: list[str] | tuple[str, ...]) -> list[str]:
    """Names of the ``nn.Linear`` modules of ``model`` that no pattern of ``skip`` matches."""
    from torch import nn

    patterns = [re.compile(pattern) for pattern in skip]
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not any(p.search(name) for p in patterns)]


def quantize_model(model: nn.Module, metadata: ModelMetadata | dict | None = None,
                   inplace: bool = False) -> nn.Module:
    """``model`` (fp32, on CPU, in eval mode) with its linear layers as torch's dynamic int8
    linear, following the model's recipe (``int8_recipe``; its ``skip``, the torch default
    when it names none). ``inplace``: convert ``model`` itself rather than a copy (no second
    copy of the weights in memory while converting)."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    skip = list(ModelMetadata.of(metadata).int8.get("skip", SKIP))
    names = quantizable_layers(model, skip)
    if torch.backends.quantized.engine not in ("x86", "fbgemm"):
        torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; the eager API still works
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantized = quantize_dynamic(model, dict.fromkeys(names, per_channel_dynamic_qconfig),
                                     dtype=torch.qint8, inplace=inplace)
    log.info("int8 (torch): %d linear layers quantized, %s left in fp32", len(names),
             ", ".join(skip) or "none")
    return quantized.eval()


# ---------------------------------------------------------------------------- ONNX Runtime


def session_threads() -> int:
    """Threads for an ONNX Runtime session: as many as the torch path would use. torch's own
    count where torch is imported (a caller may have set it, as Beam's workers do), else
    ``OMP_NUM_THREADS``, else 0: ONNX Runtime's default of one per physical core, which is
    torch's default too."""
    if "torch" in sys.modules:
        return sys.modules["torch"].get_num_threads()
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() else 0


class OnnxTagger:
    """An ONNX Runtime session that runs as the torch tagger does. ``run`` takes numpy arrays
    by input name and gives the logits as a numpy array (what the tag stage calls: no torch
    anywhere); called as the torch tagger is, ``tagger(input_ids=..., attention_mask=...,
    token_type_ids=...).logits``, it takes and gives torch tensors. Inputs the graph has but
    the call leaves out (token type ids of a model without a case feature) run as zeros;
    inputs the graph lacks are ignored. Each call is one session run:
    ``seqlab.stages.tag.Tagger`` bounds its size, which bounds what ONNX Runtime's arena
    keeps."""

    def __init__(self, path: str | Path, config: Any, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # as many threads as the torch path would use, one operator at a time
        options.intra_op_num_threads = threads or session_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = str(path)
        self.session = ort.InferenceSession(self.path, options,
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.config = config

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The logits (float32, rows x length x labels) of integer arrays by input name."""
        ids = inputs["input_ids"]
        feeds = {}
        for name in self.input_names:
            value = inputs.get(name)
            if value is None:
                value = np.ones_like(ids) if name == "attention_mask" else np.zeros_like(ids)
            feeds[name] = np.asarray(value).astype(np.int64, copy=False)
        return self.session.run(["logits"], feeds)[0]

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 **inputs: torch.Tensor):
        import torch
        from transformers.modeling_outputs import TokenClassifierOutput

        given = {"input_ids": input_ids, "attention_mask": attention_mask, **inputs}
        arrays = {name: value.detach().cpu().numpy() for name, value in given.items()
                  if value is not None}
        return TokenClassifierOutput(logits=torch.from_numpy(self.run(arrays)))

    def eval(self) -> OnnxTagger:
        return self

    def to(self, device) -> OnnxTagger:
        if str(device).split(":")[0] != "cpu":
            raise ConfigError("the ONNX Runtime int8 model runs on CPU only",
                              fix="pass --device cpu, or --precision bf16 on a GPU")
        return self


def graph_key(revision: str, recipe: dict) -> str:
    """The cache key of a model's int8 graph: its revision, the recipe, and the versions of
    what builds and runs it."""
    import onnxruntime

    settings = {"revision": revision, "skip": recipe["skip"], "format": GRAPH_FORMAT,
                "opset": OPSET, "onnxruntime": onnxruntime.__version__,
                "torch": torch_version().split("+")[0]}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


def torch_version() -> str:
    """torch's version, read from its installed metadata where torch is not imported (the
    graph cache is looked up without importing it)."""
    if "torch" in sys.modules:
        return sys.modules["torch"].__version__
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "none"


def int8_graph(cache: Path, revision: str, recipe: dict,
               build: Callable[[], nn.Module]) -> Path:
    """The cached int8 ONNX graph of the model at ``revision``, built on first use from the
    fp32 torch model that ``build()`` loads. Concurrent builders (Ray actors, Beam workers on
    one machine) each build in a directory of their own and the first to finish wins."""
    target = cache / graph_key(revision, recipe)
    graph = target / "model.int8.onnx"
    if graph.is_file():
        return graph
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=target.name + ".", suffix=".partial", dir=cache))
    work.chmod(0o755)
    try:
        model = build()
        export_onnx(model, work / "model.onnx")
        del model
        layers = quantize_onnx(work / "model.onnx", work / "model.int8.onnx", recipe["skip"])
        (work / "model.onnx").unlink()
        (work / "recipe.json").write_text(json.dumps(
            {"revision": revision, "skip": recipe["skip"], "int8_layers": layers}, indent=2))
        try:
            os.rename(work, target)
        except OSError:  # another process built it first
            if not graph.is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("int8 (onnxruntime): graph of revision %s built in %s", revision, target)
    return graph


def _logits_module(model: nn.Module, names: tuple[str, ...]) -> nn.Module:
    """The tagger with plain tensors in and its logits out: what the exporter traces."""
    from torch import nn

    class Logits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, tensors))).logits

    return Logits()


def export_onnx(model: nn.Module, path: Path) -> None:
    """``model`` (fp32, CPU) as an ONNX graph with batch and length dynamic, traced with the
    eager attention (the exporter's best-supported form of BERT's attention)."""
    import torch

    accepted = inspect.signature(model.forward).parameters
    names = tuple(name for name in INPUTS if name in accepted)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    else:
        model.config._attn_implementation = "eager"
    ids = torch.full((2, 16), 100, dtype=torch.long)
    example = tuple(torch.ones_like(ids) if name == "attention_mask" else
                    ids if name == "input_ids" else torch.zeros_like(ids) for name in names)
    axes = {name: {0: "batch", 1: "length"} for name in (*names, "logits")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_logits_module(model.eval(), names), example, str(path),
                          input_names=list(names), output_names=["logits"], dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False)


def matmul_modules(model) -> dict[str, str]:
    """``{node name: module name}`` of the graph's MatMul/Gemm nodes with a constant weight,
    the module name read from the exporter's node scope (``/model/bert/encoder/layer.0/
    output/dense/MatMul`` is ``bert.encoder.layer.0.output.dense``)."""
    constants = {init.name for init in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 \
                and node.input[1] in constants:
            scope = node.name.strip("/").split("/")
            found[node.name] = ".".join(scope[1:-1])
    return found


def skipped_nodes(layers: dict[str, str], skip: list[str] | tuple[str, ...]) -> list[str]:
    """The nodes of ``layers`` (``matmul_modules``) whose module name matches a ``skip``
    pattern: what the quantizer leaves in fp32."""
    patterns = [re.compile(pattern) for pattern in skip]
    return [node for node, module in layers.items() if any(p.search(module) for p in patterns)]


def quantize_onnx(source: Path, target: Path, skip: list[str]) -> int:
    """ONNX Runtime's dynamic int8 of the graph at ``source`` (per-channel int8 weights,
    uint8 activations), the layers matching ``skip`` left in fp32; the number quantized."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    layers = matmul_modules(onnx.load(str(source), load_external_data=False))
    excluded = skipped_nodes(layers, skip)
    quiet = logging.root.manager.disable
    # the quantizer's advice to pre-process the graph goes to the root logger; the exporter's
    # graph needs no shape pre-processing for the MatMuls it quantizes
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(source), str(target), per_channel=True,
                             weight_type=QuantType.QInt8, nodes_to_exclude=excluded)
    finally:
        logging.disable(quiet)
    log.info("int8 (onnxruntime): %d linear layers quantized, %s left in fp32",
             len(layers) - len(excluded), ", ".join(skip) or "none")
    return len(layers) - len(excluded)
