from __future__ import annotations

import json

import pytest

from seqlab.cli import main
from seqlab.evaluate import evaluate, predict, sentence_text
from seqlab.formats import Sentence, read_sentences, write_sentences
from seqlab.labels import convert
from seqlab.metrics import entity_scores
from seqlab.model import ModelSpec, load_model
from tests.test_train import ner_sentences, tiny_encoder
from tests.tiny import POS_LABELS


@pytest.fixture(scope="module")
def ner_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    sentences = ner_sentences(40, 3) + [Sentence(("Walking", "O'Neil", "Zürich", "."),
                                                 ("O", "I-PER", "I-LOC", "O"))]
    write_sentences(sentences, str(root / "dev.conll"), "conll")
    return tiny_encoder(root / "model", seed=2), str(root / "dev.conll")


def test_sentence_text():
    assert sentence_text(("a", "bc")) == ("a bc", [0, 2])


def test_scores_what_annotate_predicts(ner_setup):
    model, data = ner_setup
    loaded = load_model(ModelSpec(str(model), device="cpu"))
    sentences = read_sentences(data)
    predicted = predict(loaded, sentences)
    assert [len(p) for p in predicted] == [len(s.words) for s in sentences]
    assert all(p in loaded.labels.labels for row in predicted for p in row)
    gold = [convert(s.labels, "iob2") for s in sentences]
    scores = evaluate(str(model), data, loaded=loaded)
    assert scores == entity_scores(gold, predicted)
    assert set(scores) == {"f1", "precision", "recall", "accuracy", "per_label"}


def test_viterbi_predicts_only_valid_sequences(ner_setup):
    model, data = ner_setup
    loaded = load_model(ModelSpec(str(model), device="cpu"))
    predicted = predict(loaded, read_sentences(data), decoder="viterbi")
    for row in predicted:
        for previous, label in zip(["O"] + row, row):
            assert not (label.startswith("I-") and previous[2:] != label[2:])


def test_cli_json_and_report(ner_setup, tmp_path, capsys):
    model, data = ner_setup
    report = tmp_path / "report"
    assert main(["evaluate", str(model), data, "--json", "--report", str(report)]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"f1", "precision", "recall", "accuracy", "per_label"}
    assert (report / "confusion.png").stat().st_size > 1000
    table = (report / "report.md").read_text()
    assert "| **overall** |" in table and "| PER |" in table or "| LOC |" in table


def test_tags_accuracy_per_tag(tmp_path, capsys):
    model = tiny_encoder(tmp_path / "pos", POS_LABELS, seed=1)
    sentences = [Sentence(("the", "city", "said"), ("DET", "NOUN", "VERB"))] * 3
    write_sentences(sentences, str(tmp_path / "d.conllu"), "conllu")
    scores = evaluate(str(model), str(tmp_path / "d.conllu"))
    assert scores["f1"] == scores["accuracy"]
    assert set(scores["per_label"]) == {"DET", "NOUN", "VERB"}
    assert main(["evaluate", str(model), str(tmp_path / "d.conllu")]) == 0
    assert "accuracy" in capsys.readouterr().out
