"""Label sets and tagging schemes: detection, conversion, chunking and allowed transitions.

A scheme says how a sequence of per-word labels encodes entity spans:

- ``iob1``  (CoNLL-2003): ``I-X`` starts or continues an entity; ``B-X`` only separates two
  adjacent entities of the same type.
- ``iob2``  (a.k.a. BIO): every entity starts with ``B-X``; ``I-X`` continues it.
- ``bioes`` (a.k.a. IOBES, BILOU): ``B``egin, ``I``nside, ``E``nd, ``S``ingle.
- ``io``:   only ``I-X`` and ``O``; adjacent entities of one type cannot be told apart.
- ``tags``: plain tag sets (POS tags, ...) with no spans at all.

Chunking follows conlleval's rules (the ones ``seqeval`` implements in its default mode), so the
spans that ``seqlab annotate`` writes are the spans that ``seqlab evaluate`` scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seqlab.errors import ConfigError

SCHEMES = ("iob1", "iob2", "bioes", "io", "tags")
SCHEME_ALIASES = {"bio": "iob2", "iob": "iob2", "iobes": "bioes", "bilou": "bioes"}
OUTSIDE = "O"
# BILOU spells BIOES's End and Single as Last and Unit.
_PREFIX_ALIASES = {"U": "S", "L": "E"}


def split_label(label: str) -> tuple[str, str]:
    """Split a label into (prefix, type); labels without a prefix are their own type.

    >>> split_label("B-PER")
    ('B', 'PER')
    >>> split_label("O")
    ('O', '')
    >>> split_label("NOUN")
    ('', 'NOUN')
    >>> split_label("U-LOC")
    ('S', 'LOC')
    """
    if label == OUTSIDE:
        return OUTSIDE, ""
    if len(label) > 2 and label[1] in "-_" and label[0] in "BIESUL":
        return _PREFIX_ALIASES.get(label[0], label[0]), label[2:]
    return "", label


def normalize_scheme(name: str) -> str:
    """Return the canonical scheme name, or raise ConfigError naming the valid ones.

    >>> normalize_scheme("BIO")
    'iob2'
    """
    key = name.strip().lower()
    key = SCHEME_ALIASES.get(key, key)
    if key not in SCHEMES:
        raise ConfigError(
            f"unknown label scheme {name!r}",
            fix=f"use one of {', '.join(SCHEMES)} (aliases: {', '.join(SCHEME_ALIASES)})",
        )
    return key


def detect_scheme(labels: Sequence[str]) -> str:
    """Guess the scheme of a label set.

    A set with ``B-`` and ``I-`` prefixes is read as IOB2, the scheme nearly every released
    checkpoint predicts; IOB1 cannot be told apart from a label set alone, so models trained on
    IOB1 data must say so (``--scheme iob1`` or seqlab's model metadata).

    >>> detect_scheme(["O", "B-PER", "I-PER"])
    'iob2'
    >>> detect_scheme(["O", "B-PER", "I-PER", "E-PER", "S-PER"])
    'bioes'
    >>> detect_scheme(["O", "I-PER", "I-LOC"])
    'io'
    >>> detect_scheme(["NOUN", "VERB", "PUNCT"])
    'tags'
    """
    prefixes = {split_label(label)[0] for label in labels}
    if not prefixes - {OUTSIDE, ""} or "" in prefixes:
        return "tags"
    if prefixes & {"E", "S"}:
        return "bioes"
    if "B" in prefixes:
        return "iob2"
    return "io"


def _starts_chunk(prev_prefix: str, prev_type: str, prefix: str, type_: str) -> bool:
    # conlleval's startOfChunk
    if prefix in ("B", "S"):
        return True
    if prefix in ("I", "E"):
        return prev_prefix in (OUTSIDE, "E", "S") or prev_type != type_
    return False


def _ends_chunk(prev_prefix: str, prev_type: str, prefix: str, type_: str) -> bool:
    # conlleval's endOfChunk
    if prev_prefix in ("E", "S"):
        return True
    if prev_prefix in ("B", "I"):
        return prefix in (OUTSIDE, "B", "S") or prev_type != type_
    return False


def chunks(labels: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entity spans ``(type, first, last)`` (inclusive word indices) of a label sequence.

    Lenient like conlleval: an ``I-X`` after ``O`` or after another type opens a new entity
    (the "BIO repair" that transformers' pipeline also applies). The same rules read IOB1, IOB2,
    BIOES and IO sequences, so the scheme need not be passed.

    >>> chunks(["B-PER", "I-PER", "O", "I-LOC", "B-LOC"])
    [('PER', 0, 1), ('LOC', 3, 3), ('LOC', 4, 4)]
    >>> chunks(["S-ORG", "B-MISC", "E-MISC"])
    [('ORG', 0, 0), ('MISC', 1, 2)]
    """
    spans: list[tuple[str, int, int]] = []
    prev_prefix, prev_type, start = OUTSIDE, "", -1
    for i, label in enumerate(labels):
        prefix, type_ = split_label(label)
        if prefix == "":  # a plain tag inside an entity label set behaves like O
            prefix, type_ = OUTSIDE, ""
        if start >= 0 and _ends_chunk(prev_prefix, prev_type, prefix, type_):
            spans.append((prev_type, start, i - 1))
            start = -1
        if _starts_chunk(prev_prefix, prev_type, prefix, type_):
            start = i
        prev_prefix, prev_type = prefix, type_
    if start >= 0:
        spans.append((prev_type, start, len(labels) - 1))
    return spans


def spans_to_labels(spans: Sequence[tuple[str, int, int]], length: int, scheme: str) -> list[str]:
    """Write entity spans as a label sequence in ``scheme``.

    >>> spans_to_labels([("PER", 0, 1), ("PER", 2, 2)], 4, "iob1")
    ['I-PER', 'I-PER', 'B-PER', 'O']
    >>> spans_to_labels([("PER", 0, 1), ("LOC", 3, 3)], 4, "bioes")
    ['B-PER', 'E-PER', 'O', 'S-LOC']
    """
    labels = [OUTSIDE] * length
    previous_end, previous_type = -2, ""
    for type_, first, last in sorted(spans, key=lambda s: s[1]):
        for i in range(first, last + 1):
            labels[i] = f"I-{type_}"
        if scheme == "iob2":
            labels[first] = f"B-{type_}"
        elif scheme == "iob1" and previous_end == first - 1 and previous_type == type_:
            labels[first] = f"B-{type_}"
        elif scheme == "bioes":
            if first == last:
                labels[first] = f"S-{type_}"
            else:
                labels[first], labels[last] = f"B-{type_}", f"E-{type_}"
        previous_end, previous_type = last, type_
    return labels


def convert(labels: Sequence[str], scheme: str) -> list[str]:
    """Re-encode a label sequence in another span scheme (``tags`` sequences pass unchanged).

    >>> convert(["I-PER", "I-PER", "O", "I-LOC"], "iob2")
    ['B-PER', 'I-PER', 'O', 'B-LOC']
    """
    if scheme == "tags":
        return list(labels)
    return spans_to_labels(chunks(labels), len(labels), scheme)


@dataclass(frozen=True)
class LabelSet:
    """The labels a model predicts, in id order, and the scheme they follow."""

    labels: tuple[str, ...]
    scheme: str

    @classmethod
    def from_id2label(cls, id2label: dict[int, str], scheme: str | None = None) -> LabelSet:
        id2label = {int(i): label for i, label in id2label.items()}
        ids = sorted(id2label)
        if ids != list(range(len(ids))):
            raise ConfigError(
                f"model id2label has ids {ids[:10]}..., expected 0..{len(ids) - 1}",
                fix="re-save the model with contiguous label ids",
            )
        labels = tuple(id2label[i] for i in ids)
        resolved = normalize_scheme(scheme) if scheme else detect_scheme(labels)
        return cls(labels, resolved)

    @property
    def has_entities(self) -> bool:
        return self.scheme != "tags"

    def allowed_transitions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boolean masks ``(start, transition, end)`` of the label sequences the scheme allows.

        ``transition[i, j]`` says whether label ``j`` may follow label ``i``; ``start[j]`` whether
        a sequence may begin with ``j``; ``end[i]`` whether it may end with ``i``.
        """
        n = len(self.labels)
        parts = [split_label(label) for label in self.labels]
        start = np.array([self._may_follow(None, p) for p in parts], dtype=bool)
        end = np.array([self._may_precede_end(p) for p in parts], dtype=bool)
        transition = np.ones((n, n), dtype=bool)
        for i, prev in enumerate(parts):
            for j, cur in enumerate(parts):
                transition[i, j] = self._may_follow(prev, cur)
        return start, transition, end

    def _may_follow(self, prev: tuple[str, str] | None, cur: tuple[str, str]) -> bool:
        prefix, type_ = cur
        prev_prefix, prev_type = prev if prev is not None else (OUTSIDE, "")
        if self.scheme == "iob2":
            return prefix != "I" or (prev_prefix in ("B", "I") and prev_type == type_)
        if self.scheme == "iob1":
            return prefix != "B" or (prev_prefix in ("B", "I") and prev_type == type_)
        if self.scheme == "bioes":
            inside = prev_prefix in ("B", "I")
            if prefix in ("I", "E"):
                return inside and prev_type == type_
            return not inside  # O, B and S may only follow O, E or S
        return True  # io and tags: every sequence is valid

    def _may_precede_end(self, cur: tuple[str, str]) -> bool:
        return self.scheme != "bioes" or cur[0] not in ("B", "I")
