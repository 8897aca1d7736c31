"""seqlab.run.annotator: the dead letter: a document that breaks a stage fails alone, named."""

import pyarrow as pa
import pytest

from seqlab import schema
from seqlab.run.annotator import FAULT_ENV, apply_safely, injected_faults, mark_failed
from seqlab.run.work import read_slices
from tests.seqlab import annotator, make_plan, rows, write_parquet


def test_fault_lists_parse_per_stage(monkeypatch):
    assert injected_faults("") == {}
    assert injected_faults(" decode:x , tokenize:a,tokenize:b,") == {
        "tokenize": {"a", "b"}, "decode": {"x"}}
    monkeypatch.setenv(FAULT_ENV, "tag:doc:with:colons")
    assert injected_faults() == {"tag": {"doc:with:colons"}}
    with pytest.raises(ValueError, match=r"unknown stage 'embed'.*tokenize"):
        injected_faults("tokenize:a,embed:b")


@pytest.fixture(scope="module")
def plan_and_batch(tmp_path_factory, ner_model):
    folder = tmp_path_factory.mktemp("annotator")
    write_parquet(folder / "in" / "a.parquet", rows(5))
    plan = make_plan(folder / "in", folder / "out", ner_model, id_column="id", batch_docs=8)
    [batch] = read_slices(plan, plan.work[0])
    return plan, batch


@pytest.fixture(scope="module")
def clean(plan_and_batch):
    plan, batch = plan_and_batch
    result = annotator(plan)(batch)
    assert set(result.column(schema.STATUS).to_pylist()) == {schema.OK}
    return result


@pytest.mark.parametrize("stage", ["tokenize", "tag", "decode"])
def test_a_fault_in_a_stage_fails_only_its_document(monkeypatch, plan_and_batch, clean, stage):
    plan, batch = plan_and_batch
    monkeypatch.setenv(FAULT_ENV, f"{stage}:d2")
    result = annotator(plan)(batch)
    assert result.schema.equals(clean.schema)
    got, want = result.to_pylist(), clean.to_pylist()
    assert [r["doc_id"] for r in got] == ["d0", "d1", "d2", "d3", "d4"]
    assert got[:2] + got[3:] == want[:2] + want[3:]
    failed = got[2]
    assert failed["status"] == schema.FAILED
    assert failed["error"] == (f"{stage} failed: InjectedFault: {FAULT_ENV} names 'd2' for "
                               f"{stage}")
    assert (failed["tokens"], failed["entities"], failed["n_tokens"]) == (None, None, 0)
    kept = ["text", "title", "year", "run_id", "processed_at", schema.ROW, schema.LAST]
    assert {k: failed[k] for k in kept} == {k: want[2][k] for k in kept}


def test_apply_safely_retries_row_by_row_and_keeps_order():
    batch = pa.record_batch({schema.DOC_ID: list("abcdef"), schema.STATUS: ["ok"] * 6,
                             schema.ERROR: pa.nulls(6, pa.string())})
    output = batch.schema.append(pa.field("length", pa.int64()))
    calls = []

    def stage(rows: pa.RecordBatch) -> pa.RecordBatch:
        ids = rows.column(schema.DOC_ID).to_pylist()
        calls.append(ids)
        if {"b", "e"} & set(ids):
            raise ValueError("no b or e")
        return rows.append_column("length", pa.array([len(i) * 10 for i in ids], pa.int64()))

    result = apply_safely(stage, batch, "measure", lambda r, e: mark_failed(r, e, output))
    assert calls == [list("abcdef"), *([x] for x in "abcdef")]
    assert result.schema.equals(output)
    assert result.column(schema.DOC_ID).to_pylist() == list("abcdef")
    assert result.column("length").to_pylist() == [10, None, 10, 10, None, 10]
    assert result.column(schema.STATUS).to_pylist() == ["ok", "failed", "ok", "ok", "failed",
                                                        "ok"]
    assert result.column(schema.ERROR).to_pylist()[1] == "measure failed: ValueError: no b or e"


def test_a_stage_that_only_fails_on_whole_batches_loses_no_row():
    batch = pa.record_batch({schema.DOC_ID: list("xyz"), schema.STATUS: ["ok"] * 3})

    def stage(rows: pa.RecordBatch) -> pa.RecordBatch:
        if rows.num_rows > 1:
            raise MemoryError("batch too large")
        return rows

    result = apply_safely(stage, batch, "tag", lambda r, e: pytest.fail("no row fails"))
    assert result.to_pylist() == batch.to_pylist()


def test_mark_failed_fills_the_stage_columns_with_nulls():
    rows_ = pa.record_batch({schema.DOC_ID: ["a"], "n": pa.array([1], pa.int32()),
                             schema.STATUS: ["ok"], schema.ERROR: pa.nulls(1, pa.string())})
    output = pa.schema([pa.field(schema.DOC_ID, pa.string()), pa.field("n", pa.int64()),
                        pa.field(schema.STATUS, pa.string()), pa.field(schema.ERROR, pa.string()),
                        *schema.TOKENIZED])
    failed = mark_failed(rows_, "tokenize failed: boom", output)
    assert failed.schema.equals(output)
    row = failed.to_pylist()[0]
    assert row == {schema.DOC_ID: "a", "n": 1, schema.STATUS: "failed",
                   schema.ERROR: "tokenize failed: boom",
                   **{f.name: None for f in schema.TOKENIZED}}
