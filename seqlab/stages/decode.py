"""Decoding: window stitching, subword -> word distributions, greedy and constrained Viterbi,
then the repair of span edges (``seqlab.stages.spans``).

All functions here are pure numpy over one document; ``seqlab.annotate_stage`` applies them
to a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seqlab.errors import ConfigError
from seqlab.labels import LabelSet
from seqlab.stages.spans import SpanRepair

DECODERS = ("greedy", "viterbi")
AGGREGATIONS = ("first", "average", "max")


def check_choice(value: str, choices: Sequence[str], flag: str) -> str:
    if value not in choices:
        raise ConfigError(f"unknown {flag} {value!r}", fix=f"use one of {', '.join(choices)}")
    return value


def stitch_windows(parts: Sequence[np.ndarray], starts: np.ndarray, n_tokens: int) -> np.ndarray:
    """Put window outputs back into one ``(n_tokens, n_labels)`` array.

    Where windows overlap, a token takes the output of the window in which it has the most
    context, i.e. where it is farthest from the nearer window edge (the "max context" rule of
    BERT's SQuAD code); ties go to the earlier window.

    >>> a = np.array([[0.], [1.], [2.], [3.]]); b = np.array([[10.], [11.], [12.], [13.]])
    >>> stitch_windows([a, b], np.array([0, 2]), 6).ravel().tolist()
    [0.0, 1.0, 2.0, 11.0, 12.0, 13.0]
    """
    out = np.empty((n_tokens, parts[0].shape[1]), dtype=parts[0].dtype)
    best = np.full(n_tokens, -1, dtype=np.int64)
    for part, start in zip(parts, starts):
        length = len(part)
        position = np.arange(length)
        context = np.minimum(position, length - 1 - position)
        span = slice(int(start), int(start) + length)
        better = context > best[span]
        out[span][better] = part[better]
        best[span] = np.where(better, context, best[span])
    return out


def word_boundaries(words: np.ndarray) -> np.ndarray:
    """Index of the first subword of each word (a new word starts where the word id changes).

    >>> word_boundaries(np.array([0, 0, 1, 2, 2, 2])).tolist()
    [0, 2, 3]
    """
    if len(words) == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(words[1:] != words[:-1]) + 1
    return np.concatenate([[0], change]).astype(np.int64)


def word_distributions(probs: np.ndarray, first: np.ndarray, strategy: str) -> np.ndarray:
    """One label distribution per word from its subwords' distributions.

    ``first``: the first subword's; ``average``: the mean over subwords; ``max``: the
    distribution of the subword whose top probability is highest (transformers' strategies).
    """
    if strategy == "first":
        return probs[first].astype(np.float64)
    if strategy == "average":
        sums = np.add.reduceat(probs.astype(np.float64), first, axis=0)
        counts = np.diff(np.append(first, len(probs)))
        return sums / counts[:, None]
    if strategy == "max":
        top = probs.max(axis=1)
        word_of = np.repeat(np.arange(len(first)), np.diff(np.append(first, len(probs))))
        # sorted by word, then top probability (descending), then position: the head of each
        # word's run is its best subword, the first one on ties as Python's max() picks
        order = np.lexsort((np.arange(len(probs)), -top, word_of))
        return probs[order[first]].astype(np.float64)
    raise ConfigError(f"unknown aggregation {strategy!r}", fix=f"use one of {AGGREGATIONS}")


def greedy(dist: np.ndarray) -> np.ndarray:
    return dist.argmax(axis=1)


def viterbi(dist: np.ndarray, start: np.ndarray, transition: np.ndarray,
            end: np.ndarray) -> np.ndarray:
    """The most probable label sequence among those the scheme allows.

    Maximises the product of the per-word probabilities over sequences that start, continue
    and end only as ``start``/``transition``/``end`` allow (e.g. no ``I-X`` after ``O``).

    >>> dist = np.array([[0.5, 0.2, 0.3], [0.1, 0.1, 0.8]])  # labels O, B-X, I-X; greedy: O I-X
    >>> ok = np.array([[1, 1, 0], [1, 1, 1], [1, 1, 1]], dtype=bool)  # no I-X after O
    >>> viterbi(dist, np.array([1, 1, 0], dtype=bool), ok, np.ones(3, dtype=bool)).tolist()
    [1, 2]
    """
    n, k = dist.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    forbidden = -np.inf
    logp = np.log(np.maximum(dist, 1e-30))
    trans = np.where(transition, 0.0, forbidden)
    score = np.where(start, logp[0], forbidden)
    back = np.zeros((n, k), dtype=np.int64)
    for i in range(1, n):
        candidates = score[:, None] + trans  # previous label x next label
        back[i] = candidates.argmax(axis=0)
        score = candidates[back[i], np.arange(k)] + logp[i]
    score = np.where(end, score, forbidden)
    path = np.empty(n, dtype=np.int64)
    path[-1] = int(score.argmax())
    for i in range(n - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path


class WordDecoder:
    """Turns a document's subword distributions into word labels and scores.

    ``repair`` (on by default): where the caller gives the words' text (``decode``), spans
    lose the stray punctuation at their edges after greedy or Viterbi decoding
    (``seqlab.stages.spans.SpanRepair``: ``Mr[. Wallace]`` -> ``Mr. [Wallace]``); a word taken
    out of a span scores the probability of ``O``. Label sets without spans are untouched.
    """

    def __init__(self, labels: LabelSet, decoder: str = "greedy", aggregation: str = "first",
                 repair: bool = True):
        self.labels = labels
        self.decoder = check_choice(decoder, DECODERS, "--decoder")
        self.aggregation = check_choice(aggregation, AGGREGATIONS, "--aggregation")
        self.constraints = labels.allowed_transitions() if decoder == "viterbi" else None
        self.repair = SpanRepair(labels) if repair and labels.has_entities else None

    def __call__(self, probs: np.ndarray, words: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                          np.ndarray]:
        """Return ``(first subword of each word, label ids, scores)`` (no text: no repair)."""
        first = word_boundaries(words)
        return (first, *self.decode(probs, first))

    def decode(self, probs: np.ndarray, first: np.ndarray, text: str | None = None,
               starts: np.ndarray | None = None, ends: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(label ids, scores)`` of the words whose first subwords are ``first``; with the
        ``text`` and the words' character ``starts`` and ``ends``, spans are repaired."""
        dist = word_distributions(probs, first, self.aggregation)
        if self.constraints is None:
            label_ids = greedy(dist)
        else:
            label_ids = viterbi(dist, *self.constraints)
        if self.repair is not None and text is not None:
            label_ids = self.repair(label_ids, text, starts, ends)
        scores = dist[np.arange(len(first)), label_ids]
        return label_ids, scores
