from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoModelForTokenClassification, AutoTokenizer

from seqlab.errors import ConfigError, InputError
from seqlab.models.load import ModelSpec, load_model
from seqlab.models.metadata import read_metadata, write_metadata
from seqlab.srl.data import (
    Frame,
    SrlSentence,
    keep_frames,
    predicate_sentences,
    read_srl,
    role_labels,
    unique_frames,
)
from seqlab.srl.evaluate import evaluate_srl, frame_pairs
from seqlab.srl.examples import encode_frames, widen_token_types
from seqlab.srl.tag import FrameTagger
from seqlab.training.metrics import entity_scores
from seqlab.training.train import TrainConfig, train
from tests.seqlab.training.test_train import tiny_encoder

NAMES = [["john", "smith"], ["mary"], ["the", "bank"], ["the", "university"]]
PLACES = [["in", "paris"], ["in", "new", "york"], ["in", "london"]]


def srl_line(rng: random.Random, n: int) -> dict:
    """``NAME said NAME was PLACE``: ``said`` takes ARG0 and ARG1, ``was`` ARG1 and ARG2
    (``said`` is a verb, ``was`` tagged as a noun so that the verbs filter has work)."""
    a, b, place = rng.choice(NAMES), rng.choice(NAMES), rng.choice(PLACES)
    words = a + ["said"] + b + ["was"] + place + ["."]
    pos = ["NNP"] * len(a) + ["VBD"] + ["NNP"] * len(b) + ["NN"] + ["IN"] * len(place) + ["."]
    said, was = len(a), len(a) + 1 + len(b)

    def span(role: str, length: int) -> list[str]:
        return [f"B-{role}"] + [f"I-{role}"] * (length - 1)

    said_tags = span("ARG0", len(a)) + ["B-V"] + span("ARG1", len(b) + 1 + len(place)) + ["O"]
    was_tags = ["O"] * (len(a) + 1) + span("ARG1", len(b)) + ["B-V"] + span("ARG2", len(place)) \
        + ["O"]
    return {"sent_id": f"weblog-doc{n // 3}-{n:04d}", "words": words, "pos": pos,
            "predicates": [{"index": said, "lemma": "say", "roleset": "say.01", "tags": said_tags},
                           {"index": was, "lemma": "be", "roleset": "be.01", "tags": was_tags}]}


def write_srl(path: Path, n: int, seed: int) -> str:
    rng = random.Random(seed)
    lines = [srl_line(rng, i) for i in range(n)]
    lines.append({"sent_id": "weblog-x-0001", "words": ["hello", "."], "pos": ["UH", "."],
                  "predicates": []})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


@pytest.fixture(scope="module")
def srl_files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("srl")
    return {"train": write_srl(root / "train.jsonl", 120, 0),
            "dev": write_srl(root / "dev.jsonl", 20, 1),
            "base": str(tiny_encoder(root / "base"))}


def srl_config(files: dict, out: Path, **options) -> TrainConfig:
    return TrainConfig(train=files["train"], dev=files["dev"], base=files["base"],
                       out=str(out), epochs=options.pop("epochs", 4), lr=1e-2, batch_size=8,
                       max_length=48, context=options.pop("context", "sentence"), **options)


@pytest.fixture(scope="module")
def srl_model(srl_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "srl"
    train(srl_config(srl_files, out, task="srl"))
    return out


@pytest.fixture(scope="module")
def predicate_model(srl_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "predicates"
    train(srl_config(srl_files, out, task="predicates", context="document"))
    return out


def test_read_srl_and_frames(srl_files, tmp_path):
    sentences = read_srl(srl_files["dev"])
    assert len(sentences) == 21 and sentences[-1].frames == ()
    assert sentences[0].document == "weblog-doc0"
    labels = role_labels(sentences)
    assert labels[0] == "O" and {"B-ARG0", "I-ARG2", "B-V"} <= set(labels)
    verbs = keep_frames(sentences, "verbs")
    assert all(len(s.frames) == 1 and s.pos[s.frames[0].index] == "VBD" for s in verbs[:-1])
    kinds = predicate_sentences(sentences[:1])[0].labels
    assert kinds.count("B-VERB") == 1 and kinds.count("B-NOUN") == 1
    twice = SrlSentence("a-1", ("x",), ("VB",), (Frame(0, ("B-V",)), Frame(0, ("B-V",))))
    assert len(unique_frames(twice)) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"words": ["a"], "predicates": [{"index": 3, "tags": ["O"]}]}))
    with pytest.raises(InputError, match="do not fit"):
        read_srl(str(bad))
    with pytest.raises(ConfigError, match="predicate filter"):
        keep_frames(sentences, "nouns")


def test_frames_encode_the_predicate(srl_files):
    tokenizer = AutoTokenizer.from_pretrained(srl_files["base"])
    sentence = read_srl(srl_files["dev"])[0]
    labels = role_labels([sentence])
    label2id = {label: i for i, label in enumerate(labels)}
    indicator = encode_frames([sentence], tokenizer, label2id, 64, "indicator")
    assert len(indicator) == 2  # one example per predicate
    for item, frame in zip(indicator.items, sentence.frames):
        tokens = tokenizer.convert_ids_to_tokens(item["input_ids"])
        marked = [t for t, type_ in zip(tokens, item["token_type_ids"]) if type_ == 2]
        assert marked == [sentence.words[frame.index]]
        assert [labels[i] for i in item["labels"] if i != -100] == list(frame.tags)
    segment = encode_frames([sentence], tokenizer, label2id, 64, "segment")
    tokens = tokenizer.convert_ids_to_tokens(segment[0]["input_ids"])
    assert tokens[-3:] == ["[SEP]", "said", "[SEP]"]
    assert segment[0]["token_type_ids"][-2:] == [1, 1] and segment[0]["labels"][-2:] == [-100] * 2
    with pytest.raises(ConfigError, match="case feature"):
        encode_frames([sentence], tokenizer, label2id, 64, "segment", case_feature=True)


def test_widened_token_types_keep_the_pretrained_rows(srl_files):
    model = AutoModelForTokenClassification.from_pretrained(srl_files["base"])
    old = model.bert.embeddings.token_type_embeddings.weight.detach().clone()
    widen_token_types(model)
    new = model.bert.embeddings.token_type_embeddings.weight.detach()
    assert new.shape[0] == 4 and model.config.type_vocab_size == 4
    assert np.allclose(new[:2], old) and np.allclose(new[2], old[1])


def test_role_scores_leave_out_the_predicate():
    gold = [["B-ARG0", "B-V", "B-ARG1", "I-ARG1"]]
    pred = [["B-ARG0", "O", "B-ARG1", "O"]]
    scores = entity_scores(gold, pred, ignore=("V",))
    assert scores["precision"] == 0.5 and scores["recall"] == 0.5
    assert "V" not in scores["per_label"]


def test_srl_train_learns_roles_and_evaluates_through_the_stages(srl_model, srl_files):
    meta = read_metadata(str(srl_model))
    assert meta.task == "srl" and meta.predicate_encoding == "indicator"
    assert meta.frames == {"train": 240, "dev": 40}
    assert meta.data["train"]["format"] == "srl-jsonl" and meta.hyper_parameters["task"] == "srl"
    assert list(meta)[-2:] == ["predicate_encoding", "frames"]  # the task's entries come last
    assert AutoModelForTokenClassification.from_pretrained(srl_model).config.type_vocab_size == 4
    assert meta.dev_metrics["f1"] > 0.6
    gold = evaluate_srl(str(srl_model), srl_files["dev"])
    assert gold["frames"] == {"gold": 40, "predicted": 40}
    assert gold["f1"] > 0.6 and "V" not in gold["per_label"]
    viterbi = evaluate_srl(str(srl_model), srl_files["dev"], decoder="viterbi")
    assert viterbi["f1"] >= gold["f1"] - 0.05
    verbs = evaluate_srl(str(srl_model), srl_files["dev"], verbs_only=True)
    assert verbs["frames"]["gold"] == 20


def test_predicate_labeller_and_end_to_end(srl_model, predicate_model, srl_files):
    meta = read_metadata(str(predicate_model))
    assert meta.task == "predicates" and "B-VERB" in meta.labels
    assert meta.data["dev"]["format"] == "srl-jsonl" and meta.frames == {}
    with pytest.raises(ConfigError, match="predicate labeller"):
        evaluate_srl(str(srl_model), srl_files["dev"], "predicted")
    ends = evaluate_srl(str(srl_model), srl_files["dev"], "predicted",
                        predicate_model=str(predicate_model))
    assert set(ends["predicates"]) == {"precision", "recall", "f1"}
    assert ends["predicates"]["f1"] > 0.5
    gold = evaluate_srl(str(srl_model), srl_files["dev"])
    assert ends["f1"] <= gold["f1"] + 1e-9 or ends["predicates"]["f1"] == 1.0
    # the SRL model's seqlab.json may name its labeller, relative to its own directory
    meta = read_metadata(str(srl_model))
    write_metadata(srl_model, meta.updated(predicates=str(predicate_model)))
    try:
        again = evaluate_srl(str(srl_model), srl_files["dev"], "predicted")
        assert again["f1"] == ends["f1"]
    finally:
        write_metadata(srl_model, meta)


def test_frame_pairs_count_missed_and_spurious_frames():
    sentence = SrlSentence("a-1", ("i", "ran", "home"), ("PRP", "VBD", "NN"),
                           (Frame(1, ("B-ARG0", "B-V", "B-ARG1")),))
    offsets = [0, 2, 6]
    assert [kind for *_, kind in frame_pairs(sentence, offsets, [], [])] == ["gold"]
    pairs = frame_pairs(sentence, offsets, [6], [None])
    assert sorted(kind for *_, kind in pairs) == ["gold", "predicted"]


def test_frame_tagger_refuses_other_models(srl_files):
    loaded = load_model(ModelSpec(srl_files["base"]))
    with pytest.raises(Exception, match="not an SRL model"):
        FrameTagger(loaded)


def test_cli_train_and_evaluate_srl(srl_model, predicate_model, srl_files, tmp_path, capsys):
    from seqlab.cli.main import main

    out = tmp_path / "segment"
    assert main(["train", "--task", "srl", "--predicate-encoding", "segment", "--train",
                 srl_files["train"], "--dev", srl_files["dev"], "--base", srl_files["base"],
                 "--out", str(out), "--epochs", "1", "--lr", "1e-2", "--batch-size", "16",
                 "--context", "sentence"]) == 0
    assert "dev f1" in capsys.readouterr().out
    meta = read_metadata(str(out))
    assert meta.predicate_encoding == "segment" and meta.case_feature is False
    assert main(["evaluate", str(srl_model), srl_files["dev"], "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["frames"]["gold"] == 40 and "predicates" not in scores
    assert main(["evaluate", str(srl_model), srl_files["dev"], "--predicates", "predicted,verbs",
                 "--predicate-model", str(predicate_model)]) == 0
    printed = capsys.readouterr().out
    assert "predicted predicates (verbs), 20 gold frames" in printed
    assert "predicate identification: f1" in printed
    assert main(["evaluate", str(srl_model), srl_files["dev"], "--predicates", "nouns"]) == 2


def test_low_rank_export_keeps_the_predicate_indicator(srl_model, srl_files, tmp_path):
    from seqlab.models.export import export_low_rank_model

    pinned = tmp_path / "pinned"
    export_low_rank_model(srl_model, pinned, rank=12, hub_id=None, package=None)
    exported, trained = read_metadata(str(pinned)), read_metadata(str(srl_model))
    assert exported.task == "srl" and exported.predicate_encoding == "indicator"
    assert exported.base.sha256 == trained.base.sha256 and exported.base.hub_id is None
    assert exported.form.startswith("rank-12") and exported.frames == trained.frames
    assert {k: v for k, v in exported.items() if k not in ("base", "form")} == \
        {k: v for k, v in trained.items() if k != "base"}
    full = evaluate_srl(str(srl_model), srl_files["dev"])
    compact = evaluate_srl(str(pinned), srl_files["dev"])
    assert compact["f1"] == pytest.approx(full["f1"], abs=0.1)


def test_shipped_srl_finds_a_predicate_and_its_arguments(tmp_path):
    from seqlab.models.shipped import shipped_model_dir

    if shipped_model_dir("srl") is None:
        pytest.skip("the shipped srl model is not installed")
    line = {"sent_id": "x-1-0001", "words": ["John", "gave", "Mary", "a", "book", "."],
            "pos": ["NNP", "VBD", "NNP", "DT", "NN", "."],
            "predicates": [{"index": 1, "lemma": "give", "roleset": "give.01",
                            "tags": ["B-ARG0", "B-V", "B-ARG2", "B-ARG1", "I-ARG1", "O"]}]}
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps(line) + "\n")
    metadata = load_model(ModelSpec("srl", device="cpu")).metadata
    assert metadata.task == "srl" and metadata.predicates == "predicates"
    ends = evaluate_srl("srl", str(data), "predicted", device="cpu")
    assert ends["predicates"]["recall"] == 1.0  # "gave" is found
    assert ends["frames"]["gold"] == 1 and ends["recall"] > 0


def test_annotate_lands_the_frames_of_a_trained_role_labeller(srl_model, predicate_model,
                                                              srl_files, tmp_path):
    import pyarrow.parquet as pq

    import seqlab

    corpus = tmp_path / "in.jsonl"
    sentences = read_srl(srl_files["dev"])
    corpus.write_text("".join(json.dumps({"id": f"s{i}", "text": " ".join(s.words)}) + "\n"
                              for i, s in enumerate(sentences)))
    with pytest.raises(ConfigError, match="names no predicate labeller") as refused:
        seqlab.annotate(str(corpus), str(tmp_path / "out"), model=str(srl_model))
    assert "--predicate-model" in refused.value.fix
    manifest = seqlab.annotate(str(corpus), str(tmp_path / "out"), model=str(srl_model),
                               predicate_model=str(predicate_model), id_column="id")
    frames = pq.read_table(tmp_path / "out" / "frames").to_pylist()
    assert manifest["counts"]["frames"] == len(frames) > 0
    # the trained labellers find most gold predicates and give them roles
    gold = sum(len(unique_frames(s)) for s in sentences)
    assert 0.5 * gold <= len(frames) <= 1.5 * gold
    assert sum(len(f["arguments"]) for f in frames) >= len(frames)


def test_one_span_per_core_role_keeps_the_best_and_leaves_modifiers():
    from seqlab.srl.tag import one_span_per_core_role

    labels = ["B-ARG1", "B-ARGM-TMP", "B-V", "B-ARG1", "I-ARG1", "B-ARGM-TMP"]
    kept = one_span_per_core_role(labels, np.array([0.4, 0.9, 1.0, 0.8, 0.6, 0.9]))
    assert kept == ["O", "B-ARGM-TMP", "B-V", "B-ARG1", "I-ARG1", "B-ARGM-TMP"]


def test_core_once_scores_through_the_stages(srl_model, srl_files):
    plain = evaluate_srl(str(srl_model), srl_files["dev"], decoder="viterbi")
    once = evaluate_srl(str(srl_model), srl_files["dev"], decoder="viterbi", core_once=True)
    assert once["frames"] == plain["frames"]
    assert predicted_arguments(once) <= predicted_arguments(plain)  # spans only dropped


def test_a_model_that_recommends_core_once_gets_it_unless_told_otherwise(srl_model):
    loaded = load_model(ModelSpec(str(srl_model), device="cpu"))
    assert FrameTagger(loaded).core_once is False
    recommends = dataclasses.replace(loaded, metadata=loaded.metadata.updated(core_once=True))
    assert FrameTagger(recommends).core_once is True
    assert FrameTagger(recommends, core_once=False).core_once is False


def predicted_arguments(scores: dict) -> int:
    """How many arguments were predicted: correct / precision, summed over the roles."""
    return sum(round(r["support"] * r["recall"] / r["precision"])
               for r in scores["per_label"].values() if r["precision"])
