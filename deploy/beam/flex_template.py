"""The Dataflow flex template's entry point (``FLEX_TEMPLATE_PYTHON_PY_FILE``).

The template launcher passes every template parameter as ``--name=value``, so a switch such
as ``incremental`` arrives as ``--incremental=true``, which seqlab's flags (``--incremental``,
``--prune``, ``--drop-text``) do not take. This turns ``--name=true`` into ``--name`` and drops
``--name=false``, for seqlab's switches only, then runs ``python -m pipelines.beam`` with the
rest unchanged (Beam's own options included).

    >>> switches_as_flags(["--input=gs://b/in", "--incremental=true", "--prune=false",
    ...                    "--drop_text=True", "--run_date=2026-01-02"])
    ['--input=gs://b/in', '--incremental', '--drop-text', '--run_date=2026-01-02']
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

TRUE = ("true", "yes", "1")
FALSE = ("false", "no", "0", "")


def switches() -> dict[str, str]:
    """seqlab's annotate switches (flags that take no value), keyed by their name with
    underscores: ``{"incremental": "--incremental", "drop_text": "--drop-text", ...}``."""
    from seqlab.cli.annotate import add_annotate_flags

    parser = argparse.ArgumentParser(add_help=False)
    add_annotate_flags(parser)
    found = {}
    for action in parser._actions:
        if action.nargs == 0:
            for flag in action.option_strings:
                if flag.startswith("--"):
                    found[flag[2:].replace("-", "_")] = flag
    return found


def switches_as_flags(argv: Sequence[str]) -> list[str]:
    """``argv`` with every ``--SWITCH=true`` as ``--SWITCH`` and every ``--SWITCH=false``
    left out; a switch given another value is an error, named with the values it takes."""
    known = switches()
    out = []
    for arg in argv:
        name, sep, value = arg.partition("=")
        key = name[2:].replace("-", "_") if name.startswith("--") else None
        if not sep or key not in known:
            out.append(arg)
        elif value.strip().lower() in TRUE:
            out.append(known[key])
        elif value.strip().lower() not in FALSE:
            raise SystemExit(f"flex template: parameter {key}={value!r} is a switch: "
                             f"pass {key}=true or {key}=false")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from pipelines.beam_cli import main as beam_main

    return beam_main(switches_as_flags(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
