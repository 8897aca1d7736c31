"""Checks shared by the tests of deploy/: seqlab command lines found in manifests, DAGs and
READMEs are parsed by seqlab's own parser, and Beam options by Beam's."""

from __future__ import annotations

import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def parse_seqlab(command: str | list[str]):
    """Parse a seqlab command line as ``seqlab.cli.main`` does: the words after ``--`` are
    handed over, not parsed (they are the submitted command, or Beam's options); they are
    ``args.rest``."""
    from seqlab.cli import build_parser

    words = shlex.split(command) if isinstance(command, str) else list(command)
    assert words[0] == "seqlab", command
    tail = words.index("--") if "--" in words else len(words)
    args = build_parser().parse_args(words[1:tail])
    args.rest = words[tail + 1 :]
    return args


def annotate_config(args, engine: str | None = None):
    """The ``AnnotateConfig`` that ``seqlab annotate`` builds from parsed flags (so the
    combination is checked too, e.g. ``--run-date`` without ``--incremental``)."""
    from seqlab.cli import ENGINE_FLAGS, annotate_options
    from seqlab.config import build_config

    args.beam_args = getattr(args, "rest", None) or getattr(args, "beam_args", None) or None
    options = annotate_options(args, ENGINE_FLAGS)
    return build_config(**({**options, "engine": engine} if engine else options))


def unknown_beam_options(args: list[str]) -> set[str]:
    """Arguments no Beam PipelineOptions class (seqlab's included) knows."""
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(args)
    known = options.get_all_options(retain_unknown_options=False)
    return set(options.get_all_options(retain_unknown_options=True)) - set(known)


def check_beam_config(args, beam_args: list[str]) -> dict:
    """The annotate options of a Beam run, checked as ``python -m pipelines.beam`` checks
    them; every Beam option must be one Beam knows."""
    from seqlab.cli import ENGINE_FLAGS, annotate_options
    from seqlab.config import build_config

    args.beam_args = beam_args or None
    options = annotate_options(args, ENGINE_FLAGS)
    build_config(**{**options, "engine": "beam"})
    assert not unknown_beam_options(beam_args or []), unknown_beam_options(beam_args or [])
    return options
