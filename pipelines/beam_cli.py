"""``python -m pipelines.beam``: the Beam engine as a standalone pipeline program.

Dataflow flex templates and ``spark-submit``-style launchers start a Python module with
``--input``/``--output``, seqlab's annotate flags and the runner's own options mixed together;
this module separates them and calls ``seqlab.annotate(..., engine="beam")``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from seqlab.errors import SeqlabError, os_error


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """``--input --output`` and seqlab's annotate flags; everything else is Beam's.

    Flags may also be spelled with underscores (``--text_column``), as Dataflow template
    parameters are.
    """
    from seqlab.cli.annotate import add_annotate_flags, add_engine_flags

    where = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    where.add_argument("--input", required="-h" not in argv and "--help" not in argv)
    where.add_argument("--output", required="-h" not in argv and "--help" not in argv)
    paths, rest = where.parse_known_args(argv)
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.beam", allow_abbrev=False,
        usage="%(prog)s --input INPUT --output OUTPUT [seqlab flags] [Beam pipeline options]")
    add_annotate_flags(parser)
    add_engine_flags(parser)
    flags = {f"--{name}" for name in _config_fields()}
    rest = [_dashed(arg, flags) for arg in rest]
    return parser.parse_known_args([paths.input or "", paths.output or "", *rest])


def _config_fields() -> list[str]:
    import dataclasses

    from seqlab.config import AnnotateConfig

    return [f.name for f in dataclasses.fields(AnnotateConfig)]


def _dashed(arg: str, fields: set[str]) -> str:
    name, sep, value = arg.partition("=")
    if name.startswith("--") and "_" in name and name in fields:
        return name.replace("_", "-") + sep + value
    return arg


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipelines.beam --input ... --output ... [flags] [Beam options]``."""
    from seqlab.api import annotate
    from seqlab.cli.annotate import ENGINE_FLAGS, annotate_options
    from seqlab.cli.progress import print_summary
    from seqlab.config import build_config

    args, beam_args = parse_args(list(sys.argv[1:] if argv is None else argv))
    args.beam_args = beam_args or None
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.time()
    try:
        options = annotate_options(args, ENGINE_FLAGS)
        config = build_config(**{**options, "engine": "beam"})
        manifest = annotate(config.input, config.output, config=config)
    except (SeqlabError, OSError) as exc:
        # a read-only or full OUTPUT says so, as on the seqlab command line
        known = exc if isinstance(exc, SeqlabError) else os_error(exc, args.output,
                                                                  resumes=True)
        if known is None:
            raise
        print(f"pipelines.beam: error: {known.message}", file=sys.stderr)
        if known.fix:
            print(f"  fix: {known.fix}", file=sys.stderr)
        return known.exit_code
    print_summary(manifest, time.time() - started)
    return 0
