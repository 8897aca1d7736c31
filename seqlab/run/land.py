"""Landing annotated rows: documents and mentions parts, aggregate partials and counts.

Rows arrive with their location columns (``schema.LOCATION``: fragment, row number, last
row). A part holds consecutive rows of one fragment and is named after its first row,

    documents/part-FFFFF-RRRRRRRRRR.parquet    mentions/part-FFFFF-RRRRRRRRRR.parquet
                                               frames/part-FFFFF-RRRRRRRRRR.parquet (SRL)

(in an incremental table, ``TABLE/run_date=YYYY-MM-DD/part-RUNID-FFFFF-RRRRRRRRRR.parquet``:
``seqlab.store.layout.Layout``), so the same rows always land under the same name, whichever
engine lands them, however they were batched, and a retried batch overwrites its own earlier
attempt rather than adding a copy. Each landing returns a ``Landed`` summary (parts with rows,
bytes and sha256; counts; whether it holds the fragment's last row) from which
``seqlab.run.ledger.FragmentLedger`` records a fragment once all its rows have landed.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqlab import schema
from seqlab.errors import RunError
from seqlab.run.plan import RunPlan
from seqlab.stages import aggregate
from seqlab.stages.flatten import frames, mentions
from seqlab.store.layout import PARTIALS, ROW_TABLES, part_name
from seqlab.store.parts import PartFile, PartInfo, write_table

LOCATION_NAMES = [f.name for f in schema.LOCATION]
# A sink writes its aggregate partial out once it holds this many keys and starts another,
# so that a long fragment (one input file of millions of distinct entity texts, on the local
# engine) never has its whole partial in memory, nor re-sorts it batch after batch
PARTIAL_KEYS = 100_000


@dataclass
class Landed:
    """What one landing wrote for consecutive rows ``[first_row, first_row + rows)``."""

    fragment: int
    first_row: int
    rows: int
    end: int | None  # the fragment's row count, when these rows hold its last row
    parts: dict[str, list[PartInfo]] = field(default_factory=dict)
    partials: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"fragment": self.fragment, "first_row": self.first_row, "rows": self.rows,
                "end": self.end, "counts": self.counts, "partials": self.partials,
                "parts": {k: [vars(p) for p in v] for k, v in self.parts.items()}}

    @classmethod
    def from_dict(cls, data: Mapping) -> Landed:
        parts = {k: [PartInfo(**p) for p in v] for k, v in data["parts"].items()}
        return cls(data["fragment"], data["first_row"], data["rows"], data["end"], parts,
                   list(data["partials"]), dict(data["counts"]))


def merge_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Sum run counters (documents, tokens, entities, ``status.*``) from any grouping.

    >>> merge_counts([{"documents": 2}, {"documents": 1, "status.ok": 1}])
    {'documents': 3, 'status.ok': 1}
    """
    total: Counter[str] = Counter()
    for part in counts:
        total.update(part)
    return dict(total)


def count(documents: pa.RecordBatch, n_entities: int,
          n_frames: int | None = None) -> dict[str, int]:
    """The run counters of a batch of documents rows: documents per status, documents,
    ``tokens`` (words, the ``n_tokens`` column), entities, frames (``n_frames``: in runs
    with an SRL model), and ``characters`` of text (the unit progress is shown in: it moves on long
    documents too)."""
    statuses = pc.value_counts(documents.column(schema.STATUS)).to_pylist()
    counts = {f"status.{s['values']}": int(s["counts"]) for s in statuses}
    if n_frames is not None:
        counts["frames"] = n_frames
    counts.update(documents=documents.num_rows, entities=n_entities,
                  tokens=int(pc.sum(documents.column(schema.N_TOKENS)).as_py() or 0),
                  characters=characters(documents))
    return counts


def characters(documents: pa.RecordBatch) -> int:
    """Characters of text in the rows: the text's length, or (with ``--drop-text``) where the
    last word ends."""
    names = documents.schema.names
    if schema.TEXT in names:
        return int(pc.sum(pc.utf8_length(documents.column(schema.TEXT))).as_py() or 0)
    return _last_ends(documents.column(schema.TOKENS)) if schema.TOKENS in names else 0


def _last_ends(tokens: pa.Array) -> int:
    """The sum over documents of their last word's end (0 for documents without words)."""
    lengths = pc.list_value_length(tokens).fill_null(0).to_numpy(zero_copy_only=False)
    if not lengths.sum():
        return 0
    ends = pc.list_flatten(tokens).field("end_char").to_numpy()
    return int(ends[np.cumsum(lengths)[lengths > 0] - 1].sum())


class FragmentSink:
    """Lands consecutive rows of one fragment from ``first_row`` on, in parts of at most
    ``rows_per_part`` rows written batch by batch (memory holds one batch)."""

    def __init__(self, plan: RunPlan, fragment: int, first_row: int,
                 rows_per_part: int | None = None) -> None:
        self.out = plan.out
        self.documents_schema = plan.documents_schema
        self.fragment = fragment
        self.first_row = self.next_row = first_row
        self.rows_per_part = rows_per_part or plan.config.rows_per_part
        self.end: int | None = None
        self.parts: dict[str, list[PartInfo]] = {"documents": [], "mentions": []}
        self.entities = plan.span_columns(schema.ENTITIES)
        self.frames = plan.span_columns(schema.FRAMES_COLUMN)
        self.partial = aggregate.merge([])
        self.partial_start = first_row  # the first row the partial being summed covers
        self.partials: list[str] = []
        self.counts: list[dict[str, int]] = []
        self.current: dict[str, PartFile] = {}
        self.part_start = first_row  # first row of the documents part being written

    def write(self, located: pa.RecordBatch) -> None:
        """Documents rows with their location columns, continuing where the sink is."""
        rows = located.column(schema.ROW).to_numpy()
        fragments = located.column(schema.FRAGMENT).to_numpy()
        if located.num_rows == 0:
            return
        expected = np.arange(self.next_row, self.next_row + located.num_rows)
        if (fragments != self.fragment).any() or not np.array_equal(rows, expected):
            raise RunError(f"rows of fragment {self.fragment} reached its sink out of order",
                           fix="this is a bug in seqlab; please report it")
        last = located.column(schema.LAST).to_numpy(zero_copy_only=False)
        if last.any():
            self.end = int(rows[np.flatnonzero(last)[-1]]) + 1
        documents = located.drop_columns(LOCATION_NAMES)
        offset = 0
        while offset < documents.num_rows:
            room = self.rows_per_part - (self.current["documents"].rows
                                         if "documents" in self.current else 0)
            if room <= 0:
                self._close_parts()
                continue
            piece = documents.slice(offset, room)
            self._write(piece)
            offset += piece.num_rows

    def _write(self, documents: pa.RecordBatch) -> None:
        if "documents" not in self.current:
            self.current["documents"] = self._open("documents", self.documents_schema)
        found = _concat([mentions(documents, column, model) for column, model in self.entities],
                        schema.MENTIONS)
        framed = _concat([frames(documents, column, model) for column, model in self.frames],
                         schema.FRAMES)
        self.current["documents"].write(documents)
        for table, rows, declared in (("mentions", found, schema.MENTIONS),
                                      ("frames", framed, schema.FRAMES)):
            if rows.num_rows:
                if table not in self.current:
                    self.current[table] = self._open(table, declared)
                self.current[table].write(rows)
        if found.num_rows:
            self.partial = aggregate.merge([self.partial, aggregate.partials(found)])
        self.counts.append(count(documents, found.num_rows,
                                 framed.num_rows if self.frames else None))
        self.next_row += documents.num_rows
        if self.partial.num_rows >= PARTIAL_KEYS:
            self._write_partial()

    def _write_partial(self) -> None:
        """Write the partial summed so far, named after the first row it covers."""
        if self.partial.num_rows:
            relpath = posixpath.join(PARTIALS, part_name(self.fragment, self.partial_start))
            write_table(self.out.fs, self.out.root, relpath, self.partial)
            self.partials.append(relpath)
            self.partial = aggregate.merge([])
        self.partial_start = self.next_row

    def _open(self, table: str, declared: pa.Schema) -> PartFile:
        if table == "documents":
            self.part_start = self.next_row
        # a mentions or frames part takes the name of the documents part it belongs to
        return PartFile(self.out.fs, self.out.root,
                        self.out.layout.part(table, self.fragment, self.part_start), declared)

    def _close_parts(self) -> None:
        for table in ROW_TABLES:
            if table in self.current:
                self.parts.setdefault(table, []).append(self.current.pop(table).close())

    def close(self) -> Landed:
        self._close_parts()
        self._write_partial()
        return Landed(self.fragment, self.first_row, self.next_row - self.first_row, self.end,
                      self.parts, self.partials, merge_counts(self.counts))


def _concat(tables: list[pa.Table], declared: pa.Schema) -> pa.Table:
    return pa.concat_tables(tables) if tables else declared.empty_table()


def land(plan: RunPlan, located: pa.RecordBatch | pa.Table) -> list[Landed]:
    """Land a batch of documents rows from any fragments: one sink per run of consecutive
    rows of a fragment."""
    if isinstance(located, pa.Table):
        located = located.combine_chunks().to_batches()[0] if located.num_rows else \
            pa.RecordBatch.from_pylist([], schema=located.schema)
    if located.num_rows == 0:
        return []
    order = np.lexsort((located.column(schema.ROW).to_numpy(),
                        located.column(schema.FRAGMENT).to_numpy()))
    located = located.take(pa.array(order))
    fragments = located.column(schema.FRAGMENT).to_numpy()
    rows = located.column(schema.ROW).to_numpy()
    breaks = np.flatnonzero((np.diff(fragments) != 0) | (np.diff(rows) != 1)) + 1
    landed = []
    for start, stop in zip([0, *breaks.tolist()], [*breaks.tolist(), located.num_rows]):
        sink = FragmentSink(plan, int(fragments[start]), int(rows[start]))
        sink.write(located.slice(start, stop - start))
        landed.append(sink.close())
    return landed
