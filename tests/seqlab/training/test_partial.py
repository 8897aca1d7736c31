from __future__ import annotations

import torch

from seqlab.training.partial import (
    IGNORED,
    PartialLoss,
    allowed_labels,
    label_ids,
    partial_nll,
    set_masks,
)

LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
SETS = ["O|B-MISC", "O|B-MISC|I-MISC"]
OUT, B_MISC, I_MISC, B_PER = 0, 3, 4, 7
K = len(LABELS)


def logits_of(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(*shape, K, generator=torch.Generator().manual_seed(seed)) * 3


def test_one_label_sets_are_cross_entropy():
    logits = logits_of(0, (3, 7))
    targets = torch.randint(0, K, (3, 7), generator=torch.Generator().manual_seed(1))
    targets[0, 0] = targets[2, 6] = IGNORED  # special tokens and later subwords
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, K), targets.reshape(-1),
                                                 ignore_index=IGNORED)
    masks = set_masks(LABELS, SETS)
    assert torch.allclose(partial_nll(logits, targets, masks), expected, atol=1e-6)
    # divided by the Trainer's count of labelled words over the whole step instead
    n = int((targets != IGNORED).sum())
    assert torch.allclose(partial_nll(logits, targets, masks, 2 * n), expected / 2, atol=1e-6)


def test_a_set_costs_minus_log_its_probability_mass():
    logits = logits_of(2, (1,))
    probs = logits.softmax(-1)[0]
    loss = partial_nll(logits, torch.tensor([K + 1]), set_masks(LABELS, SETS))
    assert torch.allclose(loss, -(probs[OUT] + probs[B_MISC] + probs[I_MISC]).log(), atol=1e-6)


def test_moving_mass_inside_the_set_costs_nothing():
    """The loss is flat along any move of probability between two allowed labels: its
    gradient has no component that prefers O to B-MISC, while a move to a label outside the
    set costs, and a one-label target (cross-entropy) does prefer its label."""
    masks = set_masks(LABELS, SETS)
    logits = logits_of(3, (1,)).requires_grad_()
    probs = logits.softmax(-1).detach()[0]
    partial_nll(logits, torch.tensor([K + 1]), masks).backward()
    grad = logits.grad[0]

    def slope(to: int, away: int) -> float:
        """d loss along moving probability from ``away`` to ``to`` (dp = +1 / -1, in logits
        dz = 1/p_to on ``to`` and -1/p_away on ``away``)."""
        return float(grad[to] / probs[to] - grad[away] / probs[away])

    assert abs(slope(B_MISC, OUT)) < 1e-5 and abs(slope(I_MISC, B_MISC)) < 1e-5
    assert slope(B_PER, OUT) > 0.1  # out of the set: the loss rises
    assert (grad[[OUT, B_MISC, I_MISC]] <= 0).all() and (grad[[1, 2, 5, 6, 7, 8]] > 0).all()
    # the same word labelled O alone: moving mass from O to B-MISC now costs
    single = logits.detach().clone().requires_grad_()
    partial_nll(single, torch.tensor([OUT]), masks).backward()
    assert float(single.grad[0, B_MISC] / probs[B_MISC] - single.grad[0, OUT] / probs[OUT]) > 0.1


def test_the_whole_set_allowed_gives_no_gradient():
    masks = set_masks(["O", "B-MISC"], ["O|B-MISC"])
    logits = torch.randn(1, 2, requires_grad=True)
    loss = partial_nll(logits, torch.tensor([2]), masks)
    loss.backward()
    assert loss.item() < 1e-6 and logits.grad.abs().max() < 1e-6


def test_trainer_loss_reads_outputs_and_ignores_specials():
    loss = PartialLoss(LABELS, SETS)
    logits = logits_of(4, (2, 3))
    targets = torch.tensor([[IGNORED, K, B_PER], [IGNORED, K + 1, IGNORED]])
    value = loss({"logits": logits}, targets)
    probs = logits.softmax(-1)
    expected = -(probs[0, 1, [OUT, B_MISC]].sum().log() + probs[0, 2, B_PER].log()
                 + probs[1, 1, [OUT, B_MISC, I_MISC]].sum().log()) / 3
    assert torch.allclose(value, expected, atol=1e-6)


def test_allowed_labels_follow_iob2():
    labels = ["O", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    # Universal NER: "Al - Zaman : American forces killed Shaikh" with American an OTH span
    spans = [("ORG", 0, 2), ("?", 4, 4), ("PER", 7, 7)]
    got = allowed_labels(9, spans, labels, {"ORG", "PER"})
    assert got == ["B-ORG", "I-ORG", "I-ORG",
                   "O|B-MISC",  # after an ORG: no I-MISC
                   "O|B-MISC",  # an unknown span starts: the data says an entity starts here
                   "O|B-MISC",  # after the unknown span ended
                   "O|B-MISC|I-MISC",  # an outside run may hold a MISC entity
                   "B-PER", "O|B-MISC"]
    # inside a two-word unknown span the second word may continue it
    assert allowed_labels(2, [("?", 0, 1)], labels, {"ORG", "PER"}) == \
        ["O|B-MISC", "O|B-MISC|I-MISC"]
    # a set annotating every type: plain labels, plain cross-entropy
    assert allowed_labels(2, [("PER", 1, 1)], labels, {"MISC", "ORG", "PER"}) == ["O", "B-PER"]


def test_label_ids_number_sets_after_the_labels():
    ids = label_ids(LABELS, ["O", "O|B-MISC|I-MISC", "B-PER", "O|B-MISC", "weird|tag"])
    assert ids["O|B-MISC"] == K and ids["O|B-MISC|I-MISC"] == K + 1 and len(ids) == K + 2
    masks = set_masks(LABELS, list(ids)[K:])
    assert masks.shape == (K + 2, K)
    assert masks[K].nonzero().flatten().tolist() == [OUT, B_MISC]
    assert masks[B_PER].nonzero().flatten().tolist() == [B_PER]
