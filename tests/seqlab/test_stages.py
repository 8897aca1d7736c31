"""seqlab.stages: the Decoder's declared documents schema, and mentions of the documents."""

import pyarrow as pa
import pytest

from seqlab import schema
from seqlab.fragments import read_slices
from seqlab.stages import mentions
from tests.seqlab import make_plan, rows, shared_tagger, write_parquet


@pytest.fixture
def corpus(tmp_path):
    records = rows(4) + [{"id": "blank", "title": "t", "year": 1, "text": "  "}]
    return write_parquet(tmp_path / "in" / "a.parquet", records)


def decode(plan, batch: pa.RecordBatch) -> pa.RecordBatch:
    tagged = shared_tagger(plan.config.model)(plan.tokenizer_stage()(batch))
    return plan.decoder_stage()(tagged)


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
