import re

import numpy as np
import pytest

from seqlab.labels import LabelSet
from seqlab.stages.entities import find_entities
from seqlab.stages.spans import SpanRepair


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


# Span edges (seqlab.stages.spans): the words as the BERT pre-tokenizer splits them, labels as
# the shipped ner gave them (int8, greedy; Viterbi gives the same) on these exact sentences.
NER = LabelSet(("O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"),
               "iob2")


def bert_words(text: str) -> tuple[np.ndarray, np.ndarray]:
    found = list(re.finditer(r"\w+|[^\w\s]", text))
    return np.array([m.start() for m in found]), np.array([m.end() for m in found])


def mentions(text: str, labels: list[str], repair: bool = True) -> list[tuple[str, str]]:
    starts, ends = bert_words(text)
    assert len(labels) == len(starts), [text[s:e] for s, e in zip(starts, ends)]
    ids = np.array([NER.labels.index(label) for label in labels])
    if repair:
        ids = SpanRepair(NER)(ids, text, starts, ends)
    found = find_entities(text, [NER.labels[i] for i in ids], np.ones(len(ids)), starts, ends)
    return [(e.text, e.label) for e in found]


@pytest.mark.parametrize("text,labels,before,after", [
    ("Mr. Wallace looked at his watch.",
     ["O", "B-PER", "I-PER", "O", "O", "O", "O", "O"],
     [(". Wallace", "PER")], [("Wallace", "PER")]),
    ("Mrs. Vane looked at her daughter.",
     ["O", "B-PER", "B-PER", "O", "O", "O", "O", "O"],
     [(".", "PER"), ("Vane", "PER")], [("Vane", "PER")]),
    ("Dr. Tracy came in at eleven and found the patient asleep.",
     ["O", "B-PER", "I-PER"] + ["O"] * 10,
     [(". Tracy", "PER")], [("Tracy", "PER")]),
    ("Mr. Knightley and Mrs. Weston were both of the party.",
     ["O", "B-PER", "I-PER", "O", "O", "B-PER", "B-PER", "O", "O", "O", "O", "O", "O"],
     [(". Knightley", "PER"), (".", "PER"), ("Weston", "PER")],
     [("Knightley", "PER"), ("Weston", "PER")]),
])
def test_an_honorifics_full_stop_stays_outside_the_name(text, labels, before, after):
    assert mentions(text, labels, repair=False) == before
    assert mentions(text, labels) == after


def test_an_honorific_the_model_puts_in_the_name_keeps_its_full_stop():
    assert mentions("Mr. Wallace looked at his watch.",
                    ["B-PER", "I-PER", "I-PER", "O", "O", "O", "O", "O"]) == [
        ("Mr. Wallace", "PER")]


@pytest.mark.parametrize("text,labels,name", [
    ("He works at Yahoo! now", ["O", "O", "O", "B-ORG", "I-ORG", "O"], ("Yahoo!", "ORG")),
    ("Flights to St. Louis", ["O", "O", "B-LOC", "I-LOC", "I-LOC"], ("St. Louis", "LOC")),
    ("the U.S. said", ["O", "B-LOC", "I-LOC", "I-LOC", "I-LOC", "O"], ("U.S.", "LOC")),
    ("shares of AT&T fell", ["O", "O", "B-ORG", "I-ORG", "I-ORG", "O"], ("AT&T", "ORG")),
    ("said O'Brien .", ["O", "B-PER", "I-PER", "I-PER", "O"], ("O'Brien", "PER")),
    ("written in .NET today", ["O", "O", "B-MISC", "I-MISC", "O"], (".NET", "MISC")),
    ("the !Kung people", ["O", "B-MISC", "I-MISC", "O"], ("!Kung", "MISC")),
])
def test_names_that_hold_punctuation_stay_whole(text, labels, name):
    assert mentions(text, labels) == [name]


@pytest.mark.parametrize("text,labels,expected", [
    ("met Smith ( the", ["O", "B-PER", "I-PER", "O"], [("Smith", "PER")]),
    ("in Paris, then", ["O", "B-LOC", "I-LOC", "O"], [("Paris", "LOC")]),
    ("in Paris, France", ["O", "B-LOC", "I-LOC", "I-LOC"], [("Paris, France", "LOC")]),
    ("\u201cJo \u201c", ["O", "B-PER", "I-PER"], [("Jo", "PER")]),
    ("yes ; : Jo", ["O", "B-PER", "I-PER", "I-PER"], [("Jo", "PER")]),
    ("(Reuters) said", ["O", "B-ORG", "I-ORG", "O"], [("Reuters", "ORG")]),
    ("(Reuters) said", ["B-ORG", "I-ORG", "I-ORG", "O"], [("(Reuters)", "ORG")]),
    ("( Reuters said", ["B-ORG", "I-ORG", "O"], [("Reuters", "ORG")]),
    ("so ) ] , .", ["O", "B-ORG", "I-ORG", "I-ORG", "I-ORG"], []),
])
def test_no_mention_begins_with_closing_or_ends_with_opening_punctuation(text, labels, expected):
    assert mentions(text, labels) == expected


@pytest.mark.parametrize("text,labels,name", [
    ("Somerset 83 and 174 ( P. Simmons 4-38 ) , Leicestershire 296 .",
     ["B-ORG", "O", "O", "O", "O", "B-PER", "B-PER", "I-PER", "O", "O", "O", "O", "O", "B-ORG",
      "O", "O"], ("P. Simmons", "PER")),
    ("R. Ponting not out 46", ["B-PER", "B-PER", "I-PER", "O", "O", "O"],
     ("R. Ponting", "PER")),
])
def test_an_initials_full_stop_joins_the_name_it_opens(text, labels, name):
    # as the shipped ner labels CoNLL-2003 dev: the stop after the initial opens a new span
    assert name not in mentions(text, labels, repair=False)
    assert name in mentions(text, labels)
