from __future__ import annotations

import random

import numpy as np
import pytest
from seqeval.metrics import (
    accuracy_score,
    classification_report,
    f1_score,
    precision_score,
    recall_score,
)

from seqlab.errors import InputError
from seqlab.training.metrics import confusion_matrix, entity_scores, tag_scores

TYPES = ["PER", "LOC", "ORG"]


def random_sequences(rng: random.Random, prefixes: str, n: int = 200) -> list[list[str]]:
    """Label sequences with every quirk conlleval reads: I- after O, type switches, B- runs."""
    labels = ["O"] + [f"{p}-{t}" for p in prefixes for t in TYPES]
    return [[rng.choice(labels) for _ in range(rng.randint(1, 12))] for _ in range(n)]


def noisy(rng: random.Random, gold: list[list[str]], labels: list[str]) -> list[list[str]]:
    return [[rng.choice(labels) if rng.random() < 0.25 else x for x in s] for s in gold]


@pytest.mark.parametrize("prefixes", ["BI", "I", "BIES"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_seqeval(prefixes, seed):
    rng = random.Random(seed)
    gold = random_sequences(rng, prefixes)
    pred = noisy(rng, gold, ["O"] + [f"{p}-{t}" for p in prefixes for t in TYPES])
    ours = entity_scores(gold, pred)
    assert ours["precision"] == pytest.approx(precision_score(gold, pred))
    assert ours["recall"] == pytest.approx(recall_score(gold, pred))
    assert ours["f1"] == pytest.approx(f1_score(gold, pred))
    assert ours["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    for type_, scores in ours["per_label"].items():
        if scores["support"]:
            theirs = report[type_]
            assert scores["precision"] == pytest.approx(theirs["precision"])
            assert scores["recall"] == pytest.approx(theirs["recall"])
            assert scores["f1"] == pytest.approx(theirs["f1-score"])
            assert scores["support"] == theirs["support"]


def test_perfect_and_empty():
    gold = [["B-PER", "I-PER", "O"], ["O"]]
    assert entity_scores(gold, gold)["f1"] == 1.0
    none = entity_scores([["O"]], [["O"]])
    assert (none["f1"], none["per_label"]) == (0.0, {})


def test_tag_scores():
    gold = [["NOUN", "VERB", "DET"], ["NOUN"]]
    pred = [["NOUN", "NOUN", "DET"], ["NOUN"]]
    scores = tag_scores(gold, pred)
    assert scores["accuracy"] == scores["f1"] == 0.75
    assert scores["per_label"]["VERB"] == {"accuracy": 0.0, "precision": 0.0, "recall": 0.0,
                                           "f1": 0.0, "support": 1}
    assert scores["per_label"]["NOUN"]["precision"] == pytest.approx(2 / 3)


def test_mismatched_lengths():
    with pytest.raises(InputError, match="sentence 0"):
        entity_scores([["O", "O"]], [["O"]])
    with pytest.raises(InputError, match="gold sentences"):
        tag_scores([["O"]], [])


def test_confusion_matrix_tags():
    matrix = confusion_matrix([["A", "B"]], [["A", "A"]], ["A", "B"], has_entities=False)
    assert np.array_equal(matrix, [[1, 0], [1, 0]])
