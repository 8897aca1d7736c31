"""The ledger of a run's fragments: which finished, with which parts, and which failed."""

from __future__ import annotations

from seqlab.errors import RunError
from seqlab.run.land import Landed, merge_counts
from seqlab.run.plan import RunPlan
from seqlab.store.layout import ROW_TABLES
from seqlab.store.parts import FragmentRecord, PartInfo


class FragmentLedger:
    """Records fragments as their rows land; landings may come in any order."""

    def __init__(self, plan: RunPlan) -> None:
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
