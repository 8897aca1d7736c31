"""The training tasks registry: one object per ``--task``, found by name, each supplying only
what differs from the shared recipe. (Training itself: test_train.py, tests/seqlab/srl.)"""

from __future__ import annotations

import json

import pytest

import seqlab.training.tasks as tasks
from seqlab.errors import ConfigError
from seqlab.training.config import TrainConfig
from seqlab.training.data import TrainTask
from seqlab.training.formats import Sentence, write_sentences
from seqlab.training.tasks import (
    TRAIN_TASKS,
    PredicatesTask,
    SrlTask,
    TaggingTask,
    register,
    task_of,
)
from seqlab.training.train import train


def config(train: str = "t.conll", **options) -> TrainConfig:
    return TrainConfig(train=train, dev=options.pop("dev", train), base="base", out="out",
                       **options)


def test_the_three_tasks_are_registered_by_name_and_are_the_task_choices():
    assert TRAIN_TASKS == ("tagging", "srl", "predicates") == tuple(tasks.TASKS)
    assert [type(task_of(name)) for name in TRAIN_TASKS] == [TaggingTask, SrlTask,
                                                             PredicatesTask]
    with pytest.raises(ConfigError, match="unknown --task 'ner'") as error:
        task_of("ner")
    assert "tagging" in error.value.fix
    with pytest.raises(ConfigError, match="unknown --task 'ner'"):
        train(config(task="ner"))  # before any file is read


def test_a_name_is_registered_once(monkeypatch):
    monkeypatch.setattr(tasks, "TASKS", dict(tasks.TASKS))
    with pytest.raises(ConfigError, match="'srl'"):
        register(SrlTask())

    class Chunks(TaggingTask):
        name = "chunks"

    register(Chunks())
    assert type(task_of("chunks")) is Chunks


def test_what_each_task_records_in_seqlab_json(tmp_path):
    tagging, srl, predicates = (task_of(name) for name in TRAIN_TASKS)
    assert tagging.data_format("x.conllu", config()) == "conllu"
    assert tagging.data_format("x.txt", config(format="conll")) == "conll"
    assert srl.data_format("x.jsonl", config()) == predicates.data_format("x", config()) == \
        "srl-jsonl"
    write_sentences([Sentence(("paris",), ("B-LOC",))], str(tmp_path / "s.conll"), "conll")
    assert tagging.model_task(config(str(tmp_path / "s.conll")),
                              tagging.data(config(str(tmp_path / "s.conll")))) == "ner"
    assert tagging.model_task(config("t.conllu"), None) == "upos"
    assert tagging.model_task(config("t.conllu", column="xpos"), None) == "xpos"
    assert srl.model_task(config(), None) == "srl"
    assert predicates.model_task(config(), None) == "predicates"
    assert (tagging.unscored, predicates.unscored, srl.unscored) == ((), (), ("V",))
    assert tagging.metadata(config(), None) == predicates.metadata(config(), None) == {}


def test_tagging_data_and_predicate_data(tmp_path):
    write_sentences([Sentence(("john", "smith", "ran"), ("I-PER", "I-PER", "O"))],
                    str(tmp_path / "t.conll"), "conll")
    data = task_of("tagging").data(config(str(tmp_path / "t.conll")))
    assert data.scheme == "iob2" and data.labels == ["O", "B-PER", "I-PER"]
    assert data.train[0].labels == ("B-PER", "I-PER", "O")  # IOB1 converted
    line = {"sent_id": "a-1", "words": ["john", "ran", "home"], "pos": ["NNP", "VBD", "NN"],
            "predicates": [{"index": 1, "lemma": "run", "roleset": "run.01",
                            "tags": ["B-ARG0", "B-V", "B-ARG1"]}]}
    (tmp_path / "f.jsonl").write_text(json.dumps(line) + "\n")
    data = task_of("predicates").data(config(str(tmp_path / "f.jsonl"), task="predicates"))
    assert data.scheme == "iob2" and data.train[0].labels == ("O", "B-VERB", "O")


def test_srl_settles_the_case_feature_for_its_encoding():
    srl = task_of("srl")
    segment = config(task="srl", predicate_encoding="segment")
    assert srl.settle(segment).case_feature is False
    with pytest.raises(ConfigError, match="case feature"):
        srl.settle(config(task="srl", predicate_encoding="segment", case_feature=True))
    indicator = config(task="srl")
    assert srl.settle(indicator) == indicator == task_of("tagging").settle(indicator)


def test_a_task_without_data_of_its_own_says_so():
    with pytest.raises(NotImplementedError, match="prepares its examples itself"):
        TrainTask().data(config())
