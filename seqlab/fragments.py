"""Fragment bookkeeping: what to read, reading with locations, and recording finished fragments.

An input file is a *fragment*, the unit of resumption on every engine:

- ``work_items`` lists the fragments a run still has to annotate, each with its share of the
  ``--limit`` row budget (taken in fragment order, finished fragments first);
- ``read_slices`` reads one of them as batches carrying their location columns, and records
  a fragment that cannot be read as failed (the run goes on with the others);
- ``FragmentLedger`` collects the ``Landed`` summaries of a fragment's rows, from any
  workers in any order, and records the fragment once every row has landed exactly once.

A fragment's record (``OUT/_progress/fragment-FFFFF.json``) is written only after all its parts
are final, so a crash at any moment leaves records for finished fragments only; the next
attempt, on whatever engine, skips those and removes every other part (``OutputDir.cleanup``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from seqlab import schema
from seqlab.errors import RunError
from seqlab.io import Fragment, FragmentError
from seqlab.landing import Landed, merge_counts
from seqlab.output import ROW_TABLES, FailedFragment, FragmentRecord, PartInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkItem:
    """One fragment to annotate and the most rows to read from it (None: all)."""

    fragment: Fragment
    limit: int | None = None


def work_items(plan) -> list[WorkItem]:  # plan: seqlab.run.RunPlan
    """The unfinished fragments with their ``--limit`` budgets. Rows are counted only when
    a limit is given (Parquet footers; JSON Lines files are read to count their rows)."""
    limit = plan.config.limit
    if limit is None:
        return [WorkItem(f) for f in plan.todo]
    left = limit - sum(r.rows_in for r in plan.done.values())
    items = []
    for fragment in plan.todo:
        if left <= 0:
            break
        items.append(WorkItem(fragment, left))
        left -= plan.reader.count_rows(fragment) or 0
    return items


def locate(batch: pa.RecordBatch, fragment: int, first_row: int,
           last: bool) -> pa.RecordBatch:
    """``batch`` with its location columns; ``last`` marks the fragment's final row."""
    n = batch.num_rows
    flags = [False] * n
    if last and n:
        flags[-1] = True
    for field, values in zip(schema.LOCATION, (pa.array([fragment] * n, pa.int32()),
                                               pa.array(range(first_row, first_row + n),
                                                        pa.int64()),
                                               pa.array(flags, pa.bool_()))):
        batch = batch.append_column(field, values)
    return batch


def read_slices(plan, item: WorkItem) -> Iterator[pa.RecordBatch]:
    """The fragment's read batches with their locations (the last row marked, so whoever
    lands it knows the fragment's size). An empty fragment is recorded here as finished;
    one that cannot be read as failed, and the rows it already gave never land."""
    fragment = item.fragment
    batches = plan.reader.read(fragment, item.limit)
    row = 0
    try:
        previous = next(batches, None)
        if previous is None:
            plan.out.record(FragmentRecord(fragment.name, fragment.index, 0))
            return
        for batch in batches:
            yield locate(previous, fragment.index, row, last=False)
            row += previous.num_rows
            previous = batch
        yield locate(previous, fragment.index, row, last=True)
    except FragmentError as exc:
        log.warning("input %s failed: %s", fragment.name, exc.message)
        plan.out.record_failure(FailedFragment(fragment.name, fragment.index, exc.message,
                                               plan.reader.count_rows(fragment)))


class FragmentLedger:
    """Records fragments as their rows land; landings may come in any order."""

    def __init__(self, plan) -> None:
        self.out = plan.out
        self.fragments = plan.fragments
        self.pending: dict[int, list[Landed]] = {}

    def add(self, landed: Landed) -> FragmentRecord | None:
        """Take one landing; return the fragment's record once all its rows are in."""
        items = self.pending.setdefault(landed.fragment, [])
        items.append(landed)
        end = next((item.end for item in items if item.end is not None), None)
        rows = sum(item.rows for item in items)
        if end is None or rows < end:
            return None
        items.sort(key=lambda item: item.first_row)
        starts = [item.first_row for item in items]
        expected = [0] + [sum(item.rows for item in items[:i]) for i in range(1, len(items))]
        if rows != end or starts != expected:
            raise RunError(
                f"rows of {self.fragments[landed.fragment].name} landed more than once "
                f"({rows} rows for {end})",
                fix="this is a bug in seqlab; please report it with the run's logs")
        del self.pending[landed.fragment]
        record = FragmentRecord(
            self.fragments[landed.fragment].name, landed.fragment, end,
            {table: _sorted([p for item in items for p in item.parts.get(table, [])])
             for table in ROW_TABLES
             if table != "frames" or any(item.parts.get(table) for item in items)},
            merge_counts(item.counts for item in items),
            [path for item in items for path in item.partials])
        self.out.record(record)
        return record


def _sorted(parts: list[PartInfo]) -> list[PartInfo]:
    return sorted(parts, key=lambda p: p.path)
