"""SRL training quality and time: the plain transformers recipe against ``seqlab train --task srl``.

Both train the same encoder on the same frames (one example per predicate) with the same seed
and epochs, one after the other in this process, ``seqlab train`` first; wall times include
reading and encoding the data.

- plain: Shi & Lin (2019)'s input, ``[CLS] sentence [SEP] predicate [SEP]`` with segment ids,
  first-subword labels, lr 5e-5, batch 16, no warmup, no weight decay, random batches, all
  weights trained, no case feature, the last epoch kept, no evaluation while training.
- seqlab: ``seqlab train --task srl`` with its defaults (predicate indicator beside the case
  feature in the token types, frozen word embeddings, lr 1.5e-4 with warmup and decay,
  length-grouped batches of 16, dev scored after every epoch and the best kept).

Each kept model is scored on the full dev file the same way (its own encoding of every gold
frame, first-subword labels, greedy: ``frame_scores``), CoNLL-2005 style: labelled argument
spans, exact match, micro P/R/F1 over all frames, ``V`` not counted. The seqlab model is also
scored the way users get it, ``seqlab evaluate`` (annotate stages, greedy and Viterbi, gold and
predicted predicates when ``--predicate-model`` is given).

``--train-sentences N`` trains both on the first N sentences of the train file (a budget for
slow machines, applied identically to both). On a CPU shared with other work, ``--threads 1``
avoids threads waiting on each other (a MiniLM training step of 16 x 30 subwords on the shared
2-core machine: 6.1 s with 1 thread, 16.5 s with 2).

    python benchmarks/train_srl.py --train ../shared/data/srl_ewt/ewt_srl.train.jsonl \\
        --dev ../shared/data/srl_ewt/ewt_srl.dev.jsonl --epochs 2 --out /tmp/bench-srl
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments, set_seed

from seqlab.models.load import load_tokenizer
from seqlab.models.shipped import base_encoder
from seqlab.srl.data import read_srl, role_labels
from seqlab.srl.evaluate import evaluate_srl
from seqlab.srl.examples import encode_frames
from seqlab.srl.frames import VERB
from seqlab.training.examples import Encoded
from seqlab.training.metrics import entity_scores
from seqlab.training.train import TrainConfig, build_model, train

log = logging.getLogger("train_srl")


def plain_recipe(config: TrainConfig, dev_frames: str) -> dict:
    """Shi & Lin's segment pair through transformers' Trainer, the last epoch kept."""
    started, cpu = time.time(), time.process_time()
    train_sents, dev_sents = read_srl(config.train), read_srl(config.dev)
    labels = role_labels(train_sents + dev_sents)
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = load_tokenizer(config.base)
    train_set = encode_frames(train_sents, tokenizer, label2id, config.max_length, "segment")
    set_seed(config.seed)
    model = build_model(config.base, labels, None, train_embeddings=True)
    args = TrainingArguments(
        output_dir=str(Path(config.out) / "checkpoints"), learning_rate=5e-5,
        per_device_train_batch_size=16, per_device_eval_batch_size=32,
        num_train_epochs=config.epochs, eval_strategy="no", save_strategy="no",
        seed=config.seed, use_cpu=not config.use_gpu, report_to="none", logging_steps=100)
    trainer = Trainer(model=model, args=args, train_dataset=train_set,
                      processing_class=tokenizer,
                      data_collator=DataCollatorForTokenClassification(tokenizer))
    trainer.train()
    seconds, cpu = time.time() - started, time.process_time() - cpu
    trainer.save_model(config.out)
    scores = frame_scores(trainer, dev_frames, labels, "segment", False, config.max_length)
    return {"seconds": seconds, "cpu_seconds": cpu, "dev": scores}


class _Ids(dict):
    """Label ids that grow: a dev role the training frames never had gets a new id, so it
    counts as gold (and as never predicted)."""

    def __missing__(self, key: str) -> int:
        self[key] = len(self)
        return self[key]


def frame_scores(trainer: Trainer, dev: str, labels: list[str], encoding: str,
                 case_feature: bool, max_length: int) -> dict:
    """CoNLL-2005 P/R/F1 of a trained model on every gold frame of ``dev``, from the label of
    each word's first subword (greedy)."""
    label2id = _Ids({label: i for i, label in enumerate(labels)})
    dev_set = encode_frames(read_srl(dev), trainer.processing_class, label2id, max_length,
                            encoding, case_feature)
    # predicted without labels (a dev role unknown to the model has no id the loss takes),
    # shortest first so that batches carry little padding
    order = sorted(range(len(dev_set)), key=lambda i: len(dev_set[i]["input_ids"]))
    inputs = Encoded([{k: v for k, v in dev_set[i].items() if k != "labels"} for i in order])
    output = trainer.predict(inputs)
    predicted = np.asarray(output.predictions).argmax(-1)
    names = np.asarray(list(label2id), dtype=object)
    gold, pred = [], []
    for item, row in zip([dev_set[i] for i in order], predicted):
        ids = np.asarray(item["labels"])
        keep = ids != -100
        gold.append(names[ids[keep]].tolist())
        pred.append(names[row[: len(keep)][keep]].tolist())
    scores = entity_scores(gold, pred, ignore=(VERB,))
    return {k: round(scores[k], 5) for k in ("precision", "recall", "f1")}


def seqlab_recipe(config: TrainConfig, dev_frames: str, predicate_model: str | None,
                  decoders: list[str], score_only: bool = False) -> dict:
    started, cpu = time.time(), time.process_time()
    if score_only:  # trained before: its own record of the time
        meta = json.loads(Path(config.out, "seqlab.json").read_text())
        seconds, cpu = meta["train_seconds"], None
    else:
        meta = train(config)
        seconds, cpu = time.time() - started, time.process_time() - cpu
    tokenizer = load_tokenizer(config.out)
    trainer = Trainer(model=_load(config.out), processing_class=tokenizer,
                      args=TrainingArguments(output_dir="/tmp/srl-eval", report_to="none",
                                             per_device_eval_batch_size=32,
                                             use_cpu=not config.use_gpu),
                      data_collator=DataCollatorForTokenClassification(tokenizer))
    result = {"seconds": seconds, "cpu_seconds": cpu, "best": meta["dev_metrics"],
              "dev": frame_scores(trainer, dev_frames, meta["labels"],
                                  meta["predicate_encoding"], bool(meta["case_feature"]),
                                  config.max_length)}
    if meta["predicate_encoding"] != "indicator":  # annotate tags with the indicator only
        return result
    for decoder in decoders:
        served = evaluate_srl(config.out, dev_frames, decoder=decoder)
        result[f"served_{decoder}"] = {k: round(served[k], 5) for k in ("precision", "recall",
                                                                         "f1")}
        if predicate_model:
            ends = evaluate_srl(config.out, dev_frames, "predicted", decoder=decoder,
                                predicate_model=predicate_model)
            result[f"end_to_end_{decoder}"] = {k: round(ends[k], 5)
                                               for k in ("precision", "recall", "f1")}
            result["predicates"] = {k: round(v, 5) for k, v in ends["predicates"].items()}
    return result


def _load(directory: str):
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification.from_pretrained(directory, use_safetensors=True)


def subset(path: str, n: int | None, out: Path) -> str:
    """The first ``n`` sentences of an SRL file (all of them when ``n`` is None)."""
    if not n:
        return path
    target = out / f"{Path(path).stem}.first{n}.jsonl"
    with open(path, encoding="utf-8") as source:
        target.write_text("".join(line for _, line in zip(range(n), source)), encoding="utf-8")
    return str(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--dev", required=True, help="scored in full after training")
    parser.add_argument("--train-dev", help="dev file seqlab scores after each epoch "
                        "(default: --dev)")
    parser.add_argument("--train-sentences", type=int, help="train on the first N sentences")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--predicate-model", help="predicate labeller for end-to-end scores")
    parser.add_argument("--only", choices=["plain", "seqlab"])
    parser.add_argument("--predicate-encoding", default="indicator",
                        help="seqlab's predicate encoding (segment: the encoding measurement)")
    parser.add_argument("--served", nargs="*", default=["greedy", "viterbi"],
                        help="decoders to score the seqlab model with through the annotate "
                        "stages")
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--score-only", action="store_true",
                        help="seqlab: score the model already trained in OUT/seqlab")
    parser.add_argument("--threads", type=int, help="torch CPU threads (on a CPU shared with "
                        "other work, 1 avoids threads waiting on each other)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(train=subset(args.train, args.train_sentences, out),
                         dev=args.train_dev or args.dev, base=base_encoder(), out="",
                         epochs=args.epochs, batch_size=16, max_length=args.max_length,
                         context="sentence", seed=args.seed, task="srl", use_gpu=args.use_gpu)
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    if args.only != "plain":
        name = "seqlab" if args.predicate_encoding == "indicator" else \
            f"seqlab-{args.predicate_encoding}"
        results[name] = seqlab_recipe(replace(config, out=str(out / name),
                                              predicate_encoding=args.predicate_encoding),
                                      args.dev, args.predicate_model, args.served,
                                      args.score_only)
        results_file.write_text(json.dumps(results, indent=2))
    if args.only != "seqlab":
        results["plain"] = plain_recipe(replace(config, out=str(out / "plain")), args.dev)
        results_file.write_text(json.dumps(results, indent=2))
    print(table(results))


def table(results: dict) -> str:
    lines = ["| recipe | dev P | dev R | dev F1 (gold predicates, greedy) | wall s (training) "
             "| CPU s (training) |", "|---|---:|---:|---:|---:|---:|"]
    names = {"plain": "plain (segment pair, lr 5e-5, batch 16)",
             "seqlab": "seqlab train --task srl",
             "seqlab-segment": "seqlab train --task srl --predicate-encoding segment"}
    for key, result in results.items():
        d = result["dev"]
        lines.append(f"| {names[key]} | {d['precision']:.4f} | {d['recall']:.4f} | "
                     f"{d['f1']:.4f} | {result['seconds']:,.0f} | "
                     f"{result['cpu_seconds'] or float('nan'):,.0f} |")
    for key in ("served_greedy", "served_viterbi", "end_to_end_greedy", "end_to_end_viterbi",
                "predicates"):
        if key in results.get("seqlab", {}):
            lines.append(f"\nseqlab {key}: {json.dumps(results['seqlab'][key])}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
