"""Scores of predicted label sequences against gold ones.

Span tasks are scored on entities, exact match of type and boundaries, with conlleval's chunking
(``seqlab.labels.chunks``, which ``seqeval``'s default mode also follows), overall (micro) and
per type, plus token accuracy. Plain tag sets are scored by token accuracy, overall and per tag;
their overall precision, recall and F1 are the micro averages, which for one tag per token all
equal the accuracy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

import numpy as np

from seqlab.errors import InputError
from seqlab.labels import OUTSIDE, chunks, split_label

Labels = Sequence[Sequence[str]]


def prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    """Precision, recall and F1 from counts (0 where a count is 0)."""
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _check(gold: Labels, pred: Labels) -> None:
    if len(gold) != len(pred):
        raise InputError(f"{len(gold)} gold sentences but {len(pred)} predicted ones",
                         fix="score predictions of the same sentences")
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise InputError(f"sentence {i} has {len(g)} gold labels but {len(p)} predicted",
                             fix="give one predicted label per gold word")


def token_accuracy(gold: Labels, pred: Labels) -> float:
    """The share of words whose predicted label equals the gold one.

    >>> token_accuracy([["O", "B-PER"]], [["O", "I-PER"]])
    0.5
    """
    _check(gold, pred)
    total = sum(len(g) for g in gold)
    correct = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p))
    return correct / total if total else 0.0


def entity_scores(gold: Labels, pred: Labels, ignore: Collection[str] = ()) -> dict:
    """Entity-level precision, recall and F1, overall and per type, plus token accuracy;
    spans of the types in ``ignore`` are not counted (CoNLL-2005 SRL scoring leaves out the
    predicate's own ``V`` span).

    >>> s = entity_scores([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])
    >>> round(s["f1"], 3), s["per_label"]["LOC"]["recall"], s["per_label"]["PER"]["support"]
    (0.667, 0.0, 1)
    """
    _check(gold, pred)
    correct: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    for g, p in zip(gold, pred):
        gold_spans = {span for span in chunks(g) if span[0] not in ignore}
        pred_spans = {span for span in chunks(p) if span[0] not in ignore}
        n_gold.update(span[0] for span in gold_spans)
        n_pred.update(span[0] for span in pred_spans)
        correct.update(span[0] for span in gold_spans & pred_spans)
    per_label = {
        type_: {**prf(correct[type_], n_pred[type_], n_gold[type_]), "support": n_gold[type_]}
        for type_ in sorted(set(n_gold) | set(n_pred))
    }
    overall = prf(sum(correct.values()), sum(n_pred.values()), sum(n_gold.values()))
    return {**overall, "accuracy": token_accuracy(gold, pred), "per_label": per_label}


def tag_scores(gold: Labels, pred: Labels) -> dict:
    """Token accuracy overall and per gold tag (with the tag's precision, recall and F1).

    >>> s = tag_scores([["NOUN", "VERB", "NOUN"]], [["NOUN", "NOUN", "NOUN"]])
    >>> round(s["accuracy"], 3), s["per_label"]["VERB"]["accuracy"], s["per_label"]["NOUN"]["f1"]
    (0.667, 0.0, 0.8)
    """
    accuracy = token_accuracy(gold, pred)
    correct: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    for g, p in zip(gold, pred):
        for a, b in zip(g, p):
            n_gold[a] += 1
            n_pred[b] += 1
            correct[a] += a == b
    per_label = {}
    for tag in sorted(n_gold):
        scores = prf(correct[tag], n_pred[tag], n_gold[tag])
        per_label[tag] = {"accuracy": scores["recall"], **scores, "support": n_gold[tag]}
    return {"f1": accuracy, "precision": accuracy, "recall": accuracy, "accuracy": accuracy,
            "per_label": per_label}


def score(gold: Labels, pred: Labels, has_entities: bool, ignore: Collection[str] = ()) -> dict:
    """``entity_scores`` for span label sets (without the types in ``ignore``), ``tag_scores``
    for plain tags."""
    return entity_scores(gold, pred, ignore) if has_entities else tag_scores(gold, pred)


def confusion_matrix(gold: Labels, pred: Labels, classes: Sequence[str],
                     has_entities: bool) -> np.ndarray:
    """Counts ``[gold class, predicted class]`` over words.

    For span label sets the classes are entity types (and ``O``): a word's class is the type of
    its label, so a B-/I- slip inside a correct type does not clutter the matrix.

    >>> confusion_matrix([["B-PER", "O"]], [["I-PER", "B-LOC"]], ["LOC", "O", "PER"], True)
    array([[0, 0, 0],
           [1, 0, 0],
           [0, 0, 1]])
    """
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for g, p in zip(gold, pred):
        for a, b in zip(g, p):
            a, b = (label_class(a), label_class(b)) if has_entities else (a, b)
            if a in index and b in index:
                matrix[index[a], index[b]] += 1
    return matrix


def label_class(label: str) -> str:
    """The entity type of a span label, ``O`` for outside.

    >>> label_class("B-PER"), label_class("O")
    ('PER', 'O')
    """
    return split_label(label)[1] or OUTSIDE
