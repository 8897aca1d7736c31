import numpy as np

from seqlab.stages.entities import find_entities


def spans(text: str, labels: list[str]) -> list[tuple[str, str]]:
    words = text.split()
    starts, at = [], 0
    for word in words:
        at = text.index(word, at)
        starts.append(at)
        at += len(word)
    ends = [s + len(w) for s, w in zip(starts, words)]
    found = find_entities(text, labels, np.linspace(0.5, 0.9, len(words)), np.array(starts),
                          np.array(ends))
    return [(e.text, e.label) for e in found]


def test_a_mention_never_spans_a_blank_line():
    assert spans("Anarchism\n\nAnarchism is", ["B-MISC", "I-MISC", "O"]) == [
        ("Anarchism", "MISC"), ("Anarchism", "MISC")]
    assert spans("MAY FLOWERS\n \t\nMay went", ["B-PER", "I-PER", "I-PER", "O"]) == [
        ("MAY FLOWERS", "PER"), ("May", "PER")]


def test_a_single_line_break_does_not_cut_a_mention():
    assert spans("New\nYork is big", ["B-LOC", "I-LOC", "O", "O"]) == [("New\nYork", "LOC")]


def test_scores_are_the_mean_of_each_piece():
    text = "Ada\n\nLovelace"
    found = find_entities(text, ["B-PER", "I-PER"], np.array([0.2, 0.8]), np.array([0, 5]),
                          np.array([3, 13]))
    assert [(e.text, e.score) for e in found] == [("Ada", 0.2), ("Lovelace", 0.8)]
