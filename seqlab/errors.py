"""The exception tree. Every message says what was wrong and how to fix it."""

from __future__ import annotations


class SeqlabError(Exception):
    """Base class of every error seqlab raises on purpose."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message}; {fix}" if fix else message)


class ConfigError(SeqlabError):
    """A configuration or schema mistake, found before any work starts."""


class InputError(SeqlabError):
    """An input that cannot be found or read at all (bad rows never raise: they get a status)."""


class OutputError(SeqlabError):
    """An output location that cannot take this run (e.g. it already holds a finished run)."""


class ModelError(SeqlabError):
    """A model that cannot be loaded or is unfit for token classification."""


class RunError(SeqlabError):
    """A run that broke one of its invariants (e.g. rows in != rows out)."""


def missing_extra(package: str, extra: str) -> ConfigError:
    """The error for an optional dependency that is not installed."""
    return ConfigError(
        f"{package} is not installed",
        fix=f"install it with: pip install 'seqlab[{extra}]'",
    )
