"""seqlab's local engine vs transformers' token-classification pipeline, side by side.

    python benchmarks/annotate_vs_hf.py [--model DIR] [--docs 60] [--max-length 512]

Both annotate the same slice of ../shared/corpora/wikipedia-en.parquet (long articles included)
with the same model: the pipeline batched, with ``stride`` so long texts are windowed, and
``aggregation_strategy="first"``; seqlab with its defaults. Each runs in its own process so its
peak memory (max RSS) is its own. Prints documents/s, tokens/s, peak memory and how many
entities agree (same label and character span).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpora" / "wikipedia-en.parquet"


def corpus_slice(n_docs: int, out: Path) -> Path:
    table = pq.read_table(CORPUS, columns=["id", "title", "text"]).slice(0, n_docs)
    pq.write_table(table, out)
    return out


def run_hf(model: str, path: str, max_length: int, stride: int, batch_size: int) -> dict:
    import torch
    from transformers import pipeline

    torch.set_num_threads(torch.get_num_threads())
    texts = pq.read_table(path).column("text").to_pylist()
    tagger = pipeline("token-classification", model=model, aggregation_strategy="first",
                      stride=stride, device="cpu")
    tagger.tokenizer.model_max_length = max_length
    start = time.perf_counter()
    results = tagger(texts, batch_size=batch_size)
    elapsed = time.perf_counter() - start
    entities = {(i, e["start"], e["end"], e["entity_group"])
                for i, found in enumerate(results) for e in found}
    return {"elapsed": elapsed, "entities": sorted(entities)}


def run_seqlab(model: str, path: str, max_length: int, stride: int, batch_size: int) -> dict:
    import seqlab

    out = tempfile.mkdtemp(prefix="seqlab-bench-")
    start = time.perf_counter()
    seqlab.annotate(path, out, model=model, max_length=max_length, stride=stride,
                    device="cpu", overwrite=True)
    elapsed = time.perf_counter() - start
    docs = pq.read_table(Path(out) / "documents").sort_by("doc_id")
    entities = set()
    for doc in docs.to_pylist():
        row = int(doc["doc_id"].rsplit(":", 1)[1])
        entities |= {(row, e["start_char"], e["end_char"], e["label"]) for e in doc["entities"]}
    return {"elapsed": elapsed, "entities": sorted(entities)}


def _child(target, args, queue) -> None:
    result = target(*args)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(result)


def measure(target, *args) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(target, args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def count_tokens(model: str, path: str) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    texts = pq.read_table(path).column("text").to_pylist()
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


def materialize(name: str, out: Path) -> str:
    """A plain checkpoint directory of a shipped model, so transformers' pipeline loads it."""
    from seqlab.model import ModelSpec, load_model

    loaded = load_model(ModelSpec(name, device="cpu"))
    loaded.model.save_pretrained(out, safe_serialization=True)
    loaded.tokenizer.save_pretrained(out)
    return str(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ner", help="default: the shipped NER model")
    parser.add_argument("--docs", type=int, default=60)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--stride", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32, help="pipeline batch size")
    args = parser.parse_args()
    model = args.model
    with tempfile.TemporaryDirectory() as tmp:
        from seqlab.shipped import shipped_model_dir

        if shipped_model_dir(model) is not None:
            model = materialize(model, Path(tmp) / "model")
        path = str(corpus_slice(args.docs, Path(tmp) / "slice.parquet"))
        tokens = count_tokens(model, path)
        settings = (model, path, args.max_length, args.stride, args.batch_size)
        hf = measure(run_hf, *settings)
        ours = measure(run_seqlab, *settings)
    agree = len(set(map(tuple, hf["entities"])) & set(map(tuple, ours["entities"])))
    rows = [("transformers pipeline", hf), ("seqlab local", ours)]
    print(f"\n{args.docs} Wikipedia articles, {tokens:,} subword tokens, model {model}\n")
    print(f"| {'system':<22} | {'docs/s':>7} | {'tokens/s':>9} | {'peak RSS MB':>11} "
          f"| {'entities':>8} | {'agree':>6} |")
    print(f"|{'-' * 24}|{'-' * 9}|{'-' * 11}|{'-' * 13}|{'-' * 10}|{'-' * 8}|")
    for name, r in rows:
        print(f"| {name:<22} | {args.docs / r['elapsed']:>7.2f} | {tokens / r['elapsed']:>9,.0f} "
              f"| {r['peak_rss_mb']:>11,.0f} | {len(r['entities']):>8,} | {agree:>6,} |")
    print(f"\nspeed-up: {hf['elapsed'] / ours['elapsed']:.2f}x; "
          f"entity agreement: {agree / max(len(hf['entities']), 1):.1%} of the pipeline's, "
          f"{agree / max(len(ours['entities']), 1):.1%} of seqlab's")
    print(json.dumps({"hf_s": hf["elapsed"], "seqlab_s": ours["elapsed"]}))


if __name__ == "__main__":
    main()
