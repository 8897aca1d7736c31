"""How the shipped models score when some sentences are written all in capitals.

    OMP_NUM_THREADS=1 python benchmarks/caps_robustness.py [--models ner upos]
        [--decoders greedy viterbi] [--every 5] [--rules off zero3 recase3] [--out DIR]
        [--data ../shared/data] [--device auto|cpu|cuda]

For each model and its dev set (``ner``: CoNLL-2003 ``conll2003/eng.testa``; ``upos``: UD
English-EWT ``ud_english_ewt/en_ewt-ud-dev.conllu``, UPOS column, both under ``--data``) the
script writes a copy of the dev set in the same format in which every ``--every``-th sentence
(the 5th, 10th, ...) has its words upper-cased and its gold labels unchanged, then scores the
model on the plain file and on the copy with ``seqlab.training.evaluate`` (the annotate path: each
document's words joined by spaces, document context, the model's window). It prints one row
per model, dev set, variant, case rule and decoder: F1 for ``ner`` (entities, exact match),
accuracy for ``upos``, and the seconds the evaluation took.

A case rule is how ``seqlab.stages.casing.case_types`` treats all-capital text
(``seqlab.stages.casing.shouted_spans``): ``off`` is the feature as it was before the rule (every
upper-case letter counts); ``zeroN`` gives 0 to text where N or more all-capital words stand
in a row (``SHOUTED_WORDS = N``, ``RECASE_SHOUTED = False``); ``recaseN`` also cases its words
as the rest of the document writes them (``RECASE_SHOUTED = True``). The default scores the
rule the code ships. The caps copies stay in ``--out`` (a temporary folder unless given), so
``seqlab evaluate ner DIR/eng.testa.caps5`` scores one again.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import inputs

from seqlab.models.load import ModelSpec, load_model
from seqlab.stages import casing
from seqlab.training.evaluate import evaluate
from seqlab.training.formats import Sentence, read_sentences, write_sentences

DEV = {  # model -> (column, name of its caps copy); its dev file is inputs.dev(model)
    "ner": (None, "eng.testa.caps{n}"),
    "upos": ("upos", "en_ewt-ud-dev.caps{n}.conllu"),
}


def upper_every(sentences: list[Sentence], every: int) -> list[Sentence]:
    """The sentences with the words of every ``every``-th one (the last of each ``every``)
    upper-cased; labels and documents unchanged.

    >>> s = [Sentence(("Jo", "ran"), ("I-PER", "O"), "d0"), Sentence(("Hi",), ("O",), "d0")]
    >>> [x.words for x in upper_every(s, 2)]
    [('Jo', 'ran'), ('HI',)]
    """
    return [dataclasses.replace(s, words=tuple(w.upper() for w in s.words))
            if i % every == every - 1 else s for i, s in enumerate(sentences)]


def caps_copy(path: Path, column: str | None, name: str, every: int, out: Path) -> Path:
    """Write the caps copy of a dev file in its own format; return its path."""
    target = out / name.format(n=every)
    fmt = "conllu" if path.suffix == ".conllu" else "conll"
    write_sentences(upper_every(read_sentences(str(path), fmt, column), every), str(target), fmt)
    return target


def parse_rule(name: str) -> tuple[int, bool]:
    """``off``, ``zeroN`` or ``recaseN`` as (``SHOUTED_WORDS``, ``RECASE_SHOUTED``).

    >>> parse_rule("off"), parse_rule("zero3"), parse_rule("recase2")
    ((0, False), (3, False), (2, True))
    """
    if name == "off":
        return 0, False
    for prefix, recase in (("zero", False), ("recase", True)):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return int(name[len(prefix):]), recase
    raise argparse.ArgumentTypeError(f"unknown rule {name!r}: use off, zeroN or recaseN")


def rule_name(words: int, recase: bool) -> str:
    return "off" if words <= 0 else f"{'recase' if recase else 'zero'}{words}"


def shipped_rule() -> str:
    return rule_name(casing.SHOUTED_WORDS, casing.RECASE_SHOUTED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ner", "upos"], choices=sorted(DEV))
    parser.add_argument("--decoders", nargs="+", default=["greedy"],
                        choices=["greedy", "viterbi"])
    parser.add_argument("--every", type=int, default=5,
                        help="upper-case one sentence in this many (default 5)")
    parser.add_argument("--rules", nargs="+", default=[shipped_rule()], type=parse_rule,
                        help="case rules to score: off (every capital counts, the feature "
                        "before the rule), zeroN (runs of N+ caps words get 0), recaseN (and "
                        "take their words' casing from the rest of the text); default: the "
                        f"shipped one, {shipped_rule()}")
    parser.add_argument("--out", help="folder for the caps copies (default: a temporary one)")
    inputs.add_options(parser, corpus=False, data=True)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    inputs.use(args)
    out = Path(args.out or tempfile.mkdtemp(prefix="caps_robustness_"))
    out.mkdir(parents=True, exist_ok=True)
    shipped = casing.SHOUTED_WORDS, casing.RECASE_SHOUTED
    print("| model | dev set | variant | case rule | decoder | F1 | seconds |\n"
          "|---|---|---|---|---|---:|---:|", flush=True)
    for model in args.models:
        column, name = DEV[model]
        path = inputs.dev(model)
        loaded = load_model(ModelSpec(name=model, device=args.device))
        copy = caps_copy(path, column, name, args.every, out)
        for variant, data in (("plain", path), (f"1 in {args.every} upper-cased", copy)):
            for rule in args.rules:
                # what case_types reads when it is called
                casing.SHOUTED_WORDS, casing.RECASE_SHOUTED = rule
                for decoder in args.decoders:
                    start = time.perf_counter()
                    scores = evaluate(model, str(data), column=column, decoder=decoder,
                                      loaded=loaded)
                    cells = (model, path.name, variant, rule_name(*rule), decoder)
                    print(f"| {' | '.join(cells)} | {scores['f1']:.4f} | "
                          f"{time.perf_counter() - start:.0f} |", flush=True)
    casing.SHOUTED_WORDS, casing.RECASE_SHOUTED = shipped
    print(f"\ncaps copies in {out}")


if __name__ == "__main__":
    main()
