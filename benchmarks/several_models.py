"""Several models in one run against one run per model, and SRL annotate throughput.

    python benchmarks/several_models.py [--docs 10] [--reps 1] [--models ner,upos,srl]

Annotates the same slice of ../shared/corpora/wikipedia-en.parquet with each shipped model on
its own (one ``seqlab annotate`` per model, as a user without ``--model a,b,c`` would run them)
and with all of them in one run (one read, one tokenization, one documents row per article),
alternating the two within each repetition; prints wall time, documents/s, frames and
predicates/s (frames per second of an SRL model), and the time one run saves. Every run uses the
local engine at its defaults, model loading included, as a user's run pays for it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import inputs  # noqa: E402
from annotate_vs_hf import corpus_slice  # noqa: E402

import seqlab  # noqa: E402


def timed_run(corpus: str, out: Path, model: str) -> tuple[float, dict]:
    start = time.perf_counter()
    manifest = seqlab.annotate(corpus, str(out), model=model, id_column="id", overwrite=True)
    return time.perf_counter() - start, manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--models", default="ner,upos,srl")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's)")
    inputs.add_options(parser)
    args = parser.parse_args()
    inputs.use(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.models.split(",")
    times: dict[str, list[float]] = {name: [] for name in [*models, args.models]}
    manifests: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = str(corpus_slice(args.docs, Path(tmp) / "slice.parquet"))
        for rep in range(args.reps):
            order = [*models, args.models] if rep % 2 == 0 else [args.models, *models]
            for name in order:
                elapsed, manifests[name] = timed_run(corpus, Path(tmp) / "out", name)
                times[name].append(elapsed)
                print(f"rep {rep}: {name}: {elapsed:.1f} s", file=sys.stderr)
    words = manifests[args.models]["counts"]["tokens"]
    print(f"\n{args.docs} Wikipedia articles, {words:,} words, local engine, "
          f"{torch.get_num_threads()} torch threads, medians of {args.reps}\n")
    print("| run | s | docs/s | words/s | entities | frames | predicates/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    apart = 0.0
    for name in [*models, args.models]:
        elapsed = statistics.median(times[name])
        counts = manifests[name]["counts"]
        frames = counts.get("frames")
        if name in models:
            apart += elapsed
        print(f"| `--model {name}` | {elapsed:.1f} | {args.docs / elapsed:.3f} | "
              f"{counts['tokens'] / elapsed:,.0f} | {counts['entities']:,} | "
              f"{'' if frames is None else f'{frames:,}'} | "
              f"{'' if frames is None else f'{frames / elapsed:.1f}'} |")
    together = statistics.median(times[args.models])
    print(f"| {len(models)} separate runs | {apart:.1f} | {args.docs / apart:.3f} | | | | |")
    print(f"\none run of {len(models)} models: {together:.1f} s against {apart:.1f} s "
          f"({apart / together:.2f}x, {apart - together:.1f} s saved)")


if __name__ == "__main__":
    main()
