"""What a commit to a table format (Iceberg, Delta Lake) checks before it writes: the change
lists known tables, each file once, and no file as both added and removed (``check_listing``);
the files a run adds are new to the table, and those it supersedes are still in it
(``check_change``); and how long a commit that met another writer's waits before it tries
again (``wait_after_conflict``)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from seqlab.errors import ConfigError, RunError
from seqlab.store.layout import TABLES

log = logging.getLogger(__name__)

ATTEMPTS = 5  # commits tried per table before giving up on conflicts
BACKOFF_S = 0.1  # first wait between attempts, doubled each time


def wait_after_conflict(attempt: int, table_format: str, table: str,
                        conflict: Exception) -> None:
    """Sleep before ``attempt`` (2 or more) of a commit whose last try met another writer's:
    exponential backoff from ``BACKOFF_S``, with jitter so that racing writers spread out."""
    wait = BACKOFF_S * 2 ** (attempt - 2) * random.uniform(1.0, 1.5)
    log.warning("%s commit to %s met a conflict (%s); trying again in %.2f s", table_format,
                table, conflict, wait)
    time.sleep(wait)


def check_change(table: str, added: Iterable[str], removed: Iterable[str],
                 live: Collection[str], missing_fix: str) -> None:
    """Refuse a commit that would list a file twice or remove a file the table no longer
    holds (another writer replaced it); ``missing_fix`` says what to do about the latter."""
    again = sorted(p for p in added if p in live)
    if again:
        raise RunError(f"{table} already holds {len(again)} of the files the run adds, under "
                       f"another run: {again[:3]}",
                       fix="a landed file belongs to one run: give each run's parts new names")
    missing = sorted(p for p in removed if p not in live)
    if missing:
        raise RunError(f"{table} does not hold {len(missing)} of the files the run supersedes: "
                       f"{missing[:3]}", fix=missing_fix)


def check_listing(tables: Mapping[str, Any]) -> None:
    """Refuse a change (table name -> an object with ``added`` and ``removed`` paths) that
    names an unknown table, lists a file twice, or adds a file it also removes."""
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise ConfigError(f"unknown tables {unknown}", fix=f"commit only {list(TABLES)}")
    for name, change in tables.items():
        for what, paths in (("added", change.added), ("removed", change.removed)):
            if len(set(paths)) != len(paths):
                raise ConfigError(f"{name}: a file is listed twice as {what}",
                                  fix="list each file once")
        both = sorted(set(change.added) & set(change.removed))
        if both:
            raise ConfigError(f"{name}: files both added and removed: {both[:3]}",
                              fix="a file a run supersedes cannot be one it lands")
