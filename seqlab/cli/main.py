"""The command line. It only parses flags and prints; the work is done by library functions.

``seqlab --help`` must answer at once: nothing here imports torch or transformers up front.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from seqlab.cli.annotate import ANNOTATE, add_annotate_flags, add_engine_flags
from seqlab.cli.commands import COMMANDS
from seqlab.cli.tables import add_commands as add_table_commands
from seqlab.errors import SeqlabError, os_error

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

# Sub-commands defined next to their library code, built only when run: building train's flags
# imports seqlab.training.train, and with it torch and peft (seconds that --help should not wait).
LAZY_COMMANDS = {
    "train": ("seqlab.cli.train", "fine-tune an encoder for token classification"),
    "evaluate": ("seqlab.cli.train", "score a model on a labelled file"),
    "export": ("seqlab.cli.export", "build the compact form of a trained model"),
    "average": ("seqlab.cli.average", "average the weights of several fine-tunes into one "
                "model"),
    "compact": ("seqlab.cli.compact", "rewrite an incremental table's small files into "
                "large ones"),
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

    def error(self, message: str) -> NoReturn:
        """argparse's refusal, with the flag a misspelled one was probably meant to be."""
        if message.startswith("unrecognized arguments: "):
            known = [s for action in self._actions for s in action.option_strings]
            guesses = [close[0] for word in message.split(": ", 1)[1].split()
                       if word.startswith("-") for close in
                       [difflib.get_close_matches(word.split("=")[0], known, n=1, cutoff=0.7)]
                       if close]
            if guesses:
                message += f" (did you mean {', '.join(guesses)}?)"
        super().error(message)


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


def report_error(command: str, exc: BaseException, verbose: bool,
                 output: str | None = None) -> int:
    """An unexpected error in one line and a fix, not a traceback; -v adds the traceback.

    An OSError the user fixes on their side (a read-only OUTPUT, a missing permission, a full
    disk: ``seqlab.errors.os_error``) is reported as the error it means, with its exit code;
    ``output`` is the OUTPUT the command writes, named when the OSError names no file."""
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    known = os_error(exc, output, resumes=command == "annotate")
    if known is not None:
        return report(command, known)
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


def report(command: str, exc: SeqlabError) -> int:
    """A seqlab error's message and fix; returns its exit code."""
    print(f"seqlab {command}: error: {exc.message}", file=sys.stderr)
    if exc.fix:
        print(f"  fix: {exc.fix}", file=sys.stderr)
    return exc.exit_code


def unreachable(exc: BaseException | None) -> bool:
    """Whether an error (or one it was raised from) is the network or storage failing: an
    OSError, or a library's connection or timeout error (botocore's are not OSErrors). The
    OSErrors that ``os_error`` explains (read-only, permission, full disk) never get here.

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
    from seqlab.cli.progress import log_handler

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[log_handler()])
    if not args.verbose:
        quiet_libraries()
    try:
        return COMMANDS[args.command](args)
    except SeqlabError as exc:
        return report(args.command, exc)
    except BrokenPipeError:  # the reader of a pipe (``| head``) stopped: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the user gets a message and a fix, not a traceback
        return report_error(args.command, exc, args.verbose, getattr(args, "output", None))


if __name__ == "__main__":
    # sub-commands register into the importable seqlab.cli.main, not into this __main__ copy
    from seqlab.cli.main import main as _main

    sys.exit(_main())
