"""Training mixtures: set specs, the Universal NER and WNUT-17 loaders on excerpts of the real
files, label sets per word, weights, refusals, and a tiny training run of two sets."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from seqlab.cli.main import main
from seqlab.errors import ConfigError
from seqlab.labels import chunks
from seqlab.training.config import TrainConfig
from seqlab.training.formats import Sentence, read_sentences, write_sentences
from seqlab.training.mixture import mixture_data
from seqlab.training.specs import TrainSet
from tests.seqlab.training.test_train import ENTITIES, FILLER, ner_sentences, tiny_encoder

FIXTURES = Path(__file__).parent / "fixtures"
UNER = str(FIXTURES / "uner_ewt_train.iob2")
WNUT = str(FIXTURES / "wnut17_train.conll")
WNUT_DEV = str(FIXTURES / "wnut17_dev.conll")


def test_uner_reader_on_the_real_file():
    sentences = read_sentences(UNER)  # .iob2: Universal NER
    assert [len(s.words) for s in sentences] == [29, 49, 17]
    first = sentences[0]
    assert first.words[:5] == ("Al", "-", "Zaman", ":", "American")
    assert first.labels[:5] == ("B-ORG", "I-ORG", "I-ORG", "O", "B-OTH")
    assert first.words[-1] == "." and first.labels[-1] == "O"  # B-O read as O
    assert "B-O" not in {label for s in sentences for label in s.labels}
    assert ("OTH", 5, 6) in chunks(sentences[1].labels)  # "Sunni Arab": B-OTH I-OTH
    # "# newdoc id" starts a document; the second sentence is of the first document
    assert sentences[0].document == sentences[1].document != sentences[2].document


def test_wnut_reader_on_the_real_files():
    train = read_sentences(WNUT)  # lone-TAB lines separate sentences
    assert [len(s.words) for s in train] == [27, 15, 12]
    assert train[0].words[14:17] == ("Empire", "State", "Building")
    assert chunks(train[0].labels)[0] == ("location", 14, 16)
    dev = read_sentences(WNUT_DEV)
    assert dev[1].words == ("excellent", "poem", "Dubbz")  # the BOM inside the token is gone


@pytest.mark.parametrize("spec, path, fmt, mapping, weight", [
    ("data/en_ewt-ud-train.iob2", "data/en_ewt-ud-train.iob2", None, {"OTH": "?"}, 1.0),
    ("data/w.conll:wnut:wnut17:weight=0.5", "data/w.conll", "wnut", {"group": "ORG"}, 0.5),
    ("s3://bucket/x/eng.train:weight=2", "s3://bucket/x/eng.train", None, {}, 2.0),
    ("memory://u.txt:uner:labels=uner,OTH=O", "memory://u.txt", "uner", {"OTH": "O"}, 1.0),
    ("w.conll:labels=wnut17,group=unknown", "w.conll", None, {"group": "?"}, 1.0),
])
def test_specs(spec, path, fmt, mapping, weight):
    parsed = TrainSet.parse(spec)
    assert (parsed.path, parsed.format, parsed.weight) == (path, fmt, weight)
    assert dict(parsed.mapping).items() >= mapping.items()


@pytest.mark.parametrize("spec, message", [
    ("eng.train:conl", "neither a format"),
    ("eng.train:wieght=2", "neither a format"),
    ("eng.train:weight=-1", "not a number above 0"),
    ("eng.train:format=xml", "unknown format"),
    ("eng.train:labels=wnut", "neither a named mapping"),
])
def test_spec_mistakes_name_the_fix(spec, message):
    with pytest.raises(ConfigError, match=message) as error:
        TrainSet.parse(spec)
    assert error.value.fix


def conll_set(path: Path, n: int, seed: int) -> str:
    """Tiny CoNLL-2003-like sentences of PER, LOC and ORG, plus MISC on "war"."""
    sentences = [Sentence(s.words + ("war",), s.labels + ("I-MISC",), s.document)
                 for s in ner_sentences(n, seed)]
    write_sentences(sentences, str(path), "conll")
    return str(path)


def uner_set(path: Path, n: int, seed: int) -> str:
    """Tiny Universal NER-like sentences: PER and LOC, "war" an OTH span, no MISC, no ORG."""
    rng = random.Random(seed)
    sentences = []
    for i in range(n):
        words, labels = [], []
        for _ in range(rng.randint(2, 5)):
            if rng.random() < 0.4:
                span, type_ = rng.choice([e for e in ENTITIES if e[1] != "ORG"])
                words += span
                labels += [f"B-{type_}"] + [f"I-{type_}"] * (len(span) - 1)
            elif rng.random() < 0.3:
                words.append("war")
                labels.append("B-OTH")
            else:
                words.append(rng.choice(FILLER))
                labels.append("O")
        sentences.append(Sentence(tuple(words), tuple(labels), f"web{i // 3}"))
    write_sentences(sentences, str(path), "uner")
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("mix")
    return {"conll": conll_set(root / "news.train", 48, 0),
            "dev": conll_set(root / "news.dev", 12, 1),
            "uner": uner_set(root / "web.iob2", 36, 2),
            "base": str(tiny_encoder(root / "base"))}


def mix_config(files: dict, *train: str, **options) -> TrainConfig:
    return TrainConfig(train=train, dev=files["dev"], base=options.pop("base", files["base"]),
                       out=options.pop("out", "unused"), **options)


def test_words_a_set_cannot_label_get_label_sets(files):
    data = mixture_data(mix_config(files, files["conll"], files["uner"]))
    assert data.labels == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG",
                           "B-PER", "I-PER"]
    news, web = data.train[:48], data.train[48:]
    assert all("|" not in label for s in news + data.dev for label in s.labels)
    for sentence in web:
        for word, label in zip(sentence.words, sentence.labels):
            if word == "war":  # an OTH span: O or MISC, never I-MISC at its start
                assert label == "O|B-MISC|B-ORG"
            elif word in ("paris", "mary", "john", "smith", "new", "york"):
                assert "|" not in label and label[2:] in ("PER", "LOC")
            else:  # an outside word: anything the set never labels (MISC, ORG) or O
                assert set(label.split("|")) <= {"O", "B-MISC", "I-MISC", "B-ORG", "I-ORG"}
                assert {"O", "B-MISC", "B-ORG"} <= set(label.split("|"))
    assert data.record["train"]["mix"][1]["types"] == ["LOC", "PER"]
    assert data.record["train"]["mix"][1]["unknown_spans"] == sum(
        s.words.count("war") for s in web)


def test_weights_repeat_or_sample_documents(files):
    data = mixture_data(mix_config(files, files["conll"] + ":weight=0.5",
                                   files["uner"] + ":weight=2"))
    news = [s for s in data.train if s.document.startswith("0.")]
    web = [s for s in data.train if s.document.startswith("1.")]
    assert len(news) == 24 and len({s.document for s in news}) == 6  # half the 12 documents
    assert len(web) == 72 and len({s.document for s in web}) == 2 * 12  # each copy its own
    copies = [Counter(s.document.split(":", 1)[1] for s in web if s.document[:4] == f"1.{c}:")
              for c in (0, 1)]
    assert copies[0] == copies[1] and len(copies[0]) == 12
    mix = data.record["train"]["mix"]
    assert [m["weight"] for m in mix] == [0.5, 2.0]
    assert [m["epoch_sentences"] for m in mix] == [24, 72]
    again = mixture_data(mix_config(files, files["conll"] + ":weight=0.5", files["uner"]))
    assert [s.words for s in again.train[:24]] == [s.words for s in news]  # seeded


def test_unmapped_types_are_refused_with_the_mapping_that_fits(files):
    with pytest.raises(ConfigError, match=r"types \['corporation'.*:wnut17") as error:
        mixture_data(mix_config(files, files["conll"], WNUT))
    assert "labels=" in error.value.fix
    data = mixture_data(mix_config(files, files["conll"], WNUT + ":wnut17"))
    wnut = data.record["train"]["mix"][1]
    assert wnut["types"] == ["LOC", "ORG"] and wnut["labels"]["group"] == "ORG"
    # a set listed first with fewer types cannot take one with more
    with pytest.raises(ConfigError, match="MISC"):
        mixture_data(mix_config(files, files["uner"], files["conll"]))


def test_a_mixture_is_for_tagging_and_iob2(files):
    with pytest.raises(ConfigError, match="not a mixture"):
        mix_config(files, files["conll"], files["uner"], task="srl")
    with pytest.raises(ConfigError, match="IOB2"):
        mixture_data(mix_config(files, files["conll"], files["uner"], scheme="bioes"))
    # one set without options is a plain run
    assert mix_config(files, files["conll"]).train == files["conll"]


def test_tiny_mixture_trains_and_records_the_mix(files, tmp_path, capsys):
    out = tmp_path / "model"
    code = main(["train", "--train", files["conll"], "--train", files["uner"] + ":weight=2",
                 "--dev", files["dev"], "--base", files["base"], "--out", str(out),
                 "--epochs", "1", "--lr", "1e-2", "--batch-size", "8", "--max-length", "48",
                 "--seed", "3"])
    assert code == 0 and "saved" in capsys.readouterr().out
    saved = json.loads((out / "seqlab.json").read_text())
    assert saved["task"] == "ner" and saved["labels"][3:5] == ["B-MISC", "I-MISC"]
    train = saved["data"]["train"]
    assert train["partial_labels"] is True and train["seed"] == 3
    assert [(Path(m["path"]).name, m["format"], m["weight"], m["sentences"])
            for m in train["mix"]] == [("news.train", "conll", 1.0, 48),
                                       ("web.iob2", "uner", 2.0, 36)]
    assert all(len(m["sha256"]) == 64 for m in train["mix"])
    assert train["sentences"] == 48 + 72
    assert saved["data"]["dev"]["sentences"] == 12
    assert saved["hyper_parameters"]["seed"] == 3 and saved["dev_history"]
    assert json.loads((out / "config.json").read_text())["id2label"]["0"] == "O"


def test_the_trainer_learns_label_sets_with_the_partial_loss(files, tmp_path):
    from seqlab.training.partial import PartialLoss
    from seqlab.training.train import build_trainer, prepare

    config = mix_config(files, files["conll"], files["uner"], max_length=48)
    prepared = prepare(config)
    k = len(prepared.data.labels)
    assert prepared.label_sets and all("|" in s for s in prepared.label_sets)
    ids = {i for item in prepared.train_set.items for i in item["labels"]}
    assert max(ids) >= k  # label sets reach the examples as ids after the labels
    assert max(i for item in prepared.dev_set.items for i in item["labels"]) < k
    trainer = build_trainer(config, prepared, str(tmp_path))
    assert isinstance(trainer.compute_loss_func, PartialLoss)
    assert trainer.compute_loss_func.masks.shape == (k + len(prepared.label_sets), k)


def test_training_goes_on_from_a_model_in_compact_form(files, tmp_path):
    """A shipped model is an adapter over its pinned base: training from it keeps its head
    (same labels) and records the base it rests on, so the result exports as the shipped
    models do."""
    import torch
    from transformers import AutoModelForTokenClassification

    from seqlab.models.export import export_low_rank_model
    from seqlab.training.train import adapter_tagger, train

    first = train(TrainConfig(train=files["conll"], dev=files["dev"], base=files["base"],
                              out=str(tmp_path / "full"), epochs=1, lr=1e-2, max_length=48))
    compact = export_low_rank_model(tmp_path / "full", tmp_path / "compact", rank=4,
                                    hub_id=None, package=None)
    full = AutoModelForTokenClassification.from_pretrained(tmp_path / "full")
    kept = adapter_tagger(str(compact), list(first.labels))
    assert torch.equal(kept.classifier.weight, full.classifier.weight)
    fresh = adapter_tagger(str(compact), ["O", "B-X", "I-X"])
    assert fresh.classifier.out_features == 3 and fresh.config.id2label[1] == "B-X"
    meta = train(mix_config(files, files["conll"], files["uner"], base=str(compact),
                            out=str(tmp_path / "more"), max_steps=2, max_length=48))
    base = meta.to_dict()["base"]
    assert base["sha256"] == first.base.sha256 and base["initialised_from"]["name"] == \
        str(compact)
    assert meta.hyper_parameters["max_steps"] == 2
    assert 0 < meta.dev_history[-1]["epoch"] < 1  # stopped after 2 steps, then scored
    steps = meta.to_dict()["train_steps"]
    assert steps["steps"] == 2 and steps["seconds"] > 0 and steps["eval_seconds"] > 0
