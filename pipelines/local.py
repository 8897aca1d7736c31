"""The local engine: the run contract in one process, streaming. The embedded default.

Each fragment is read and tokenized one or two batches ahead on a background thread while the
model tags the current batch; its rows stream into one sink (parts of ``--rows-per-part`` rows,
written a batch at a time) and the fragment is recorded when its last row has landed. Progress
hears of the text as the forward passes cover it (on the tagging thread, this one) and of the
rows as they land. The aggregates merge then runs here too, a task at a time
(``seqlab.run.aggregates``): out of core, through its bucket files, holding one bucket's keys.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from seqlab.engine import Engine, Progress
from seqlab.run import aggregates
from seqlab.run.annotator import Annotator
from seqlab.run.finish import finish_run
from seqlab.run.land import FragmentSink, count
from seqlab.run.ledger import FragmentLedger
from seqlab.run.models import tagging_record
from seqlab.run.plan import RunPlan
from seqlab.run.work import WorkItem, read_slices

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalOptions:
    """The local engine has no settings of its own."""


def run(plan: RunPlan, options: LocalOptions | None = None,
        progress: Progress | None = None) -> dict:
    """Annotate every unfinished fragment of the plan; return the manifest."""
    annotate = Annotator(plan, on_tagged=getattr(progress, "advance", None))
    ledger = FragmentLedger(plan)
    for item in plan.work:
        sink = FragmentSink(plan, item.fragment.index, 0)
        for documents in _prefetch(_tokenized(annotate, plan, item), annotate.tag_decode):
            sink.write(documents)
            if progress:
                progress.update(count(documents, 0))
        if sink.next_row:  # an empty or unreadable fragment is recorded by read_slices
            ledger.add(sink.close())
    return finish_run(plan, engine="local", extra={"tagging": tagging_record(annotate)},
                      aggregates=aggregates.merge(plan))


def _tokenized(annotate: Annotator, plan: RunPlan, item: WorkItem) -> Iterator[pa.RecordBatch]:
    for batch in read_slices(plan, item):
        yield annotate.tokenize(batch)


def _prefetch(items: Iterator[pa.RecordBatch], then, depth: int = 2) -> Iterator[pa.RecordBatch]:
    """``then(item)`` for each item, computing ``items`` one or two steps ahead on a thread
    (reading and tokenizing overlap tagging); exceptions surface in the caller."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce() -> None:
        try:
            for item in items:
                slots.put(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            slots.put(exc)
        slots.put(done)

    thread = threading.Thread(target=produce, name="seqlab-prefetch", daemon=True)
    thread.start()
    while (item := slots.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield then(item)
    thread.join()


ENGINE = Engine("local", run, LocalOptions)
