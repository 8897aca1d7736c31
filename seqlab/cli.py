"""The command line. It only parses flags and prints; the work is done by library functions.

``seqlab --help`` must answer at once: nothing here imports torch or transformers up front.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from seqlab.commands import COMMANDS, command
from seqlab.errors import SeqlabError
from seqlab.flags import add_precision_flag, add_storage_flag
from seqlab.tables_cli import add_commands as add_table_commands

DESCRIPTION = """\
Annotate large text corpora with fine-tuned BERT token classifiers (named entities,
part-of-speech tags, any token-level task) and write Parquet tables that data warehouses load:
one documents row per input row, one mentions row per entity, per-label aggregates, and a
manifest written last. Runs on this machine, on Ray or on Beam; an interrupted run resumes
when the same command is run again."""

EPILOG = """\
examples:
  seqlab annotate examples/corpus.jsonl out --id-column id
  seqlab show out --doc news-001
  seqlab annotate s3://bucket/corpus/ s3://bucket/out --engine ray --address auto
  seqlab submit --address http://HEAD:8265 --working-dir . -- annotate IN OUT --engine ray

Run 'seqlab COMMAND --help' for the flags of one command."""
ANNOTATE = """\
Annotate every row of INPUT into OUTPUT: documents/, mentions/, aggregates/ and, written
last, _manifest.json. Rerunning the same command resumes an interrupted run."""
# Sub-commands defined next to their library code, built only when run: building train's flags
# imports seqlab.train, and with it torch and peft (seconds that --help should not wait).
LAZY_COMMANDS = {
    "train": ("seqlab.train_cli", "fine-tune an encoder for token classification"),
    "evaluate": ("seqlab.train_cli", "score a model on a labelled file"),
}
# Sub-commands of installed packages (entry points: command name -> add_commands), such as
# the Ray engine's submit
PLUGIN_GROUP = "seqlab.commands"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written and shows every flag's default that means something
    (not None, False or empty), also for flags given no help text."""

    def _format_action(self, action: argparse.Action) -> str:
        meaningful = action.default not in (None, False, [], "", argparse.SUPPRESS)
        if action.option_strings and meaningful and "default" not in (action.help or ""):
            action = copy.copy(action)
            action.help = f"{action.help or ''} (default: %(default)s)".lstrip()
        return super()._format_action(action)


class Parser(argparse.ArgumentParser):
    """No abbreviated flags (``--id-colum`` is a typo, not ``--id-column``), and help that
    shows defaults. Sub-command parsers inherit both, those of other modules included."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", Commands)


class Commands(argparse._SubParsersAction):
    """Hands the words after the command to its own parser, so that a mistake in them is
    reported with that command's usage rather than the top-level one; every command takes
    -v and -q too."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser = super().add_parser(name, **kwargs)
        add_verbosity_flags(parser, default=argparse.SUPPRESS)
        return parser

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Sequence[str], option_string: str | None = None) -> None:
        name, *words = values
        setattr(namespace, self.dest, name)
        for key, value in vars(self.choices[name].parse_args(words)).items():
            setattr(namespace, key, value)


def add_annotate_flags(p: argparse.ArgumentParser) -> None:
    import dataclasses

    from seqlab.config import (ANNOTATE_PREDICATES, ENGINES, TABLE_FORMATS, WINDOW_CUTS,
                               AnnotateConfig)
    from seqlab.decode import AGGREGATIONS, DECODERS

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
    p.add_argument("--engine", choices=ENGINES, help=f"where the stages run "
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
                   f"too_long (default: {d['max_chars']})")
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
    p.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="allow model code from the model's repository to run")
    add_storage_flag(p)
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
                     help="iceberg: also commit each run's files to Iceberg tables, one "
                     "commit per table per run (default: parquet)")
    inc.add_argument("--catalog", metavar="NAME", help="the pyiceberg catalog "
                     "(~/.pyiceberg.yaml or PYICEBERG_CATALOG__NAME__* variables)")
    inc.add_argument("--namespace", metavar="NS", help=f"the Iceberg namespace of the "
                     f"tables (default: {d['namespace']})")
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
    from seqlab.api import annotate
    from seqlab.config import build_config
    from seqlab.progress import RunProgress, print_summary

    config = build_config(**annotate_options(args, ENGINE_FLAGS))
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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line. With ``only`` (the command about to run, "" for none), the
    lazily built sub-commands get their flags only if they are that command; the others are
    listed with their help."""
    from seqlab import __version__

    parser = Parser(prog="seqlab", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"seqlab {__version__}")
    add_verbosity_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True, title="commands",
                                metavar="COMMAND")

    p = sub.add_parser("annotate", help="annotate a corpus", description=ANNOTATE)
    add_annotate_flags(p)
    add_engine_flags(p)
    p.usage = usage_with(p, "[-- BEAM_OPTION ...]")

    add_table_commands(sub)

    _add_commands(sub, only)
    return parser


def usage_with(p: argparse.ArgumentParser, tail: str) -> str:
    """The usage argparse would write, with words it does not parse itself (after --)."""
    return f"{p.format_usage().removeprefix('usage: ').rstrip()} {tail}"


def add_verbosity_flags(p: argparse.ArgumentParser, default: Any = False) -> None:
    """-v and -q, also after the command (``seqlab annotate ... -v``), where a SUPPRESS
    default leaves the top-level value alone when they are not given."""
    p.add_argument("-v", "--verbose", action="store_true", default=default,
                   help="debug logging, and the traceback of an unexpected error")
    p.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="no progress line")


def _add_commands(sub: argparse._SubParsersAction, only: str | None) -> None:
    """The lazily built sub-commands (built when ``only`` names them or is None, else listed
    with their help), then those of installed plugins."""
    from importlib.metadata import entry_points

    wanted = {module for name, (module, _) in LAZY_COMMANDS.items()
              if only in (name, None)}
    for module in sorted(wanted):
        _load(f"{module}:add_commands")(sub)
    for name, (_, help) in LAZY_COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=help, add_help=False)
    plugins = {ep.name: ep.value for ep in entry_points(group=PLUGIN_GROUP)}
    for target in plugins.values():
        _load(target)(sub)


def _load(target: str) -> Callable:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def command_word(argv: Sequence[str]) -> str:
    """The sub-command in ``argv`` ("" if none): top-level flags take no values, so it is the
    first word that is not a flag.

    >>> command_word(["-v", "train", "--epochs", "2"]), command_word(["--help"])
    ('train', '')
    """
    return next((word for word in argv if not word.startswith("-")), "")


def quiet_libraries() -> None:
    """Keep transformers to errors and without download bars. Set through the environment
    when it is not imported yet, so that commands which never load a model never import it."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def report_error(command: str, exc: BaseException, verbose: bool) -> int:
    """An unexpected error in one line and a fix, not a traceback; -v adds the traceback."""
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"seqlab {command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
    again = "rerun the same command to resume the run" if command == "annotate" else None
    if unreachable(exc):
        fix = f"check that the storage (and its endpoint) is reachable, then {again or 'rerun'}"
    else:
        steps = ["see the traceback above" if verbose else "rerun with -v for the traceback",
                 again]
        fix = "; ".join(step for step in steps if step)
    print(f"  fix: {fix}", file=sys.stderr)
    return 1


def unreachable(exc: BaseException | None) -> bool:
    """Whether an error (or one it was raised from) is the network or storage failing: an
    OSError, or a library's connection or timeout error (botocore's are not OSErrors).

    >>> unreachable(RuntimeError("x")), unreachable(ConnectionError())
    (False, True)
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        names = [cls.__name__ for cls in type(exc).__mro__]
        if isinstance(exc, OSError) or any("Connection" in n or "Timeout" in n for n in names):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # "seqlab annotate ... --engine beam -- --project P": the tail is Beam's own options
    # (for submit: the command to run)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = build_parser(command_word(argv[:cut])).parse_args(argv[:cut])
    args.beam_args = argv[cut + 1:] or None
    from seqlab.progress import log_handler

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[log_handler()])
    if not args.verbose:
        quiet_libraries()
    try:
        return COMMANDS[args.command](args)
    except SeqlabError as exc:
        print(f"seqlab {args.command}: error: {exc.message}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of a pipe (``| head``) stopped: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the user gets a message and a fix, not a traceback
        return report_error(args.command, exc, args.verbose)


if __name__ == "__main__":
    # sub-commands register into the importable seqlab.cli, not into this __main__ copy
    from seqlab.cli import main as _main

    sys.exit(_main())
