"""What ``--model`` names resolve to, and the errors for names that are no model anywhere.

No test here contacts the hub: the one request seqlab makes (``HfApi.model_info``) is replaced
in every test, by a failure unless the test gives it an answer, and the hub cache is an empty
directory of the test's own.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import HfApi
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

import seqlab.models.load
import seqlab.models.metadata
from seqlab.errors import ModelError
from seqlab.models.load import local_model_dir, looks_like_path


@pytest.fixture(autouse=True)
def no_hub(monkeypatch, tmp_path_factory):
    """An empty hub cache, the offline switches off, and a hub that must not be asked."""
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hub")))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    for name in seqlab.models.load.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def forbidden(*args, **kwargs):
        raise AssertionError("a test contacted the hub")

    monkeypatch.setattr(HfApi, "model_info", forbidden)
    seqlab.models.load.hub_status.cache_clear()
    yield
    seqlab.models.load.hub_status.cache_clear()


def hub_answers(monkeypatch, error: Exception | None) -> list[str]:
    """Make the hub answer each request with ``error`` (None: the model exists); the names
    asked for are returned as they come."""
    asked = []

    def model_info(self, name, revision=None, timeout=None, **kwargs):
        asked.append(name)
        assert timeout is not None and timeout <= 10  # one quick request, never a hang
        if error is not None:
            raise error

    monkeypatch.setattr(HfApi, "model_info", model_info)
    return asked


def http_error(kind: type[Exception]) -> Exception:
    return kind("404 Client Error", response=SimpleNamespace(headers={}, request=None))


def cache_hub_model(repo_id: str, commit: str = "0123abcd") -> Path:
    """A hub model in the (test's) hub cache, laid out as huggingface_hub lays it out."""
    repo = Path(hf_constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.mark.parametrize("name, path", [
    ("ner", False), ("dslim/bert-base-NER", False), ("bert-base-cased", False),
    ("./ner", True), ("../models/ner", True), ("/models/ner", True), ("~/ner", True),
    ("models/2024/ner", True), ("my model", True), ("C:\\models\\ner", True),
    ("file.with.dots", False), (".hidden", True), ("ner--v2", True), ("x" * 97, True),
])
def test_paths_are_told_from_hub_ids(name, path):
    assert looks_like_path(name) is path


def test_an_existing_first_part_makes_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not looks_like_path("models/ner-v2")
    (tmp_path / "models").mkdir()
    assert looks_like_path("models/ner-v2")


def test_existing_directories_shipped_names_and_home_resolve(ner_model, monkeypatch):
    assert local_model_dir(str(ner_model)) == str(ner_model)
    assert local_model_dir(f"file://{ner_model}") == str(ner_model)
    assert Path(local_model_dir("ner")) == seqlab.models.load.shipped_model_dir("ner")
    monkeypatch.setenv("HOME", str(ner_model.parent))
    assert local_model_dir(f"~/{ner_model.name}") == str(ner_model)


def test_a_missing_directory_is_named_with_the_close_one(tmp_path):
    (tmp_path / "models" / "ner-v1").mkdir(parents=True)
    with pytest.raises(ModelError, match="does not exist") as error:
        local_model_dir(str(tmp_path / "models" / "ner-v2"))
    assert error.value.message == f"the model directory {tmp_path}/models/ner-v2 does not exist"
    assert error.value.fix.startswith(f"did you mean {tmp_path}/models/ner-v1?")


def test_a_missing_parent_is_the_part_named(tmp_path):
    with pytest.raises(ModelError) as error:
        local_model_dir(str(tmp_path / "runs" / "2024" / "ner"))
    assert error.value.message.endswith(f": there is no {tmp_path}/runs")
    assert "did you mean" not in error.value.fix
    with pytest.raises(ModelError, match="does not exist"):
        local_model_dir(f"file://{tmp_path}/nothing")


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_a_mistyped_shipped_name_fails_at_once(monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    started = time.monotonic()
    with pytest.raises(ModelError, match="or a model in the hub cache") as error:
        local_model_dir("nerr")
    assert time.monotonic() - started < 1
    assert error.value.fix.startswith("did you mean 'ner'?")
    assert "'nerr' is not a shipped model (ner, srl, upos)" in error.value.message


def test_offline_a_cached_hub_model_is_left_to_transformers(monkeypatch):
    cache_hub_model("acme/tagger")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert local_model_dir("acme/tagger") == "acme/tagger"


def test_an_unreachable_hub_is_asked_once_and_named(monkeypatch):
    asked = hub_answers(monkeypatch, OSError("[Errno -2] Name or service not known"))
    for _ in range(2):  # plan_run resolves the name twice; the hub is asked once
        with pytest.raises(ModelError, match="cannot be reached") as error:
            local_model_dir("upso")
    assert asked == ["upso"]
    assert "Name or service not known" in error.value.message
    assert error.value.fix.startswith("did you mean 'upos'?")


def test_an_unreachable_hub_leaves_a_cached_model_usable(monkeypatch):
    snapshot = cache_hub_model("acme/tagger")
    hub_answers(monkeypatch, OSError("timed out"))
    assert local_model_dir("acme/tagger") == str(snapshot)


def test_a_name_the_hub_does_not_have(monkeypatch):
    hub_answers(monkeypatch, http_error(RepositoryNotFoundError))
    with pytest.raises(ModelError, match="or a model on the hub") as error:
        local_model_dir("nerr")
    assert error.value.fix.startswith("did you mean 'ner'?")
    with pytest.raises(ModelError) as error:
        local_model_dir("acme/no-such-tagger")
    assert "did you mean" not in error.value.fix and "hf auth login" in error.value.fix


def test_a_revision_the_hub_does_not_have(monkeypatch):
    hub_answers(monkeypatch, http_error(RevisionNotFoundError))
    with pytest.raises(ModelError, match="no revision 'v9'"):
        local_model_dir("acme/tagger", "v9")


def test_a_model_the_hub_has_is_its_hub_id(monkeypatch):
    asked = hub_answers(monkeypatch, None)
    assert local_model_dir("acme/tagger") == "acme/tagger"
    assert asked == ["acme/tagger"]


def test_annotate_reports_a_mistyped_name_with_its_fix(tmp_path, monkeypatch, capsys):
    from seqlab.cli.main import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "in.jsonl").write_text('{"text": "John lives in Paris"}\n')
    assert main(["annotate", str(tmp_path / "in.jsonl"), str(tmp_path / "out"),
                 "--model", "nerr"]) == 2
    err = capsys.readouterr().err
    assert "'nerr' is not a shipped model" in err and "fix: did you mean 'ner'?" in err
    assert main(["annotate", str(tmp_path / "in.jsonl"), str(tmp_path / "out"),
                 "--model", str(tmp_path / "no" / "model")]) == 2
    assert f"there is no {tmp_path}/no" in capsys.readouterr().err
