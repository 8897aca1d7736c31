"""``seqlab.json`` read into ``ModelMetadata``: the shipped models' files field by field, entries
of other seqlab versions kept through a read-modify-write, and every bad value refused with an
error that names the file, the entry and the fix."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest

import seqlab.models
from seqlab.errors import ModelError
from seqlab.models.metadata import (
    CPU_PRECISIONS,
    INT8_BACKENDS,
    METADATA_FILE,
    PREDICATE_ENCODINGS,
    BasePin,
    ModelMetadata,
    model_temperature,
    read_metadata,
    recommended_decoder,
    trained_window,
    write_metadata,
)

SHIPPED = Path(seqlab.models.__file__).parent
SHIPPED_FILES = ["ner", "upos", "srl", "srl/predicates"]
NOT_ENTRIES = ("path", "raw")  # attributes that are no seqlab.json entry
DEFAULTS = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(ModelMetadata) if f.name not in NOT_ENTRIES}


def as_json(name: str) -> dict:
    return json.loads((SHIPPED / name / METADATA_FILE).read_text())


@pytest.mark.parametrize("name", SHIPPED_FILES)
def test_every_entry_of_a_shipped_seqlab_json_is_a_typed_attribute(name):
    meta, raw = read_metadata(SHIPPED / name), as_json(name)
    assert meta.path == str(SHIPPED / name / METADATA_FILE)
    assert set(raw) <= set(DEFAULTS)  # nothing seqlab writes is left untyped
    for key, default in DEFAULTS.items():
        value = getattr(meta, key)
        if key not in raw:
            assert value == default, key
        elif key == "base":
            assert value == BasePin(**raw["base"])
        elif key in ("labels", "dev_history", "averaged_from"):
            assert isinstance(value, tuple) and list(value) == raw[key]
        else:
            assert value == raw[key] and type(value) is type(raw[key]), key
    assert meta.base.sha256 == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    assert meta.window == 256 and meta.cpu_precision == "int8"
    assert meta.int8["backend"] == "onnxruntime" and meta.int8["skip"] == ["classifier"]
    # a model trained for --max-steps keeps the dev scores of a fraction of an epoch; a mean of
    # fine-tunes (seqlab average) those of each of them
    runs = [entry["dev"] for entry in meta.averaged_from] or [meta.dev_metrics]
    assert meta.labels == tuple(raw["labels"]) and all(run["epoch"] > 0 for run in runs)
    assert meta.versions["seqlab"] and meta.train_seconds > 0


def test_the_shipped_models_own_entries():
    ner, upos, srl = (read_metadata(SHIPPED / name) for name in ("ner", "upos", "srl"))
    assert (ner.task, ner.scheme, ner.decoder, ner.case_feature) == ("ner", "iob2", "viterbi",
                                                                     True)
    assert ner.labels == ("O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER",
                          "I-PER")
    assert ner.temperature == 1.233681 == model_temperature(ner)
    assert ner.calibration["entity_decoder"] == "viterbi"
    # the mixture it was trained on: news, web text and social media, each set with its hash
    mix = ner.data["train"]["mix"]
    assert [m["format"] for m in mix] == ["conll", "uner", "wnut"]
    assert all(len(m["sha256"]) == 64 for m in mix) and ner.hyper_parameters["max_length"] == 256
    assert ner.form.startswith("rank-128") and ner.dev_scores["conll2003_dev"]["int8"] > 0.93
    assert (upos.task, upos.scheme) == ("upos", "tags") and "NOUN" in upos.labels
    # the mean of two seeds of one recipe, each recorded by the hash of its weights
    assert [entry["seed"] for entry in upos.averaged_from] == upos.hyper_parameters["seeds"]
    assert len(upos.averaged_from) == 2 and all(len(e["sha256"]) == 64 for e in upos.averaged_from)
    assert (srl.task, srl.predicates, srl.predicate_encoding) == ("srl", "predicates",
                                                                 "indicator")
    assert srl.core_once is True and srl.frames["train"] > 0 and srl.temperature == 1.0
    assert srl.calibration == {} and "B-V" in srl.labels
    assert read_metadata(SHIPPED / "srl" / "predicates").task == "predicates"


@pytest.mark.parametrize("name", SHIPPED_FILES)
def test_a_shipped_file_is_written_back_byte_for_byte(name, tmp_path):
    meta = read_metadata(SHIPPED / name)
    assert meta.to_dict() == as_json(name) and list(meta.to_dict()) == list(as_json(name))
    write_metadata(tmp_path, meta)
    assert (tmp_path / METADATA_FILE).read_text() == (SHIPPED / name / METADATA_FILE).read_text()


def test_entries_of_other_versions_survive_a_read_modify_write(tmp_path):
    raw = {"task": "ner", "future": {"kind": [1, 2]}, "window": 128,
           "base": {"name": "enc", "sha256": None, "mirror": "s3://x"},
           "calibration": {"temperature": 1.5, "fitted_by": "v9"}, "decoder": None}
    (tmp_path / METADATA_FILE).write_text(json.dumps(raw))
    meta = read_metadata(tmp_path)
    assert meta.to_dict() == raw and meta.decoder is None  # JSON null reads as absent
    # attributes changed with dataclasses.replace: the rest as it was, in its order
    changed = dataclasses.replace(meta, window=64, decoder="viterbi")
    assert changed.to_dict() == {**raw, "window": 64, "decoder": "viterbi"}
    assert list(changed.to_dict()) == list(raw)
    assert changed.window == 64 and meta.window == 128
    # any entry with updated(), None removing one
    again = changed.updated(calibration=None, added=[3])
    write_metadata(tmp_path, again)
    written = json.loads((tmp_path / METADATA_FILE).read_text())
    assert written == {**{k: v for k, v in raw.items() if k != "calibration"}, "window": 64,
                       "decoder": "viterbi", "added": [3]}
    assert written["future"] == {"kind": [1, 2]} and written["base"]["mirror"] == "s3://x"
    back = read_metadata(tmp_path)
    assert back.temperature == 1.0 and back.calibration == {} and back["added"] == [3]


def test_it_reads_as_a_mapping_that_cannot_change_it():
    meta = ModelMetadata.from_dict({"window": 64, "base": {"sha256": None, "name": "enc"}})
    assert meta["window"] == 64 and dict(meta) == {**meta} == meta.to_dict()
    assert meta == {"window": 64, "base": {"sha256": None, "name": "enc"}}
    meta["base"]["name"] = "other"
    meta.to_dict()["base"]["name"] = "other"
    assert meta["base"]["name"] == meta.base.name == "enc"
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.window = 32
    shipped = pickle.loads(pickle.dumps(meta))  # taggers travel to Ray and Beam workers
    assert shipped == meta and shipped.base == meta.base


def test_a_model_without_seqlab_json_has_empty_metadata(tmp_path):
    meta = read_metadata(tmp_path)
    assert meta == {} and meta.path is None and meta.to_dict() == {}
    assert (meta.task, meta.window, meta.decoder, meta.base, meta.labels) == (None,) * 4 + ((),)
    assert meta.temperature == 1.0 and meta.case_feature is False and meta.int8 == {}
    assert read_metadata("some-org/some-hub-model") == ModelMetadata()


def test_the_helpers_read_metadata_and_plain_dicts():
    meta = ModelMetadata(window=200, decoder="viterbi", calibration={"temperature": 2.0})
    assert (trained_window(meta), recommended_decoder(meta), model_temperature(meta)) == \
        (200, "viterbi", 2.0)
    assert (trained_window({}), recommended_decoder({}), model_temperature({})) == \
        (None, None, 1.0)
    assert trained_window({"window": 16}) == 16


def test_the_known_values_are_those_of_the_modules_that_use_them():
    from seqlab.config import PRECISIONS
    from seqlab.models.quantize import BACKENDS
    from seqlab.srl.examples import ENCODINGS

    assert PREDICATE_ENCODINGS == ENCODINGS and INT8_BACKENDS == BACKENDS
    assert CPU_PRECISIONS == tuple(p for p in PRECISIONS if p != "auto")


BAD = [
    ("task", 3, "task"), ("task", "", "task"), ("scheme", "bilou2", "scheme"),
    ("labels", "O", "labels"), ("labels", ["O", 3], "labels"),
    ("base", "encoder", "base"), ("base", {"sha256": "abc"}, "base.sha256"),
    ("base", {"sha256": "0" * 64, "name": 7}, "base.name"),
    ("data", ["train.conll"], "data"), ("hyper_parameters", [], "hyper_parameters"),
    ("window", 0, "window"), ("window", -3, "window"), ("window", "256", "window"),
    ("window", 1.5, "window"), ("window", True, "window"),
    ("case_feature", "yes", "case_feature"), ("decoder", "beam", "decoder"),
    ("calibration", "x", "calibration"),
    ("calibration", {"temperature": 0}, "calibration.temperature"),
    ("calibration", {"temperature": -1.5}, "calibration.temperature"),
    ("calibration", {"temperature": "1.2"}, "calibration.temperature"),
    ("precision", "int8", "precision"), ("precision", {"cpu": "int4"}, "precision.cpu"),
    ("precision", {"int8": "fast"}, "precision.int8"),
    ("precision", {"int8": {"backend": "tensorrt"}}, "precision.int8.backend"),
    ("precision", {"int8": {"skip": "classifier"}}, "precision.int8.skip"),
    ("precision", {"int8": {"skip": ["("]}}, "precision.int8.skip"),
    ("predicates", "", "predicates"), ("predicate_encoding", "prefix", "predicate_encoding"),
    ("core_once", 1, "core_once"), ("frames", {"train": -1}, "frames.train"),
    ("frames", {"dev": 2.5}, "frames.dev"), ("form", 8, "form"),
    ("dev_metrics", 0.9, "dev_metrics"), ("dev_history", [0.9], "dev_history"),
    ("dev_scores", "good", "dev_scores"), ("train_seconds", -1, "train_seconds"),
    ("train_seconds", "ten", "train_seconds"), ("versions", "0.1.0", "versions"),
]


@pytest.mark.parametrize("key,value,field", BAD, ids=[f"{f}={v!r}" for _, v, f in BAD])
def test_a_bad_value_names_the_file_and_the_field(key, value, field, tmp_path):
    path = tmp_path / METADATA_FILE
    path.write_text(json.dumps({**as_json("ner"), key: value}))
    with pytest.raises(ModelError) as error:
        read_metadata(tmp_path)
    assert str(error.value.message).startswith(f"{path}: {field} is ")
    assert error.value.fix
    assert field in error.value.fix or "--calibrate" in error.value.fix \
        or "max_length" in error.value.fix or "sha256" in error.value.fix


def test_a_bad_temperature_says_how_to_refit_it(tmp_path):
    (tmp_path / METADATA_FILE).write_text('{"calibration": {"temperature": 0}}')
    with pytest.raises(ModelError, match="calibration.temperature is 0") as error:
        read_metadata(tmp_path)
    assert "seqlab evaluate MODEL DEV --calibrate" in error.value.fix


@pytest.mark.parametrize("text", ['{"window": 256,}', "", "[1, 2]", '"window"', "\xff"])
def test_a_file_that_is_no_json_object_is_named(text, tmp_path):
    path = tmp_path / METADATA_FILE
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ModelError) as error:
        read_metadata(tmp_path)
    assert str(path) in error.value.message and error.value.fix


def test_the_writer_refuses_what_no_reader_could_use(tmp_path):
    with pytest.raises(ModelError, match="window is 0") as error:
        write_metadata(tmp_path, {"window": 0})
    assert str(tmp_path / METADATA_FILE) in error.value.message
    assert not (tmp_path / METADATA_FILE).exists()
    with pytest.raises(ModelError, match="decoder is 'beam'"):
        dataclasses.replace(ModelMetadata(), decoder="beam")
    with pytest.raises(ModelError, match="labels"):
        ModelMetadata().updated(labels="O")
