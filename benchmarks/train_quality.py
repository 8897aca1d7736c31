"""Training quality and time: the plain transformers recipe against ``seqlab train``.

Both train the same encoder on the same data for the same epochs and are scored on dev after
every epoch. The plain recipe is ``run_ner.py``'s defaults: one sentence per example, lr 5e-5,
batch 8, no warmup, no weight decay, random batches, all weights trained, first-subword labels,
the text as the tokenizer gives it (no case feature), the last epoch kept. ``seqlab train``
runs with its own defaults (plus ``--lora-r`` when asked). They run one after the other in
this process, ``seqlab train`` first; wall times include reading and tokenizing the data.

Each recipe's per-epoch scores are the ``Trainer``'s own, on its own dev examples (sentences for
the plain recipe, document chunks for seqlab). The kept model of each is then also scored the
way users get it, through ``seqlab evaluate`` (tokenize -> tag -> decode, windows of the
training ``--max-length``), with every dev sentence read alone and within its document.

Dev scores move by about a tenth of a point between seeds of one recipe (UPOS, seqlab's
defaults, 3 epochs: Trainer accuracy 0.9656 with seed 42, 0.9674 with seed 7), as much as the
recipes differ: ``--seeds 42 7 ...`` trains each recipe once per seed and adds a mean row.

    python benchmarks/train_quality.py --train ../shared/data/conll2003/eng.train \\
        --dev ../shared/data/conll2003/eng.testa --epochs 3 --out /tmp/bench-ner
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments, set_seed

from seqlab.models.shipped import base_encoder
from seqlab.training.evaluate import evaluate
from seqlab.training.train import (
    TrainConfig,
    argmax_logits,
    build_model,
    compute_metrics_fn,
    history,
    prepare,
    train,
)


def plain_recipe(config: TrainConfig) -> dict:
    """run_ner.py's recipe through transformers' Trainer; dev scores after each epoch."""
    started = time.time()
    prepared = prepare(replace(config, context="sentence", case_feature=False))
    set_seed(config.seed)
    model = build_model(config.base, prepared.data.labels, None, train_embeddings=True)
    args = TrainingArguments(
        output_dir=str(Path(config.out) / "checkpoints"), learning_rate=5e-5,
        per_device_train_batch_size=8, per_device_eval_batch_size=8,
        num_train_epochs=config.epochs, eval_strategy="epoch", save_strategy="no",
        seed=config.seed, use_cpu=not config.use_gpu, report_to="none", logging_steps=500)
    trainer = Trainer(
        model=model, args=args, train_dataset=prepared.train_set,
        eval_dataset=prepared.dev_set, processing_class=prepared.tokenizer,
        data_collator=DataCollatorForTokenClassification(prepared.tokenizer),
        compute_metrics=compute_metrics_fn(prepared.data.labels, prepared.data.has_entities),
        preprocess_logits_for_metrics=argmax_logits)
    trainer.train()
    seconds = time.time() - started
    trainer.save_model(config.out)
    return {"history": history(trainer), "seconds": seconds}


def seqlab_recipe(config: TrainConfig) -> dict:
    started = time.time()
    meta = train(config)
    return {"history": meta["dev_history"], "seconds": time.time() - started,
            "best": meta["dev_metrics"]}


def served_scores(config: TrainConfig, key: str) -> dict[str, float]:
    """The saved model scored through the annotate stages, sentence by sentence and with
    each sentence inside its document."""
    return {context: evaluate(config.out, config.dev, config.format, config.column,
                              context=context, max_length=config.max_length)[key]
            for context in ("sentence", "document")}


def row(result: dict, key: str) -> dict:
    """One run's numbers: per-epoch Trainer scores, the kept one, served scores, seconds."""
    scores = [e[key] for e in result["history"]]
    served = result.get("served", {})
    return {"epochs": scores,
            "kept": result.get("best", {}).get(key, scores[-1] if scores else float("nan")),
            "sentence": served.get("sentence", float("nan")),
            "document": served.get("document", float("nan")), "seconds": result["seconds"]}


def mean_row(rows: list[dict]) -> dict:
    """The element-wise mean of several seeds' rows (epochs compared position by position)."""
    depth = min(len(r["epochs"]) for r in rows)
    return {"epochs": [sum(r["epochs"][i] for r in rows) / len(rows) for i in range(depth)],
            **{k: sum(r[k] for r in rows) / len(rows)
               for k in ("kept", "sentence", "document", "seconds")}}


def table(results: dict[str, dict[int, dict]], key: str) -> str:
    """A markdown table: a row per recipe and seed, and a mean row per recipe of several."""
    lines = [f"| recipe | seed | Trainer dev {key} per epoch | kept | seqlab evaluate, sentence "
             f"/ document | wall s (training) |", "|---|---|---|---|---|---|"]
    for name, by_seed in results.items():
        rows = {str(seed): row(result, key) for seed, result in by_seed.items()}
        if len(rows) > 1:
            rows["mean"] = mean_row(list(rows.values()))
        for seed, r in rows.items():
            lines.append(f"| {name} | {seed} | {' / '.join(f'{s:.4f}' for s in r['epochs'])} "
                         f"| {r['kept']:.4f} | {r['sentence']:.4f} / {r['document']:.4f} "
                         f"| {r['seconds']:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--dev", required=True)
    parser.add_argument("--base", default=None, help="default: the packaged MiniLM encoder")
    parser.add_argument("--format")
    parser.add_argument("--column")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--lora-r", type=int)
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--only", choices=["plain", "seqlab"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42],
                        help="train each recipe once per seed; a mean row is added")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = TrainConfig(train=args.train, dev=args.dev, base=args.base or base_encoder(),
                         out=args.out, format=args.format, column=args.column,
                         epochs=args.epochs, use_gpu=args.use_gpu)
    key = "accuracy" if args.column in ("upos", "xpos") or args.train.endswith(".conllu") \
        else "f1"
    recipes = []
    if args.only != "plain":
        recipes.append(("seqlab train" + (f" --lora-r {args.lora_r}" if args.lora_r else ""),
                        "seqlab", seqlab_recipe, {"lora_r": args.lora_r}))
    if args.only != "seqlab":
        recipes.append(("plain run_ner (lr 5e-5, batch 8)", "plain", plain_recipe, {}))
    results: dict[str, dict[int, dict]] = {}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for name, folder, recipe, options in recipes:
        for seed in args.seeds:
            run_config = replace(config, out=f"{args.out}/{folder}-{seed}", seed=seed, **options)
            result = recipe(run_config)
            result["served"] = served_scores(run_config, key)
            results.setdefault(name, {})[seed] = result
            Path(args.out, "results.json").write_text(json.dumps(results, indent=2))
            print(table(results, key), flush=True)


if __name__ == "__main__":
    main()
