"""Checks shared by the tests of deploy/: seqlab command lines found in manifests, DAGs and
READMEs are parsed by seqlab's own parser, and Beam options by Beam's."""

from __future__ import annotations

import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def pinned(package: str) -> str:
    """The version of ``package`` that constraints.txt pins (the stack the suite runs on)."""
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.split("#")[0].strip().partition("==")
        if name.lower() == package.lower() and version:
            return version
    raise AssertionError(f"constraints.txt pins no {package}")


def parse_seqlab(command: str | list[str]):
    """Parse a seqlab command line as ``seqlab.cli.main.main`` does: the words after ``--`` are
    handed over, not parsed (they are the submitted command, or Beam's options); they are
    ``args.rest``."""
    from seqlab.cli.main import build_parser

    words = shlex.split(command) if isinstance(command, str) else list(command)
    assert words[0] == "seqlab", command
    tail = words.index("--") if "--" in words else len(words)
    args = build_parser().parse_args(words[1:tail])
    args.rest = words[tail + 1 :]
    return args


def annotate_config(args, engine: str | None = None):
    """The ``AnnotateConfig`` that ``seqlab annotate`` builds from parsed flags (so the
    combination is checked too, e.g. ``--run-date`` without ``--incremental``)."""
    from seqlab.cli.annotate import ENGINE_FLAGS, annotate_options
    from seqlab.config import build_config

    args = _without_rest(args, getattr(args, "rest", None) or getattr(args, "beam_args", None))
    options = annotate_options(args, ENGINE_FLAGS)
    return build_config(**({**options, "engine": engine} if engine else options))


def _without_rest(args, beam_args):
    """The parsed flags as ``seqlab.cli.main.main`` hands them on: the words after ``--`` as
    ``beam_args``, and no ``rest``."""
    import argparse

    values = {k: v for k, v in vars(args).items() if k != "rest"}
    return argparse.Namespace(**{**values, "beam_args": list(beam_args or []) or None})


def unknown_beam_options(args: list[str]) -> set[str]:
    """Arguments no Beam PipelineOptions class (seqlab's included) knows."""
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(args)
    known = options.get_all_options(retain_unknown_options=False)
    return set(options.get_all_options(retain_unknown_options=True)) - set(known)


def check_beam_config(args, beam_args: list[str]) -> dict:
    """The annotate options of a Beam run, checked as ``python -m pipelines.beam`` checks
    them; every Beam option must be one Beam knows."""
    from seqlab.cli.annotate import ENGINE_FLAGS, annotate_options
    from seqlab.config import build_config

    options = annotate_options(_without_rest(args, beam_args), ENGINE_FLAGS)
    build_config(**{**options, "engine": "beam"})
    assert not unknown_beam_options(beam_args or []), unknown_beam_options(beam_args or [])
    return options


def flex_template():
    """deploy/beam/flex_template.py, the flex template's entry point (a script in the image,
    not an installed module)."""
    import importlib.util

    path = DEPLOY / "beam" / "flex_template.py"
    spec = importlib.util.spec_from_file_location("flex_template", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flex_launch(parameters: dict[str, str], beam_args=()):
    """What the template launcher runs for these parameters: each one as ``--name=value``,
    through the entry point's switch handling, into ``pipelines.beam``'s parser; returns
    ``(args, beam_args)``."""
    from pipelines.beam_cli import parse_args

    argv = [f"--{name}={value}" for name, value in parameters.items()] + list(beam_args)
    return parse_args(flex_template().switches_as_flags(argv))
