"""Training examples: labelled sentences -> subword examples for the ``Trainer``.

An example is a run of consecutive sentences of one document (or one sentence), at most
``max_length`` subwords with the special tokens; each word's label sits on its first subword
and the others get -100, which the loss ignores.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import TypeVar

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from seqlab.errors import ConfigError
from seqlab.stages.casing import case_types
from seqlab.stages.tokenize import special_affixes
from seqlab.training.formats import CONTEXTS, Sentence, documents, sentence_text

log = logging.getLogger(__name__)

T = TypeVar("T")
Subword = tuple[int, int]  # (subword id, case type)


class Encoded(torch.utils.data.Dataset):
    """Tokenized examples: dicts of ``input_ids``, ``attention_mask``, ``labels`` (and
    ``token_type_ids`` with the case feature)."""

    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def pack(lengths: list[int], budget: int) -> list[list[int]]:
    """Consecutive units (sentences) packed into chunks of at most ``budget`` subwords.

    A document needing ``n`` chunks is cut into ``n`` chunks of about equal size rather than
    ``n - 1`` full ones and a short tail, so every chunk carries context on both sides.
    Units must fit the budget (``split_long`` makes them).

    >>> pack([30, 30, 30, 30, 30], 100)
    [[0, 1, 2], [3, 4]]
    >>> pack([60, 50, 10], 100)
    [[0], [1, 2]]
    """
    total = sum(lengths)
    target = -(-total // max(1, -(-total // budget)))
    chunks: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, length in enumerate(lengths):
        if current and size + length > budget:
            chunks.append(current)
            current, size = [], 0
        current.append(i)
        size += length
        if size >= target:
            chunks.append(current)
            current, size = [], 0
    if current:
        chunks.append(current)
    return chunks


def split_long(words: list[list[T]], labels: list[int], budget: int
               ) -> list[tuple[list[list[T]], list[int]]]:
    """A sentence's words (a list of subwords each) cut at word boundaries into pieces that fit
    ``budget`` subwords (packed as ``pack`` packs sentences); a single word longer than the
    budget keeps its first subwords.

    >>> split_long([[1, 2], [3], [4, 5, 6]], [7, 8, 9], 3)
    [([[1, 2], [3]], [7, 8]), ([[4, 5, 6]], [9])]
    """
    words = [word[:budget] for word in words]
    return [([words[i] for i in chunk], [labels[i] for i in chunk])
            for chunk in pack([len(word) for word in words], budget)]


def word_subwords(groups: list[list[Sentence]],
              tokenizer: PreTrainedTokenizerBase) -> list[list[list[Subword]]]:
    """Each sentence's words as lists of (subword id, case type) pairs (no special tokens), in
    the order of ``groups``.

    Case types are computed as the tag stage computes them, on the text ``seqlab evaluate``
    gives the annotate path: the words of each group (a document, or a sentence alone) joined
    by spaces. A heading's run of capitals is thus judged whole, across its sentences, as
    ``case_types`` judges it when annotating."""
    tokenized = _tokenized([s for group in groups for s in group], tokenizer)
    out = []
    for group in groups:
        text, word_starts = sentence_text([w for s in group for w in s.words])
        pieces, first = [], 0
        for sentence in group:
            ids, word_ids, offsets = next(tokenized)
            # offsets are within each word: shift them by the word's start in the text
            shift = np.asarray(word_starts[first : first + len(sentence.words)],
                               dtype=np.int64)[word_ids]
            pieces.append((ids, word_ids, offsets + shift[:, None], len(sentence.words)))
            first += len(sentence.words)
        spans = np.concatenate([p[2] for p in pieces])
        cases = iter(case_types(text, spans[:, 0], spans[:, 1]).tolist())
        for ids, word_ids, _, n_words in pieces:
            words: list[list[Subword]] = [[] for _ in range(n_words)]
            for token, word in zip(ids, word_ids.tolist()):
                words[word].append((token, next(cases)))
            out.append(words)
    return out


def _tokenized(sentences: list[Sentence], tokenizer: PreTrainedTokenizerBase
               ) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """Per sentence: subword ids, their word numbers and character offsets within each word."""
    for start in range(0, len(sentences), 1000):
        chunk = sentences[start : start + 1000]
        batch = tokenizer([list(s.words) for s in chunk], is_split_into_words=True,
                          add_special_tokens=False, return_offsets_mapping=True)
        for i in range(len(chunk)):
            yield (batch["input_ids"][i], np.asarray(batch.word_ids(i), dtype=np.int64),
                   np.asarray(batch["offset_mapping"][i], dtype=np.int64).reshape(-1, 2))


def encode(sentences: list[Sentence], tokenizer: PreTrainedTokenizerBase,
           label2id: dict[str, int], max_length: int, context: str = "document",
           case_feature: bool = False, caseless: float = 0.0, seed: int = 0) -> Encoded:
    """Examples of up to ``max_length`` subwords with first-subword labels (the others -100).

    With ``context="document"`` consecutive sentences of a document share an example, so
    each word is learned with its neighbours as ``seqlab annotate`` will see it in a document
    (the costs are the same: every subword is still seen once per epoch). With
    ``"sentence"`` each sentence is its own example. A sentence longer than ``max_length``
    is cut at word boundaries into several examples; no word is dropped. With
    ``case_feature`` each example also gets ``token_type_ids``: 1 on subwords holding an
    upper-case letter (``seqlab.stages.casing.case_types``, as the tag stage computes them).
    A ``caseless`` share of the examples (drawn with ``seed``) get all zeros instead: that is
    exactly how the same text lower-cased reaches an uncased model, so the model also learns to
    tag text without capitals (chats, transcripts) from context alone.
    """
    if context not in CONTEXTS:
        raise ConfigError(f"unknown context {context!r}", fix=f"use one of {CONTEXTS}")
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if budget < 1:
        raise ConfigError(f"--max-length {max_length} leaves no room for words",
                          fix="pass a larger --max-length")
    affixes = tuple(a.tolist() for a in special_affixes(tokenizer))
    groups = documents(sentences) if context == "document" else [[s] for s in sentences]
    subwords = iter(word_subwords(groups, tokenizer))
    items, empty = [], 0
    draw = random.Random(seed)
    for group in groups:
        pieces = []
        for sentence in group:
            words = next(subwords)
            empty += sum(not w for w in words)
            pieces += split_long(words, [label2id[label] for label in sentence.labels], budget)
        lengths = [sum(len(w) for w in words) for words, _ in pieces]
        for chunk in pack(lengths, budget):
            item = _example([pieces[i] for i in chunk], affixes, case_feature)
            if case_feature and draw.random() < caseless:
                item["token_type_ids"] = [0] * len(item["token_type_ids"])
            items.append(item)
    if empty:
        log.warning("%d words have no subwords (only characters the tokenizer drops); they "
                    "are not trained on", empty)
    return Encoded(items)


def _example(pieces: list[tuple[list[list[Subword]], list[int]]],
             affixes: tuple[list[int], list[int]], case_feature: bool) -> dict:
    ids, cases, labels = [], [], []
    for words, word_labels in pieces:
        for word, label in zip(words, word_labels):
            ids += [token for token, _ in word]
            cases += [case for _, case in word]
            labels += [label] + [-100] * (len(word) - 1)
    before, after = affixes
    input_ids = before + ids + after
    item = {"input_ids": input_ids, "attention_mask": [1] * len(input_ids),
            "labels": [-100] * len(before) + labels + [-100] * len(after)}
    if case_feature:
        item["token_type_ids"] = [0] * len(before) + cases + [0] * len(after)
    return item
