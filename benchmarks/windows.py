"""Window length, overlap and cut rule against padded tokens, speed and dev scores.

    python benchmarks/windows.py [--docs 30] [--settings 256:64:fixed 256:32:sentence ...]
                                 [--dev] [--speed]

For each setting ``MAX_LENGTH:STRIDE:CUTS`` it tokenizes the first ``--docs`` articles of
../shared/corpora/wikipedia-en.parquet as ``seqlab annotate`` does and counts the content
subwords, the windows and the tokens the forward pass runs (each window with its special
tokens, padded to a multiple of 16, as the tag stage pads it). ``--speed`` adds the documents/s
of ``seqlab annotate`` on the slice with the shipped ``ner`` model (settings alternated, the
median of ``--reps``); ``--dev`` adds the dev scores of the shipped ``ner`` (CoNLL-2003 eng.testa)
and ``upos`` (UD English-EWT dev) through ``seqlab evaluate`` in document context.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import inputs
import pyarrow.parquet as pq

import seqlab.training.evaluate
from seqlab.models.load import load_tokenizer
from seqlab.stages.tag import PAD_MULTIPLE
from seqlab.stages.tokenize import Tokenizer, WindowSpec

DEFAULT_SETTINGS = ("256:64:fixed", "512:128:fixed", "128:32:fixed", "256:32:fixed",
                    "256:16:fixed", "256:64:sentence", "256:32:sentence", "512:64:sentence")


def parse(setting: str) -> WindowSpec:
    max_length, stride, cuts = setting.split(":")
    return WindowSpec(int(max_length), int(stride), cuts=cuts)


def counts(spec: WindowSpec, texts: list[str]) -> dict:
    """Content subwords, windows and padded tokens of ``texts`` cut by ``spec``."""
    from seqlab.training.evaluate import text_batch

    tokenizer = load_tokenizer("ner")
    stage = Tokenizer(tokenizer, spec)
    out = stage(text_batch(0, texts))
    n_special = stage.n_special
    lens = [n for row in out.column("_win_lens").to_pylist() for n in row]
    padded = sum(-(-(n + n_special) // PAD_MULTIPLE) * PAD_MULTIPLE for n in lens)
    content = sum(len(ids) for ids in out.column("_ids").to_pylist())
    return {"content": content, "windows": len(lens), "padded": padded}


def annotate_seconds(spec: WindowSpec, path: str) -> float:
    import seqlab

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        seqlab.annotate(path, out, model="ner", max_length=spec.max_length, stride=spec.stride,
                        window_cuts=spec.cuts, device="cpu", overwrite=True)
        return time.perf_counter() - start


def dev_score(model: str, spec: WindowSpec) -> float:
    """The shipped ``model``'s dev score (F1 for ner, accuracy for upos) with windows cut by
    ``spec``: ``seqlab.training.evaluate`` reads text in the model's default windows, so the window
    spec it builds is swapped for ``spec`` for the call."""
    original = seqlab.training.evaluate.WindowSpec
    seqlab.training.evaluate.WindowSpec = lambda *args, **kwargs: spec
    try:
        scores = seqlab.training.evaluate.evaluate(model, str(inputs.dev(model)), device="cpu")
    finally:
        seqlab.training.evaluate.WindowSpec = original
    return scores["f1"] if model == "ner" else scores["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=30)
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS))
    parser.add_argument("--dev", action="store_true", help="add dev scores of ner and upos")
    parser.add_argument("--speed", action="store_true", help="add annotate documents/s")
    parser.add_argument("--reps", type=int, default=2)
    inputs.add_options(parser, data=True)
    args = parser.parse_args()
    inputs.use(args)
    if args.dev:
        inputs.dev("ner"), inputs.dev("upos")  # noqa: B018 - stop now if either is missing
    table = pq.read_table(inputs.corpus(), columns=["id", "title", "text"]).slice(0, args.docs)
    texts = table.column("text").to_pylist()
    specs = {s: parse(s) for s in args.settings}
    rows = {s: counts(spec, texts) for s, spec in specs.items()}
    if args.speed:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "slice.parquet")
            pq.write_table(table, path)
            times: dict[str, list[float]] = {s: [] for s in specs}
            for _ in range(args.reps):
                for s, spec in specs.items():
                    times[s].append(annotate_seconds(spec, path))
        for s in specs:
            rows[s]["docs_s"] = args.docs / statistics.median(times[s])
    if args.dev:
        for s, spec in specs.items():
            rows[s]["ner"] = dev_score("ner", spec)
            rows[s]["upos"] = dev_score("upos", spec)
            print(f"{s}: ner {rows[s]['ner']:.4f}, upos {rows[s]['upos']:.4f}", flush=True)
    print(f"\n{args.docs} Wikipedia articles, {next(iter(rows.values()))['content']:,} content "
          "subwords\n")
    print("| max length | stride | cuts | windows | padded tokens | padded / content "
          "| docs/s | ner dev F1 | upos dev acc |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for s, r in rows.items():
        spec = specs[s]
        extra = [f"{r['docs_s']:.2f}" if "docs_s" in r else "–",
                 f"{r['ner']:.4f}" if "ner" in r else "–",
                 f"{r['upos']:.4f}" if "upos" in r else "–"]
        print(f"| {spec.max_length} | {spec.stride} | {spec.cuts} | {r['windows']:,} "
              f"| {r['padded']:,} | {r['padded'] / r['content']:.3f} | " + " | ".join(extra)
              + " |", flush=True)


if __name__ == "__main__":
    main()
