"""NER beyond news: one table of a model's scores on news, web text and social media, and how
often its mentions on Wikipedia start with stray punctuation.

    python benchmarks/domains.py [MODEL ...] [--articles 200] [--conll-dev PATH] ...

For each model (default: the shipped ``ner``; at most a few, as names or directories):

- CoNLL-2003 dev: entity micro F1 over PER, LOC, ORG and MISC, as ``seqlab evaluate`` scores it;
- Universal NER English-EWT dev (web text): micro F1 over PER, LOC and ORG, and each type's F1;
  predicted MISC counts as ``O`` (the data labels no MISC), gold ``OTH`` too where present;
- WNUT-17 dev (social media): micro F1 over the types that map onto the model's (person PER,
  location LOC, corporation and group ORG, ``seqlab.training.specs.MAPPINGS["wnut17"]``);
  product and creative-work spans and predicted MISC count as ``O``;
- Wikipedia: the first ``--articles`` articles of ../shared/corpora/wikipedia-en.parquet
  annotated with ``seqlab.annotate`` (local engine, the model's defaults), and the share of
  mentions whose text starts with one of ``. , ; : ! ? ) ] }``.

Every score goes through the annotate path (tokenizer, windows, tagger, the model's decoder,
its default precision, unless ``--decoder``/``--precision`` set one for all), so the numbers
are what ``seqlab annotate`` users get; each model is loaded once.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import inputs
import pyarrow.dataset as ds
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seqlab.labels import OUTSIDE, chunks, spans_to_labels  # noqa: E402
from seqlab.models.load import ModelSpec, load_model  # noqa: E402
from seqlab.training.evaluate import MISSING, evaluate, predict  # noqa: E402
from seqlab.training.formats import read_sentences  # noqa: E402
from seqlab.training.metrics import score  # noqa: E402
from seqlab.training.specs import MAPPINGS  # noqa: E402

STRAY = tuple(".,;:!?)]}")
TYPES = ("PER", "LOC", "ORG")


def relabel(labels: list[str], mapping: dict[str, str], keep: tuple[str, ...] = TYPES
            ) -> list[str]:
    """IOB2 labels with each span's type mapped, and spans of other types as ``O``.

    >>> relabel(["B-person", "I-person", "O", "B-product", "I-MISC"], {"person": "PER"})
    ['B-PER', 'I-PER', 'O', 'O', 'O']
    """
    spans = [(mapping.get(t, t), a, b) for t, a, b in chunks(labels)]
    return spans_to_labels([s for s in spans if s[0] in keep], len(labels), "iob2")


def typed_scores(loaded, path: str, mapping: dict[str, str], decoder: str | None) -> dict:
    """PER/LOC/ORG scores of a labelled file: gold types mapped, everything else ``O`` on both
    sides."""
    sentences = read_sentences(path)
    gold = [relabel(list(s.labels), mapping) for s in sentences]
    pred = [relabel([OUTSIDE if p == MISSING else p for p in row], {})
            for row in predict(loaded, sentences, decoder)]
    return score(gold, pred, True)


def stray_share(model: str, corpus: str, articles: int, options: dict
                ) -> tuple[float, int, float]:
    """The share of mentions starting with stray punctuation on ``articles`` articles, the
    number of mentions and the seconds the run took."""
    import seqlab

    with tempfile.TemporaryDirectory() as tmp:
        sliced = Path(tmp) / "articles.parquet"
        table = pq.read_table(corpus, columns=["id", "title", "text"]).slice(0, articles)
        pq.write_table(table, sliced)
        started = time.perf_counter()
        seqlab.annotate(str(sliced), str(Path(tmp) / "out"), model=model, id_column="id",
                        **options)
        seconds = time.perf_counter() - started
        texts = ds.dataset(str(Path(tmp) / "out" / "mentions"), format="parquet") \
            .to_table(columns=["text"]).column("text").to_pylist()
    stray = sum(text.startswith(STRAY) for text in texts)
    return (stray / len(texts) if texts else 0.0), len(texts), seconds


def measure(model: str, args: argparse.Namespace) -> dict:
    loaded = load_model(ModelSpec(name=model, precision=args.precision))
    conll, uner_dev, wnut_dev = (str(inputs.data(path)) for path in
                                 (args.conll_dev, args.uner_dev, args.wnut_dev))
    row = {"conll": evaluate(model, conll, decoder=args.decoder, loaded=loaded)["f1"]}
    print(f"{model}: CoNLL-2003 dev F1 {row['conll']:.4f}", file=sys.stderr)
    uner = typed_scores(loaded, uner_dev, MAPPINGS["uner"], args.decoder)
    row["uner"] = uner["f1"]
    row.update({f"uner_{t}": uner["per_label"].get(t, {}).get("f1", 0.0) for t in TYPES})
    print(f"{model}: UNER EWT dev F1 {row['uner']:.4f}", file=sys.stderr)
    row["wnut"] = typed_scores(loaded, wnut_dev, MAPPINGS["wnut17"], args.decoder)["f1"]
    print(f"{model}: WNUT-17 dev F1 {row['wnut']:.4f}", file=sys.stderr)
    if args.articles:
        row["stray"], row["mentions"], row["wiki_s"] = stray_share(
            model, str(inputs.corpus()), args.articles, {"precision": args.precision,
                                                "decoder": args.decoder})
        print(f"{model}: {row['mentions']} mentions, {row['stray']:.2%} stray, "
              f"{row['wiki_s']:.0f} s", file=sys.stderr)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["ner"],
                        help="model names or directories (default: the shipped ner)")
    inputs.add_options(parser, data=True)
    parser.add_argument("--conll-dev", default="conll2003/eng.testa", help="under --data")
    parser.add_argument("--uner-dev", default="uner_ewt/en_ewt-ud-dev.iob2", help="under --data")
    parser.add_argument("--wnut-dev", default="wnut17/emerging.dev.conll", help="under --data")
    parser.add_argument("--articles", type=int, default=200,
                        help="Wikipedia articles to annotate (0: skip)")
    parser.add_argument("--decoder", choices=("greedy", "viterbi"),
                        help="one decoder for every model (default: each model's own)")
    parser.add_argument("--precision", default="auto",
                        help="auto (each model's default: int8 for the shipped ner on CPU), "
                        "fp32, int8...")
    args = parser.parse_args()
    inputs.use(args)
    logging.basicConfig(level=logging.WARNING)
    rows = {model: measure(model, args) for model in args.models}
    decoder = args.decoder or "each model's own"
    print(f"\nentity micro F1 on dev sets (annotate path, decoder: {decoder}, precision "
          f"{args.precision}); stray: share of mentions on {args.articles} Wikipedia articles "
          "starting with . , ; : ! ? ) ] }\n")
    print("| model | CoNLL-2003 | UNER EWT PER/LOC/ORG | PER | LOC | ORG | WNUT-17 PER/LOC/ORG "
          "| stray | mentions |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model, row in rows.items():
        wiki = f"{row['stray']:.2%} | {row['mentions']:,}" if "stray" in row else " | "
        print(f"| {model} | {row['conll']:.4f} | {row['uner']:.4f} | {row['uner_PER']:.4f} | "
              f"{row['uner_LOC']:.4f} | {row['uner_ORG']:.4f} | {row['wnut']:.4f} | {wiki} |")


if __name__ == "__main__":
    main()
