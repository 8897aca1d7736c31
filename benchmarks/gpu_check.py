"""The GPU path, measured: ``seqlab annotate --device cuda --precision bf16`` on one GPU.

    python benchmarks/gpu_check.py [--docs 300] [--batch-tokens 16384 65536] [--out DIR]

For the shipped ``ner`` model and for a model of BERT-base's shape (12 layers, 768 wide,
random weights, the shipped tokenizer), on the first ``--docs`` articles of
../shared/corpora/wikipedia-en.parquet:

- end to end: ``seqlab.annotate`` on the local engine (reading and tokenization on a thread
  one batch ahead, tagging on the GPU), documents/s and content tokens/s, per --batch-tokens;
- GPU utilisation while it runs (``nvidia-smi`` sampled every 0.2 s: mean and max), and peak
  GPU memory;
- the bare forward rate in bf16 on fixed 64 x 256 batches (the GPU's ceiling for the model);
- whether tokenization keeps up: the tokenize stage's tokens/s on one CPU core against the
  GPU's forward rate, i.e. how many tokenizing CPU workers one GPU needs (Ray's
  ``--tokenize-cpus``/read tasks);
- bf16 against fp32 on the same GPU: entity agreement (same span and label) for ``ner``.

Prints a table and writes ``gpu_check.json`` to ``--out`` (default ``$OUT`` if set, else the
current directory). Needs a CUDA build of torch and one visible GPU; the whole run takes a few
minutes on an H100-class GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import inputs
import pyarrow.parquet as pq


class GpuSampler:
    """``nvidia-smi`` utilisation and memory, sampled on a thread while a block runs."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.samples = interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                 "--format=csv,noheader,nounits", "--id=0"]
        while not self._stop.is_set():
            try:
                out = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout
                util, memory = (float(v) for v in out.strip().split(","))
                self.samples.append((util, memory))
            except (OSError, ValueError, subprocess.SubprocessError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        if not self.samples:
            return {"util_mean": None, "util_max": None, "mem_max_mb": None}
        utils = [u for u, _ in self.samples]
        return {"util_mean": statistics.mean(utils), "util_max": max(utils),
                "mem_max_mb": max(m for _, m in self.samples)}


def base_shaped_model(out: Path) -> str:
    """A BERT-base-shaped tagger (random weights) with the shipped ner's tokenizer and labels."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    from seqlab.models.load import load_tokenizer
    from seqlab.models.metadata import read_metadata, write_metadata
    from seqlab.models.shipped import shipped_model_dir

    tokenizer = load_tokenizer("ner")
    labels = read_metadata(str(shipped_model_dir("ner"))).labels
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=768, num_hidden_layers=12,
                        num_attention_heads=12, intermediate_size=3072,
                        id2label=dict(enumerate(labels)),
                        label2id={label: i for i, label in enumerate(labels)})
    BertForTokenClassification(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    write_metadata(out, {"window": 256})
    return str(out)


def annotate(model: str, path: str, precision: str, batch_tokens: int) -> dict:
    import torch

    import seqlab

    with tempfile.TemporaryDirectory() as out:
        torch.cuda.reset_peak_memory_stats()
        with GpuSampler() as sampler:
            start = time.perf_counter()
            manifest = seqlab.annotate(path, out, model=model, device="cuda",
                                       precision=precision, batch_tokens=batch_tokens,
                                       overwrite=True)
            torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
        docs = pq.read_table(Path(out) / "documents", columns=["doc_id", "entities"])
        entities = {(d["doc_id"], e["start_char"], e["end_char"], e["label"])
                    for d in docs.to_pylist() for e in d["entities"] or []}
    return {"elapsed": elapsed, "tagging": manifest.get("tagging", {}),
            "peak_torch_mb": torch.cuda.max_memory_allocated() / 2**20,
            "entities": entities, **sampler.summary()}


def forward_rate(model: str, rows: int = 64, length: int = 256, reps: int = 20) -> float:
    """bf16 tokens/s of the bare forward pass on fixed batches (CUDA-synchronised)."""
    import torch

    from seqlab.models.load import ModelSpec, load_model

    loaded = load_model(ModelSpec(model, device="cuda", precision="bf16"))
    ids = torch.randint(1000, 20000, (rows, length), device="cuda")
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
              "token_type_ids": torch.zeros_like(ids)}
    with torch.inference_mode():
        for _ in range(3):
            loaded.model(**inputs)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(reps):
            loaded.model(**inputs)
        torch.cuda.synchronize()
    return reps * ids.numel() / (time.perf_counter() - start)


def tokenize_rate(path: str) -> float:
    """Content tokens/s of seqlab's tokenize stage on one CPU thread."""
    from seqlab.models.load import load_tokenizer
    from seqlab.stages.tokenize import Tokenizer, WindowSpec
    from seqlab.training.evaluate import text_batch

    texts = pq.read_table(path, columns=["text"]).column("text").to_pylist()
    stage = Tokenizer(load_tokenizer("ner"), WindowSpec(256, 64))
    start = time.perf_counter()
    out = stage(text_batch(0, texts))
    elapsed = time.perf_counter() - start
    return sum(len(ids) for ids in out.column("_ids").to_pylist()) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--batch-tokens", type=int, nargs="+", default=[16384, 65536])
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    inputs.add_options(parser)
    args = parser.parse_args()
    inputs.use(args)
    # the tokenize rate is per CPU thread: the Rust tokenizer's pool reads this when it starts
    os.environ["RAYON_NUM_THREADS"] = "1"
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run this on a GPU machine with a CUDA build of torch")
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"bf16 supported: {torch.cuda.is_bf16_supported()}", flush=True)
    results: dict = {"device": torch.cuda.get_device_name(0), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "slice.parquet")
        pq.write_table(pq.read_table(inputs.corpus(), columns=["id", "title", "text"])
                       .slice(0, args.docs), path)
        models = {"ner": "ner", "bert-base-shaped": base_shaped_model(Path(tmp) / "base")}
        results["tokenize_tokens_s_one_cpu"] = tokenize_rate(path)
        annotate("ner", path, "bf16", args.batch_tokens[0])  # CUDA context, kernels, caches
        # each timed run includes loading its model (a second or two): --docs keeps it small
        for name, model in models.items():
            rate = forward_rate(model)
            for batch_tokens in args.batch_tokens:
                run = annotate(model, path, "bf16", batch_tokens)
                content = run["tagging"].get("content_tokens") or 0
                row = {"model": name, "batch_tokens": batch_tokens, "s": run["elapsed"],
                       "docs_s": args.docs / run["elapsed"],
                       "tokens_s": content / run["elapsed"],
                       "padded_tokens": run["tagging"].get("padded_tokens"),
                       "forward_tokens_s": rate, "peak_torch_mb": run["peak_torch_mb"],
                       "gpu_util_mean": run["util_mean"], "gpu_util_max": run["util_max"],
                       "workers_per_gpu": rate / results["tokenize_tokens_s_one_cpu"]}
                results["runs"].append(row)
                print(json.dumps(row), flush=True)
        bf16 = annotate("ner", path, "bf16", args.batch_tokens[0])["entities"]
        fp32 = annotate("ner", path, "fp32", args.batch_tokens[0])["entities"]
        results["ner_bf16_vs_fp32_agreement"] = len(bf16 & fp32) / max(len(fp32), 1)
    print(f"\n{args.docs} Wikipedia articles; tokenize stage on one CPU thread: "
          f"{results['tokenize_tokens_s_one_cpu']:,.0f} tokens/s; ner entities bf16 vs fp32: "
          f"{results['ner_bf16_vs_fp32_agreement']:.2%} agree\n")
    print("| model | batch tokens | docs/s | tokens/s | bf16 forward tokens/s | GPU util mean / "
          "max % | peak MB | CPU tokenizers to keep up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results["runs"]:
        util = "–" if r["gpu_util_mean"] is None else \
            f"{r['gpu_util_mean']:.0f} / {r['gpu_util_max']:.0f}"
        print(f"| {r['model']} | {r['batch_tokens']:,} | {r['docs_s']:.1f} | "
              f"{r['tokens_s']:,.0f} | {r['forward_tokens_s']:,.0f} | {util} | "
              f"{r['peak_torch_mb']:,.0f} | {r['workers_per_gpu']:.1f} |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_check.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
