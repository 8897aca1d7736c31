"""Where a run's files live: table folders, state files and part names."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

TABLES = ("documents", "mentions", "frames", "aggregates")

ROW_TABLES = TABLES[:3]  # tables whose parts hold the rows of one documents part (frames: SRL)

MANIFEST = "_manifest.json"

PROGRESS = "_progress"

RUN_STATE = "_run.json"

PARTIALS = posixpath.join(PROGRESS, "partials")  # aggregate partials of landed parts

RUNS = "_runs"  # an incremental table's run manifests

SUPERSEDED = "_superseded"  # an incremental table's replaced files


def part_name(fragment: int, first_row: int | None = None, run_id: str | None = None) -> str:
    """The name of the part that starts at ``first_row`` of fragment ``fragment`` (an
    aggregates part of an incremental run holds a whole fragment: no row).

    >>> part_name(3, 512), part_name(3, 512, "R1")
    ('part-00003-0000000512.parquet', 'part-R1-00003-0000000512.parquet')
    >>> part_name(3, run_id="R1")
    'part-R1-00003.parquet'
    """
    tag = f"{run_id}-" if run_id else ""
    row = f"-{first_row:010d}" if first_row is not None else ""
    return f"part-{tag}{fragment:05d}{row}.parquet"


@dataclass(frozen=True)
class Layout:
    """Where a run's parts go: the table folders themselves (one run per OUTPUT), or a
    ``run_date=`` partition of them with the run id in every name (an incremental table).

    >>> Layout().part("documents", 3, 512)
    'documents/part-00003-0000000512.parquet'
    >>> Layout("2026-12-02", "R1").part("mentions", 3, 512)
    'mentions/run_date=2026-12-02/part-R1-00003-0000000512.parquet'
    """

    run_date: str | None = None
    run_id: str | None = None

    def folder(self, table: str) -> str:
        return posixpath.join(table, f"run_date={self.run_date}") if self.run_date else table

    def part(self, table: str, fragment: int, first_row: int | None = None) -> str:
        return posixpath.join(self.folder(table), part_name(fragment, first_row, self.run_id))

    def manifest(self) -> str:
        return posixpath.join(RUNS, self.run_id, "manifest.json") if self.run_date else MANIFEST
