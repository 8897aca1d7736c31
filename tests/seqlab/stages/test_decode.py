import itertools

import numpy as np
import pytest

from seqlab.labels import LabelSet
from seqlab.stages.decode import stitch_windows, viterbi, word_boundaries, word_distributions


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
