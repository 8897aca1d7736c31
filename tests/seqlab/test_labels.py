import itertools
import random

import numpy as np
import pytest
from seqeval.metrics.sequence_labeling import get_entities

from seqlab.errors import ConfigError
from seqlab.labels import LabelSet, chunks, convert, detect_scheme, normalize_scheme

TYPES = ["PER", "LOC"]


def random_labels(rng: random.Random, n: int, prefixes: str) -> list[str]:
    return [rng.choice(["O"] + [f"{p}-{t}" for p in prefixes for t in TYPES]) for _ in range(n)]


@pytest.mark.parametrize("prefixes", ["BI", "I", "BIES"])
def test_chunks_match_seqeval(prefixes):
    rng = random.Random(7)
    for _ in range(500):
        labels = random_labels(rng, rng.randint(0, 12), prefixes)
        expected = [(t, s, e) for t, s, e in get_entities(labels)]
        assert chunks(labels) == expected, labels


@pytest.mark.parametrize("scheme", ["iob1", "iob2", "bioes", "io"])
def test_convert_keeps_spans(scheme):
    rng = random.Random(3)
    for _ in range(300):
        labels = random_labels(rng, rng.randint(0, 12), "BI")
        converted = convert(labels, scheme)
        spans = chunks(labels)
        if scheme == "io":  # IO cannot separate adjacent entities of one type
            assert {(t, s) for t, s, _ in chunks(converted)} <= {(t, s) for t, s, _ in spans}
        else:
            assert chunks(converted) == spans


@pytest.mark.parametrize("scheme", ["iob1", "iob2", "bioes"])
def test_converted_sequences_are_allowed(scheme):
    labels = LabelSet(("O", *[f"{p}-{t}" for p in "BIES" for t in TYPES]), scheme)
    index = {label: i for i, label in enumerate(labels.labels)}
    start, transition, end = labels.allowed_transitions()
    rng = random.Random(5)
    for _ in range(300):
        seq = [index[label] for label in convert(random_labels(rng, rng.randint(1, 10), "BI"),
                                                 scheme)]
        assert start[seq[0]] and end[seq[-1]]
        assert all(transition[a, b] for a, b in itertools.pairwise(seq))


def test_iob2_forbids_inside_after_outside():
    labels = LabelSet(("O", "B-PER", "I-PER", "B-LOC", "I-LOC"), "iob2")
    start, transition, end = labels.allowed_transitions()
    assert not start[2] and start[1] and start[0]
    assert not transition[0, 2]  # O -> I-PER
    assert not transition[1, 4]  # B-PER -> I-LOC
    assert transition[1, 2] and transition[2, 2] and transition[2, 3]
    assert end.all()


def test_bioes_must_close_entities():
    labels = LabelSet(("O", "B-X", "I-X", "E-X", "S-X"), "bioes")
    start, transition, end = labels.allowed_transitions()
    assert end.tolist() == [True, False, False, True, True]
    assert not transition[1, 0] and transition[1, 3] and not transition[3, 2]


def test_detect_and_normalize():
    assert detect_scheme(["O", "B-A", "I-A"]) == "iob2"
    assert detect_scheme(["O", "U-A", "B-A", "L-A", "I-A"]) == "bioes"
    assert detect_scheme(["LABEL_0", "LABEL_1"]) == "tags"
    assert normalize_scheme("IOBES") == "bioes"
    with pytest.raises(ConfigError, match="iob1, iob2"):
        normalize_scheme("bilux")


def test_label_set_requires_contiguous_ids():
    with pytest.raises(ConfigError, match="contiguous"):
        LabelSet.from_id2label({0: "O", 2: "B-X"})
    assert LabelSet.from_id2label({"1": "B-X", "0": "O"}).labels == ("O", "B-X")
    assert not LabelSet.from_id2label({0: "NOUN", 1: "VERB"}).has_entities
    assert np.asarray(LabelSet.from_id2label({0: "O"}).allowed_transitions()[1]).all()
