"""The command line. It only parses flags and prints; the work is done by library functions."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from seqlab.errors import SeqlabError

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(func: Command) -> Command:
        COMMANDS[name] = func
        return func

    return register


def add_annotate_flags(p: argparse.ArgumentParser) -> None:
    from seqlab.config import ENGINES
    from seqlab.decode import AGGREGATIONS, DECODERS

    p.add_argument("input", help="Parquet/JSONL file, directory or glob, on any fsspec URL")
    p.add_argument("output", help="output directory (local path or fsspec URL)")
    p.add_argument("--model", help="shipped model name, local directory, hub id or fsspec URL "
                   "(default: the shipped 'ner' model)")
    p.add_argument("--model-revision", help="hub revision (branch, tag or commit)")
    p.add_argument("--engine", choices=ENGINES, help="where the stages run (default: local)")
    p.add_argument("--text-column", help="column holding the text (default: text)")
    p.add_argument("--id-column", help="column holding document ids (default: file:row)")
    p.add_argument("--max-length", type=int, help="tokens per model window (default: the "
                   "length the model was trained on, else 512)")
    p.add_argument("--stride", type=int, help="tokens shared by adjacent windows "
                   "(default: a quarter of the window)")
    p.add_argument("--max-chars", type=int, help="longer texts get status too_long "
                   "(default: 1000000)")
    p.add_argument("--batch-tokens", type=int, help="padded tokens per forward pass "
                   "(default: 16384)")
    p.add_argument("--batch-docs", type=int, help="documents read per batch (default: 256)")
    p.add_argument("--rows-per-part", type=int, help="rows per output Parquet part")
    p.add_argument("--decoder", choices=DECODERS, help="label decoding (default: greedy)")
    p.add_argument("--aggregation", choices=AGGREGATIONS,
                   help="subword -> word label strategy (default: first)")
    p.add_argument("--scheme", help="label scheme if not detected: iob1, iob2, bioes, io, tags")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--dtype", help="auto, float32, bfloat16 or float16 (default: auto)")
    p.add_argument("--limit", type=int, help="annotate only the first N rows")
    p.add_argument("--drop-text", dest="keep_text", action="store_false", default=None,
                   help="leave the text column out of documents/")
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="replace a finished run in OUTPUT")
    p.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="allow model code from the model's repository to run")
    p.add_argument("--config", help="YAML file of options; flags given here override it")


def annotate_options(args: argparse.Namespace, engine_flags: Sequence[str] = ()) -> dict:
    """Keyword options for ``seqlab.annotate`` from a YAML file and the flags over it."""
    from seqlab.config import load_yaml

    options: dict[str, Any] = load_yaml(args.config) if args.config else {}
    skip = {"command", "config", "func", "verbose", "quiet", *engine_flags}
    for key, value in vars(args).items():
        if key not in skip and value is not None:
            options[key] = value
    engine_options = {k: getattr(args, k) for k in engine_flags
                      if getattr(args, k, None) not in (None, [])}

    if engine_options:
        options["engine_options"] = {**options.get("engine_options", {}), **engine_options}
    return options


@command("annotate")
def annotate_cli(args: argparse.Namespace) -> int:
    from seqlab.api import annotate
    from seqlab.config import build_config
    from seqlab.progress import RunProgress, print_summary

    config = build_config(**annotate_options(args, ENGINE_FLAGS))
    started = time.time()
    with RunProgress(enabled=not args.quiet) as progress:
        manifest = annotate(config.input, config.output, config=config, progress=progress.update)
    print_summary(manifest, time.time() - started)
    return 0


# Engine flags live with the engines; they reach the engine through config.engine_options.
ENGINE_FLAGS = ("address", "tag_actors", "gpus_per_actor", "cpus_per_actor", "tokenize_cpus",
                "runner", "beam_args")


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    ray = p.add_argument_group("Ray engine (--engine ray)")
    ray.add_argument("--address", help="Ray cluster: auto, ray://HOST:10001 (default: local)")
    ray.add_argument("--tag-actors", type=int, help="tagging actors (default: 1 per GPU)")
    ray.add_argument("--gpus-per-actor", type=float, help="GPUs per tagging actor")
    ray.add_argument("--cpus-per-actor", type=float, help="CPUs per tagging actor")
    ray.add_argument("--tokenize-cpus", type=float, help="CPUs per tokenization task")
    beam = p.add_argument_group("Beam engine (--engine beam)")
    beam.add_argument("--runner", help="Beam runner (default: the in-process FnApiRunner)")
    # anything after a bare "--" goes to Beam as pipeline options (see main())


@command("show")
def show_cli(args: argparse.Namespace) -> int:
    from seqlab.show import load_document, render_terminal, write_html

    document = load_document(args.output, args.doc)
    if args.html:
        write_html(document, args.html)
        print(f"wrote {args.html}")
    else:
        render_terminal(document)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from seqlab import __version__

    parser = argparse.ArgumentParser(prog="seqlab", description=__doc__)
    parser.add_argument("--version", action="version", version=f"seqlab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("annotate", help="annotate a corpus")
    add_annotate_flags(p)
    add_engine_flags(p)

    p = sub.add_parser("show", help="show an annotated document")
    p.add_argument("output", help="output directory of an annotate run")
    p.add_argument("--doc", help="document id (default: the first ok document)")
    p.add_argument("--html", help="write a self-contained HTML page to this file")

    for extension in _extensions():
        extension(sub)
    return parser


def _extensions() -> list[Callable]:
    """Sub-commands defined next to their library code (train, evaluate, submit)."""
    import importlib

    found = []
    for module in ("seqlab.train_cli", "pipelines.ray_submit"):
        try:
            found.append(importlib.import_module(module).add_commands)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # "seqlab annotate ... --engine beam -- --project P": the tail is Beam's own options
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: len(argv) - len(extra) - (1 if extra or "--" in argv else 0)])
    args.beam_args = extra or None
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    try:
        return COMMANDS[args.command](args)
    except SeqlabError as exc:
        print(f"seqlab {args.command}: error: {exc.message}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # sub-commands register into the importable seqlab.cli, not into this __main__ copy
    from seqlab.cli import main as _main

    sys.exit(_main())
