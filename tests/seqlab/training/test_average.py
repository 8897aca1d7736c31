"""seqlab average: the mean of several fine-tunes' weights, as one model that loads, annotates
and exports like a ``seqlab train`` output."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from seqlab.cli.main import main
from seqlab.errors import ModelError
from seqlab.models.load import ModelSpec, load_model
from seqlab.models.metadata import read_metadata
from seqlab.training.average import average_models
from seqlab.training.train import train
from tests.seqlab.training.test_train import config, ner_files  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(300)
IDS = torch.tensor([[2, 50, 60, 70, 3]])


@pytest.fixture(scope="module")
def seeds(ner_files, tmp_path_factory):  # noqa: F811 - ner_files is the imported fixture
    """Two fine-tunes of one base on one label set, seeds 1 and 2."""
    root = tmp_path_factory.mktemp("average")
    for seed in (1, 2):
        train(config(ner_files, root / f"seed{seed}", epochs=1, seed=seed))
    return root / "seed1", root / "seed2"


def logits(directory) -> torch.Tensor:
    with torch.no_grad():
        return load_model(ModelSpec(str(directory), device="cpu")).model(input_ids=IDS).logits


def test_the_soup_is_the_mean_of_the_weights(seeds, tmp_path):
    a, b = seeds
    soup = average_models([str(a), str(b)], tmp_path / "soup")
    weights = [load_file(str(d / "model.safetensors")) for d in (a, b, tmp_path / "soup")]
    assert weights[2].keys() == weights[0].keys()
    for key in ("classifier.weight", "bert.encoder.layer.0.attention.self.query.weight"):
        assert not torch.equal(weights[0][key], weights[1][key])  # the seeds differ
        assert torch.allclose(weights[2][key], (weights[0][key] + weights[1][key]) / 2,
                              atol=1e-7)
    assert [entry["seed"] for entry in soup["averaged_from"]] == [1, 2]
    assert soup.hyper_parameters["seeds"] == [1, 2] and "seed" not in soup.hyper_parameters
    assert soup.train_seconds == pytest.approx(sum(read_metadata(str(d)).train_seconds
                                                   for d in (a, b)), abs=0.2)
    assert soup["averaged_from"][0]["dev"]["f1"] == read_metadata(str(a)).dev_metrics["f1"]
    # the ingredients' dev scores are not the soup's; labels and casing input are
    assert not soup.dev_metrics and not soup.dev_history
    assert soup.labels == read_metadata(str(a)).labels and soup.base == read_metadata(str(a)).base
    assert torch.isfinite(logits(tmp_path / "soup")).all()


def test_a_model_averaged_with_itself_predicts_as_it_did(seeds, tmp_path):
    a, _ = seeds
    average_models([str(a), str(a)], tmp_path / "same")
    assert torch.allclose(logits(a), logits(tmp_path / "same"), atol=1e-5)


def test_compact_models_are_ingredients_and_the_soup_exports(seeds, tmp_path, capsys):
    a, b = seeds
    assert main(["export", str(a), str(tmp_path / "a-compact"), "--rank", "8"]) == 0
    assert main(["average", str(tmp_path / "soup"), str(tmp_path / "a-compact"), str(b)]) == 0
    assert "averaged 2 models (seeds 1, 2)" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "soup"), str(tmp_path / "soup-compact"),
                 "--rank", "8"]) == 0
    a_b = (logits(a) + logits(b)) / 2  # near the mean of their logits: one basin
    soup = logits(tmp_path / "soup-compact")
    assert torch.nn.functional.cosine_similarity(a_b.flatten(), soup.flatten(), dim=0) > 0.9


@pytest.mark.parametrize(("entry", "value", "message"), [
    ("labels", ["O", "B-LOC", "I-LOC"], "has labels"),
    ("case_feature", "flipped", "has case_feature"),
    ("base", {"name": "other", "sha256": "0" * 64}, "another base encoder"),
])
def test_models_that_do_not_mean_the_same_are_refused(seeds, tmp_path, entry, value, message):
    a, b = seeds
    other = tmp_path / "other"
    shutil.copytree(b, other)
    meta = json.loads((other / "seqlab.json").read_text())
    value = not meta.get(entry, False) if value == "flipped" else value
    (other / "seqlab.json").write_text(json.dumps({**meta, entry: value}))
    with pytest.raises(ModelError, match=message):
        average_models([str(a), str(other)], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()


def test_one_model_is_not_a_soup(seeds, tmp_path, capsys):
    a, _ = seeds
    assert main(["average", str(tmp_path / "soup"), str(a)]) != 0
    assert "two models or more" in capsys.readouterr().err
