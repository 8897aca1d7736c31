"""seqlab export: a seqlab train output to its compact form, through the command line."""

from __future__ import annotations

import shutil

import pytest
import torch

from seqlab.cli.main import main
from seqlab.models.load import ModelSpec, load_model
from seqlab.models.metadata import read_metadata
from seqlab.training.train import train
from tests.seqlab.training.test_train import config, ner_files  # noqa: F401 - a fixture

IDS = torch.tensor([[2, 50, 60, 70, 3]])


def logits(directory) -> torch.Tensor:
    with torch.no_grad():
        return load_model(ModelSpec(str(directory), device="cpu")).model(input_ids=IDS).logits


@pytest.fixture(scope="module")
def trained(ner_files, tmp_path_factory):  # noqa: F811 - ner_files is the imported fixture
    root = tmp_path_factory.mktemp("export")
    full, lora = root / "full", root / "lora"
    train(config(ner_files, full, epochs=1, train_embeddings=False))
    train(config(ner_files, lora, epochs=1, lora_r=4, lr=1e-2))
    return full, lora


def test_a_full_fine_tune_exports_as_a_factorisation_that_loads(trained, tmp_path, capsys):
    full, _ = trained
    assert main(["export", str(full), str(tmp_path / "compact"), "--rank", "8"]) == 0
    assert "rank-8 factorisation, int8 factors" in capsys.readouterr().out
    compact = tmp_path / "compact"
    assert not (compact / "model.safetensors").exists()
    pin = read_metadata(str(compact)).base
    # a base other than the shipped models' is pinned by the name it was trained from
    assert pin.name == read_metadata(str(full)).base.name and pin.package is None
    a, b = logits(full), logits(compact)
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.9


def test_a_lora_output_exports_its_adapter(trained, tmp_path, capsys):
    _, lora = trained
    assert main(["export", str(lora), str(tmp_path / "shipped")]) == 0
    assert "LoRA adapter" in capsys.readouterr().out
    assert torch.allclose(logits(lora), logits(tmp_path / "shipped"), atol=1e-5)


def test_export_refuses_what_is_not_a_trained_model(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "out")]) != 0
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    assert main(["export", str(tmp_path / "plain"), str(tmp_path / "out")]) != 0
    assert "records no base encoder" in capsys.readouterr().err


def test_export_records_the_recipe_annotate_follows(trained, tmp_path, capsys):
    full, _ = trained
    target = tmp_path / "recipe"
    assert main(["export", str(full), str(target), "--rank", "8", "--decoder", "viterbi",
                 "--cpu-precision", "int8"]) == 0
    assert "recipe: decoder=viterbi, precision=int8" in capsys.readouterr().out
    metadata = read_metadata(str(target))
    assert metadata.decoder == "viterbi"
    assert metadata.cpu_precision == "int8" and metadata.int8["backend"] == "onnxruntime"
    assert metadata.data == read_metadata(str(full)).data  # the rest of the recipe is kept


def test_export_refuses_srl_entries_on_another_task(trained, tmp_path, capsys):
    full, _ = trained
    assert main(["export", str(full), str(tmp_path / "ner"), "--core-once"]) != 0
    assert "--core-once applies to SRL models" in capsys.readouterr().err
    assert main(["export", str(full), str(tmp_path / "ner2"), "--predicates",
                 str(full)]) != 0
    assert "is not a predicate labeller" in capsys.readouterr().err


def test_an_srl_recipe_gets_its_predicate_labeller_and_core_once(tmp_path):
    from seqlab.cli.export import record_recipe
    from seqlab.models.metadata import write_metadata
    from tests.tiny import build_tiny_srl

    labeller = build_tiny_srl(tmp_path / "source") / "predicates"
    target = build_tiny_srl(tmp_path / "srl")
    shutil.rmtree(target / "predicates")
    write_metadata(target, read_metadata(str(target)).updated(predicates=None))
    assert record_recipe(target, predicates=str(labeller), core_once=True) == [
        "predicates=predicates", "core_once=True"]
    metadata = read_metadata(str(target))
    assert metadata.predicates == "predicates" and metadata.core_once
    assert read_metadata(str(target / "predicates")).task == "predicates"
