"""seqlab.models.light: a model's config and tokenizer read without transformers give what
transformers gives, and the tokenizer cache follows the tokenizer's files."""

import json
import random

import numpy as np
import pyarrow as pa
import pytest
from transformers import AutoConfig

import seqlab.models.load
from seqlab import schema
from seqlab.models.light import CachedTokenizer, cached_tokenizer, read_config
from seqlab.models.load import load_tokenizer
from seqlab.stages.tokenize import Tokenizer, WindowSpec, special_affixes
from tests.conftest import make_text
from tests.tiny import build_tiny_model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(seqlab.models.load, "CACHE_DIR", tmp_path / "cache")
    return tmp_path / "cache" / "tokenizers"


def test_the_cached_tokenizer_tokenizes_as_transformers_does(tmp_path, cache):
    directory = str(build_tiny_model(tmp_path / "m", max_position=128))
    assert cached_tokenizer(cache, directory) is None
    built = load_tokenizer(directory, cached=True)  # through transformers, then stored
    again = load_tokenizer(directory, cached=True)
    assert isinstance(again, CachedTokenizer) and not isinstance(built, CachedTokenizer)
    assert again.backend_tokenizer.to_str() == built.backend_tokenizer.to_str()
    assert (again.pad_token_id, again.model_max_length) == (built.pad_token_id, 128)
    for pair in (False, True):
        assert again.num_special_tokens_to_add(pair) == built.num_special_tokens_to_add(pair)
    for a, b in zip(special_affixes(again), special_affixes(built)):
        assert np.array_equal(a, b)
    rng = random.Random(2)
    texts = [make_text(rng, n) for n in (400, 12)]
    batch = pa.RecordBatch.from_pydict({schema.TEXT: texts, schema.STATUS: ["ok"] * 2,
                                        schema.ERROR: [None, None]})
    spec = WindowSpec(64, 16)
    assert Tokenizer(again, spec)(batch).equals(Tokenizer(built, spec)(batch))
    # without cached=, callers that need transformers' tokenizer get it
    assert not isinstance(load_tokenizer(directory), CachedTokenizer)


def test_a_changed_tokenizer_file_is_read_again(tmp_path, cache):
    directory = build_tiny_model(tmp_path / "m")
    load_tokenizer(str(directory), cached=True)
    assert cached_tokenizer(cache, str(directory)) is not None
    settings = json.loads((directory / "tokenizer_config.json").read_text())
    settings["model_max_length"] = 64
    (directory / "tokenizer_config.json").write_text(json.dumps(settings))
    assert cached_tokenizer(cache, str(directory)) is None
    assert load_tokenizer(str(directory), cached=True).model_max_length == 64
    assert cached_tokenizer(cache, str(directory)).model_max_length == 64


def test_a_damaged_cache_entry_is_built_again(tmp_path, cache):
    directory = str(build_tiny_model(tmp_path / "m"))
    load_tokenizer(directory, cached=True)
    [entry] = cache.iterdir()
    entry.write_text("{not json")
    assert cached_tokenizer(cache, directory) is None
    load_tokenizer(directory, cached=True)
    assert isinstance(cached_tokenizer(cache, directory), CachedTokenizer)


def test_the_config_reads_as_transformers_reads_it(tmp_path):
    directory = build_tiny_model(tmp_path / "m")
    light, full = read_config(str(directory)), AutoConfig.from_pretrained(directory)
    assert light.id2label == full.id2label and light._commit_hash is None
    values = json.loads((directory / "config.json").read_text())
    for key in ("id2label", "label2id"):
        values.pop(key)
    values["num_labels"] = 3
    (directory / "config.json").write_text(json.dumps(values))
    light, full = read_config(str(directory)), AutoConfig.from_pretrained(directory)
    assert light.id2label == full.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert read_config(str(tmp_path / "nothing")) is None


def test_a_tokenizer_with_remote_code_is_not_cached(tmp_path, cache):
    directory = str(build_tiny_model(tmp_path / "m"))
    load_tokenizer(directory, trust_remote_code=True, cached=True)
    assert not cache.exists()
