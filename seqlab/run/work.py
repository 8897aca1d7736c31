"""Reading a work item: one input fragment's rows as batches that carry their locations.

An input file is a *fragment*, the unit of resumption on every engine:

- ``work_items`` (``seqlab.run.plan``) lists the fragments a run still has to annotate, each
  with its share of the ``--limit`` row budget (taken in fragment order, finished ones first);
- ``read_slices`` reads one of them as batches carrying their location columns, and records
  a fragment that cannot be read as failed (the run goes on with the others);
- ``FragmentLedger`` (``seqlab.run.ledger``) collects the ``Landed`` summaries of a fragment's
  rows, from any workers in any order, and records the fragment once every row has landed
  exactly once.

A fragment's record (``OUT/_progress/fragment-FFFFF.json``) is written only after all its parts
are final, so a crash at any moment leaves records for finished fragments only; the next
attempt, on whatever engine, skips those and removes every other part (``OutputDir.cleanup``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pyarrow as pa

from seqlab import schema
from seqlab.run.plan import RunPlan, WorkItem
from seqlab.run.sources import FragmentError
from seqlab.store.parts import FailedFragment, FragmentRecord

log = logging.getLogger(__name__)


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


def read_slices(plan: RunPlan, item: WorkItem) -> Iterator[pa.RecordBatch]:
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
