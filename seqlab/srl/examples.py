"""SRL training examples: one per frame (sentence x predicate), the predicate given to the
encoder in one of two ways.

- ``indicator``: the sentence alone, and a learned predicate embedding added to the subwords of
  the predicate word. BERT's token type embedding carries it, widened from 2 types to 4:
  ``type = case + 2 * is_predicate``, so the case feature
  (``seqlab.stages.casing.case_types``) keeps its meaning beside it (``widen_token_types``).
- ``segment``: Shi & Lin (2019), ``[CLS] sentence [SEP] predicate [SEP]`` with token types 0 and
  1 for the two segments; the token types are then taken and the case feature cannot be given.

Labels sit on each word's first subword (the others and the predicate segment get -100). A
sentence longer than ``max_length`` subwords keeps its first ones (EWT's longest has ~200).
"""

from __future__ import annotations

import logging
import random

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from seqlab.errors import ConfigError
from seqlab.srl.data import SrlSentence, unique_frames
from seqlab.srl.tag import PREDICATE_TYPE
from seqlab.stages.tokenize import special_affixes
from seqlab.training.examples import Encoded, word_subwords
from seqlab.training.formats import Sentence

log = logging.getLogger(__name__)

ENCODINGS = ("indicator", "segment")


def check_encoding(encoding: str) -> str:
    if encoding not in ENCODINGS:
        raise ConfigError(f"unknown predicate encoding {encoding!r}",
                          fix=f"use one of {', '.join(ENCODINGS)}")
    return encoding


def encode_frames(sentences: list[SrlSentence], tokenizer: PreTrainedTokenizerBase,
                  label2id: dict[str, int], max_length: int, encoding: str = "indicator",
                  case_feature: bool = False, caseless: float = 0.0, seed: int = 0) -> Encoded:
    """One example per frame: ``input_ids``, ``attention_mask``, ``token_type_ids``,
    ``labels``. With ``case_feature`` (``indicator`` only) a ``caseless`` share of the
    examples, drawn with ``seed``, get no casing, as ``seqlab.training.examples.encode`` does."""
    check_encoding(encoding)
    if encoding == "segment" and case_feature:
        raise ConfigError("the segment-pair predicate encoding uses the token types the case "
                          "feature needs", fix="pass --no-case-feature, or use the indicator "
                          "encoding")
    before, after = (a.tolist() for a in special_affixes(tokenizer))
    budget = max_length - len(before) - len(after)
    groups = [[Sentence(s.words, ("O",) * len(s.words))] for s in sentences]
    draw = random.Random(seed)
    items, cut = [], 0
    for sentence, words in zip(sentences, word_subwords(groups, tokenizer)):
        for frame in unique_frames(sentence):
            item = _frame_example(words, frame.index, [label2id[t] for t in frame.tags],
                                  (before, after), budget, encoding)
            cut += item.pop("cut")
            if case_feature and draw.random() >= caseless:
                item["token_type_ids"] = [t + c for t, c in
                                          zip(item["token_type_ids"], item.pop("cases"))]
            item.pop("cases", None)
            items.append(item)
    if cut:
        log.warning("%d frames were longer than --max-length %d and lost their last subwords",
                    cut, max_length)
    return Encoded(items)


def _frame_example(words: list[list[tuple[int, int]]], predicate: int, labels: list[int],
                   affixes: tuple[list[int], list[int]], budget: int, encoding: str) -> dict:
    before, after = affixes
    ids, cases, types, targets = [], [], [], []
    for n, (word, label) in enumerate(zip(words, labels)):
        flag = PREDICATE_TYPE if encoding == "indicator" and n == predicate else 0
        ids += [token for token, _ in word]
        cases += [case for _, case in word]
        types += [flag] * len(word)
        targets += [label] + [-100] * (len(word) - 1) if word else []
    cut = len(ids) > budget
    ids, cases, types, targets = ids[:budget], cases[:budget], types[:budget], targets[:budget]
    input_ids = before + ids + after
    token_types = [0] * len(before) + types + [0] * len(after)
    all_cases = [0] * len(before) + cases + [0] * len(after)
    label_row = [-100] * len(before) + targets + [-100] * len(after)
    if encoding == "segment":
        second = [token for token, _ in words[predicate]] + after
        input_ids += second
        token_types += [1] * len(second)
        all_cases += [0] * len(second)
        label_row += [-100] * len(second)
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids),
            "token_type_ids": token_types, "labels": label_row, "cases": all_cases, "cut": cut}


def widen_token_types(model: PreTrainedModel, types: int = 4) -> None:
    """Give the encoder ``types`` token types: the predicate indicator's rows start from the
    encoder's second segment embedding (type 2 = segment B, type 3 = segment B plus the
    case direction ``row 1 - row 0``), an offset the pretrained layers already respond to."""
    owner = model.base_model.embeddings if hasattr(model.base_model, "embeddings") else None
    old = getattr(owner, "token_type_embeddings", None)
    if old is None:
        raise ConfigError(f"{type(model).__name__} has no token type embeddings to carry the "
                          "predicate indicator", fix="use a BERT-family encoder")
    if old.num_embeddings >= types:
        return
    weight = old.weight.detach()
    rows = [weight[0], weight[1], weight[1], 2 * weight[1] - weight[0]]
    new = torch.nn.Embedding(types, weight.shape[1], dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        new.weight.copy_(torch.stack(rows[:types]))
    owner.token_type_embeddings = new
    model.config.type_vocab_size = types
