import itertools

import numpy as np
import pytest

from seqlab.labels import LabelSet, chunks
from seqlab.stages.decode import (
    WordDecoder,
    stitch_windows,
    viterbi,
    word_boundaries,
    word_distributions,
)
from seqlab.stages.spans import SpanRepair


def test_stitch_prefers_the_window_with_most_context():
    n, starts, length = 20, np.array([0, 6, 12]), 8
    parts = [np.full((length, 1), float(w)) for w in range(3)]
    out = stitch_windows(parts, starts, n).ravel()
    # each token's chosen window is the one where min(left, right) context is largest
    for p in range(n):
        contexts = [min(p - s, s + length - 1 - p) if s <= p < s + length else -1 for s in starts]
        assert out[p] == int(np.argmax(contexts))


def test_word_distributions_follow_transformers_strategies():
    probs = np.array([[0.6, 0.4], [0.1, 0.9], [0.7, 0.3], [0.2, 0.8], [0.45, 0.55]])
    first = word_boundaries(np.array([0, 0, 1, 2, 2]))
    assert first.tolist() == [0, 2, 3]
    assert np.allclose(word_distributions(probs, first, "first"), probs[[0, 2, 3]])
    assert np.allclose(word_distributions(probs, first, "average")[0], [0.35, 0.65])
    # max: the subword whose top probability is highest (0.9 beats 0.6)
    assert np.allclose(word_distributions(probs, first, "max")[0], [0.1, 0.9])
    assert np.allclose(word_distributions(probs, first, "max")[2], [0.2, 0.8])


def brute_force(dist, start, transition, end):
    best, best_score = None, -np.inf
    n, k = dist.shape
    for seq in itertools.product(range(k), repeat=n):
        if not start[seq[0]] or not end[seq[-1]]:
            continue
        if not all(transition[a, b] for a, b in itertools.pairwise(seq)):
            continue
        score = sum(np.log(dist[i, s]) for i, s in enumerate(seq))
        if score > best_score:
            best, best_score = seq, score
    return list(best)


@pytest.mark.parametrize("scheme,labels", [
    ("iob2", ("O", "B-A", "I-A", "B-B", "I-B")),
    ("bioes", ("O", "B-A", "I-A", "E-A", "S-A")),
    ("iob1", ("O", "I-A", "B-A", "I-B")),
])
def test_viterbi_finds_the_best_allowed_sequence(scheme, labels):
    rng = np.random.default_rng(0)
    constraints = LabelSet(labels, scheme).allowed_transitions()
    for n in range(1, 6):
        for _ in range(10):
            dist = rng.dirichlet(np.ones(len(labels)) * 0.5, size=n)
            assert viterbi(dist, *constraints).tolist() == brute_force(dist, *constraints)


def test_viterbi_without_constraints_is_greedy():
    dist = np.random.default_rng(1).dirichlet(np.ones(5), size=30)
    free = np.ones(5, dtype=bool), np.ones((5, 5), dtype=bool), np.ones(5, dtype=bool)
    assert viterbi(dist, *free).tolist() == dist.argmax(1).tolist()


# Span edges after decoding (seqlab.stages.spans), in every span scheme.
SCHEMES = {
    "iob2": ("O", "B-PER", "I-PER", "B-LOC", "I-LOC"),
    "iob1": ("O", "I-PER", "B-PER", "I-LOC", "B-LOC"),
    "bioes": ("O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"),
    "io": ("O", "I-PER", "I-LOC"),
}
PIECES = ["Jo", "Smith", "Yahoo", ".", ",", ";", "(", ")", "!", "-", "\u201c", "\u201d"]


def words_of(pieces: list[str], glued: list[bool]) -> tuple[str, np.ndarray, np.ndarray]:
    text, starts, ends = "", [], []
    for piece, glue in zip(pieces, glued):
        text += "" if glue or not text else " "
        starts.append(len(text))
        text += piece
        ends.append(len(text))
    return text, np.array(starts), np.array(ends)


def stray_edges(labels: list[str], words: list[str], starts, ends) -> list[tuple]:
    """Spans whose first word is a closer, separator or (spaced) sentence end, or whose last
    word is an opener or separator, or that open or close a bracket they do not pair."""
    bad = []
    for type_, first, last in chunks(labels):
        head, tail = words[first], words[last]
        glued_next = first + 1 < len(words) and ends[first] == starts[first + 1]
        glued_before = first > 0 and ends[first - 1] == starts[first]
        if head in ",;)-\u201d" or head in ".!" and (glued_before or not glued_next):
            bad.append((type_, first, last))
        if tail in ",;(-\u201c" or head == "(" and ")" not in words[first:last + 1] \
                or tail == ")" and "(" not in words[first:last + 1]:
            bad.append((type_, first, last))
    return bad


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_repaired_spans_have_no_stray_edges_and_stay_valid(scheme):
    labels = LabelSet(SCHEMES[scheme], scheme)
    start, transition, end = labels.allowed_transitions()
    repair = SpanRepair(labels)
    rng = np.random.default_rng(5)
    changed = 0
    for _ in range(400):
        n = int(rng.integers(1, 9))
        words = [PIECES[i] for i in rng.integers(0, len(PIECES), n)]
        text, starts, ends = words_of(words, list(rng.random(n) < 0.4))
        dist = rng.dirichlet(np.ones(len(labels.labels)) * 0.3, size=n)
        ids = viterbi(dist, start, transition, end)
        fixed = repair(ids, text, starts, ends)
        before = [labels.labels[i] for i in ids]
        after = [labels.labels[i] for i in fixed]
        changed += before != after
        assert stray_edges(after, words, starts, ends) == [], (words, before, after)
        # still a sequence the scheme allows
        assert start[fixed[0]] and end[fixed[-1]], after
        assert all(transition[a, b] for a, b in itertools.pairwise(fixed)), after
        # spans of the decoder's that lose punctuation at their edges, and join only where a
        # full stop written against a span's last word opens the next one of its type
        old = {i: (t, f) for t, f, e in chunks(before) for i in range(f, e + 1)}
        new = {i: (t, f) for t, f, e in chunks(after) for i in range(f, e + 1)}
        for i, (type_, first) in new.items():
            assert i in old and old[i][0] == type_, (words, before, after)
            if i > first and old[i][1] != old[i - 1][1]:  # two spans of the decoder's joined
                assert words[i] == "." and ends[i - 1] == starts[i], (words, before, after)
        assert all(words[i] in PIECES[3:] for i in set(old) - set(new)), (words, before, after)
    assert changed > 20


def test_bioes_spans_are_rewritten_with_their_end_and_single_labels():
    labels = LabelSet(SCHEMES["bioes"], "bioes")
    text = "Mr. Knightley and Mrs. Weston ( said"
    words = ["Mr", ".", "Knightley", "and", "Mrs", ".", "Weston", "(", "said"]
    starts = np.array([text.index(w, i) for i, w in zip([0, 2, 3, 14, 18, 21, 23, 30, 32],
                                                         words)])
    ends = starts + np.array([len(w) for w in words])
    given = ["O", "B-PER", "E-PER", "O", "O", "S-PER", "B-PER", "E-PER", "O"]
    ids = np.array([labels.labels.index(label) for label in given])
    assert [labels.labels[i] for i in SpanRepair(labels)(ids, text, starts, ends)] == [
        "O", "O", "S-PER", "O", "O", "O", "S-PER", "O", "O"]
    # BILOU spells End and Single as Last and Unit
    bilou = LabelSet(("O", "B-PER", "I-PER", "L-PER", "U-PER"), "bioes")
    ids = np.array([bilou.labels.index(label.replace("E-", "L-").replace("S-", "U-"))
                    for label in given])
    assert [bilou.labels[i] for i in SpanRepair(bilou)(ids, text, starts, ends)] == [
        "O", "O", "U-PER", "O", "O", "O", "U-PER", "O", "O"]


def test_iob1_keeps_the_b_that_parts_two_spans_and_drops_one_left_alone():
    labels = LabelSet(SCHEMES["iob1"], "iob1")
    text, starts, ends = words_of(["Jo", "Smith", ",", "Ann", "(", "Lee"],
                                  [False, False, True, False, False, True])
    given = ["I-PER", "B-PER", "I-PER", "B-PER", "I-PER", "B-PER"]
    ids = np.array([labels.labels.index(label) for label in given])
    # Jo | Smith , | Ann ( | Lee: the comma and the bracket leave their spans, so Ann and Lee
    # no longer touch the span before them and open with I-
    assert [labels.labels[i] for i in SpanRepair(labels)(ids, text, starts, ends)] == [
        "I-PER", "B-PER", "O", "I-PER", "O", "I-PER"]


def test_the_word_decoder_scores_the_repaired_labels():
    labels = LabelSet(("O", "B-PER", "I-PER"), "iob2")
    text = "Dr. Tracy came"
    # per subword (one per word): Dr . Tracy came
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6], [0.95, 0.03, 0.02]])
    words, starts, ends = np.arange(4), np.array([0, 2, 4, 10]), np.array([2, 3, 9, 14])
    for decoder in ("greedy", "viterbi"):
        decode = WordDecoder(labels, decoder)
        first, raw, _ = decode(probs, words)  # without the text: the decoder's own labels
        assert raw.tolist() == [0, 1, 2, 0]
        ids, scores = decode.decode(probs, first, text, starts, ends)
        assert ids.tolist() == [0, 0, 1, 0]
        assert scores.tolist() == [0.9, 0.2, 0.3, 0.95]
        off = WordDecoder(labels, decoder, repair=False).decode(probs, first, text, starts, ends)
        assert off[0].tolist() == [0, 1, 2, 0]


def test_plain_tags_are_never_repaired():
    labels = LabelSet(("NOUN", "PUNCT", "PROPN"), "tags")
    probs = np.array([[0.1, 0.1, 0.8], [0.1, 0.1, 0.8]])  # "." tagged PROPN stays PROPN
    ids, _ = WordDecoder(labels).decode(probs, np.arange(2), "Mr.", np.array([0, 2]),
                                        np.array([2, 3]))
    assert ids.tolist() == [2, 2]
