"""Partial labels: a word the data cannot label fully teaches only what it knows.

A labelled set annotates some entity types and not others: Universal NER labels PER, LOC and
ORG but never MISC, WNUT-17 has no MISC either, and a span of a type the model does not learn
(UNER's ``OTH``, WNUT's ``product``) is an entity whose model type nobody knows. A word there
is given the *set* of model labels the data allows, and the loss is

    -log(sum of the softmax probabilities over the allowed set)

which is ordinary cross-entropy when the set holds one label, and which never moves
probability between labels inside the set: an ``O`` word of UNER is free to be ``B-MISC``, so
the model neither learns that MISC-like names are ``O`` nor is pushed to tag them MISC.

The allowed set of a word, in IOB2 with the set's types mapped to the model's (a type a set
cannot tell is ``UNKNOWN``; "free" types are the model types the set does not annotate):

- inside a span of a type the set annotates: its one label (``B-PER``, ``I-PER``);
- elsewhere: ``O``, ``B-`` of every free type, and ``I-`` of a free type only where the
  previous word could carry the same entity, that is where it is outside every span too, or
  in the same unknown span. A word after a PER span cannot be ``I-MISC``, and neither can the
  first word of an unknown span (the data says an entity starts there) or the word after one
  (the data says it ended).

Each word keeps one label string, as every reader gives it: a set is written as its labels
joined by ``|`` in model id order (``O|B-MISC|I-MISC``). ``label_ids`` numbers the model
labels ``0..K-1`` and the sets from ``K`` on; ``PartialLoss`` reads the sets back as a mask
over the K labels. The model's head and decoding are unchanged: a per-token softmax.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from seqlab.labels import OUTSIDE

if TYPE_CHECKING:
    import torch

UNKNOWN = "?"  # the mapped type of a span whose model type the data cannot tell
SEPARATOR = "|"
IGNORED = -100  # the label id the loss skips (subwords after a word's first)


def allowed_labels(length: int, spans: Sequence[tuple[str, int, int]], labels: Sequence[str],
                   covered: Iterable[str]) -> list[str]:
    """Each word's allowed labels (one label, or a set joined by ``|``) for a sentence of
    ``length`` words whose entity spans are ``spans`` (``(type, first, last)``, inclusive;
    ``UNKNOWN`` for a span of unknown type); ``labels`` are the model's (IOB2, id order) and
    ``covered`` the types the data annotates.

    >>> labels = ["O", "B-MISC", "I-MISC", "B-PER", "I-PER"]
    >>> allowed_labels(5, [("PER", 0, 1), (UNKNOWN, 3, 4)], labels, {"PER"})
    ['B-PER', 'I-PER', 'O|B-MISC', 'O|B-MISC', 'O|B-MISC|I-MISC']
    >>> allowed_labels(3, [], labels, {"PER", "MISC"})
    ['O', 'O', 'O']
    """
    covered = set(covered)
    free = [label for label in labels if label[:2] in ("B-", "I-") and label[2:] not in covered]
    span_of: list[int | None] = [None] * length
    definite: list[str | None] = [None] * length
    for n, (type_, first, last) in enumerate(spans):
        for i in range(first, last + 1):
            span_of[i] = n
            if type_ != UNKNOWN:
                definite[i] = f"{'B' if i == first else 'I'}-{type_}"
    out = []
    for i in range(length):
        if definite[i] is not None:
            out.append(definite[i])
            continue
        continues = i > 0 and span_of[i - 1] == span_of[i]
        allowed = [OUTSIDE] + [label for label in free
                               if label.startswith("B-") or continues]
        out.append(SEPARATOR.join(allowed))
    return out


def is_set(label: str) -> bool:
    """Whether a word label is a set of allowed labels rather than one label."""
    return SEPARATOR in label


def label_ids(labels: Sequence[str], words: Iterable[str]) -> dict[str, int]:
    """Ids of the model labels (``0..K-1``, their order) and of the label sets among
    ``words``' labels (``K`` on, sorted): what the examples carry and ``PartialLoss`` reads.

    >>> label_ids(["O", "B-MISC", "I-MISC"], ["O", "O|B-MISC", "B-MISC", "O|B-MISC"])
    {'O': 0, 'B-MISC': 1, 'I-MISC': 2, 'O|B-MISC': 3}
    """
    ids = {label: i for i, label in enumerate(labels)}
    sets = {w for w in words if is_set(w) and w not in ids}
    for label in sorted(w for w in sets if all(p in ids for p in w.split(SEPARATOR))):
        ids[label] = len(ids)
    return ids


def set_masks(labels: Sequence[str], sets: Sequence[str]) -> torch.Tensor:
    """Boolean ``[K + len(sets), K]``: row ``i < K`` allows label ``i`` alone, row ``K + j``
    the labels of ``sets[j]``."""
    import torch

    index = {label: i for i, label in enumerate(labels)}
    masks = torch.eye(len(labels), dtype=torch.bool)
    rows = torch.zeros(len(sets), len(labels), dtype=torch.bool)
    for j, label_set in enumerate(sets):
        for label in label_set.split(SEPARATOR):
            rows[j, index[label]] = True
    return torch.cat([masks, rows])


def partial_nll(logits: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor,
                num_items: int | torch.Tensor | None = None) -> torch.Tensor:
    """``-log`` of the softmax probability mass on each target's allowed labels, summed over
    the targets that are not ``IGNORED`` and divided by ``num_items`` (default: their count).

    ``targets`` index ``masks`` rows: a model label id is its own one-label set, so for
    those the loss is exactly the cross-entropy."""
    import torch

    logits = logits.reshape(-1, logits.shape[-1]).float()
    targets = targets.reshape(-1).to(logits.device)
    keep = targets != IGNORED
    logits, targets = logits[keep], targets[keep]
    allowed = masks.to(logits.device)[targets]
    inside = torch.logsumexp(logits.masked_fill(~allowed, float("-inf")), dim=-1)
    total = (torch.logsumexp(logits, dim=-1) - inside).sum()
    count = num_items if num_items is not None else keep.sum()
    if isinstance(count, torch.Tensor):
        count = count.to(total.device)
    return total / (count if count else 1)


class PartialLoss:
    """The ``Trainer``'s ``compute_loss_func`` for examples whose labels may be label sets."""

    def __init__(self, labels: Sequence[str], sets: Sequence[str]) -> None:
        self.masks = set_masks(labels, sets)

    def __call__(self, outputs: Any, labels: torch.Tensor,
                 num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        return partial_nll(logits, labels, self.masks, num_items_in_batch)
