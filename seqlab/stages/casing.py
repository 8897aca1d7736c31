"""Case types of subwords, and the all-capitals rule that recases shouted text before tokenizing."""

from __future__ import annotations

import re

import numpy as np

# All-capital text (a heading, a shouted sentence) says nothing about names: where at least
# this many words of two or more capitals stand in a row, the case feature ignores its
# capitals; measured on CoNLL-2003 dev with one sentence in five upper-cased
# (benchmarks/caps_robustness.py). 0 turns the rule off.
SHOUTED_WORDS = 3

# Words of such text then take the casing the same word has elsewhere in the text, if any.
RECASE_SHOUTED = True

_LETTERS = re.compile(r"[^\W\d_]+")

_OPENERS = " \t\"'([{\u201c\u2018\u00ab"  # may stand between a sentence's end and its first word

_TESTS = (str.isupper, str.islower, str.isspace, str.isalnum, "\n".__eq__)

_ASCII = np.array([[test(chr(c)) for c in range(128)] for test in _TESTS])


def _char_flags(text: str) -> np.ndarray:
    """``_TESTS`` of each character of ``text``, shape (5, len(text)): what
    ``map(str.isupper, text)`` and the like give, without a Python call per character."""
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    flags = np.zeros((len(_TESTS), len(codes)), dtype=bool)
    ascii_ = codes < 128
    flags[:, ascii_] = _ASCII[:, codes[ascii_]]
    if not ascii_.all():
        unique, inverse = np.unique(codes[~ascii_], return_inverse=True)
        chars = [chr(c) for c in unique.tolist()]
        flags[:, ~ascii_] = np.array([[test(c) for c in chars] for test in _TESTS])[:, inverse]
    return flags


def _words(flags: np.ndarray) -> dict[str, np.ndarray]:
    """The words (runs of non-space characters) of a text given its ``_char_flags``: start,
    end, line number, whether each has a lower-case letter, is all capitals (``capital``: at
    least one, ``caps``: two or more) and ends in a letter or digit."""
    upper, lower, space, alnum, newline = flags
    word = ~space
    starts = np.flatnonzero(word & ~np.concatenate([[False], word[:-1]]))
    ends = np.flatnonzero(word & ~np.concatenate([word[1:], [False]])) + 1

    def per_word(char: np.ndarray) -> np.ndarray:
        total = np.concatenate([[0], np.cumsum(char)])
        return total[ends] - total[starts]

    n_upper, has_lower = per_word(upper), per_word(lower) > 0
    return {"starts": starts, "ends": ends, "has_lower": has_lower,
            "capital": ~has_lower & (n_upper > 0), "caps": ~has_lower & (n_upper > 1),
            "alnum_end": alnum[ends - 1], "line": np.cumsum(newline)[starts]}


def shouted_spans(text: str, min_words: int | None = None,
                  flags: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Character spans of ``text`` written all in capitals, where casing tells nothing.

    Words are runs of non-space characters; a word with a lower-case letter or a line break
    ends a run of all-capital words, a word with no letter (``-``, ``1996``) does not. A run
    is shouted when ``min_words`` (default ``SHOUTED_WORDS``) words of two or more capitals
    stand in a row in it (only spaces on one line between them; a single capital such as
    ``A`` or ``I`` neither counts nor breaks the row), or when it is a whole line with no
    lower-case letter (a heading alone on its line: ``CONTENTS``, ``L.M. ALCOTT``). Acronyms
    in ordinary text stay out, alone (``the EU said``, ``A NASA probe``) or in a list (``FAO,
    IAEA, IBRD``). ``flags``: ``_char_flags(text)``, when the caller has them.

    >>> text = "MAY FLOWERS\\n\\nMay met the EU and FAO, IAEA, IBRD.\\n\\nL.M. ALCOTT"
    >>> [text[s:e] for s, e in shouted_spans(text)]
    ['MAY FLOWERS', 'L.M. ALCOTT']
    >>> text = "Jo said THEN WE TOOK A TRAIN , SAID JO . Then"
    >>> [text[s:e] for s, e in shouted_spans(text)]
    ['THEN WE TOOK A TRAIN , SAID JO']
    """
    min_words = SHOUTED_WORDS if min_words is None else min_words
    if min_words <= 0 or not text.strip():
        return []
    w = _words(_char_flags(text) if flags is None else flags)
    capital, line = w["capital"], w["line"]
    new_line = line != np.concatenate([[-1], line[:-1]])
    # a row goes on from a capital word ending in a letter or digit to the next word of its
    # line if that is capital too
    goes_on = capital[:-1] & capital[1:] & w["alnum_end"][:-1] & ~new_line[1:]
    row = np.concatenate([[0], np.cumsum(~goes_on)])
    long_row = np.bincount(row[capital], weights=w["caps"][capital],
                           minlength=row[-1] + 1) >= min_words
    run = np.cumsum(w["has_lower"] | new_line)  # a lower-case word or a new line starts a run
    clean_line = ~np.isin(line, line[w["has_lower"]])  # a line with no lower-case word
    shouted = np.zeros(run[-1] + 1, dtype=bool)
    shouted[run[capital & (long_row[row] | clean_line)]] = True
    members = np.flatnonzero(capital & shouted[run])
    if not len(members):
        return []
    first = np.concatenate([[True], run[members][1:] != run[members][:-1]])
    last = np.concatenate([first[1:], [True]])
    return list(zip(w["starts"][members[first]].tolist(), w["ends"][members[last]].tolist()))


def usual_casing(text: str, spans: list[tuple[int, int]]) -> dict[str, str]:
    """The words (runs of letters, lower-cased) of ``spans`` that ``text`` writes with
    capitals elsewhere, mapped to their most frequent such form.

    A word has capitals when its capitalised occurrences outnumber its lower-case ones
    (``May`` the name, ``may`` the verb). Occurrences that start a sentence (``The``) count only
    for a word that occurs nowhere else (``China lost .``).

    >>> usual_casing("JO AND MAY SAW CHINA . Jo and may , and May , and Jo . China lost .",
    ...              [(0, 21)])
    {'jo': 'Jo', 'china': 'China'}
    """
    keys = {m.group().lower() for s, e in spans for m in _LETTERS.finditer(text, s, e)}
    if not keys:
        return {}
    words = "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))
    pattern = re.compile(rf"(?<![^\W\d_])(?:{words})(?![^\W\d_])", re.IGNORECASE)
    # per word: {(form, starts a sentence): occurrences} outside the spans
    counts: dict[str, dict[tuple[str, bool], int]] = {}
    bounds = iter(spans + [(len(text) + 1, len(text) + 1)])
    span = next(bounds)
    for match in pattern.finditer(text):
        while match.start() >= span[1]:
            span = next(bounds)
        word = match.group()
        if match.start() >= span[0] or word.lower() not in keys:
            continue
        before = match.start()
        while before > 0 and text[before - 1] in _OPENERS:
            before -= 1
        form = (word, before == 0 or text[before - 1] in ".!?\n\r")
        forms = counts.setdefault(word.lower(), {})
        forms[form] = forms.get(form, 0) + 1
    usual = {}
    for key, forms in counts.items():
        lower = sum(n for (form, _), n in forms.items() if form == key)
        cased = {form: n for (form, initial), n in forms.items() if form != key and not initial}
        if not cased and not lower:
            cased = {form: n for (form, _), n in forms.items() if form != key}
        if sum(cased.values()) > lower:
            usual[key] = max(cased, key=cased.__getitem__)
    return usual


def case_types(text: str, starts: np.ndarray, ends: np.ndarray,
               min_words: int | None = None) -> np.ndarray:
    """1 for each subword whose characters ``text[start:end]`` hold an upper-case letter, else 0.

    Uncased vocabularies (all-MiniLM-L6-v2's among them) lower-case text before it reaches the
    encoder, dropping the strongest single cue for names and proper nouns. Models trained with
    ``case_feature`` get it back as BERT's token type ids (see ``seqlab.training.train``). Text
    written all in capitals (``shouted_spans``: headings, shouted sentences) carries no casing, and
    read as capitalised every word of a heading would look like a name: its words are cased
    as the text writes them elsewhere (``usual_casing``: ``JAPAN`` as in ``Japan``), else as
    lower case (0, as in the caseless share of the training examples). Acronyms in ordinary
    text keep their 1. ``min_words``: see ``shouted_spans``.

    >>> case_types("Hello world NYC", np.array([0, 6, 12]), np.array([5, 11, 15])).tolist()
    [1, 0, 1]
    >>> text = "MAY FLOWERS\\nMay met Jo."
    >>> case_types(text, np.array([0, 4, 12, 16, 20]), np.array([3, 11, 15, 19, 22])).tolist()
    [1, 0, 1, 0, 1]
    """
    flags = _char_flags(text)
    upper = flags[0].astype(np.int32)
    spans = shouted_spans(text, min_words, flags)
    casing = usual_casing(text, spans) if spans and RECASE_SHOUTED else {}
    for start, end in spans:
        upper[start:end] = 0
        for match in _LETTERS.finditer(text, start, end):
            form = casing.get(match.group().lower())
            if form is not None and len(form) == match.end() - match.start():
                upper[match.start() : match.end()] = [c.isupper() for c in form]
    before = np.concatenate([[0], np.cumsum(upper)])
    return (before[ends] > before[starts]).astype(np.int64)
