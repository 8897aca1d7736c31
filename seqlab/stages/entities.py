"""Entity spans with character offsets and scores, from a document's word labels.

Offsets are character offsets into the original text, so ``text[start_char:end_char]`` is the
entity. An entity's score is the mean of its words' scores, as in transformers'
``TokenClassificationPipeline``. Grouping follows conlleval (``seqlab.labels.chunks``), which
agrees with the pipeline's grouping for IOB2 output: an ``I-X`` after ``O`` or after another
type opens a new entity rather than being dropped.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from seqlab.labels import chunks


@dataclass(frozen=True)
class Entity:
    text: str
    label: str
    start_char: int
    end_char: int
    score: float


def find_entities(text: str, labels: list[str], scores: np.ndarray, starts: np.ndarray,
                  ends: np.ndarray) -> list[Entity]:
    """Entities of one document, given per-word labels, scores and character spans.

    >>> text = "Ada Lovelace met Babbage"
    >>> find_entities(text, ["B-PER", "I-PER", "O", "B-PER"], np.array([0.9, 0.7, 0.99, 0.8]),
    ...               np.array([0, 4, 13, 17]), np.array([3, 12, 16, 24]))[0]
    Entity(text='Ada Lovelace', label='PER', start_char=0, end_char=12, score=0.8)
    """
    found = []
    for type_, first, last in chunks(labels):
        for lo, hi in _within_paragraphs(text, starts, ends, first, last):
            start, end = int(starts[lo]), int(ends[hi])
            score = float(np.mean(scores[lo : hi + 1]))
            found.append(Entity(text[start:end], type_, start, end, score))
    return found


BLANK_LINE = re.compile(r"\n[^\S\n]*\n")


def _within_paragraphs(text: str, starts: np.ndarray, ends: np.ndarray, first: int,
                       last: int) -> list[tuple[int, int]]:
    """The words ``first..last`` of one labelled span, cut where a blank line separates two of
    them: a heading and the paragraph under it are never one name, however the labels run on.

    >>> text = "Anarchism\\n\\nAnarchism is"
    >>> _within_paragraphs(text, np.array([0, 11, 21]), np.array([9, 20, 23]), 0, 1)
    [(0, 0), (1, 1)]
    """
    pieces, lo = [], first
    for word in range(first, last):
        if BLANK_LINE.search(text, int(ends[word]), int(starts[word + 1])):
            pieces.append((lo, word))
            lo = word + 1
    return [*pieces, (lo, last)]


def normalize_text(text: str) -> str:
    """The key an entity's text is counted under in aggregates: NFKC, whitespace collapsed,
    case folded, so "New  York" and "new york" count as one entity.

    >>> normalize_text("New\\u00a0 YORK")
    'new york'
    """
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()
