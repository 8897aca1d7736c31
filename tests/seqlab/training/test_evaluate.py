from __future__ import annotations

import json

import pytest

from seqlab.cli.main import main
from seqlab.errors import ConfigError
from seqlab.labels import convert
from seqlab.models.load import ModelSpec, load_model
from seqlab.training.evaluate import evaluate, predict, sentence_text
from seqlab.training.formats import Sentence, read_sentences, write_sentences
from seqlab.training.metrics import entity_scores
from tests.seqlab.training.test_train import ner_sentences, tiny_encoder
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


def test_document_context_reads_sentences_within_their_document(ner_setup, tmp_path):
    model, _ = ner_setup
    loaded = load_model(ModelSpec(str(model), device="cpu"))
    doc = [Sentence(s.words, s.labels, "d0") for s in ner_sentences(6, 5)]
    joined = [Sentence(tuple(w for s in doc for w in s.words),
                      tuple(label for s in doc for label in s.labels))]
    in_document = predict(loaded, doc)
    alone = predict(loaded, doc, context="sentence")
    # within its document a sentence is tagged as the words of one text ...
    assert [label for row in in_document for label in row] == predict(loaded, joined)[0]
    assert [len(row) for row in in_document] == [len(s.words) for s in doc]
    # ... and context changes what a small random model predicts somewhere
    assert in_document != alone
    write_sentences(doc, str(tmp_path / "doc.conll"), "conll")
    assert evaluate(str(model), str(tmp_path / "doc.conll"), loaded=loaded, max_length=16)


def test_viterbi_predicts_only_valid_sequences(ner_setup):
    model, data = ner_setup
    loaded = load_model(ModelSpec(str(model), device="cpu"))
    predicted = predict(loaded, read_sentences(data), decoder="viterbi")
    # valid over each whole document text (a sentence may open inside an entity of the last)
    labels = [label for row in predicted for label in row]
    assert any(label.startswith("I-") for label in labels)
    for previous, label in zip(["O"] + labels, labels):
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


def test_the_models_recommended_decoder_is_used_unless_one_is_given(ner_setup, tmp_path,
                                                                    capsys):
    import shutil

    from seqlab.models.metadata import read_metadata, write_metadata

    model, data = ner_setup
    copy = shutil.copytree(model, tmp_path / "model")
    write_metadata(copy, read_metadata(str(copy)).updated(decoder="viterbi"))
    loaded = load_model(ModelSpec(str(copy), device="cpu"))
    sentences = read_sentences(data)
    assert predict(loaded, sentences, decoder=None) == predict(loaded, sentences, "viterbi")
    viterbi = evaluate(str(copy), data, loaded=loaded)
    assert viterbi == evaluate(str(copy), data, loaded=loaded, decoder="viterbi")
    assert evaluate(str(model), data) == evaluate(str(model), data, decoder="greedy")
    assert main(["evaluate", str(copy), data, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "decoder viterbi (the model's recommendation)" in out
    assert f"f1 {viterbi['f1']:.4f}" in out
    assert main(["evaluate", str(copy), data, "--decoder", "greedy", "--device", "cpu"]) == 0
    assert "decoder greedy (as asked)" in capsys.readouterr().out


def test_windows_are_cut_as_annotate_is_told_to(ner_setup):
    model, _ = ner_setup
    loaded = load_model(ModelSpec(str(model), device="cpu"))
    doc = [Sentence((s.words[0].capitalize(), *s.words[1:], "."), s.labels + ("O",), "d0")
           for s in ner_sentences(12, 7)]  # sentences that the window cuts can tell apart
    # windows of 16 subwords: cut at sentence ends without overlap, or overlapping anywhere
    at_sentences = predict(loaded, doc, max_length=16)
    fixed = predict(loaded, doc, max_length=16, window_cuts="fixed")
    assert at_sentences == predict(loaded, doc, max_length=16, window_cuts="sentence")
    assert [len(r) for r in fixed] == [len(r) for r in at_sentences]
    assert fixed != at_sentences
    with pytest.raises(ConfigError, match="--window-cuts"):
        predict(loaded, doc, max_length=16, window_cuts="paragraph")


def test_the_cli_passes_window_cuts_through(ner_setup, capsys):
    model, data = ner_setup
    scores = {}
    for cuts in ("sentence", "fixed"):
        assert main(["evaluate", str(model), data, "--json", "--max-length", "16",
                     "--window-cuts", cuts, "--device", "cpu"]) == 0
        scores[cuts] = json.loads(capsys.readouterr().out)
    # the same words scored, windows cut differently
    supports = {c: {k: v["support"] for k, v in s["per_label"].items()} for c, s in scores.items()}
    assert supports["sentence"] == supports["fixed"]
    with pytest.raises(SystemExit):
        main(["evaluate", str(model), data, "--window-cuts", "paragraph"])
