"""seqlab.stages.tokens: the Decoder's declared documents schema, and mentions of the documents."""

import pyarrow as pa
import pytest

from seqlab import schema
from seqlab.run.work import read_slices
from seqlab.stages.flatten import mentions
from seqlab.stages.tokens import Decoder
from tests.seqlab import make_plan, rows, shared_tagger, write_parquet


@pytest.fixture
def corpus(tmp_path):
    records = rows(4) + [{"id": "blank", "title": "t", "year": 1, "text": "  "}]
    return write_parquet(tmp_path / "in" / "a.parquet", records)


def decode(plan, batch: pa.RecordBatch) -> pa.RecordBatch:
    tagged = shared_tagger(plan.config.model)(plan.tokenizer_stage()(batch))
    return Decoder(plan.labels, plan.documents_schema, plan.provenance, plan.models[0].decoder,
                   plan.config.aggregation)(tagged)


def read_batch(plan, located: bool) -> pa.RecordBatch:
    if located:
        [batch] = read_slices(plan, plan.work[0])
        return batch
    [batch] = plan.reader.read(plan.fragments[0])
    return batch


@pytest.mark.parametrize("located", [False, True])
@pytest.mark.parametrize("drop_text", [False, True])
def test_the_decoder_outputs_the_declared_documents_schema(corpus, tmp_path, ner_model,
                                                           located, drop_text):
    plan = make_plan(corpus, tmp_path / "out", ner_model, id_column="id", batch_docs=8,
                     drop_text=drop_text)
    documents = decode(plan, read_batch(plan, located))
    expected = plan.documents_schema
    if located:
        expected = pa.schema(list(expected) + schema.LOCATION)
    assert documents.schema.equals(expected)
    assert (schema.TEXT in documents.schema.names) is not drop_text
    assert not {schema.IDS, schema.PROBS} & set(documents.schema.names)
    got = documents.to_pylist()
    assert [d["status"] for d in got] == [schema.OK] * 4 + [schema.EMPTY]
    assert all(d["n_tokens"] == len(d["tokens"]) > 0 for d in got[:4])
    assert (got[4]["tokens"], got[4]["entities"], got[4]["n_tokens"]) == (None, None, 0)
    assert {(d["run_id"], d["model"]) for d in got} == {
        (plan.provenance.run_id, str(ner_model))}


def test_mentions_are_the_entities_of_the_documents(corpus, tmp_path, ner_model):
    plan = make_plan(corpus, tmp_path / "out", ner_model, id_column="id", batch_docs=8)
    documents = decode(plan, read_batch(plan, located=True))
    found = mentions(documents)
    assert found.schema.equals(schema.MENTIONS)
    expected = [(d["doc_id"], e["start_char"], e["end_char"], e["text"], e["label"], e["score"])
                for d in documents.to_pylist() for e in d["entities"] or []]
    assert len(expected) > 0
    assert [(m["doc_id"], m["start_char"], m["end_char"], m["text"], m["label"], m["score"])
            for m in found.to_pylist()] == expected
    assert set(found.column("run_id").to_pylist()) == {plan.provenance.run_id}


def test_mentions_of_documents_without_entities_is_an_empty_mentions_table(corpus, tmp_path,
                                                                         pos_model):
    plan = make_plan(corpus, tmp_path / "out", pos_model, id_column="id", batch_docs=8)
    documents = decode(plan, read_batch(plan, located=False))
    assert [d["entities"] for d in documents.to_pylist()] == [[], [], [], [], None]
    for table in (documents, pa.Table.from_batches([documents]).slice(4),
                  pa.Table.from_batches([documents]).slice(0, 0)):
        found = mentions(table)
        assert found.num_rows == 0 and found.schema.equals(schema.MENTIONS)


def decoder(plan, **options):
    return Decoder(plan.labels, plan.documents_schema, plan.provenance, "greedy", "first",
                   **options)


def tagged(plan, batch: pa.RecordBatch) -> pa.RecordBatch:
    return shared_tagger(plan.config.model)(plan.tokenizer_stage()(batch))


def test_min_score_leaves_out_exactly_the_entities_below_it(corpus, tmp_path, ner_model):
    plan = make_plan(corpus, tmp_path / "out", ner_model, id_column="id", batch_docs=8)
    batch = tagged(plan, read_batch(plan, located=False))
    every = decoder(plan)(batch).to_pylist()
    scores = sorted(e["score"] for d in every for e in d["entities"] or [])
    threshold = scores[len(scores) // 2]  # a score some entities have: >= keeps them
    kept = decoder(plan, min_score=threshold)(batch).to_pylist()
    for all_of, some in zip(every, kept):
        assert some["tokens"] == all_of["tokens"]  # words keep their labels
        if all_of["entities"] is None:
            assert some["entities"] is None
            continue
        assert some["entities"] == [e for e in all_of["entities"] if e["score"] >= threshold]
    assert 0 < sum(len(d["entities"] or []) for d in kept) < len(scores)
    assert mentions(decoder(plan, min_score=threshold)(batch)).num_rows == \
        sum(s >= threshold for s in scores)


@pytest.mark.parametrize("k", [0, 3, 50])
def test_top_k_lists_each_tokens_best_labels_sorted(corpus, tmp_path, ner_model, k):
    plan = make_plan(corpus, tmp_path / "out", ner_model, id_column="id", batch_docs=8)
    documents = decoder(plan, top_k=k)(tagged(plan, read_batch(plan, located=False)))
    assert documents.schema.equals(plan.documents_schema)
    tokens = [t for d in documents.to_pylist() for t in d["tokens"] or []]
    assert tokens
    n_labels = len(plan.labels.labels)
    for token in tokens:
        if k == 0:
            assert token["top"] is None
            continue
        scores = [entry["score"] for entry in token["top"]]
        assert len(scores) == min(k, n_labels)  # 50 is more labels than there are
        # float32 probabilities: their sum may pass 1 by a few ulps
        assert scores == sorted(scores, reverse=True) and sum(scores) <= 1 + 1e-6
        assert len({entry["label"] for entry in token["top"]}) == len(scores)
        # greedy: the best label is the token's label, with its score
        assert (token["top"][0]["label"], scores[0]) == (token["label"], token["score"])
    if k == n_labels or k == 50:
        assert all(sum(e["score"] for e in t["top"]) == pytest.approx(1, abs=1e-5)
                   for t in tokens)


def test_top_is_one_nullable_warehouse_safe_column_whatever_top_k(corpus, tmp_path, ner_model):
    import pyarrow.parquet as pq

    top = schema.TOKEN.field(schema.TOP)  # declared once, in the token struct of every run
    assert top.nullable and pa.types.is_list(top.type) and not top.type.value_field.nullable
    assert top.type.value_type == pa.struct([pa.field("label", pa.string(), nullable=False),
                                             pa.field("score", pa.float64(), nullable=False)])
    plan = make_plan(corpus, tmp_path / "out", ner_model, id_column="id", batch_docs=8)
    batch = tagged(plan, read_batch(plan, located=False))
    tables = {k: pa.Table.from_batches([decoder(plan, top_k=k)(batch)]) for k in (0, 2)}
    for k, table in tables.items():  # a run without --top-k and one with it: one schema
        pq.write_table(table, tmp_path / f"top{k}.parquet")
        landed = pq.read_table(tmp_path / f"top{k}.parquet")
        assert landed.schema.equals(plan.documents_schema)
        assert landed.to_pylist() == table.to_pylist()
    parquet = pq.ParquetFile(tmp_path / "top2.parquet").schema
    paths = {parquet.column(i).path for i in range(len(parquet))}
    # standard 3-level lists (list/element) all the way down, as BigQuery's list inference reads
    assert {"tokens.list.element.top.list.element.label",
            "tokens.list.element.top.list.element.score"} <= paths
    assert pa.concat_tables(tables.values()).num_rows == 2 * batch.num_rows
