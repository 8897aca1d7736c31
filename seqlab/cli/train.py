"""``seqlab train`` and ``seqlab evaluate``: parse flags, call the library, print the result."""

from __future__ import annotations

import argparse
import dataclasses
import json

from seqlab.cli.commands import command
from seqlab.cli.flags import add_precision_flag
from seqlab.stages import WINDOW_CUTS
from seqlab.training.formats import COLUMNS, CONTEXTS, FORMATS


def add_commands(sub: argparse._SubParsersAction) -> None:
    from seqlab.labels import SCHEMES
    from seqlab.stages.decode import DECODERS
    from seqlab.training.config import FULL_LR, LORA_LR, TRAIN_ENGINES, TrainConfig
    from seqlab.training.tasks import TRAIN_TASKS

    default = {f.name: f.default for f in dataclasses.fields(TrainConfig)}

    p = sub.add_parser("train", help="fine-tune an encoder for token classification")
    p.add_argument("--train", required=True, action="append", metavar="PATH[:OPTION]...",
                   help="training file (any fsspec URL). Repeat it to learn several sets at "
                   "once, each PATH followed by :FORMAT, :MAPPING (conll2003, uner, wnut17, "
                   "or labels=TYPE=TARGET,... with TARGET a model type, O or ?) and "
                   ":weight=W (its documents W times an epoch). The first set's types are the "
                   "model's; words a set cannot label fully (its O words for types it never "
                   "labels, its ? spans) train on the set of labels they may have")
    p.add_argument("--dev", required=True, help="dev file: scored after every epoch (with a "
                   "mixture, PATH[:FORMAT][:MAPPING] as for --train)")
    p.add_argument("--base", help="encoder: directory, hub id or fsspec URL, or a trained "
                   "model to go on from (a shipped one such as ner included) "
                   "(default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--out", required=True, help="directory of the trained model")
    p.add_argument("--task", choices=TRAIN_TASKS, default=default["task"],
                   help="tagging (default): the labels of a labelled file; srl: semantic "
                   "roles, one predicate at a time, and predicates: the predicate "
                   "identification labeller, both from SRL JSON Lines")
    p.add_argument("--predicate-encoding", choices=("indicator", "segment"),
                   default=default["predicate_encoding"],
                   help="--task srl: how the predicate reaches the encoder, a learned "
                   "embedding on its subwords beside the case feature (default) or a second "
                   "segment as in Shi & Lin 2019 (no case feature)")
    p.add_argument("--format", choices=FORMATS, help="input format (default: from file name)")
    p.add_argument("--scheme", choices=SCHEMES,
                   help="scheme the model predicts (default: iob2 for spans, tags for tags)")
    p.add_argument("--column", choices=COLUMNS, help="CoNLL-U column to learn (default: upos)")
    p.add_argument("--epochs", type=float, default=default["epochs"],
                   help="passes over the training data (default: %(default)s)")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default: {FULL_LR:g}; "
                   f"{LORA_LR:g} with --lora-r)")
    p.add_argument("--max-steps", type=int,
                   help="stop after this many steps (a short run to check a recipe)")
    p.add_argument("--batch-size", type=int, default=default["batch_size"],
                   help="examples per step (default: %(default)s)")
    p.add_argument("--max-length", type=int, default=default["max_length"],
                   help="subwords per example (default: %(default)s)")
    p.add_argument("--context", choices=CONTEXTS, default="document",
                   help="an example holds consecutive sentences of one document (default), "
                   "or one sentence")
    p.add_argument("--seed", type=int, default=default["seed"],
                   help="random seed of the run (default: %(default)s)")
    p.add_argument("--lora-r", type=int, help="train a LoRA adapter of this rank")
    p.add_argument("--train-embeddings", action="store_true",
                   help="also train the word embeddings (default: keep the base encoder's, "
                   "which the compact shipped form needs)")
    p.add_argument("--case-feature", action=argparse.BooleanOptionalAction,
                   default=default["case_feature"],
                   help="give the model each subword's casing as its token type id (default: "
                   "on when the base tokenizer lower-cases text, as uncased encoders do)")
    p.add_argument("--caseless", type=float, default=default["caseless"],
                   help="share of training examples shown without casing, so the model also "
                   "tags lower-case text (default: %(default)s)")
    p.add_argument("--engine", choices=TRAIN_ENGINES, default=default["engine"],
                   help="where training runs (default: %(default)s)")
    p.add_argument("--num-workers", type=int, default=default["num_workers"],
                   help="Ray Train workers")
    p.add_argument("--use-gpu", action="store_true", help="train on GPU(s), bf16 when possible")

    p = sub.add_parser("evaluate", help="score a model on a labelled file")
    p.add_argument("model", help="shipped model name, directory, hub id or fsspec URL")
    p.add_argument("data", help="labelled file (any fsspec URL)")
    p.add_argument("--format", choices=FORMATS, help="input format (default: from file name)")
    p.add_argument("--column", choices=COLUMNS, help="CoNLL-U column (default: upos)")
    p.add_argument("--decoder", choices=DECODERS,
                   help="label decoding (default: greedy, unless the model's seqlab.json "
                   "recommends another, as the shipped ner recommends viterbi)")
    p.add_argument("--context", choices=CONTEXTS, default="document",
                   help="tag each document's text (default; as annotate does) or each sentence")
    p.add_argument("--max-length", type=int, help="window in subwords (default as annotate: "
                   "the length the model was trained on, else 512)")
    p.add_argument("--window-cuts", choices=WINDOW_CUTS, default="sentence",
                   help="where windows end, as annotate --window-cuts (default sentence)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_precision_flag(p)
    p.set_defaults(precision="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--report", help="directory for a confusion matrix image and a markdown "
                   "table")
    p.add_argument("--predicates", help="SRL models: gold (default) or predicted predicates "
                   "(found by the predicate labeller), all of them or, with verbs "
                   "(\"verbs\", \"predicted,verbs\"), only the verbal ones as CoNLL-2005 "
                   "scores")
    p.add_argument("--predicate-model", help="SRL models: the predicate labeller for "
                   "--predicates predicted (default: the one the model's seqlab.json names)")
    p.add_argument("--calibrate", action="store_true",
                   help="first fit the model's softmax temperature on DATA (its dev set) and "
                   "write it into the model directory's seqlab.json, then score the model "
                   "with it (argmax labels do not change)")


@command("train")
def train_cli(args: argparse.Namespace) -> int:
    from seqlab.models.shipped import base_encoder
    from seqlab.training.train import TrainConfig, train

    config = TrainConfig(
        train=tuple(args.train), dev=args.dev, base=args.base or base_encoder(), out=args.out,
        format=args.format, scheme=args.scheme, column=args.column, epochs=args.epochs,
        lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
        context=args.context, seed=args.seed, lora_r=args.lora_r, engine=args.engine,
        num_workers=args.num_workers, use_gpu=args.use_gpu,
        train_embeddings=args.train_embeddings, case_feature=args.case_feature,
        caseless=args.caseless, task=args.task, predicate_encoding=args.predicate_encoding,
        max_steps=args.max_steps)
    meta = train(config)
    best = meta.dev_metrics
    key = "f1" if meta.scheme != "tags" else "accuracy"
    print(f"saved {args.out}: dev {key} {best.get(key, 0.0):.4f} (epoch {best.get('epoch')}), "
          f"{meta.train_seconds or 0.0:.0f} s")
    return 0


@command("evaluate")
def evaluate_cli(args: argparse.Namespace) -> int:
    import sys

    from seqlab.models.load import ModelSpec, load_model
    from seqlab.training.evaluate import evaluate, model_decoder

    loaded = load_model(ModelSpec(name=args.model, device=args.device,
                                  precision=args.precision))
    decoder = model_decoder(loaded, args.decoder)
    if loaded.metadata.task == "srl" or args.predicates:
        return evaluate_srl_cli(args, loaded, decoder)
    if args.calibrate:
        from seqlab.models.calibration import calibrate

        entry = calibrate(args.model, args.data, format=args.format, column=args.column,
                          decoder=decoder, context=args.context, max_length=args.max_length,
                          loaded=loaded)
        print(calibration_line(entry), file=sys.stderr if args.json else sys.stdout)
    scores = evaluate(args.model, args.data, format=args.format, column=args.column,
                      decoder=decoder, report=args.report, loaded=loaded,
                      context=args.context, max_length=args.max_length,
                      window_cuts=args.window_cuts)
    if args.decoder:
        how = "as asked"
    else:
        how = "the model's recommendation" if loaded.metadata.decoder else "the default"
    if args.json:
        print(json.dumps(scores))
        print(f"decoder {decoder} ({how})", file=sys.stderr)
        return 0
    print(f"decoder {decoder} ({how})")
    print(f"f1 {scores['f1']:.4f}  precision {scores['precision']:.4f}  "
          f"recall {scores['recall']:.4f}  accuracy {scores['accuracy']:.4f}")
    print_per_label(scores["per_label"])
    return 0


def print_per_label(per_label: dict[str, dict]) -> None:
    for name, row in per_label.items():
        print(f"  {name:<16} f1 {row['f1']:.4f}  precision {row['precision']:.4f}  "
              f"recall {row['recall']:.4f}  support {row['support']}")


def calibration_line(entry: dict) -> str:
    """What ``--calibrate`` fitted, on one line."""
    line = (f"temperature {entry['temperature']:.4f} written: word ECE "
            f"{entry['ece_before']:.4f} -> {entry['ece_after']:.4f}, NLL "
            f"{entry['nll_before']:.4f} -> {entry['nll_after']:.4f}")
    if "entity_ece_before" in entry:
        line += (f", entity ECE {entry['entity_ece_before']:.4f} -> "
                 f"{entry['entity_ece_after']:.4f}")
    return line

def predicate_choice(value: str | None) -> tuple[str, bool]:
    """``--predicates``: which predicates (gold or predicted) and whether only verbal ones.

    >>> predicate_choice(None), predicate_choice("verbs"), predicate_choice("predicted,verbs")
    (('gold', False), ('gold', True), ('predicted', True))
    """
    from seqlab.errors import ConfigError
    from seqlab.srl.data import PREDICATE_CHOICES

    parts = {p.strip() for p in (value or "gold").split(",") if p.strip()}
    verbs = "verbs" in parts
    which = parts - {"verbs"} or {"gold"}
    if len(which) != 1 or not which <= set(PREDICATE_CHOICES):
        raise ConfigError(f"--predicates {value!r} is not one of gold, predicted, verbs, "
                          "gold,verbs, predicted,verbs",
                          fix="pass --predicates gold, predicted, or either with ,verbs")
    return which.pop(), verbs


def evaluate_srl_cli(args: argparse.Namespace, loaded, decoder: str) -> int:
    """``seqlab evaluate`` of an SRL model: CoNLL-2005 scores, and predicate identification
    with predicted predicates."""
    import sys

    from seqlab.errors import ConfigError
    from seqlab.srl.evaluate import evaluate_srl

    if loaded.metadata.task != "srl":
        raise ConfigError(f"--predicates is for SRL models; {args.model} is a "
                          f"{loaded.metadata.task or 'tagging'} model",
                          fix="leave --predicates out, or pass a model trained with "
                          "seqlab train --task srl")
    which, verbs = predicate_choice(args.predicates)
    scores = evaluate_srl(args.model, args.data, which, verbs, decoder, args.predicate_model,
                          loaded=loaded)
    if args.json:
        print(json.dumps(scores))
        print(f"decoder {decoder}", file=sys.stderr)
        return 0
    print(f"decoder {decoder}, {which} predicates{' (verbs)' if verbs else ''}, "
          f"{scores['frames']['gold']} gold frames, {scores['frames']['predicted']} scored")
    print(f"f1 {scores['f1']:.4f}  precision {scores['precision']:.4f}  "
          f"recall {scores['recall']:.4f}  (arguments, V not counted)")
    if "predicates" in scores:
        p = scores["predicates"]
        print(f"predicate identification: f1 {p['f1']:.4f}  precision {p['precision']:.4f}  "
              f"recall {p['recall']:.4f}")
    print_per_label(scores["per_label"])
    return 0
