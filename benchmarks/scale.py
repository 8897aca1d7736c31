"""How seqlab's single-process steps scale: the finish against distinct entity keys, planning
against input files and table history, compaction throughput.

Each measurement runs in its own child process, which reports its own peak resident memory
(``VmHWM``), so one step's memory never hides another's.

    python benchmarks/scale.py aggregates --real 24000,240000,2400000 --synthetic 1e5,1e6,1e7
    python benchmarks/scale.py planning --inputs 1000,10000,100000 --history 1,2,30,365
    python benchmarks/scale.py compaction --inputs 3000 --target-file-size 512MB

``aggregates`` runs real annotations with a tiny model that tags every word (each distinct word
is a distinct (label, text) key) and then, beyond what real runs reach here, merges synthetic
partials: the bucketed merge (``seqlab.run.aggregates``) against the single fold it replaced
(``seqlab.stages.aggregate.fold``), their results compared row for row.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from seqlab import schema  # noqa: E402
from seqlab.store.layout import PARTIALS  # noqa: E402


def _peak_of(command: list[str]) -> dict:
    """Run ``python scale.py _run MODULE ARGS...`` (or ``_merge``): its wall seconds, its peak
    RSS in MB, and what the JSON lines it prints hold. The child reports its own peak (VmHWM,
    which starts afresh at exec): the kernel's ``ru_maxrss`` of a child carries its parent's
    peak across fork and exec, so it would show this process's memory, not the child's."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, *command], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n"
                         f"{done.stderr[-3000:]}")
    found: dict = {"seconds": round(seconds, 2)}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            found.update(json.loads(line))
    return found


def peak_mb() -> int:
    """This process's peak resident memory so far, in MB (Linux)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmHWM:"))) // 1024


def run_child(module: str, args: list[str]) -> None:
    """In a child process: run ``python -m MODULE ARGS``, then print its peak memory."""
    import runpy

    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__")
    except SystemExit as stop:
        if stop.code:
            raise
    print(json.dumps({"peak_mb": peak_mb()}), flush=True)


# ------------------------------------------------------------------ aggregates: real runs

def every_word_model(directory: Path) -> Path:
    """A tiny BERT tagger (random encoder) whose head labels every word B-PER: each word is
    a one-word entity, so a run's distinct keys are its distinct words."""
    import torch
    from transformers import BertForTokenClassification

    from tests.tiny import NER_LABELS, build_tiny_model

    build_tiny_model(directory, NER_LABELS)
    model = BertForTokenClassification.from_pretrained(directory)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[NER_LABELS.index("B-PER")] = 30.0
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def _word(i: int) -> str:
    """The i-th word of a made-up vocabulary: a, b, ..., z, ba, bb, ..."""
    letters = ""
    while True:
        letters = chr(97 + i % 26) + letters
        i //= 26
        if not i:
            return letters


def word_corpus(path: Path, distinct: int, words_per_doc: int = 400, seed: int = 0) -> int:
    """A Parquet corpus holding ``distinct`` different words, 1.2 mentions each on average;
    returns its word count."""
    rng = random.Random(seed)
    ids = list(range(distinct)) + [rng.randrange(distinct) for _ in range(distinct // 5)]
    rng.shuffle(ids)
    docs = [" ".join(_word(i) for i in ids[k:k + words_per_doc])
            for k in range(0, len(ids), words_per_doc)]
    pq.write_table(pa.table({"id": [str(i) for i in range(len(docs))], "text": docs}), path)
    return len(ids)


def real_runs(sizes: list[int], engine: str, work: Path) -> list[dict]:
    model = every_word_model(work / "every-word")
    rows = []
    for distinct in sizes:
        corpus = work / f"words-{distinct}.parquet"
        words = word_corpus(corpus, distinct)
        out = work / f"out-{engine}-{distinct}"
        run = _peak_of(["_run", "seqlab", "annotate", str(corpus), str(out), "--model",
                        str(model), "--engine", engine, "--overwrite", "-q"])
        manifest = json.loads((out / "_manifest.json").read_text())
        landed = manifest["tables"]["aggregates"]
        rows.append({"step": "real run", "engine": engine, "words": words,
                     "distinct_keys": sum(p["rows"] for p in landed),
                     "aggregate_files": len(landed),
                     "seconds": run["seconds"], "peak_mb": run["peak_mb"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


# ------------------------------------------------------------------ aggregates: synthetic

def synthetic_partials(folder: Path, distinct: int, keys_per_partial: int = 2000,
                       seed: int = 0) -> list[Path]:
    """Partials as landings leave them (sorted, one per landed part): every one of
    ``distinct`` keys in some partial, a fifth more drawn again from a Zipf-like head."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    keys = rng.permutation(distinct)
    extra = np.minimum(rng.zipf(1.3, distinct // 5) - 1, distinct - 1)
    keys = np.concatenate([keys, extra])
    rng.shuffle(keys)
    labels = np.array(["PER", "ORG", "LOC", "MISC"])
    paths = []
    for n, start in enumerate(range(0, len(keys), keys_per_partial)):
        chunk = np.unique(keys[start:start + keys_per_partial])
        table = pa.table({
            "label": pa.array(labels[chunk % 4]),
            "text": pa.array([f"key {k}" for k in chunk.tolist()]),
            "mentions": pa.array(rng.integers(1, 4, len(chunk)), pa.int64()),
            "documents": pa.array(np.ones(len(chunk), np.int64)),
            "score_micros": pa.array(rng.integers(500_000, 1_000_000, len(chunk)), pa.int64()),
        }, schema=schema.AGGREGATE_PARTIAL).sort_by([("label", "ascending"),
                                                      ("text", "ascending")])
        paths.append(folder / f"part-{n:06d}.parquet")
        pq.write_table(table, paths[-1])
    return paths


def merge_child(mode: str, root: Path) -> None:
    """In a child process: merge the partials under ``root/_progress/partials`` one way into
    ``root/aggregates/``, and print what it took."""
    from seqlab.run import aggregates
    from seqlab.stages import aggregate
    from seqlab.store.outdir import OutputDir

    out = OutputDir(str(root))
    paths = sorted(p.relative_to(root).as_posix() for p in root.glob(f"{PARTIALS}/*.parquet"))
    started = time.perf_counter()
    if mode == "fold":
        result = aggregate.finalize(aggregate.fold(pq.read_table(root / p) for p in paths))
        (root / "aggregates").mkdir(parents=True, exist_ok=True)
        pq.write_table(result, root / "aggregates" / "part-00000.parquet")
        files = 1
    else:
        mentions = sum(pq.read_metadata(root / p).num_rows for p in paths)  # an upper bound
        files = len(aggregates.merge_local(out, paths, aggregates.bucket_count(mentions)))
    print(json.dumps({"merge_s": round(time.perf_counter() - started, 2), "files": files,
                      "peak_mb": peak_mb()}))


def same_rows(a: Path, b: Path) -> bool:
    """Whether two aggregates folders hold the same rows (each sorted by key)."""
    def rows(folder: Path) -> pa.Table:
        table = pa.concat_tables(pq.read_table(p) for p in sorted(folder.glob("*.parquet")))
        return table.sort_by([("label", "ascending"), ("text", "ascending")])
    return rows(a).equals(rows(b))


def synthetic_runs(sizes: list[int], work: Path, compare_up_to: int) -> list[dict]:
    rows = []
    for distinct in sizes:
        results = {}
        for mode in ("buckets", "fold"):
            if mode == "fold" and distinct > compare_up_to:
                continue
            root = work / f"merged-{mode}-{distinct}"
            made = synthetic_partials(root / PARTIALS, distinct)
            results[mode] = _peak_of(["_merge", mode, str(root)])
            rows.append({"step": f"synthetic partials, {mode}", "distinct_keys": distinct,
                         "partials": len(made), **results[mode]})
            print(json.dumps(rows[-1]), flush=True)
        if "fold" in results:
            rows[-1]["equal"] = same_rows(work / f"merged-buckets-{distinct}" / "aggregates",
                                          work / f"merged-fold-{distinct}" / "aggregates")
    return rows


# ------------------------------------------------------------------ planning

def planning_runs(inputs: list[int], history: list[int], work: Path, repeat: int) -> list[dict]:
    """The time to plan a no-op incremental run: against live input files (after 2 daily
    runs), and against the table's history (the same live files after 1 to 365 runs)."""
    from benchmarks.table_state import plan_seconds, write_table_state

    cases = [(n, 2) for n in inputs] + [(max(inputs[:1] or [3000]), r) for r in history]
    rows = []
    for n, runs in dict.fromkeys(cases):
        state = write_table_state(work / f"table-{n}-{runs}", n, runs)
        seconds = plan_seconds(state, repeat)
        rows.append({"step": "plan a no-op run", "live_inputs": n, "daily_runs": runs,
                     "history_mb": round(state.manifest_bytes / 1e6, 2),
                     "plan_s": round(seconds, 3),
                     "per_input_ms": round(seconds * 1000 / n, 3)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


# ------------------------------------------------------------------ compaction

def one_document_inputs(folder: Path, count: int, words: int = 150, seed: int = 0) -> None:
    """``count`` Parquet input files of one document each."""
    from tests.tiny import WORDS

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        text = " ".join(rng.choice(WORDS) for _ in range(words)) + "."
        pq.write_table(pa.table({"id": [f"d{i}"], "text": [text]}),
                       folder / f"part-{i:06d}.parquet")


def scan_ms(root: Path, repeat: int = 7) -> float:
    """DuckDB's median time for ``count(*), sum(n_tokens)`` over the documents table."""
    import duckdb

    query = (f"SELECT count(*), sum(n_tokens) FROM read_parquet('{root}/documents/**/*.parquet',"
             " hive_partitioning = true)")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        duckdb.sql(query).fetchall()
        times.append(time.perf_counter() - started)
    return round(sorted(times)[len(times) // 2] * 1000, 1)


def compaction_runs(count: int, work: Path, target: str) -> list[dict]:
    """A table of ``count`` one-document inputs, annotated with a tiny model, compacted."""
    import duckdb

    from seqlab import annotate
    from seqlab.config import parse_size
    from seqlab.store.compact import compact
    from tests.tiny import build_tiny_model

    model = build_tiny_model(work / "tiny-ner")
    one_document_inputs(work / "inputs", count)
    table = work / "table"
    started = time.perf_counter()
    annotate(str(work / "inputs"), str(table), model=str(model), incremental=True)
    annotated = time.perf_counter() - started
    query = (f"SELECT * FROM read_parquet('{table}/documents/**/*.parquet', "
             "hive_partitioning = true) ORDER BY doc_id")
    before_rows, before_ms = duckdb.sql(query).fetchall(), scan_ms(table)
    files_before = len(list(table.glob("documents/**/*.parquet")))
    summary = compact(str(table), parse_size(target))
    after_rows = duckdb.sql(query).fetchall()
    row = {"step": "compact", "inputs": count, "annotate_s": round(annotated, 1),
           "documents_files": f"{files_before} -> "
                              f"{len(list(table.glob('documents/**/*.parquet')))}",
           "mb_written": round(summary["bytes_written"] / 1e6, 1),
           "compact_s": summary["seconds"],
           "mb_per_s": round(summary["bytes_written"] / 1e6 / max(summary["seconds"], 1e-3), 1),
           "scan_ms": f"{before_ms} -> {scan_ms(table)}", "same_rows": before_rows == after_rows,
           "again": compact(str(table), parse_size(target))["status"]}
    print(json.dumps(row), flush=True)
    return [row]


# ------------------------------------------------------------------ the command line

def table(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _sizes(text: str) -> list[int]:
    return [int(float(s)) for s in text.split(",") if s]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_merge":
        merge_child(sys.argv[2], Path(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        run_child(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["aggregates", "planning", "compaction"])
    parser.add_argument("--real", default="24000,240000,2400000",
                        help="distinct keys of the real runs")
    parser.add_argument("--engine", default="local")
    parser.add_argument("--synthetic", default="1e5,1e6,1e7",
                        help="distinct keys of the synthetic partials")
    parser.add_argument("--compare-up-to", type=float, default=1e7,
                        help="also run the single fold up to this many keys")
    parser.add_argument("--inputs", default="1000,10000,100000",
                        help="planning: live input files; compaction: the first is used")
    parser.add_argument("--history", default="1,2,30,365", help="planning: daily runs")
    parser.add_argument("--repeat", type=int, default=3, help="planning: plans timed (median)")
    parser.add_argument("--target-file-size", default="512MB", help="compaction's target")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        work = Path(scratch)
        if args.what == "aggregates":
            rows = real_runs(_sizes(args.real), args.engine, work)
            rows += synthetic_runs(_sizes(args.synthetic), work, int(args.compare_up_to))
        elif args.what == "planning":
            rows = planning_runs(_sizes(args.inputs), _sizes(args.history), work, args.repeat)
        else:
            rows = compaction_runs(_sizes(args.inputs)[0], work, args.target_file_size)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
