"""seqlab.models.calibration: ECE with known answers, the fitted temperature, and a temperature in a
model's seqlab.json changing probabilities as softmax(logits / T) while labels stay."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seqlab.cli.main import main
from seqlab.errors import ConfigError, ModelError
from seqlab.labels import LabelSet
from seqlab.models.calibration import (
    DevLogits,
    calibrate,
    entity_confidence,
    expected_calibration_error,
    fit_temperature,
    nll,
    softmax,
)
from seqlab.models.load import ModelSpec, load_model
from seqlab.models.metadata import model_temperature, read_metadata, write_metadata
from seqlab.stages.tag import Tagger
from seqlab.training.evaluate import evaluate, predict
from seqlab.training.formats import read_sentences, write_sentences
from tests.seqlab.training.test_train import ner_sentences
from tests.tiny import NER_LABELS, build_tiny_model

TEMPERATURE = 2.5


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    """A tiny model of its own (tests write into its seqlab.json) and an IOB1 dev file."""
    root = tmp_path_factory.mktemp("calibration")
    write_sentences(ner_sentences(30, 4), str(root / "dev.conll"), "conll")
    return build_tiny_model(root / "model", NER_LABELS, seed=3), str(root / "dev.conll")


def tagged(loaded, data: str, **options) -> tuple[np.ndarray, list]:
    """The tag stage's ``_probs`` of the dev texts, and the greedy labels of their words."""
    from seqlab.training.evaluate import read_units

    tag = Tagger(loaded, **options)
    outputs = [rows.column("_probs").to_numpy(zero_copy_only=False)
               for _, _, rows in read_units(loaded, read_sentences(data), tag)]
    return np.concatenate([v for o in outputs for v in o]), \
        predict(loaded, read_sentences(data))


def test_ece_of_constructed_examples():
    # perfectly calibrated: in the 0.8 bin 4 of 5 right, in the 0.5 bin 1 of 2
    confidence = np.array([0.8] * 5 + [0.5] * 2)
    assert expected_calibration_error(confidence, np.array([1, 1, 1, 1, 0, 1, 0])) == 0.0
    # always 0.95 sure, right half the time: a gap of 0.45 in the one bin
    assert expected_calibration_error(np.full(4, 0.95), np.array([1, 0, 1, 0])) \
        == pytest.approx(0.45)
    # two bins of different sizes: (3 x |1 - 0.9| + 1 x |0 - 0.6|) / 4
    assert expected_calibration_error(np.array([0.9, 0.9, 0.9, 0.6]), np.array([1, 1, 1, 0])) \
        == pytest.approx((3 * 0.1 + 0.6) / 4)
    # bins are (k/15, (k+1)/15]: 1/15 and a hair above it fall apart, 1.0 is in the last bin
    assert expected_calibration_error(np.array([1 / 15, 1 / 15 + 1e-9]), np.array([0, 0])) \
        == pytest.approx(1 / 15)
    assert expected_calibration_error(np.array([1.0]), np.array([1])) == 0.0


def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(20000, 5))
    gold = np.array([rng.choice(5, p=p) for p in softmax(logits, TEMPERATURE)])
    fitted = fit_temperature(logits, gold)
    assert fitted == pytest.approx(TEMPERATURE, rel=0.05)
    assert nll(logits, gold, fitted) < nll(logits, gold, 1.0)
    for other in (fitted * 0.9, fitted * 1.1):  # a minimum, not just a descent
        assert nll(logits, gold, fitted) < nll(logits, gold, other)


def test_entity_confidence_is_the_mean_word_score_and_exact_spans_count():
    labels = LabelSet.from_id2label(dict(enumerate(["O", "B-PER", "I-PER"])), "iob2")
    # one sentence of 4 words; log-probabilities as logits give these distributions back
    probs = np.array([[0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1], [0.3, 0.6, 0.1]])
    dev = DevLogits(np.log(probs), np.array([1, 2, 0, 0]), np.ones(4, dtype=bool),
                    np.array([4]))
    scores, correct = entity_confidence(dev, labels)
    assert scores.tolist() == pytest.approx([0.7, 0.6])  # (0.8 + 0.6) / 2, then 0.6 alone
    assert correct.tolist() == [True, False]  # the gold PER is words 0-1; word 3 is no entity


def test_a_temperature_in_seqlab_json_divides_the_logits_and_keeps_the_labels(dev, tmp_path):
    model, data = dev
    plain = load_model(ModelSpec(str(model), device="cpu"))
    assert Tagger(plain).temperature == 1.0
    logits, labels = tagged(plain, data, temperature=1.0, logits=True)
    write_metadata(model, read_metadata(str(model)).updated(
        calibration={"temperature": TEMPERATURE}))
    try:
        scaled = load_model(ModelSpec(str(model), device="cpu"))
        assert scaled.metadata.temperature == Tagger(scaled).temperature == TEMPERATURE
        assert model_temperature(scaled.metadata) == TEMPERATURE
        probs, scaled_labels = tagged(scaled, data)
    finally:
        write_metadata(model, read_metadata(str(model)).updated(calibration=None))
    n = len(NER_LABELS)
    expected = softmax(logits.reshape(-1, n).astype(np.float64), TEMPERATURE)
    np.testing.assert_allclose(probs.reshape(-1, n), expected, atol=1e-6)
    assert not np.allclose(probs.reshape(-1, n), softmax(logits.reshape(-1, n)), atol=1e-3)
    assert scaled_labels == labels


def test_a_bad_temperature_is_refused_with_the_fix():
    with pytest.raises(ModelError, match="calibration.temperature is -1") as error:
        model_temperature({"calibration": {"temperature": -1}})
    assert "--calibrate" in error.value.fix


def test_calibrate_writes_the_temperature_and_evaluate_scores_stay(dev):
    model, data = dev
    before = evaluate(str(model), data, device="cpu")
    try:
        entry = calibrate(str(model), data, device="cpu")
        written = read_metadata(str(model)).calibration
        assert written == entry and entry["fitted_on"] == data
        assert entry["temperature"] > 0 and entry["words"] > 100 and entry["bins"] == 15
        assert entry["nll_after"] <= entry["nll_before"]
        assert {"ece_before", "ece_after", "entity_ece_before", "entity_ece_after"} <= set(entry)
        assert entry["entity_decoder"] == "greedy" and len(entry["fitted_on_sha256"]) == 64
        loaded = load_model(ModelSpec(str(model), device="cpu"))
        assert Tagger(loaded).temperature == entry["temperature"]
        assert evaluate(str(model), data, loaded=loaded) == before  # greedy labels unchanged
    finally:
        write_metadata(model, read_metadata(str(model)).updated(calibration=None))


def test_evaluate_calibrate_on_the_command_line(dev, capsys):
    model, data = dev
    try:
        assert main(["evaluate", str(model), data, "--calibrate", "--device", "cpu"]) == 0
        out = capsys.readouterr().out
        temperature = read_metadata(str(model)).temperature
        assert f"temperature {temperature:.4f} written: word ECE" in out
        assert "decoder greedy (the default)" in out and "f1 " in out
        assert main(["evaluate", str(model), data, "--json", "--device", "cpu"]) == 0
        captured = capsys.readouterr()
        assert set(json.loads(captured.out)) == {"f1", "precision", "recall", "accuracy",
                                                 "per_label"}
        assert "decoder greedy" in captured.err
    finally:
        write_metadata(model, read_metadata(str(model)).updated(calibration=None))


def test_calibrate_refuses_a_model_it_cannot_write_into(tmp_path, monkeypatch):
    import seqlab.models.calibration

    # a model copied from an fsspec URL lives in seqlab's cache: a temperature written there
    # would be lost, and would not be the model's
    monkeypatch.setattr(seqlab.models.calibration, "CACHE_DIR", tmp_path / "cache")
    model = build_tiny_model(tmp_path / "cache" / "models" / "0123", NER_LABELS)
    (tmp_path / "dev.conll").write_text("london I-LOC\n")
    with pytest.raises(ConfigError, match="not a local model directory") as error:
        calibrate(str(model), str(tmp_path / "dev.conll"))
    assert "directory" in error.value.fix
    assert read_metadata(str(model)).calibration == {}
