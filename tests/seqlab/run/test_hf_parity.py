"""Our entity grouping agrees with transformers' TokenClassificationPipeline.

Compared on short texts (one window), where both see the same logits. Our entity text is the
original text slice (``text[start:end]``) while the pipeline's ``word`` is decoded from
tokens (lower-cased by an uncased tokenizer), so words are compared through the offsets.
"""

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

import seqlab
from seqlab.stages.spans import SpanRepair
from tests.conftest import make_text
from tests.helpers import read_output


@pytest.fixture(scope="module")
def texts():
    rng = random.Random(11)
    return [make_text(rng, rng.randint(2, 40)).replace("\n", "") for _ in range(40)]


@pytest.mark.parametrize("strategy", ["first", "average", "max"])
def test_entities_match_transformers_pipeline(ner_model, texts, tmp_path, strategy,
                                              monkeypatch):
    # the pipeline keeps a span's stray punctuation, which seqlab's decoding takes out
    # (seqlab.stages.spans): compare the grouping without that repair
    monkeypatch.setattr(SpanRepair, "__call__", lambda self, label_ids, *_: label_ids)
    pq.write_table(pa.table({"text": texts}), tmp_path / "in.parquet")
    seqlab.annotate(str(tmp_path / "in.parquet"), str(tmp_path / "out"), model=str(ner_model),
                    aggregation=strategy, device="cpu")
    docs = read_output(tmp_path / "out")["documents"].to_pylist()
    ours = {d["doc_id"]: d["entities"] for d in docs}

    hf = pipeline("token-classification",
                  model=AutoModelForTokenClassification.from_pretrained(ner_model),
                  tokenizer=AutoTokenizer.from_pretrained(ner_model),
                  aggregation_strategy=strategy, device="cpu")
    compared = 0
    for i, (text, predicted) in enumerate(zip(texts, hf(texts, batch_size=8))):
        mine = ours[f"in.parquet:{i}"]
        assert [(e["label"], e["start_char"], e["end_char"]) for e in mine] == \
            [(p["entity_group"], p["start"], p["end"]) for p in predicted], text
        for e, p in zip(mine, predicted):
            assert e["score"] == pytest.approx(float(p["score"]), abs=1e-5)
            assert e["text"] == text[p["start"]:p["end"]]
        compared += len(mine)
    assert compared > 50
