"""Frames from decoded role labels: one per predicate occurrence, with its argument spans.

The rows follow ``seqlab.schema.FRAME`` (the documents' ``frames`` column; flattened, the
``frames`` table): offsets index the document's text, so ``text[start_char:end_char]`` is the
predicate and each argument; an argument's score is the mean of its words' scores, as for
entities; the predicate's own ``V`` span is not an argument.
"""

from __future__ import annotations

from collections.abc import Sequence

from seqlab.srl.tag import FrameWords
from seqlab.stages.entities import find_entities

VERB = "V"  # the predicate's own role: never scored as an argument

Predicate = tuple[int, int, float]  # start_char, end_char, score


def arguments(text: str, words: FrameWords) -> list[dict]:
    """A decoded frame's argument spans (``V`` left out), in text order."""
    return [{"role": e.label, "text": e.text, "start_char": e.start_char,
             "end_char": e.end_char, "score": e.score}
            for e in find_entities(text, words.labels, words.scores, words.starts, words.ends)
            if e.label != VERB]


def frame_rows(text: str, predicates: Sequence[Predicate],
               decoded: Sequence[FrameWords | None]) -> list[dict]:
    """The frames of one document, numbered from 0 (predicates with no decoded frame, e.g.
    none of whose subwords is inside a window, are left out)."""
    rows = []
    for (start, end, score), words in zip(predicates, decoded):
        if words is None:
            continue
        rows.append({"frame": len(rows),
                     "predicate": {"text": text[start:end], "start_char": start,
                                   "end_char": end, "score": float(score)},
                     "arguments": arguments(text, words)})
    return rows
