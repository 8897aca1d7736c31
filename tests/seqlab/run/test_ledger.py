"""seqlab.run.work: --limit budgets, reading with locations, recording finished fragments."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqlab import schema
from seqlab.errors import RunError
from seqlab.run.land import Landed
from seqlab.run.ledger import FragmentLedger
from seqlab.run.work import locate, read_slices
from seqlab.store.parts import PartInfo
from tests.seqlab import drive, make_plan, rows, truncate, write_jsonl, write_parquet


def three_files(folder):
    write_parquet(folder / "a.parquet", rows(4, "a"))
    write_jsonl(folder / "b.jsonl", rows(4, "b"))
    write_parquet(folder / "c.parquet", rows(4, "c"))
    return folder


def budgets(plan) -> list[tuple[str, int | None]]:
    return [(item.fragment.name, item.limit) for item in plan.work]


def test_limit_budgets_take_finished_fragments_first(tmp_path, ner_model):
    inp = three_files(tmp_path / "in")
    assert budgets(make_plan(inp, tmp_path / "o0", ner_model)) == [
        ("a.parquet", None), ("b.jsonl", None), ("c.parquet", None)]
    assert budgets(make_plan(inp, tmp_path / "o1", ner_model, limit=0)) == []
    plan = make_plan(inp, tmp_path / "out", ner_model, limit=6)
    assert budgets(plan) == [("a.parquet", 6), ("b.jsonl", 2)]
    drive(plan, plan.work[:1])  # then the run stops
    resumed = make_plan(inp, tmp_path / "out", ner_model, limit=6)
    assert set(resumed.done) == {"a.parquet"}
    assert budgets(resumed) == [("b.jsonl", 2)]
    drive(resumed)
    assert {r.fragment: r.rows_in for r in resumed.out.done_fragments().values()} == {
        "a.parquet": 4, "b.jsonl": 2}


def test_locate_numbers_rows_and_marks_the_last():
    batch = pa.record_batch({"doc_id": ["x", "y", "z"]})
    located = locate(batch, fragment=2, first_row=10, last=True)
    assert located.schema.names == ["doc_id", *(f.name for f in schema.LOCATION)]
    assert [f.type for f in located.schema][1:] == [f.type for f in schema.LOCATION]
    assert located.column(schema.FRAGMENT).to_pylist() == [2, 2, 2]
    assert located.column(schema.ROW).to_pylist() == [10, 11, 12]
    assert located.column(schema.LAST).to_pylist() == [False, False, True]
    assert locate(batch, 2, 0, last=False).column(schema.LAST).to_pylist() == [False] * 3
    assert locate(batch.slice(0, 0), 2, 0, last=True).num_rows == 0


@pytest.mark.parametrize("limit, expected", [(None, 10), (6, 6), (8, 8)])
def test_read_slices_marks_only_the_last_row_read(tmp_path, ner_model, limit, expected):
    write_parquet(tmp_path / "in" / "a.parquet", rows(10))
    plan = make_plan(tmp_path / "in", tmp_path / "out", ner_model, limit=limit)
    batches = list(read_slices(plan, plan.work[0]))
    assert [b.num_rows for b in batches[:-1]] == [4] * (len(batches) - 1)  # --batch-docs 4
    located = pa.Table.from_batches(batches)
    assert located.column(schema.ROW).to_pylist() == list(range(expected))
    assert located.column(schema.LAST).to_pylist() == [False] * (expected - 1) + [True]
    assert plan.out.done_fragments() == {}  # recording waits for the rows to land


def test_read_slices_records_an_empty_fragment_as_finished(tmp_path, ner_model):
    write_parquet(tmp_path / "in" / "a.parquet", rows(2))
    pq.write_table(pa.Table.from_pylist(rows(1)).slice(0, 0), tmp_path / "in" / "b.parquet")
    (tmp_path / "in" / "c.jsonl").write_text("")
    plan = make_plan(tmp_path / "in", tmp_path / "out", ner_model)
    for item in plan.work[1:]:
        assert list(read_slices(plan, item)) == []
    done = plan.out.done_fragments()
    assert {name: (r.index, r.rows_in, r.parts) for name, r in done.items()} == {
        "b.parquet": (1, 0, {}), "c.jsonl": (2, 0, {})}


def test_read_slices_records_an_unreadable_fragment_as_failed(tmp_path, ner_model):
    write_parquet(tmp_path / "in" / "a.parquet", rows(2))
    truncate(write_parquet(tmp_path / "in" / "b.parquet", rows(30)))
    plan = make_plan(tmp_path / "in", tmp_path / "out", ner_model)
    assert list(read_slices(plan, plan.work[1])) == []  # no exception: the run goes on
    [failed] = plan.out.failed_fragments()
    assert (failed.fragment, failed.index, failed.rows) == ("b.parquet", 1, None)
    assert "cannot read" in failed.error and "b.parquet" in failed.error
    assert plan.out.done_fragments() == {}


def landed(fragment, first_row, n, end=None) -> Landed:
    path = f"documents/part-{fragment:05d}-{first_row:010d}.parquet"
    return Landed(fragment, first_row, n, end, {"documents": [PartInfo(path, n, 1, "0")]},
                  [f"_progress/partials/{path[10:]}"], {"documents": n, "status.ok": n})


@pytest.fixture
def ledger(tmp_path, ner_model):
    write_parquet(tmp_path / "in" / "a.parquet", rows(2))
    write_parquet(tmp_path / "in" / "b.parquet", rows(2))
    return FragmentLedger(make_plan(tmp_path / "in", tmp_path / "out", ner_model))


def test_ledger_records_a_fragment_once_all_its_rows_landed_in_any_order(ledger):
    assert ledger.add(landed(0, 6, 4, end=10)) is None  # the last rows first
    assert ledger.add(landed(1, 0, 3)) is None
    assert ledger.add(landed(0, 0, 3)) is None
    assert ledger.out.done_fragments() == {}
    record = ledger.add(landed(0, 3, 3))
    assert (record.fragment, record.index, record.rows_in) == ("a.parquet", 0, 10)
    assert [p.path for p in record.parts["documents"]] == [
        f"documents/part-00000-{r:010d}.parquet" for r in (0, 3, 6)]
    assert record.parts["mentions"] == []
    assert record.counts == {"documents": 10, "status.ok": 10}
    assert len(record.partials) == 3
    assert ledger.out.done_fragments() == {"a.parquet": record}
    assert ledger.add(landed(1, 3, 1, end=4)).rows_in == 4


@pytest.mark.parametrize("landings", [
    [(0, 5), (0, 5), (5, 5)],  # a retried batch landed twice
    [(0, 4), (0, 4), (8, 2)],  # a copy that hides a gap: as many rows as the fragment has
])
def test_ledger_refuses_rows_that_landed_twice(ledger, landings):
    *first, (start, n) = landings
    for row, count in first:
        assert ledger.add(landed(0, row, count)) is None
    with pytest.raises(RunError, match="a.parquet landed more than once"):
        ledger.add(landed(0, start, n, end=10))
    assert ledger.out.done_fragments() == {}
