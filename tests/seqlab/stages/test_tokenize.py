import re

import numpy as np
import pyarrow as pa
import pytest
from transformers import AutoTokenizer

from seqlab import schema
from seqlab.errors import ConfigError
from seqlab.stages.casing import case_types, shouted_spans
from seqlab.stages.tokenize import (
    Tokenizer,
    WindowSpec,
    sentence_starts,
    window_cuts,
    window_starts,
)
from seqlab.training.examples import encode
from seqlab.training.formats import Sentence, sentence_text


def assert_covering(starts, lens, n: int, content: int) -> None:
    """Windows of 1..content tokens that cover all n tokens, from the first to the last."""
    covered = np.zeros(n, dtype=int)
    for s, length in zip(starts, lens):
        assert 0 < length <= content
        covered[s:s + length] += 1
    assert covered.min() >= 1 and starts[0] == 0 and starts[-1] + lens[-1] == n


@pytest.mark.parametrize("n,content,stride", [(1, 10, 2), (10, 10, 2), (11, 10, 2),
                                              (1000, 62, 16), (25_000, 510, 128)])
def test_windows_cover_every_token_with_the_requested_overlap(n, content, stride):
    starts, lens = window_starts(n, content, stride)
    assert_covering(starts, lens, n, content)
    for a, b, la in zip(starts, starts[1:], lens):
        assert a + la - b >= stride  # adjacent windows share at least `stride` tokens


def batch(texts):
    n = len(texts)
    return pa.RecordBatch.from_pydict(
        {"doc_id": [str(i) for i in range(n)], "text": texts, "status": ["ok"] * n,
         "error": [None] * n},
        schema=schema.read_schema(pa.schema([])))


def test_offsets_words_and_windows(ner_model):
    stage = Tokenizer(AutoTokenizer.from_pretrained(ner_model), WindowSpec(16, 4, 200))
    text = "John  walking to New-York, (london) naïve " * 3
    out = stage(batch([text, "", "x" * 300]))
    assert out.column("status").to_pylist() == ["ok", "empty", "too_long"]
    starts = out.column("_starts")[0].values.to_numpy()
    ends = out.column("_ends")[0].values.to_numpy()
    words = out.column("_words")[0].values.to_numpy()
    pieces = [text[s:e] for s, e in zip(starts, ends)]
    assert "".join(pieces).lower() == "".join(text.split()).lower()
    # words: whitespace and punctuation split, subwords share their word's id
    first = np.flatnonzero(np.diff(words, prepend=-1))
    word_texts = [text[starts[a]:ends[b - 1]]
                  for a, b in zip(first, list(first[1:]) + [len(words)])]
    assert word_texts[:9] == ["John", "walking", "to", "New", "-", "York", ",", "(", "london"]
    win_starts = out.column("_win_starts")[0].values.to_numpy()
    assert len(win_starts) == len(window_starts(len(words), 14, 4)[0]) >= 3
    assert out.column("_win_lens")[0].values.to_numpy().max() == 14
    assert out.column("_ids")[1].as_py() is None


def test_window_settings_are_checked(ner_model):
    tokenizer = AutoTokenizer.from_pretrained(ner_model)
    with pytest.raises(ConfigError, match="--stride"):
        Tokenizer(tokenizer, WindowSpec(max_length=16, stride=14))
    with pytest.raises(ConfigError, match="model's limit of 512"):
        Tokenizer(tokenizer, WindowSpec(max_length=1024))


def word_types(text: str, **options) -> dict[str, int]:
    """``case_types`` with each whitespace-separated word as one subword, by word."""
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    types = case_types(text, np.array([s for s, _ in spans]), np.array([e for _, e in spans]),
                       **options)
    return {text[s:e]: int(t) for (s, e), t in zip(spans, types)}


def test_headings_alone_on_their_line_carry_no_casing():
    types = word_types("EARLY LIFE AND EDUCATION\n\nShe was born in Concord.\n\nCONTENTS\n"
                       "CHAPTER I\nL.M. ALCOTT")
    assert types == {"EARLY": 0, "LIFE": 0, "AND": 0, "EDUCATION": 0, "She": 1, "was": 0,
                     "born": 0, "in": 0, "Concord.": 1, "CONTENTS": 0, "CHAPTER": 0, "I": 0,
                     "L.M.": 0, "ALCOTT": 0}


@pytest.mark.parametrize("text", [
    "NASA and IBM signed a deal.", "Then the EU said no.", "He flew to the U.S. on Monday.",
    "A NASA probe landed.", "It is a member of the FAO, IAEA, IBRD, ICAO and IFC.",
    "Officials of the U.S. FDA and the UK MHRA met.", "The city lies on US-11, US-29 and US-31.",
])
def test_acronyms_in_ordinary_text_keep_their_capitals(text):
    types = word_types(text)
    assert types == word_types(text, min_words=0)  # as if there were no rule
    assert all(types[w] == 1 for w in types if w.isupper())


def test_a_shouted_sentence_takes_the_casing_its_words_have_elsewhere():
    text = ("Jo March wrote to Laurie from Concord . THEN JO MARCH TOOK THE TRAIN TO NEW YORK "
            "WITH LAURIE . She stayed with the Laurences .")
    types = word_types(text)
    assert [types[w] for w in "THEN JO MARCH TOOK THE TRAIN TO NEW YORK WITH LAURIE".split()] \
        == [0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert types["Jo"] == types["She"] == 1 and types["stayed"] == 0
    # off, every word of the sentence reads as a name
    assert all(word_types(text, min_words=0)[w] for w in "THEN TOOK THE TRAIN".split())


def test_recasing_ignores_capitals_that_only_start_sentences():
    # "The" starts a sentence and "the" is lower-case elsewhere; "May" is seen only at a
    # sentence start, and nowhere in lower case, so it keeps its capital
    types = word_types("THE MAY PLAN\nThe plan is new. May said the plan works.")
    assert (types["THE"], types["MAY"], types["PLAN"]) == (0, 1, 0)
    assert word_types("THE MAY PLAN\nThe plan may work.")["MAY"] == 0


def test_shouted_spans_units():
    text = "Jo said THEN WE TOOK A TRAIN , SAID JO . And UK MHRA\nIBM"
    assert [text[s:e] for s, e in shouted_spans(text)] == ["THEN WE TOOK A TRAIN , SAID JO",
                                                          "IBM"]
    assert [text[s:e] for s, e in shouted_spans(text, 2)] == [
        "THEN WE TOOK A TRAIN , SAID JO", "UK MHRA", "IBM"]
    assert shouted_spans(text, 0) == [] and shouted_spans("") == [] and shouted_spans(" \n") == []


def test_without_the_rule_every_capital_counts():
    """``min_words=0`` is the feature as it was: the characters' own ``str.isupper``, for
    every script (the flags are looked up per code point, not per character)."""
    text = "ÉTÉ Ǆemal İstanbul ΣΟΦΙΑ straße STRASSE ǅ x\ud800Y ABC DEF GHI \u2160\u2161"
    starts, ends = np.arange(len(text)), np.arange(len(text)) + 1
    expected = [int(c.isupper()) for c in text]
    assert case_types(text, starts, ends, min_words=0).tolist() == expected


def test_training_examples_get_the_case_types_annotate_gives(ner_model):
    """encode computes case types on the document's text, as the tag stage does on the text
    evaluate and annotate give it, so a heading is judged whole across its sentences."""
    tokenizer = AutoTokenizer.from_pretrained(ner_model)
    sentences = [Sentence(tuple(words.split()), ("O",) * len(words.split()), "d0") for words in
                 ["SOCCER - JAPAN GET", "LUCKY WIN .", "LONDON 1996-08-30",
                  "Japan beat the EU side in London ."]]
    item = encode(sentences, tokenizer, {"O": 0}, 64, case_feature=True)[0]
    text, _ = sentence_text([w for s in sentences for w in s.words])
    out = Tokenizer(tokenizer, WindowSpec(64, 16))(batch([text]))
    expected = case_types(text, out.column("_starts")[0].values.to_numpy(),
                          out.column("_ends")[0].values.to_numpy())
    assert item["token_type_ids"][1:-1] == expected.tolist()
    starts = out.column("_starts")[0].values.to_numpy()
    word_at = {i: m.group() for m in re.finditer(r"\S+", text) for i in range(*m.span())}
    cased = {word_at[start] for start, t in zip(starts, expected) if t}
    # the heading reaches past its first sentence; its names take the body's casing
    assert cased == {"JAPAN", "LONDON", "Japan", "EU", "London"}


def reference_shouted_spans(text: str, min_words: int) -> list[tuple[int, int]]:
    """``shouted_spans`` written word by word, as its docstring states the rule."""
    spans = []
    for line in re.finditer(r"[^\n]+", text):
        words = [(m.start() + line.start(), m.end() + line.start(), m.group())
                 for m in re.finditer(r"\S+", line.group())]
        clean = not any(any(c.islower() for c in w) for _, _, w in words)
        runs, current = [], []
        for word in words:
            if any(c.islower() for c in word[2]):
                runs, current = runs + [current], []
            else:
                current.append(word)
        for run in runs + [current]:
            capitals = [w for w in run if w[2].isupper()]
            best = count = 0
            for previous, word in zip([None] + run, run):
                joined = (previous is not None and previous[2].isupper()
                          and previous[2][-1].isalnum())
                if not word[2].isupper():
                    count = 0
                    continue
                n = sum(c.isupper() for c in word[2]) > 1
                count = count + n if joined else n
                best = max(best, count)
            if capitals and (best >= min_words or clean):
                spans.append((capitals[0][0], capitals[-1][1]))
    return spans


@pytest.mark.parametrize("seed", range(5))
def test_shouted_spans_follow_the_rule_word_by_word(seed):
    rng = np.random.default_rng(seed)
    pieces = ["NASA", "THE", "A", "I", "U.S.", "IBM,", "-", "1996", "the", "Jo", "said",
              "ÉTÉ", "ǅ", "(EU)", "x"]
    for _ in range(40):
        words = rng.choice(pieces, size=rng.integers(1, 30))
        gaps = rng.choice([" ", " ", " ", "  ", "\n", "\n\n"], size=len(words))
        text = "".join(f"{w}{g}" for w, g in zip(words, gaps))
        for n in (1, 2, 3):
            assert shouted_spans(text, n) == reference_shouted_spans(text, n), (text, n)


@pytest.mark.parametrize("seed", range(6))
def test_sentence_cuts_cover_every_token_once_where_they_fall_on_boundaries(seed):
    rng = np.random.default_rng(seed)
    n, content, stride = int(rng.integers(50, 3000)), int(rng.integers(8, 300)), 0
    stride = int(rng.integers(0, content // 2))
    boundaries = np.unique(rng.integers(1, n, size=int(rng.integers(0, n // 5 + 1))))
    starts, lens = window_cuts(n, content, stride, boundaries)
    assert_covering(starts, lens, n, content)
    for a, b, la in zip(starts, starts[1:], lens):
        if b == a + la:  # a cut without overlap falls on a sentence start
            assert b in set(boundaries.tolist())
        else:  # else the windows overlap by at least the stride
            assert a + la - b >= stride


def test_windows_end_where_sentences_end(ner_model):
    tokenizer = AutoTokenizer.from_pretrained(ner_model)
    sentence = "John smith said the bank of new york was in london . "
    text = (sentence.capitalize() * 12).strip()
    [sentences, fixed] = [Tokenizer(tokenizer, WindowSpec(64, 16, cuts=cuts))(batch([text]))
                          for cuts in ("sentence", "fixed")]
    ids = sentences.column("_ids")[0].values.to_numpy()
    starts = sentences.column("_starts")[0].values.to_numpy()
    win_starts = sentences.column("_win_starts")[0].values.to_numpy()
    win_lens = sentences.column("_win_lens")[0].values.to_numpy()
    assert len(win_starts) >= 3 and win_lens.max() <= 62
    assert win_lens.sum() == len(ids)  # no subword runs twice
    assert all(text[starts[s]:].startswith("John") for s in win_starts)
    fixed_lens = fixed.column("_win_lens")[0].values.to_numpy()
    assert fixed_lens.sum() > len(ids) and (fixed_lens == 62).all()


def test_sentence_starts_skip_initials_and_titles():
    text = "Mr. Smith met J. R. Jones in St. Louis. They left! \"Then\" came 1999.\nNext"
    starts = np.array([m.start() for m in re.finditer(r"\w+|[^\w\s]", text)])
    found = [text[starts[i]:].split()[0] for i in sentence_starts(text, starts)]
    assert found == ["They", "\"Then\"", "Next"]


def test_an_unknown_cut_rule_is_refused(ner_model):
    with pytest.raises(ConfigError, match="--window-cuts"):
        Tokenizer(AutoTokenizer.from_pretrained(ner_model), WindowSpec(64, 16, cuts="words"))
