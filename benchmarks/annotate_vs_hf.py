"""seqlab's local engine vs transformers' token-classification pipeline, side by side.

    python benchmarks/annotate_vs_hf.py [--model ner] [--docs 30] [--reps 3] [--systems ...]

Both annotate the same slice of the Wikipedia corpus (``--corpus``, see ``inputs.py``; long
articles included) with the same model (a shipped model is first saved as a plain checkpoint
for transformers).
Systems, each at its defaults and at matched settings:

- ``hf``: ``pipeline("token-classification", aggregation_strategy="first", stride=128)``,
  batch 32, 512-subword windows (its defaults); ``hf-256``: the same in seqlab's 256/64 window;
- ``seqlab``: ``seqlab.annotate`` at its defaults (the model's window, cut at sentences,
  ``--precision auto``); ``seqlab-int8``: the same with ``--precision int8``; ``seqlab-fp32``:
  ``--precision fp32``; ``seqlab-fp32-whole``: fp32 with each micro-batch in one forward
  pass (``seqlab.stages.tag.CPU_RUN_TOKENS`` unset, as on GPU); ``seqlab-512``: 512/128 windows with
  fixed cuts, as ``hf``.

Each run is a fresh process, so its peak memory (max RSS) is its own, and the repetitions
alternate the systems (A B C, A B C, ...), so that a machine whose load changes over the run
slows every system alike; medians are printed. Two times: ``s``, the annotate call alone (the
model load included), and ``process s``, the whole process from its start, imports and
interpreter included: what a user waits for, and what the ratios are taken on. Padded tokens
are what the model's forward passes ran (counted by a forward hook in the pipeline, from the
run manifest for seqlab).
Entity agreement: same label and character span as the pipeline at its defaults. Last, the
bare forward rate of the model on fixed batches of 32 x 128 tokens, fp32 and int8 alternated:
the ceiling of each precision on this machine. int8's graph is built (or found in the cache)
once before the timed runs, in a process of its own, and its time printed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import tempfile
import time
from pathlib import Path

import inputs
import pyarrow.parquet as pq

SYSTEMS = {
    "hf": ("hf", {"max_length": 512, "stride": 128}),
    "hf-256": ("hf", {"max_length": 256, "stride": 64}),
    "seqlab": ("seqlab", {}),
    "seqlab-fp32": ("seqlab", {"precision": "fp32"}),
    "seqlab-int8": ("seqlab", {"precision": "int8"}),
    # each micro-batch in one forward pass, as before CPU passes were bounded
    "seqlab-fp32-whole": ("seqlab", {"precision": "fp32", "cpu_run_tokens": None}),
    "seqlab-512": ("seqlab", {"max_length": 512, "stride": 128, "window_cuts": "fixed"}),
}


def corpus_slice(n_docs: int, out: Path) -> Path:
    table = pq.read_table(inputs.corpus(), columns=["id", "title", "text"]).slice(0, n_docs)
    pq.write_table(table, out)
    return out


def run_hf(model: str, path: str, options: dict) -> dict:
    from transformers import pipeline

    texts = pq.read_table(path).column("text").to_pylist()
    tagger = pipeline("token-classification", model=model, aggregation_strategy="first",
                      stride=options["stride"], device="cpu")
    tagger.tokenizer.model_max_length = options["max_length"]
    padded = []
    tagger.model.register_forward_pre_hook(
        lambda module, args, kwargs: padded.append(kwargs["input_ids"].numel()),
        with_kwargs=True)
    start = time.perf_counter()
    results = tagger(texts, batch_size=32)
    elapsed = time.perf_counter() - start
    entities = {(i, e["start"], e["end"], e["entity_group"])
                for i, found in enumerate(results) for e in found}
    return {"elapsed": elapsed, "entities": sorted(entities), "padded": sum(padded)}


def run_seqlab(model: str, path: str, options: dict) -> dict:
    import seqlab
    import seqlab.stages.tag

    options = dict(options)
    if "cpu_run_tokens" in options:
        seqlab.stages.tag.CPU_RUN_TOKENS = options.pop("cpu_run_tokens")

    out = tempfile.mkdtemp(prefix="seqlab-bench-")
    start = time.perf_counter()
    manifest = seqlab.annotate(path, out, model=model, device="cpu", overwrite=True, **options)
    elapsed = time.perf_counter() - start
    docs = pq.read_table(Path(out) / "documents").sort_by("doc_id")
    entities = set()
    for doc in docs.to_pylist():
        row = int(doc["doc_id"].rsplit(":", 1)[1])
        entities |= {(row, e["start_char"], e["end_char"], e["label"]) for e in doc["entities"]}
    tagging = manifest.get("tagging", {})
    return {"elapsed": elapsed, "entities": sorted(entities),
            "padded": tagging.get("padded_tokens"), "precision": tagging.get("precision")}


def forward_rates(model: str, reps: int) -> dict:
    """Tokens/s of the bare forward pass on 32 x 128-token batches, fp32 and int8 alternated
    (medians), and ``int8/fp32``: the median over the repetitions of int8's rate over fp32's
    in the same repetition."""
    import torch

    from seqlab.models.load import ModelSpec, load_model

    models = {p: load_model(ModelSpec(model, device="cpu", precision=p)).model
              for p in ("fp32", "int8")}
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (32, 128), generator=generator)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
              "token_type_ids": torch.zeros_like(ids)}
    rates: dict[str, list[float]] = {p: [] for p in models}
    with torch.inference_mode():
        for m in models.values():
            m(**inputs)
        for _ in range(reps):
            for precision, m in models.items():
                start = time.perf_counter()
                m(**inputs)
                rates[precision].append(ids.numel() / (time.perf_counter() - start))
    result = {p: statistics.median(r) for p, r in rates.items()}
    result["int8/fp32"] = statistics.median(a / b for a, b in zip(rates["int8"], rates["fp32"]))
    return result


def build_int8(model: str) -> float:
    """Seconds to build (or find) the model's cached int8 graph, so that no timed run does."""
    from seqlab.models.load import ModelSpec, load_model

    start = time.perf_counter()
    load_model(ModelSpec(model, device="cpu", precision="int8"))
    return time.perf_counter() - start


def _child(kind, args, queue) -> None:
    if kind == "build":
        result = {"elapsed": build_int8(*args)}
    else:
        result = (run_hf if kind == "hf" else run_seqlab)(*args)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(result)


def measure(kind: str, *args) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(kind, args, queue))
    start = time.perf_counter()
    process.start()
    result = queue.get()
    process.join()
    result["process"] = time.perf_counter() - start
    return result


def count_tokens(model: str, path: str) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    texts = pq.read_table(path).column("text").to_pylist()
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


def materialize(name: str, out: Path) -> str:
    """A plain checkpoint directory of a shipped model, so transformers' pipeline loads it."""
    from seqlab.models.load import ModelSpec, load_model

    loaded = load_model(ModelSpec(name, device="cpu", precision="fp32"))
    loaded.model.save_pretrained(out, safe_serialization=True)
    loaded.tokenizer.save_pretrained(out)
    return str(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ner", help="default: the shipped NER model")
    parser.add_argument("--docs", type=int, default=30)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument("--forward-reps", type=int, default=9)
    inputs.add_options(parser)
    args = parser.parse_args()
    inputs.use(args)
    with tempfile.TemporaryDirectory() as tmp:
        from seqlab.models.shipped import shipped_model_dir

        plain = materialize(args.model, Path(tmp) / "model") \
            if shipped_model_dir(args.model) is not None else args.model
        path = str(corpus_slice(args.docs, Path(tmp) / "slice.parquet"))
        tokens = count_tokens(plain, path)
        if any(SYSTEMS[name][0] == "seqlab" for name in args.systems):
            print(f"int8 graph built (or found cached) in "
                  f"{measure('build', args.model)['elapsed']:.1f} s", flush=True)
        runs: dict[str, list[dict]] = {name: [] for name in args.systems}
        for rep in range(args.reps):
            for name in args.systems:
                kind, options = SYSTEMS[name]
                runs[name].append(measure(kind, plain if kind == "hf" else args.model, path,
                                          options))
                print(f"rep {rep + 1} {name}: {runs[name][-1]['elapsed']:.1f} s "
                      f"({runs[name][-1]['process']:.1f} s process)", flush=True)
        rates = forward_rates(args.model, args.forward_reps)
    reference = set(map(tuple, runs[args.systems[0]][0]["entities"]))
    base = statistics.median(r["process"] for r in runs[args.systems[0]])
    print(f"\n{args.docs} Wikipedia articles, {tokens:,} subword tokens, model {args.model}, "
          f"{args.reps} alternated repetitions (medians); agreement and ratios (whole "
          f"process) against {args.systems[0]}\n")
    print("| system | s | process s | tokens/s | padded tokens | padded / content "
          "| peak RSS MB | entities | agree | process ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for name, results in runs.items():
        elapsed = statistics.median(r["elapsed"] for r in results)
        process = statistics.median(r["process"] for r in results)
        rss = statistics.median(r["peak_rss_mb"] for r in results)
        entities = set(map(tuple, results[0]["entities"]))
        padded = results[0]["padded"] or 0
        summary[name] = {"s": [r["elapsed"] for r in results],
                         "process_s": [r["process"] for r in results], "rss": rss,
                         "precision": results[0].get("precision")}
        print(f"| {name} | {elapsed:.1f} | {process:.1f} | {tokens / elapsed:,.0f} "
              f"| {padded:,} | {padded / tokens:.3f} | {rss:,.0f} | {len(entities):,} "
              f"| {len(entities & reference) / max(len(reference), 1):.1%} "
              f"| {base / process:.2f}x |")
    print(f"\nbare forward, 32 x 128 tokens, {args.forward_reps} alternated: fp32 "
          f"{rates['fp32']:,.0f} tokens/s, int8 {rates['int8']:,.0f} tokens/s "
          f"(int8/fp32 {rates['int8/fp32']:.2f}x, the median of the repetitions' ratios)")
    print(json.dumps({"runs": summary, "forward": rates}))


if __name__ == "__main__":
    main()
