"""Mentions that begin or end with stray punctuation, with and without the span-edge repair.

    python benchmarks/spans.py [--docs 200] [--model ner] [--decoder viterbi|greedy]
                               [--precision auto] [--sample 25] [--corpus PATH]

Annotates the first ``--docs`` articles of ../shared/corpora/wikipedia-en.parquet with the
shipped ``--model`` as ``seqlab annotate`` does (its windows, its recommended decoder, the
default precision), tagging each batch once and decoding it twice: with the labels as greedy
or Viterbi gives them, and with the repair that ``seqlab.stages.spans`` applies after decoding
(the default of every engine and of ``seqlab evaluate``). It prints the share of mentions that
begin with closing or separating punctuation or end on an opening or separating one (judged
on the mention's text, independently of the repair's own rules), the time each decode took,
and a before/after table of a sample of the mentions the repair changes.
"""

from __future__ import annotations

import argparse
import random
import time
import unicodedata

import inputs
import pyarrow.parquet as pq

from seqlab.config import settle_decoder, settle_window
from seqlab.models.load import ModelSpec, load_model
from seqlab.models.metadata import recommended_decoder, trained_window
from seqlab.stages.tag import Tagger
from seqlab.stages.tokenize import Tokenizer, WindowSpec, model_max_length
from seqlab.stages.tokens import TokenDecoder
from seqlab.training.evaluate import text_batch

BATCH_DOCS = 8
# what a name does not begin with (besides closing brackets and quotes) or end with (besides
# opening ones)
NOT_FIRST = set(".,;:!?\u2026-\u2013\u2014")
NOT_LAST = set(",;:-\u2013\u2014")


def stray(text: str) -> bool:
    """Whether a mention's text begins with closing or separating punctuation or ends on an
    opening or separating mark: ``. Wallace``, ``.``, ``Smith (``."""
    text = text.strip()
    if not text:
        return False
    first, last = text[0], text[-1]
    return (first in NOT_FIRST or unicodedata.category(first) in ("Pe", "Pf")
            or last in NOT_LAST or unicodedata.category(last) in ("Ps", "Pi"))


def mentions(decoded, ids: list[str]) -> dict[str, list[tuple]]:
    """Per document id: ``(start_char, end_char, text, label)`` of each mention."""
    return {doc: [(e["start_char"], e["end_char"], e["text"], e["label"]) for e in row or []]
            for doc, row in zip(ids, decoded.column("entities").to_pylist())}


def changes(texts: dict[str, str], before: dict[str, list[tuple]],
            after: dict[str, list[tuple]]) -> list[tuple[str, str, str]]:
    """``(context, before, after)`` of each mention the repair changed or removed."""
    rows = []
    for doc, found in before.items():
        kept = set(after[doc])
        for start, end, text, label in found:
            if (start, end, text, label) in kept:
                continue
            now = [f"[{t}]({lab})" for s, e, t, lab in after[doc] if s < end and start < e]
            context = texts[doc][max(0, start - 25) : end + 25].replace("\n", " ")
            rows.append((context, f"[{text}]({label})", ", ".join(now) or "(no mention)"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--model", default="ner")
    parser.add_argument("--decoder", choices=("greedy", "viterbi"),
                        help="default: the model's recommendation")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--sample", type=int, default=25, help="changed mentions to show")
    inputs.add_options(parser)
    args = parser.parse_args()
    inputs.use(args)
    table = pq.read_table(inputs.corpus(), columns=["id", "text"]).slice(0, args.docs)
    ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()

    loaded = load_model(ModelSpec(name=args.model, device="cpu", precision=args.precision))
    decoder = settle_decoder(args.decoder, recommended_decoder(loaded.metadata))
    window = settle_window(None, None, trained_window(loaded.metadata),
                           model_max_length(loaded.tokenizer))
    tokenize, tag = Tokenizer(loaded.tokenizer, WindowSpec(*window)), Tagger(loaded)
    decoders = {"without": TokenDecoder(loaded.labels, decoder, repair_spans=False),
                "with": TokenDecoder(loaded.labels, decoder)}
    found = {name: {} for name in decoders}
    seconds = dict.fromkeys(decoders, 0.0)
    for at in range(0, len(texts), BATCH_DOCS):
        batch_ids = ids[at : at + BATCH_DOCS]
        tagged = tag(tokenize(text_batch(at, texts[at : at + BATCH_DOCS])))
        for name, decode in decoders.items():
            start = time.perf_counter()
            decoded = decode(tagged)
            seconds[name] += time.perf_counter() - start
            found[name].update(mentions(decoded, batch_ids))
        print(f"\r{min(at + BATCH_DOCS, len(texts))}/{len(texts)} articles", end="", flush=True)
    print()

    words = sum(len(t.split()) for t in texts)
    print(f"{args.model} ({loaded.precision}, {decoder}) on {len(texts)} articles, "
          f"{words:,} words\n")
    print("| repair | mentions | stray punctuation | share | decode s |")
    print("|---|---:|---:|---:|---:|")
    for name in decoders:
        every = [m for row in found[name].values() for m in row]
        bad = sum(stray(text) for _, _, text, _ in every)
        print(f"| {name} | {len(every):,} | {bad:,} | {bad / max(1, len(every)):.3%} | "
              f"{seconds[name]:.2f} |")
    changed = changes(dict(zip(ids, texts)), found["without"], found["with"])
    print(f"\n{len(changed):,} mentions changed; a sample of {min(args.sample, len(changed))}:\n")
    print("| context | without repair | with repair |")
    print("|---|---|---|")
    for context, before, after in random.Random(0).sample(changed,
                                                           min(args.sample, len(changed))):
        print(f"| {context.replace('|', '/')} | {before} | {after} |")


if __name__ == "__main__":
    main()
