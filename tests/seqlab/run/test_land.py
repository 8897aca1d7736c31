"""seqlab.run.land: parts named after their first row, mentions beside documents, counts."""

import dataclasses
import hashlib
import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from seqlab import schema
from seqlab.errors import RunError
from seqlab.run.land import FragmentSink, Landed, count, land, merge_counts, part_name
from seqlab.run.work import read_slices
from seqlab.stages import aggregate
from seqlab.stages.flatten import mentions
from seqlab.store.outdir import OutputDir
from seqlab.store.parts import read_table
from tests.seqlab import annotator, make_plan, rows, write_parquet


@pytest.fixture(scope="module")
def annotated(tmp_path_factory, ner_model):
    """A plan over two fragments (6 and 10 rows) and each fragment's documents, annotated
    once for the module."""
    folder = tmp_path_factory.mktemp("landing")
    write_parquet(folder / "in" / "a.parquet", rows(6, "a"))
    write_parquet(folder / "in" / "b.parquet", rows(10, "b"))
    plan = make_plan(folder / "in", folder / "out", ner_model, id_column="id", batch_docs=16)
    annotate = annotator(plan)
    docs = [annotate(batch) for item in plan.work for batch in read_slices(plan, item)]
    assert [d.num_rows for d in docs] == [6, 10]
    assert sum(mentions(d).num_rows for d in docs) > 5  # the tiny model finds entities
    return plan, docs


@pytest.fixture
def plan(annotated, tmp_path):
    """The module's plan, landing in a folder of this test's own."""
    return dataclasses.replace(annotated[0], out=OutputDir(str(tmp_path / "out")))


@pytest.fixture
def docs(annotated):
    return annotated[1]


def part_ids(plan, part) -> list[str]:
    return read_table(plan.out.fs, plan.out.path(part.path)).column("doc_id").to_pylist()


def test_a_sink_rolls_parts_at_rows_per_part(plan, docs):
    sink = FragmentSink(plan, 1, 0, rows_per_part=4)
    sink.write(docs[1].slice(0, 6))
    sink.write(docs[1].slice(6))
    landed = sink.close()
    assert (landed.fragment, landed.first_row, landed.rows, landed.end) == (1, 0, 10, 10)
    parts = landed.parts["documents"]
    assert [p.path for p in parts] == [f"documents/{part_name(1, r)}" for r in (0, 4, 8)]
    assert [part_ids(plan, p) for p in parts] == [
        [f"b{i}" for i in range(4)], [f"b{i}" for i in range(4, 8)], ["b8", "b9"]]
    for part in parts:
        data = plan.out.fs.cat_file(plan.out.path(part.path))
        assert (part.bytes, part.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    table = read_table(plan.out.fs, plan.out.path(parts[0].path))
    assert table.schema.equals(plan.documents_schema)  # location columns never land


def test_mentions_parts_take_the_names_of_their_documents_parts(plan, docs):
    sink = FragmentSink(plan, 1, 0, rows_per_part=3)
    sink.write(docs[1])
    landed = sink.close()
    documents = {p.path.split("/")[1]: p for p in landed.parts["documents"]}
    expected = {}
    for name, part in documents.items():
        found = mentions(read_table(plan.out.fs, plan.out.path(part.path)))
        if found.num_rows:
            expected[name] = sorted(found.column("doc_id").to_pylist())
    found_parts = {p.path.split("/")[1]: p for p in landed.parts["mentions"]}
    assert set(found_parts) == set(expected) and expected  # none without entities
    for name, part in found_parts.items():
        table = read_table(plan.out.fs, plan.out.path(part.path))
        assert table.schema.equals(schema.MENTIONS)
        assert sorted(table.column("doc_id").to_pylist()) == expected[name]
    assert landed.partials == [f"_progress/partials/{part_name(1, 0)}"]
    partial = read_table(plan.out.fs, plan.out.path(landed.partials[0]))
    assert partial.equals(aggregate.partials(mentions(docs[1])))


def test_a_sink_takes_only_the_next_rows_of_its_fragment(plan, docs):
    sink = FragmentSink(plan, 1, 4, rows_per_part=100)
    sink.write(docs[1].slice(4, 3))
    with pytest.raises(RunError, match="out of order"):
        sink.write(docs[1].slice(8, 2))  # row 7 skipped
    with pytest.raises(RunError, match="out of order"):
        sink.write(docs[0].slice(0, 1))  # another fragment's row 0
    landed = sink.close()
    assert (landed.first_row, landed.rows, landed.end) == (4, 3, None)
    assert [p.path for p in landed.parts["documents"]] == [f"documents/{part_name(1, 4)}"]


def test_land_splits_a_batch_into_runs_of_consecutive_rows(plan, docs):
    both = pa.concat_tables([pa.Table.from_batches([d]) for d in docs])  # two chunks
    # fragment 1 rows 3, 4; fragment 0 rows 0, 1 and 5 (its last); fragment 1 row 0
    mixed = both.take([6 + 3, 6 + 4, 0, 1, 5, 6 + 0])
    landed = land(plan, mixed)
    assert [(x.fragment, x.first_row, x.rows, x.end) for x in landed] == [
        (0, 0, 2, None), (0, 5, 1, 6), (1, 0, 1, None), (1, 3, 2, None)]
    assert [[part_ids(plan, p) for p in x.parts["documents"]] for x in landed] == [
        [["a0", "a1"]], [["a5"]], [["b0"]], [["b3", "b4"]]]
    assert [x.parts["documents"][0].path for x in landed] == [
        f"documents/{part_name(f, r)}" for f, r in [(0, 0), (0, 5), (1, 0), (1, 3)]]
    assert land(plan, both.slice(0, 0)) == []


def test_counts_sum_statuses_tokens_and_entities(plan, docs):
    batch = pa.record_batch({schema.STATUS: ["ok", "empty", "ok", "failed"],
                             schema.N_TOKENS: pa.array([3, 0, 2, 0], pa.int32()),
                             schema.TEXT: ["a bc", None, "déjà", "xy"]})
    assert count(batch, 7) == {"status.ok": 2, "status.empty": 1, "status.failed": 1,
                               "documents": 4, "entities": 7, "tokens": 5, "characters": 10}
    landed = land(plan, pa.Table.from_batches([docs[1]]).take([0, 1, 2, 5, 6]))
    total = merge_counts(x.counts for x in landed)
    chosen = docs[1].take(pa.array([0, 1, 2, 5, 6]))
    assert total == count(chosen, mentions(chosen).num_rows)
    assert total["tokens"] == pc.sum(chosen.column(schema.N_TOKENS)).as_py() > 0
    text = sum(len(t or "") for t in chosen.column(schema.TEXT).to_pylist())
    assert total["characters"] == text > 0
    dropped = chosen.drop_columns([schema.TEXT])  # --drop-text: where the last word ends
    ends = [d["tokens"][-1]["end_char"] for d in chosen.to_pylist() if d["tokens"]]
    assert count(dropped, 0)["characters"] == sum(ends) > 0


def test_a_landing_summary_survives_json(plan, docs):
    [landed] = land(plan, docs[0])
    again = Landed.from_dict(json.loads(json.dumps(landed.to_dict())))
    assert again == landed and again.end == 6


def test_a_long_fragment_writes_its_partial_out_as_it_grows(plan, docs, monkeypatch):
    from seqlab.run import land as landing

    whole = FragmentSink(plan, 1, 0)
    for start in range(0, 10, 2):
        whole.write(docs[1].slice(start, 2))
    one = whole.close()
    expected = aggregate.fold(read_table(plan.out.fs, plan.out.path(p)) for p in one.partials)
    monkeypatch.setattr(landing, "PARTIAL_KEYS", 3)  # a few keys: a partial every batch or two
    sink = FragmentSink(plan, 1, 0)
    for start in range(0, 10, 2):
        sink.write(docs[1].slice(start, 2))
    landed = sink.close()
    assert len(one.partials) == 1 and len(landed.partials) > 2
    assert len(set(landed.partials)) == len(landed.partials)  # named after their first rows
    summed = aggregate.fold(read_table(plan.out.fs, plan.out.path(p)) for p in landed.partials)
    assert summed.equals(expected)
