"""The registry of ``seqlab`` sub-commands: each module that defines one registers its function
here, so that command modules (``seqlab.cli.train``, an engine's ``submit``) and the command
line (``seqlab.cli.main``) depend on this registry rather than on each other."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    """Register ``func`` as the body of ``seqlab NAME``."""

    def register(func: Command) -> Command:
        COMMANDS[name] = func
        return func

    return register
