"""int8 recipes against fp32: dev scores and the forward rate, for choosing ``--precision int8``.

    python benchmarks/precision.py [--model ner] [--recipes fp32 all head head+outputs]
                                   [--forward-reps 9]

Each recipe is a list of linear layers left in fp32 (``seqlab.quantize`` ``skip`` patterns);
every other ``nn.Linear`` runs as torch's dynamic int8 linear with per-channel weights
(``per-tensor`` instead: one weight scale per matrix, the first probe's setting). For each it
prints the model's dev score through ``seqlab evaluate`` (document context, the model's
decoder; F1 for ner on CoNLL-2003 eng.testa, accuracy for upos on UD English-EWT dev) and the
forward rate on fixed 32 x 128-token batches, all recipes alternated in one process, medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
import warnings
from pathlib import Path

import torch

from seqlab.evaluate import evaluate
from seqlab.model import ModelSpec, load_model
from seqlab.quantize import quantize_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DEV = {"ner": DATA / "conll2003" / "eng.testa",
       "upos": DATA / "ud_english_ewt" / "en_ewt-ud-dev.conllu"}
RECIPES = {
    "all": [],
    "head": ["classifier"],
    "head+outputs": ["classifier", r"\.output\.dense$"],
    "head+ffn-out": ["classifier", r"layer\.\d+\.output\.dense$"],
}


def build(base: torch.nn.Module, recipe: str) -> torch.nn.Module:
    if recipe == "fp32":
        return base
    if recipe == "per-tensor":
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return quantize_dynamic(base, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)
    return quantize_model(base, {"precision": {"int8": {"skip": RECIPES[recipe]}}})


def forward_rates(models: dict[str, torch.nn.Module], reps: int) -> dict[str, float]:
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
    return {name: statistics.median(r) for name, r in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ner", choices=list(DEV))
    parser.add_argument("--recipes", nargs="+", default=["fp32", "per-tensor", *RECIPES],
                        choices=["fp32", "per-tensor", *RECIPES])
    parser.add_argument("--forward-reps", type=int, default=9)
    parser.add_argument("--no-dev", action="store_true", help="forward rates only")
    args = parser.parse_args()
    loaded = load_model(ModelSpec(args.model, device="cpu", precision="fp32"))
    models = {name: build(loaded.model, name) for name in args.recipes}
    rates = forward_rates(models, args.forward_reps)
    key = "f1" if args.model == "ner" else "accuracy"
    print(f"| recipe | fp32 layers | dev {key} | forward tokens/s | vs fp32 |")
    print("|---|---|---:|---:|---:|")
    for name, model in models.items():
        score = "–"
        if not args.no_dev:
            scores = evaluate(args.model, str(DEV[args.model]),
                              loaded=dataclasses.replace(loaded, model=model))
            score = f"{scores[key]:.4f}"
        kept = "all" if name == "fp32" else ", ".join(RECIPES.get(name, [])) or "none"
        ratio = rates[name] / rates["fp32"] if "fp32" in rates else float("nan")
        print(f"| {name} | {kept} | {score} | {rates[name]:,.0f} | {ratio:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
