"""What an engine is to seqlab: a name, typed options, and a ``run`` over a plan.

Engines live in their own package, outside the library, and are found by name through the
``seqlab.engines`` entry points, so ``seqlab`` never imports one. Each keeps the run contract
by running the same pieces (``seqlab.run``); it only decides where they run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

from seqlab.errors import ConfigError, missing_extra


class Progress(Protocol):
    """What engines report progress to: ``start`` once with the characters of text the work
    holds (None if unknown), ``advance`` with the characters of text the models have just
    tagged, and ``update`` with the counters (``seqlab.run.land.count``: documents, tokens
    (words), characters...) of rows as they land.

    ``advance`` is an estimate that moves inside a document: a run over a few long documents
    lands no row for minutes. ``update``'s counts are exact and replace it: the text of the
    rows that landed was advanced too, so a progress takes the larger of the two, never their
    sum. Engines that can report before their end call ``advance`` from their tagging loop
    (local: the tagging thread; Ray: the tagging actors, through a relay actor the driver
    polls). Beam does not: its local FnApiRunner runs the whole pipeline inside
    ``pipeline.run()``, and its DoFns run pickled, in worker processes or remote workers, so
    the driver hears of the run only at its end and calls ``update`` once, with the manifest's
    counts. ``advance`` may be called from any thread; a progress object without it (an older
    implementation) gets ``update`` only."""

    def start(self, expected_characters: int | None) -> None: ...

    def advance(self, characters: int) -> None: ...

    def update(self, counts: Mapping[str, int]) -> None: ...


ENTRY_POINTS = "seqlab.engines"
OPTIONAL = {"ray": "ray", "apache_beam": "beam"}  # top-level package -> the extra with it


@dataclass(frozen=True)
class Engine:
    name: str
    run: Callable[..., dict]  # run(plan, options, progress) -> manifest
    options: type  # a dataclass of the engine's settings (config.engine_options)

    def parse_options(self, values: Mapping[str, Any]) -> Any:
        """The engine's options from ``engine_options``, refusing names it does not know."""
        fields = {f.name for f in dataclasses.fields(self.options)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ConfigError(
                f"options {unknown} do not apply to --engine {self.name}",
                fix=f"leave them out; --engine {self.name} takes "
                f"{', '.join(sorted(fields)) or 'no engine options'}")
        return self.options(**{k: v for k, v in values.items() if v is not None})


def engine_names() -> list[str]:
    """The engines installed through the ``seqlab.engines`` entry points: the built-in
    ``local``, ``ray`` and ``beam``, and any a third-party package registers."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINTS)})


def check_engine(name: str) -> None:
    """Refuse an engine no entry point registers, naming the installed ones."""
    if not entry_points(group=ENTRY_POINTS, name=name):
        raise ConfigError(f"no engine {name!r} is installed "
                          f"(installed: {engine_names() or 'none'})",
                          fix="pass one of those to --engine, or install the package that "
                          "registers it (pip install -e . in a checkout registers seqlab's)")


def load_engine(name: str) -> Engine:
    """The engine registered under ``name``; a missing optional dependency names its extra."""
    check_engine(name)
    try:
        return next(iter(entry_points(group=ENTRY_POINTS, name=name))).load()
    except ModuleNotFoundError as exc:
        package = (exc.name or "").split(".")[0]
        if package in OPTIONAL:
            raise missing_extra(package, OPTIONAL[package]) from exc
        raise
