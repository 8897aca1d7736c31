"""The ``seqlab annotate`` command: its flags, the options they make, and the call."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from seqlab.cli.commands import command
from seqlab.cli.flags import (
    add_lineage_flags,
    add_metrics_flags,
    add_precision_flag,
    add_storage_flag,
    add_target_size_flag,
)

ANNOTATE = """\
Annotate every row of INPUT into OUTPUT: documents/, mentions/, aggregates/ and, written
last, _manifest.json. Rerunning the same command resumes an interrupted run."""


def add_annotate_flags(p: argparse.ArgumentParser) -> None:
    import dataclasses

    from seqlab.config import (
        ANNOTATE_PREDICATES,
        TABLE_FORMATS,
        AnnotateConfig,
    )
    from seqlab.engine import engine_names
    from seqlab.stages import WINDOW_CUTS
    from seqlab.stages.decode import AGGREGATIONS, DECODERS

    d = {f.name: f.default for f in dataclasses.fields(AnnotateConfig)}
    p.add_argument("input", help="Parquet/JSONL file, directory or glob, on any fsspec URL")
    p.add_argument("output", help="output directory (local path or fsspec URL)")
    p.add_argument("--model", metavar="NAME", help="shipped model name, local directory, hub "
                   "id or fsspec URL; several, comma-separated (ner,upos,srl), share one read "
                   "and tokenization, each model's columns named KEY_tokens, KEY_entities, "
                   "KEY_frames (KEY=MODEL names a key) "
                   f"(default: the shipped {d['model']!r} model)")
    p.add_argument("--model-revision", metavar="REV", help="hub revision: branch, tag or "
                   "commit (default: the repository's default branch)")
    p.add_argument("--engine", choices=engine_names(), help=f"where the stages run "
                   f"(default: {d['engine']})")
    p.add_argument("--text-column", metavar="COLUMN", help="column holding the text "
                   f"(default: {d['text_column']})")
    p.add_argument("--id-column", metavar="COLUMN", help="column holding document ids "
                   "(default: FILE:ROW)")
    p.add_argument("--max-length", type=int, metavar="N", help="tokens per model window "
                   "(default: the length the model was trained on, else 512)")
    p.add_argument("--stride", type=int, metavar="N", help="tokens shared by adjacent windows "
                   "where no sentence ends to cut at (default: a quarter of the window)")
    p.add_argument("--window-cuts", choices=WINDOW_CUTS, help="sentence: a window ends where "
                   "a sentence or paragraph does and the next starts there, without overlap; "
                   f"fixed: every window overlaps the next by --stride (default: "
                   f"{d['window_cuts']})")
    p.add_argument("--max-chars", type=int, metavar="N", help="longer texts get status "
                   f"too_long (default: {d['max_chars']:,}; the peak memory of a run grows "
                   "by about 150 MB per million characters of its longest document: 0.7 GB at "
                   "1 M characters, 1.5 GB at 6 M, about 2 GB at the default, int8 on CPU)")
    p.add_argument("--batch-tokens", type=int, metavar="N", help="padded tokens per micro-"
                   f"batch (default: {d['batch_tokens']}; on CPU it runs in forward passes of "
                   "at most 4,096)")
    p.add_argument("--batch-docs", type=int, metavar="N", help="documents read per batch "
                   f"(default: {d['batch_docs']})")
    p.add_argument("--rows-per-part", type=int, metavar="N", help="rows per output Parquet "
                   f"part (default: {d['rows_per_part']})")
    p.add_argument("--decoder", choices=DECODERS, help="label decoding (default: greedy, "
                   "unless the model's seqlab.json recommends another, as the shipped ner "
                   "recommends viterbi)")
    p.add_argument("--aggregation", choices=AGGREGATIONS,
                   help=f"subword -> word label strategy (default: {d['aggregation']})")
    p.add_argument("--min-score", type=float, metavar="S", help="leave entities scoring "
                   "below S out of entities, mentions and aggregates; their tokens keep their "
                   "labels (default: keep all)")
    p.add_argument("--top-k", type=int, metavar="K", help="each token also lists its K most "
                   f"probable labels with their scores in tokens.top (default: {d['top_k']}, "
                   "off: top is null)")
    p.add_argument("--predicates", choices=ANNOTATE_PREDICATES, help="SRL models: the frames "
                   "of every predicate the predicate labeller finds, or of the verbal ones "
                   f"only (default: {d['predicates']})")
    p.add_argument("--predicate-model", metavar="NAME", help="SRL models: the predicate "
                   "labeller (default: the one the SRL model's seqlab.json names)")
    p.add_argument("--scheme", help="label scheme: iob1, iob2, bioes, io or tags "
                   "(default: detected from the model's labels)")
    p.add_argument("--device", help=f"auto, cpu, cuda or cuda:N (default: {d['device']})")
    add_precision_flag(p)
    p.add_argument("--limit", type=int, metavar="N", help="annotate only the first N rows "
                   "(default: all)")
    p.add_argument("--drop-text", dest="keep_text", action="store_false", default=None,
                   help="leave the text column out of documents/")
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="replace a finished run in OUTPUT")
    p.add_argument("--take-over", action="store_true", default=None,
                   help="take OUTPUT over from a run on another host whose heartbeat stopped "
                   "over 5 minutes ago (a run that ended on this host is taken over anyway)")
    p.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="allow model code from the model's repository to run")
    add_storage_flag(p)
    add_lineage_flags(p)
    add_metrics_flags(p)
    inc = p.add_argument_group("incremental runs (OUTPUT as a table root that accumulates runs)")
    inc.add_argument("--incremental", action="store_true", default=None,
                     help="annotate only input files that no earlier run of the same "
                     "configuration annotated (new or changed ones); parts land in "
                     "documents/run_date=YYYY-MM-DD/, each run's manifest in _runs/RUN_ID/")
    inc.add_argument("--prune", action="store_true", default=None,
                     help="the rows of input files that no longer exist leave the table "
                     "(default: they stay)")
    inc.add_argument("--run-date", metavar="YYYY-MM-DD",
                     help="the run's partition (default: today, UTC; a scheduler passes its "
                     "logical date, e.g. Airflow's {{ ds }})")
    inc.add_argument("--table-format", choices=TABLE_FORMATS,
                     help="iceberg: also commit each run's files to Iceberg tables; delta: "
                     "to Delta Lake tables whose roots are the table folders (needs "
                     "'seqlab[delta]'); one commit per table per run (default: parquet)")
    inc.add_argument("--catalog", metavar="NAME", help="the pyiceberg catalog "
                     "(~/.pyiceberg.yaml or PYICEBERG_CATALOG__NAME__* variables)")
    inc.add_argument("--namespace", metavar="NS", help=f"the Iceberg namespace of the "
                     f"tables (default: {d['namespace']})")
    inc.add_argument("--compact", action="store_true", default=None,
                     help="after the run, rewrite the table's small files into files of "
                     "--target-file-size (as seqlab compact does)")
    add_target_size_flag(inc)
    p.add_argument("--config", metavar="YAML", help="file of options; flags given here "
                   "override it")


def annotate_options(args: argparse.Namespace, engine_flags: Sequence[str] = ()) -> dict:
    """Keyword options for ``seqlab.annotate`` from a YAML file and the flags over it (a flag
    holding a mapping, like --storage-options, updates the file's mapping key by key)."""
    from seqlab.config import load_yaml

    options: dict[str, Any] = load_yaml(args.config) if args.config else {}
    skip = {"command", "config", "func", "verbose", "quiet", *engine_flags}
    for key, value in vars(args).items():
        if key not in skip and value is not None:
            merged = isinstance(value, dict) and isinstance(options.get(key), dict)
            options[key] = {**options[key], **value} if merged else value
    engine_options = {k: getattr(args, k) for k in engine_flags
                      if getattr(args, k, None) not in (None, [])}

    if engine_options:
        options["engine_options"] = {**options.get("engine_options", {}), **engine_options}
    return options


@command("annotate")
def annotate_cli(args: argparse.Namespace) -> int:
    from seqlab.config import build_config
    from seqlab.run.sources import discover

    config = build_config(**annotate_options(args, ENGINE_FLAGS))
    # a missing or empty input fails in a moment, before the model stack (seconds) is imported
    discover(config.input, config.storage_options)
    from seqlab.api import annotate
    from seqlab.cli.progress import RunProgress, print_summary

    started = time.time()
    with RunProgress(enabled=not args.quiet) as progress:
        manifest = annotate(config.input, config.output, config=config, progress=progress)
    print_summary(manifest, time.time() - started)
    return 0


# Engine flags live with the engines; they reach the engine through config.engine_options.
ENGINE_FLAGS = ("address", "tag_actors", "gpus_per_actor", "cpus_per_actor", "tokenize_cpus",
                "runner", "beam_args")


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    ray = p.add_argument_group("Ray engine (--engine ray)")
    ray.add_argument("--address", help="Ray cluster: auto or ray://HOST:10001 "
                     "(default: start a Ray on this machine)")
    ray.add_argument("--tag-actors", type=int, metavar="N", help="tagging actors "
                     "(default: one per GPU, else 1)")
    ray.add_argument("--gpus-per-actor", type=float, metavar="N", help="GPUs per tagging "
                     "actor (default: 1 on a cluster with GPUs, else 0)")
    ray.add_argument("--cpus-per-actor", type=float, metavar="N", help="CPUs per tagging "
                     "actor (default: 1, or half the CPUs of a 1-CPU machine)")
    ray.add_argument("--tokenize-cpus", type=float, metavar="N", help="CPUs per "
                     "tokenization task (default: 1 when 2 CPUs are left beside the "
                     "actors, else 0.5)")
    beam = p.add_argument_group("Beam engine (--engine beam)")
    beam.add_argument("--runner", help="Beam runner (default: the in-process FnApiRunner); "
                      "Beam's own pipeline options go after a bare --")
