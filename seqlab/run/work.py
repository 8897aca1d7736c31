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
from seqlab.run.sources import Fragment, FragmentError
from seqlab.store.parts import FailedFragment, FragmentRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkItem:
    """One fragment to annotate and the most rows to read from it (None: all)."""

    fragment: Fragment
    limit: int | None = None


def work_items(plan) -> list[WorkItem]:  # plan: seqlab.run.plan.RunPlan
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
