"""int8 recipes against fp32: dev scores and the forward rate, for choosing ``--precision int8``.

    python benchmarks/precision.py [--model ner] [--recipes fp32 onnx-fp32 onnx-head ...]
                                   [--forward-reps 9] [--no-dev]

Recipes, each a backend and the linear layers it leaves in fp32 (``seqlab.models.quantize`` ``skip``
patterns):

- ``fp32``: the torch model as ``--precision fp32`` runs it;
- ``onnx-fp32``: the same exported to ONNX and run by ONNX Runtime in fp32;
- ``onnx-all``, ``onnx-head``, ``onnx-head+outputs``, ``onnx-head+ffn-in``: ONNX Runtime's
  dynamic int8 (per-channel int8 weights, uint8 activations) with nothing, the classifier
  head, the head and both output projections, or the head and the feed-forward input layers
  left in fp32 (``onnx-head`` is the shipped default);
- ``onnx-fused``: ``onnx-head`` on the graph fused by ``onnxruntime.transformers.optimizer``
  (attention, skip layer norm and bias GELU kernels);
- ``onnx-static``: ONNX Runtime's static int8 (QDQ, per-channel weights, activation ranges
  calibrated by min/max on 64 windows of 128 subwords from Wikipedia articles outside the
  benchmarks' slice), the head in fp32;
- ``all``, ``head``, ``head+outputs``, ``head+ffn-out``: torch's dynamic int8 linear layers with
  per-channel weights (``per-tensor``: one weight scale per matrix, every linear).

For each it prints the model's dev score through ``seqlab evaluate`` (document context, the
model's decoder, the default windows; F1 for ner on CoNLL-2003 eng.testa, accuracy for upos on
UD English-EWT dev) and the forward rate on fixed 32 x 128-token batches, all recipes
alternated in one process (each repetition runs every recipe once), medians, and the median
of each repetition's ratio to fp32 (steadier than the ratio of medians on a shared machine).
ONNX Runtime and torch run with the same number of threads (torch's).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import inputs
import torch

from seqlab.models.load import ModelSpec, load_model
from seqlab.models.quantize import OnnxTagger, export_onnx, quantize_model, quantize_onnx
from seqlab.training.evaluate import evaluate

RECIPES = {
    "all": [],
    "head": ["classifier"],
    "head+outputs": ["classifier", r"\.output\.dense$"],
    "head+ffn-out": ["classifier", r"layer\.\d+\.output\.dense$"],
}
ONNX = {"onnx-all": [], "onnx-head": ["classifier"],
        "onnx-head+outputs": ["classifier", r"\.output\.dense$"],
        "onnx-head+ffn-in": ["classifier", r"intermediate\.dense$"]}
EXTRA = ("onnx-fused", "onnx-static")
CHOICES = ["fp32", "onnx-fp32", *ONNX, *EXTRA, "per-tensor", *RECIPES]


def calibration_batches(tokenizer, n: int = 64, length: int = 128, rows: int = 8) -> list[dict]:
    """``n`` windows of ``length`` subwords (with their case types) from articles 1000 on of
    the Wikipedia corpus, in batches of ``rows``: what static int8 takes its ranges from."""
    import numpy as np
    import pyarrow.parquet as pq

    from seqlab.stages.casing import case_types

    texts = pq.read_table(inputs.corpus(), columns=["text"]).column("text").to_pylist()[1000:1100]
    windows = []
    for text in texts:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = np.asarray(enc["input_ids"])
        offsets = np.asarray(enc["offset_mapping"]).reshape(-1, 2)
        types = case_types(text, offsets[:, 0], offsets[:, 1])
        for start in range(0, len(ids) - length + 2, length - 2):
            body = slice(start, start + length - 2)
            windows.append((np.concatenate([[tokenizer.cls_token_id], ids[body],
                                            [tokenizer.sep_token_id]]),
                            np.concatenate([[0], types[body], [0]])))
            if len(windows) == n:
                break
        if len(windows) == n:
            break
    return [{"input_ids": np.stack([w[0] for w in group]).astype("int64"),
             "attention_mask": np.ones((len(group), length), dtype="int64"),
             "token_type_ids": np.stack([w[1] for w in group]).astype("int64")}
            for group in (windows[i:i + rows] for i in range(0, len(windows), rows))]


def quantize_static_graph(source: Path, target: Path, tokenizer) -> None:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from seqlab.models.quantize import matmul_modules, skipped_nodes

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration_batches(tokenizer))

        def get_next(self):
            return next(self.batches, None)

    prepared = source.with_suffix(".pre.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    head = skipped_nodes(matmul_modules(onnx.load(str(prepared))), ["classifier"])
    quantize_static(str(prepared), str(target), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                    nodes_to_exclude=head,
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def fused_graph(source: Path, target: Path, config) -> None:
    """The graph fused by ONNX Runtime's transformer optimizer, then dynamic int8 with the
    head in fp32 (``onnx-head``'s recipe)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    from seqlab.models.quantize import matmul_modules, skipped_nodes

    fused = target.with_suffix(".fused.onnx")
    optimize_model(str(source), model_type="bert", num_heads=config.num_attention_heads,
                   hidden_size=config.hidden_size).save_model_to_file(str(fused))
    head = skipped_nodes(matmul_modules(onnx.load(str(fused))), ["classifier"])
    quantize_dynamic(str(fused), str(target), per_channel=True, weight_type=QuantType.QInt8,
                     nodes_to_exclude=head,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def build(base: torch.nn.Module, recipe: str, work: Path, tokenizer=None):
    if recipe == "fp32":
        return base
    if recipe.startswith("onnx-"):
        graph = work / "model.onnx"
        if not graph.is_file():
            export_onnx(copy.deepcopy(base), graph)
        if recipe == "onnx-fp32":
            return OnnxTagger(graph, base.config)
        if recipe == "onnx-fused":
            fused_graph(graph, work / f"{recipe}.onnx", base.config)
            return OnnxTagger(work / f"{recipe}.onnx", base.config)
        if recipe == "onnx-static":
            quantize_static_graph(graph, work / f"{recipe}.onnx", tokenizer)
            return OnnxTagger(work / f"{recipe}.onnx", base.config)
        quantize_onnx(graph, work / f"{recipe}.onnx", ONNX[recipe])
        return OnnxTagger(work / f"{recipe}.onnx", base.config)
    if recipe == "per-tensor":
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return quantize_dynamic(base, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)
    return quantize_model(base, {"precision": {"int8": {"skip": RECIPES[recipe]}}})


def forward_rates(models: dict, reps: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median tokens/s of each model on 32 x 128-token batches, and the median over the
    repetitions of its rate over the first model's in the same repetition."""
    ids = torch.randint(1000, 20000, (32, 128), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
              "token_type_ids": torch.zeros_like(ids)}
    rates: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model(**inputs)
        for _ in range(reps):
            for name, model in models.items():
                start = time.perf_counter()
                model(**inputs)
                rates[name].append(ids.numel() / (time.perf_counter() - start))
    first = rates[next(iter(models))]
    return ({name: statistics.median(r) for name, r in rates.items()},
            {name: statistics.median(a / b for a, b in zip(r, first))
             for name, r in rates.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ner", choices=list(inputs.DEV))
    parser.add_argument("--recipes", nargs="+", default=CHOICES, choices=CHOICES)
    parser.add_argument("--forward-reps", type=int, default=9)
    parser.add_argument("--no-dev", action="store_true", help="forward rates only")
    inputs.add_options(parser, data=True)
    args = parser.parse_args()
    inputs.use(args)
    loaded = load_model(ModelSpec(args.model, device="cpu", precision="fp32"))
    recipes = ["fp32", *(r for r in args.recipes if r != "fp32")]
    with tempfile.TemporaryDirectory() as tmp:
        models = {name: build(loaded.model, name, Path(tmp), loaded.tokenizer)
                  for name in recipes}
        rates, ratios = forward_rates(models, args.forward_reps)
    key = "f1" if args.model == "ner" else "accuracy"
    print(f"| recipe | fp32 layers | dev {key} | forward tokens/s | vs fp32 (paired) |")
    print("|---|---|---:|---:|---:|")
    for name, model in models.items():
        score = "–"
        if not args.no_dev:
            scores = evaluate(args.model, str(inputs.dev(args.model)),
                              loaded=dataclasses.replace(loaded, model=model))
            score = f"{scores[key]:.4f}"
        kept = "all" if name.endswith("fp32") else "classifier" if name in EXTRA else \
            ", ".join({**RECIPES, **ONNX}.get(name, [])) or "none"
        print(f"| {name} | {kept} | {score} | {rates[name]:,.0f} | {ratios[name]:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
