"""Span edges that read as names: stray punctuation at a labelled span's edge goes outside it.

A BERT tokenizer splits ``Mr. Wallace`` into the words ``Mr``, ``.`` and ``Wallace``, and a
tagger sometimes opens the name at the full stop (``Mr[. Wallace](PER)``) or tags the stop
alone (``Mrs[.](PER) [Weston](PER)``); mentions then begin with punctuation and aggregates
count ``. wallace``. After greedy or Viterbi decoding, ``SpanRepair`` gives each labelled span
(``seqlab.labels.chunks``) back its words without such edges:

- a span never begins with a closing bracket or quote, a separator (``, ; :``, dashes) or a
  sentence end (``. ! ?``), unless a sentence end is written against the next word and apart
  from the word before it (``.NET``, ``!Kung``): then it belongs to the name;
- a span never ends on an opening bracket or quote or a separator (``( [ { , ; :``, dashes);
- an opening bracket or quote begins a span, and a closing one ends it, only with its partner
  inside the span (``[(Reuters)]`` stays whole, ``(Reuters[)]`` loses its ``)``);
- a full stop written against the last word of a span of the same type just before it ends
  that word (an initial, ``St.``): the two spans are one name (``[P](PER)[. Simmons](PER)`` is
  ``[P. Simmons](PER)``, as conlleval reads ``P.`` ``Simmons`` labelled ``B-PER I-PER``).

So an honorific's full stop stays outside the name unless the model put the honorific in it
(``[Mr. Wallace](PER)`` is kept whole), a span of punctuation alone is no span, and names that
hold punctuation (``Yahoo!``, ``St. Louis``, ``U.S.``, ``AT&T``, ``O'Brien``) are untouched. The
words taken off are labelled ``O`` and the span keeps its type, rewritten in the label set's
scheme (``B-``/``I-``, ``E-``/``S-``), so a Viterbi sequence stays one the scheme allows.
"""

from __future__ import annotations

import numpy as np

from seqlab.labels import OUTSIDE, LabelSet, chunks, spans_to_labels, split_label

# brackets and quotes (ASCII, typographic, guillemets, full-width, CJK corner brackets): each
# closer at the index of its opener
OPENING = "([{\u201c\u00ab\u2039\uff08\uff3b\uff5b\u300c\u300e"
CLOSING = ")]}\u201d\u00bb\u203a\uff09\uff3d\uff5d\u300d\u300f"
SEPARATORS = frozenset(",;:-\u2013\u2014\uff0c\uff1b\uff1a\u3001")
ENDING = frozenset(".!?\u2026\u3002\uff01\uff1f")
# never the first word of a name: closers, separators, and sentence ends (but .NET)
LEADING_STRAY = frozenset(CLOSING) | SEPARATORS | ENDING
# never the last word of a name: openers and separators
TRAILING_STRAY = frozenset(OPENING) | SEPARATORS
_MARKS = LEADING_STRAY | TRAILING_STRAY
# The longest word (in characters) that is checked: punctuation words are a mark or a few.
_MAX_MARKS = 3


def _canonical(label: str) -> str:
    prefix, type_ = split_label(label)
    return f"{prefix}-{type_}" if prefix not in ("", OUTSIDE) else label


def _all_in(word: str, marks: frozenset[str]) -> bool:
    return bool(word) and all(c in marks for c in word)


class SpanRepair:
    """Callable: a document's word label ids -> the same ids with no stray punctuation at the
    edges of a labelled span. ``text`` and the words' character ``starts`` and ``ends`` say
    what each word is and whether it is written against its neighbours.

    >>> labels = LabelSet(("O", "B-PER", "I-PER"), "iob2")
    >>> text = "Dr. Tracy came"  # words Dr . Tracy came, labelled O B-PER I-PER O
    >>> SpanRepair(labels)(np.array([0, 1, 2, 0]), text, np.array([0, 2, 4, 10]),
    ...                    np.array([2, 3, 9, 14])).tolist()
    [0, 0, 1, 0]
    """

    def __init__(self, labels: LabelSet) -> None:
        self.names = labels.labels
        self.scheme = labels.scheme
        # by canonical spelling (BILOU's U-/L- as S-/E-), as spans_to_labels writes labels
        self.ids = {_canonical(name): i for i, name in enumerate(labels.labels)}
        outside = self.ids.get(OUTSIDE)
        self.outside = -1 if outside is None else outside
        self.enabled = labels.has_entities and outside is not None

    def __call__(self, label_ids: np.ndarray, text: str, starts: np.ndarray,
                 ends: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return label_ids
        short = np.flatnonzero((label_ids != self.outside) & (ends - starts <= _MAX_MARKS))
        marks = {int(i): text[starts[i] : ends[i]].strip() for i in short}
        marks = {i: w for i, w in marks.items() if _all_in(w, _MARKS)}
        if not marks:
            return label_ids
        labels = [self.names[i] for i in label_ids.tolist()]
        # [type, first, last, lo, hi, joined]: each span, the words it keeps, whether it
        # joins the one before
        kept: list[list] = []
        for type_, first, last in chunks(labels):
            if first not in marks and last not in marks:
                kept.append([type_, first, last, first, last, False])
                continue
            lo, hi, joined = first, last, False
            if kept and self._ends_abbreviation(kept[-1], type_, first, marks, starts, ends):
                # ``[P](PER)[. Simmons](PER)``: the full stop is the initial's, one name
                first, lo, joined = kept[-1][1], kept.pop()[3], True
            while lo <= hi and self._leading_stray(lo, hi, marks, text, starts, ends):
                lo += 1
            while hi >= lo and self._trailing_stray(lo, hi, marks, text, starts):
                hi -= 1
            kept.append([type_, first, last, lo, hi, joined])
        out = label_ids.copy()
        for type_, first, last, lo, hi, joined in kept:
            if joined or (lo, hi) != (first, last):
                self._rewrite(out, labels, type_, (first, last), (lo, hi))
        return out

    @staticmethod
    def _ends_abbreviation(before: list, type_: str, first: int, marks: dict[int, str],
                           starts: np.ndarray, ends: np.ndarray) -> bool:
        """Whether the span opening at ``first`` opens with a full stop written against the
        last word of the span ``before`` it, of its type: the stop ends that word (an initial,
        ``St.``), and the two spans are one name."""
        before_type, _, _, _, before_hi, _ = before
        return (before_type == type_ and before_hi == first - 1
                and marks.get(first, "") == "." and ends[first - 1] == starts[first])

    @staticmethod
    def _leading_stray(lo: int, hi: int, marks: dict[int, str], text: str,
                       starts: np.ndarray, ends: np.ndarray) -> bool:
        """Whether word ``lo``, first of the span ``lo..hi``, is punctuation that is no part
        of a name: a closer, a separator, a sentence end (but one written against the next
        word and apart from the one before: ``.NET``, ``!Kung``), an opener never closed."""
        word = marks.get(lo, "")
        if _all_in(word, frozenset(OPENING)):
            return not all(CLOSING[OPENING.index(c)] in text[ends[lo] : ends[hi]] for c in word)
        if not _all_in(word, LEADING_STRAY):
            return False
        if _all_in(word, ENDING):
            glued_next = lo + 1 < len(starts) and ends[lo] == starts[lo + 1]
            glued_before = lo > 0 and ends[lo - 1] == starts[lo]
            return glued_before or not glued_next
        return True

    @staticmethod
    def _trailing_stray(lo: int, hi: int, marks: dict[int, str], text: str,
                        starts: np.ndarray) -> bool:
        """Whether word ``hi``, last of the span ``lo..hi``, is punctuation that is no part of
        a name: an opener, a separator, a closer never opened."""
        word = marks.get(hi, "")
        if _all_in(word, frozenset(CLOSING)):
            return not all(OPENING[CLOSING.index(c)] in text[starts[lo] : starts[hi]]
                           for c in word)
        return _all_in(word, TRAILING_STRAY)

    def _rewrite(self, out: np.ndarray, labels: list[str], type_: str,
                 span: tuple[int, int], kept: tuple[int, int]) -> None:
        """Words of ``span`` outside ``kept`` to O, ``kept`` written as one span of ``type_``
        in the scheme; nothing changes where the label set lacks a label this needs."""
        (first, last), (lo, hi) = span, kept
        new = dict.fromkeys(range(first, last + 1), OUTSIDE)
        if lo <= hi:
            piece = spans_to_labels([(type_, 0, hi - lo)], hi - lo + 1, self.scheme)
            if self.scheme == "iob1" and lo == first:
                # its B- parting it from the span before stays (an I- if that span is gone)
                piece[0] = _canonical(self.names[out[first]])
            new.update(zip(range(lo, hi + 1), piece))
        after = last + 1
        if self.scheme == "iob1" and (hi < last or lo > hi) and after < len(labels):
            prefix, next_type = split_label(labels[after])
            if prefix == "B":  # it parted two spans; after O it is an I- that opens one
                new[after] = f"I-{next_type}"
        if any(label not in self.ids for label in new.values()):
            return
        for i, label in new.items():
            out[i] = self.ids[label]
