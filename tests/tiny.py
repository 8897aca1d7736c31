"""Tiny BERT token classifiers built offline: random weights, a small real WordPiece vocab."""

from __future__ import annotations

import string
from pathlib import Path

import torch
from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

from seqlab.models.metadata import write_metadata

NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
ROLE_LABELS = ["O", "B-ARG0", "I-ARG0", "B-ARG1", "I-ARG1", "B-ARGM-TMP", "I-ARGM-TMP", "B-V",
               "I-V"]
PREDICATE_LABELS = ["O", "B-VERB", "I-VERB", "B-NOUN", "I-NOUN"]
POS_LABELS = ["NOUN", "VERB", "ADJ", "ADP", "DET", "PROPN", "PUNCT", "NUM", "PRON", "X"]
WORDS = """the a of and in to is was for on with as by at from that it his her their
new york london paris city river john mary smith company bank university war world
said says year years people state government first after between during""".split()


def write_vocab(path: Path) -> Path:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits)
    punct = list(string.punctuation)
    pieces = [f"##{c}" for c in chars] + ["##ing", "##ed", "##s", "##er", "##tion"]
    vocab = specials + punct + chars + pieces + WORDS
    path.write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    return path


def build_tiny_model(directory: Path, labels: list[str] = NER_LABELS, seed: int = 0,
                     max_position: int = 512, case_feature: bool = False,
                     type_vocab_size: int = 2) -> Path:
    """Save a 2-layer, 32-wide BERT tagger with a fast tokenizer to ``directory``;
    ``case_feature`` marks it as trained with casing in its token type ids."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizerFast(vocab=str(write_vocab(directory / "vocab.txt")),
                                  do_lower_case=True, model_max_length=max_position)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=max_position,
        type_vocab_size=type_vocab_size,
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
    )
    model = BertForTokenClassification(config)
    with torch.no_grad():
        # wider logits and a prior towards O and I-: random weights then predict a realistic
        # mix of O, one-word and multi-word entities
        model.classifier.weight.mul_(8.0)
        for i, label in enumerate(labels):
            model.classifier.bias[i] = 2.0 if label == "O" else 0.8 if label[:2] == "I-" else 0.0
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    if case_feature:
        write_metadata(directory, {"case_feature": True})
    return directory


def build_tiny_srl(directory: Path, seed: int = 2) -> Path:
    """A tiny semantic role labeller as ``seqlab train --task srl`` leaves one: role labels,
    four token types (case + 2 * is_predicate), and its predicate labeller in
    ``predicates/``, named by its ``seqlab.json``; both share the other tiny models' vocab."""
    build_tiny_model(directory, ROLE_LABELS, seed=seed, type_vocab_size=4)
    labeller = build_tiny_model(directory / "predicates", PREDICATE_LABELS, seed=seed + 1)
    model = BertForTokenClassification.from_pretrained(labeller)
    with torch.no_grad():  # about one word in four a predicate, most of them verbs
        model.classifier.bias[PREDICATE_LABELS.index("B-VERB")] = 1.8
        model.classifier.bias[PREDICATE_LABELS.index("B-NOUN")] = 0.3
    model.save_pretrained(labeller, safe_serialization=True)
    write_metadata(directory, {"task": "srl", "scheme": "iob2", "predicate_encoding":
                               "indicator", "predicates": "predicates", "case_feature": True})
    write_metadata(directory / "predicates", {"task": "predicates", "scheme": "iob2"})
    return directory
