"""What a commit to a table format (Iceberg, Delta Lake) checks before it writes: the files a
run adds are new to the table, and those it supersedes are still in it."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from seqlab.errors import RunError


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
