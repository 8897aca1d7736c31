from __future__ import annotations

import dataclasses
import json
import random
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    BertConfig,
    BertForTokenClassification,
    BertTokenizerFast,
)

import seqlab.training.train
from seqlab.errors import ConfigError, ModelError
from seqlab.models.export import export_adapter_model, export_low_rank_model
from seqlab.models.load import ModelSpec, load_model
from seqlab.models.metadata import read_metadata, write_metadata
from seqlab.training.examples import encode
from seqlab.training.formats import Sentence, write_sentences
from seqlab.training.train import (
    TRAINERS,
    TrainConfig,
    label_list,
    prepare_data,
    target_scheme,
    train,
    trainer_of,
)
from tests.tiny import NER_LABELS, write_vocab

ENTITIES = [(["john", "smith"], "PER"), (["mary"], "PER"), (["new", "york"], "LOC"),
            (["paris"], "LOC"), (["bank"], "ORG"), (["university"], "ORG")]
FILLER = "the a of and in to is was for on with said".split()


def tiny_encoder(directory: Path, labels: list[str] = NER_LABELS, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT tagger and a fast tokenizer over tests.tiny's vocabulary."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizerFast(vocab=str(write_vocab(directory / "vocab.txt")),
                                  do_lower_case=True, model_max_length=512)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        id2label=dict(enumerate(labels)),
                        label2id={label: i for i, label in enumerate(labels)})
    BertForTokenClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def ner_sentences(n: int, seed: int) -> list[Sentence]:
    """IOB1 sentences (as CoNLL-2003 writes them), adjacent same-type entities included, four
    to a document."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        words, labels, previous = [], [], None
        for _ in range(rng.randint(2, 6)):
            if rng.random() < 0.45:
                span, type_ = rng.choice(ENTITIES)
                words += span
                first = "B" if previous == type_ else "I"
                labels += [f"{first}-{type_}"] + [f"I-{type_}"] * (len(span) - 1)
                previous = type_
            else:
                words.append(rng.choice(FILLER))
                labels.append("O")
                previous = None
        sentences.append(Sentence(tuple(words), tuple(labels), f"doc{len(sentences) // 4}"))
    return sentences


@pytest.fixture(scope="module")
def ner_files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("ner")
    write_sentences(ner_sentences(160, 0), str(root / "train.conll"), "conll")
    write_sentences(ner_sentences(32, 1), str(root / "dev.conll"), "conll")
    return {"train": str(root / "train.conll"), "dev": str(root / "dev.conll"),
            "base": str(tiny_encoder(root / "base"))}


def config(files: dict, out: Path, **options) -> TrainConfig:
    return TrainConfig(train=files["train"], dev=files["dev"], base=files["base"],
                       out=str(out), epochs=options.pop("epochs", 2),
                       lr=options.pop("lr", 1e-2), batch_size=options.pop("batch_size", 4),
                       max_length=options.pop("max_length", 48), **options)


def test_labels_and_schemes():
    sentences = [Sentence(("a", "b"), ("I-PER", "B-PER"))]
    assert target_scheme(sentences, None) == "iob2"
    assert label_list(sentences, "iob2") == ["O", "B-PER", "I-PER"]
    assert target_scheme([Sentence(("a",), ("NOUN",))], None) == "tags"
    with pytest.raises(ConfigError, match="plain tags"):
        target_scheme([Sentence(("a",), ("NOUN",))], "bioes")


def test_first_subword_labels(ner_files):
    tokenizer = AutoTokenizer.from_pretrained(ner_files["base"])
    encoded = encode([Sentence(("banked", "paris"), ("O", "B-LOC"))], tokenizer,
                     {"O": 0, "B-LOC": 1}, 32)
    # [CLS] bank ##ed paris [SEP]: only each word's first subword is labelled
    assert tokenizer.convert_ids_to_tokens(encoded[0]["input_ids"])[1:3] == ["bank", "##ed"]
    assert encoded[0]["labels"] == [-100, 0, -100, 1, -100]


def test_document_context_packs_whole_sentences(ner_files):
    tokenizer = AutoTokenizer.from_pretrained(ner_files["base"])
    label2id = {"O": 0, "B-LOC": 1, "I-LOC": 2}
    doc = [Sentence(("paris", "banked", "the"), ("B-LOC", "O", "O"), "d0"),
           Sentence(("new", "york"), ("B-LOC", "I-LOC"), "d0"),
           Sentence(("the",) * 9, ("O",) * 9, "d0"),  # longer than one example: cut
           Sentence(("paris",), ("B-LOC",), "d1")]
    words = [label2id[label] for s in doc for label in s.labels]
    for context, expected in (("document", 4), ("sentence", 5)):
        encoded = encode(doc, tokenizer, label2id, 8, context)
        assert len(encoded) == expected
        assert all(len(item["input_ids"]) <= 8 for item in encoded.items)
        # every word labelled once, in order, on its first subword; specials unlabelled
        assert [v for item in encoded.items for v in item["labels"] if v != -100] == words
        assert all(item["labels"][0] == item["labels"][-1] == -100 for item in encoded.items)
    # document context: the first two sentences share an example; d1 never joins d0
    first = tokenizer.convert_ids_to_tokens(encode(doc, tokenizer, label2id, 8)[0]["input_ids"])
    assert first == ["[CLS]", "paris", "bank", "##ed", "the", "new", "york", "[SEP]"]
    last = encode(doc, tokenizer, label2id, 8)[3]["input_ids"]
    assert tokenizer.convert_ids_to_tokens(last) == ["[CLS]", "paris", "[SEP]"]


def test_iob1_data_is_converted(ner_files, tmp_path):
    data = prepare_data(config(ner_files, tmp_path))
    assert data.scheme == "iob2"
    assert all(not (a == "O" and b.startswith("I-"))
               for s in data.train for a, b in zip(("O",) + s.labels, s.labels))
    assert len({s.document for s in data.train}) == 40  # conversion keeps the documents


@pytest.fixture(scope="module")
def trained(ner_files, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("trained") / "model"
    return out, train(config(ner_files, out, epochs=3, train_embeddings=False))


def test_train_saves_a_plain_checkpoint(trained, ner_files):
    out, meta = trained
    assert not (out / "checkpoints").exists()
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    model = AutoModelForTokenClassification.from_pretrained(out)  # plain transformers loads it
    assert model.config.id2label[0] == "O"
    saved = read_metadata(str(out))
    assert saved.to_dict() == meta.to_dict() == json.loads((out / "seqlab.json").read_text())
    assert saved.scheme == "iob2" and saved.task == "ner"
    assert saved.labels == ("O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER")
    assert saved.data["train"]["sha256"] and saved.data["dev"]["sentences"] == 32
    assert saved.data["train"]["format"] == "conll"
    assert saved.hyper_parameters["lr"] == 1e-2
    assert len(saved.dev_history) == 3
    assert saved.dev_metrics["f1"] == max(e["f1"] for e in saved.dev_history)
    assert saved.dev_metrics["f1"] > 0.5  # the tiny task is learnable
    assert saved.base.sha256 and saved.base.name == ner_files["base"]
    assert saved.train_seconds > 0 and saved.versions["seqlab"]
    assert "predicate_encoding" not in saved and "frames" not in saved


def test_training_is_seeded(ner_files, tmp_path):
    first, again = (train(config(ner_files, tmp_path / name, epochs=1)).dev_history[0]
                    for name in ("first", "again"))
    assert again["f1"] == first["f1"]
    assert again["loss"] == pytest.approx(first["loss"], rel=1e-5)


def test_low_rank_export_loads_through_seqlab(trained, ner_files, tmp_path):
    out, _ = trained
    compact = export_low_rank_model(out, tmp_path / "compact", rank=8, hub_id=None,
                                    package=None)
    full = load_model(ModelSpec(str(out), device="cpu"))
    small = load_model(ModelSpec(str(compact), device="cpu"))
    ids = torch.tensor([[2, 50, 60, 70, 3]])
    # 32-wide layers: rank 8 of 32 is an approximation, but the argmax mostly survives
    with torch.no_grad():
        a, b = full.model(input_ids=ids).logits, small.model(input_ids=ids).logits
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.9
    assert small.labels == full.labels
    tensors = load_file(str(compact / "adapter_model.safetensors"))
    assert any(".lora_A." in k for k in tensors)
    assert "base_model.model.bert.embeddings.word_embeddings.weight" not in tensors


def test_low_rank_export_int8_matches_fp16(trained, tmp_path):
    out, _ = trained
    forms = {bits: export_low_rank_model(out, tmp_path / f"b{bits}", rank=8, bits=bits,
                                         hub_id=None, package=None) for bits in (8, 16)}
    int8 = load_file(str(forms[8] / "adapter_model.safetensors"))
    factors = [k for k in int8 if ".lora_" in k and k.endswith(".weight")]
    assert factors and all(int8[k].dtype == torch.int8 for k in factors)
    assert all(k.removesuffix(".weight") + ".scale" in int8 for k in factors)
    fp16 = load_file(str(forms[16] / "adapter_model.safetensors"))
    assert all(fp16[k].dtype == torch.float16 for k in factors)
    ids = torch.tensor([[2, 50, 60, 70, 3]])
    with torch.no_grad():
        a, b = (load_model(ModelSpec(str(forms[bits]), device="cpu")).model(input_ids=ids).logits
                for bits in (8, 16))
    assert torch.allclose(a, b, atol=2e-2 * b.abs().max().item())
    with pytest.raises(ModelError, match="bits"):
        export_low_rank_model(out, tmp_path / "b4", rank=8, bits=4, hub_id=None, package=None)


def test_lora_train_and_export(ner_files, tmp_path):
    out = tmp_path / "lora"
    meta = train(config(ner_files, out, epochs=1, lora_r=4, lr=1e-2))
    assert meta.hyper_parameters["lora_r"] == 4
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    compact = export_adapter_model(out, tmp_path / "shipped", hub_id=None, package=None)
    assert not (compact / "model.safetensors").exists()
    merged = load_model(ModelSpec(str(out), device="cpu"))
    shipped = load_model(ModelSpec(str(compact), device="cpu"))
    ids = torch.tensor([[2, 50, 60, 70, 3]])
    with torch.no_grad():
        assert torch.allclose(merged.model(input_ids=ids).logits,
                              shipped.model(input_ids=ids).logits, atol=1e-5)
    # a different base encoder under the adapter is refused
    metadata = read_metadata(str(compact))
    assert metadata.base.hub_id is None and len(metadata.base.sha256) == 64
    write_metadata(compact, dataclasses.replace(
        metadata, base=dataclasses.replace(metadata.base, sha256="0" * 64)))
    assert read_metadata(str(compact)).base.sha256 == "0" * 64
    with pytest.raises(ModelError, match="sha256"):
        load_model(ModelSpec(str(compact), device="cpu"))


def test_tags_train(tmp_path):
    rng = random.Random(0)
    vocab = {"the": "DET", "a": "DET", "city": "NOUN", "bank": "NOUN", "said": "VERB",
             "is": "AUX", "in": "ADP", "new": "ADJ"}
    sentences = [Sentence(*zip(*[(w, vocab[w]) for w in rng.choices(list(vocab), k=5)]))
                 for _ in range(64)]
    write_sentences(sentences, str(tmp_path / "t.conllu"), "conllu")
    base = tiny_encoder(tmp_path / "base")
    meta = train(TrainConfig(train=str(tmp_path / "t.conllu"), dev=str(tmp_path / "t.conllu"),
                             base=str(base), out=str(tmp_path / "pos"), epochs=2, lr=5e-3,
                             batch_size=16))
    assert meta.scheme == "tags" and meta.task == "upos"
    assert meta.labels == tuple(sorted(set(vocab.values())))
    assert "accuracy" in meta.dev_metrics and meta.data["train"]["format"] == "conllu"


def test_bad_options(ner_files, tmp_path):
    with pytest.raises(ConfigError, match="engine"):
        config(ner_files, tmp_path, engine="spark")
    with pytest.raises(ConfigError, match="context"):
        config(ner_files, tmp_path, context="paragraph")


def registered(monkeypatch, *points) -> None:
    monkeypatch.setattr(seqlab.training.train, "entry_points",
                        lambda group: [p for p in points if p.group == group])


def test_engines_are_found_by_entry_point(monkeypatch):
    assert [p.value for p in entry_points(group=TRAINERS, name="ray")] == \
        ["pipelines.ray_train:run"]  # pyproject.toml registers it (reinstall after a change)
    registered(monkeypatch)
    with pytest.raises(ConfigError, match="no trainer for --engine ray") as error:
        trainer_of("ray")
    assert "pip install 'seqlab[ray]'" in error.value.fix
    registered(monkeypatch, EntryPoint("ray", "ray.no_such_module:run", TRAINERS))
    with pytest.raises(ConfigError, match=r"pip install 'seqlab\[ray\]'"):
        trainer_of("ray")


@pytest.mark.timeout(240)
def test_ray_train_two_cpu_workers(ner_files, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        meta = train(config(ner_files, tmp_path / "ray", epochs=1, engine="ray",
                            num_workers=2))
    finally:
        ray.shutdown()
    assert meta.hyper_parameters["engine"] == "ray" and meta.task == "ner"
    assert (tmp_path / "ray" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "ray" / "seqlab.json").read_text())["dev_history"]


def test_cli_train(ner_files, tmp_path, capsys):
    from seqlab.cli.main import main

    out = tmp_path / "cli"
    assert main(["train", "--train", ner_files["train"], "--dev", ner_files["dev"], "--base",
                 ner_files["base"], "--out", str(out), "--epochs", "1", "--lr", "1e-2",
                 "--batch-size", "16", "--train-embeddings", "--context", "sentence",
                 "--no-case-feature", "--caseless", "0.5"]) == 0
    assert "dev f1" in capsys.readouterr().out
    hyper_parameters = read_metadata(str(out)).hyper_parameters
    assert hyper_parameters["train_embeddings"] is True
    assert hyper_parameters["context"] == "sentence"
    assert hyper_parameters["case_feature"] is False and hyper_parameters["caseless"] == 0.5


def test_shipped_name_resolves_to_compact_model(trained, tmp_path, monkeypatch):
    from transformers import AutoConfig

    import seqlab.models.shipped
    from seqlab.models.load import local_model_dir

    out, _ = trained
    export_low_rank_model(out, tmp_path / "models" / "ner", rank=8, hub_id=None, package=None)
    monkeypatch.setattr(seqlab.models.shipped, "SHIPPED_ROOT", tmp_path / "models")
    # what plan_run reads before any work: a config with id2label in the shipped directory
    assert AutoConfig.from_pretrained(local_model_dir("ner")).id2label[0] == "O"
    loaded = load_model(ModelSpec("ner", device="cpu"))
    assert loaded.revision.startswith("sha256:") and loaded.labels.scheme == "iob2"


def test_annotate_window_defaults_to_the_trained_length(trained, tmp_path):
    from seqlab.config import build_config
    from seqlab.run.plan import plan_run

    out, meta = trained
    assert meta.window == 48
    (tmp_path / "in.jsonl").write_text('{"text": "john smith went to paris"}\n')

    def window(**options) -> tuple[int, int]:
        config = plan_run(build_config(input=str(tmp_path / "in.jsonl"),
                                       output=str(tmp_path / "out"), model=str(out),
                                       overwrite=True, **options)).config
        return config.max_length, config.stride

    assert window() == (48, 12)
    assert window(max_length=128) == (128, 32)
    assert window(max_length=128, stride=0) == (128, 0)


def cased_sentences(n: int, seed: int) -> list[Sentence]:
    """Entities told from other words by their casing alone: ``Bank`` is an ORG, ``bank``
    is not; the same words in the same contexts otherwise."""
    rng = random.Random(seed)
    sentences = []
    for i in range(n):
        words, labels = [], []
        for _ in range(rng.randint(3, 7)):
            word = rng.choice(["bank", "paris", "smith", "university"] + FILLER[:4])
            if word in FILLER or rng.random() < 0.5:
                words.append(word)
                labels.append("O")
            else:
                words.append(word.capitalize() if rng.random() < 0.5 else word.upper())
                labels.append("B-ORG")
        sentences.append(Sentence(tuple(words), tuple(labels), f"doc{i // 4}"))
    return sentences


def test_case_feature_encodes_casing_as_token_types(ner_files):
    tokenizer = AutoTokenizer.from_pretrained(ner_files["base"])
    sentence = Sentence(("Banked", "PARIS", "the", "xY"), ("O", "B-LOC", "O", "O"))
    item = encode([sentence], tokenizer, {"O": 0, "B-LOC": 1}, 32, case_feature=True)[0]
    tokens = tokenizer.convert_ids_to_tokens(item["input_ids"])
    # [CLS] bank ##ed paris the x ##y [SEP]: a subword is 1 when its own characters hold an
    # upper-case letter; special tokens are 0
    assert tokens == ["[CLS]", "bank", "##ed", "paris", "the", "x", "##y", "[SEP]"]
    assert item["token_type_ids"] == [0, 1, 0, 1, 0, 0, 1, 0]
    assert "token_type_ids" not in encode([sentence], tokenizer, {"O": 0, "B-LOC": 1}, 32)[0]


def test_case_feature_is_learned_and_used_when_annotating(ner_files, tmp_path):
    """A task that only casing can solve: the model trained with the case feature solves it
    through the annotate path (tokenize -> tag -> decode); one without it cannot."""
    from seqlab.training.evaluate import evaluate

    write_sentences(cased_sentences(200, 0), str(tmp_path / "train.conll"), "conll")
    write_sentences(cased_sentences(40, 1), str(tmp_path / "dev.conll"), "conll")
    files = {"train": str(tmp_path / "train.conll"), "dev": str(tmp_path / "dev.conll"),
             "base": ner_files["base"]}
    scores = {}
    for case_feature in (True, False):
        out = tmp_path / f"case-{case_feature}"
        meta = train(config(files, out, epochs=3, lr=1e-2, case_feature=case_feature))
        assert meta.case_feature is case_feature
        scores[case_feature] = evaluate(str(out), files["dev"])["f1"]
    assert scores[True] > 0.95
    assert scores[False] < 0.8


def test_case_feature_defaults_to_on_for_uncased_encoders(ner_files, tmp_path):
    from seqlab.training.train import settle_case_feature

    assert settle_case_feature(config(ner_files, tmp_path)).case_feature is True
    assert settle_case_feature(config(ner_files, tmp_path, case_feature=False)).case_feature \
        is False
    cased = tmp_path / "cased"
    cased.mkdir()
    BertTokenizerFast(vocab=str(write_vocab(cased / "vocab.txt")),
                      do_lower_case=False).save_pretrained(cased)
    BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64).save_pretrained(cased)
    files = {**ner_files, "base": str(cased)}
    assert settle_case_feature(config(files, tmp_path)).case_feature is False
    assert settle_case_feature(config(files, tmp_path, case_feature=True)).case_feature is True
    BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64, type_vocab_size=1).save_pretrained(cased)
    assert settle_case_feature(config(files, tmp_path)).case_feature is False
    with pytest.raises(ConfigError, match="--no-case-feature"):
        settle_case_feature(config(files, tmp_path, case_feature=True))


def test_a_caseless_share_of_examples_hides_the_casing(ner_files):
    tokenizer = AutoTokenizer.from_pretrained(ner_files["base"])
    sentences = [Sentence(("Paris",), ("B-LOC",), f"d{i}") for i in range(400)]
    label2id = {"O": 0, "B-LOC": 1}

    def hidden(caseless: float, seed: int = 0) -> list[bool]:
        items = encode(sentences, tokenizer, label2id, 16, case_feature=True,
                       caseless=caseless, seed=seed).items
        # [CLS] paris [SEP]: the capital shows as type 1 unless the example is caseless
        assert all(item["token_type_ids"] in ([0, 1, 0], [0, 0, 0]) for item in items)
        return [item["token_type_ids"][1] == 0 for item in items]

    assert not any(hidden(0.0)) and all(hidden(1.0))
    assert 0.15 < sum(hidden(0.25)) / len(sentences) < 0.35
    assert hidden(0.25) == hidden(0.25) != hidden(0.25, seed=1)  # drawn with the seed
    with pytest.raises(ConfigError, match="between 0 and 1"):
        config(ner_files, Path("unused"), caseless=1.5)
