"""Frame tagging: role distributions for each predicate of a tokenized text.

Works on the tokenize stage's output (``seqlab.tokenize.Tokenizer``), so frames are read from
the same subwords and offsets as every other annotation. A predicate is a character span of the
text (a word the predicate labeller found, or a gold predicate); its subwords are those inside
the span. Each frame reads the sentence that holds its predicate (``frame_context``: SRL models
are trained on sentences, and a frame's arguments lie in its sentence), with the predicate
indicator (``seqlab.srl_examples``) in the token types, through the ``Tagger``'s micro-batching
and forward pass, and is decoded to one role label per word of that sentence like any tagging
output. A document's cost thus grows with its predicates times their sentences' length, not
times the document's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from seqlab import schema
from seqlab.decode import WordDecoder
from seqlab.errors import ModelError
from seqlab.labels import OUTSIDE, chunks
from seqlab.model import LoadedModel, trained_window
from seqlab.srl_examples import PREDICATE_TYPE
from seqlab.tag import Tagger, Window
from seqlab.tokenize import case_types, sentence_starts

Span = tuple[int, int]  # start_char, end_char
# PropBank's numbered (core) roles: a frame fills each at most once
CORE_ROLES = frozenset({"ARG0", "ARG1", "ARG2", "ARG3", "ARG4", "ARG5", "ARGA"})


@dataclass
class FrameWords:
    """One frame decoded: per word of the text (the tokenizer's words), its first subword,
    character span, role label and score."""

    starts: np.ndarray
    ends: np.ndarray
    labels: list[str]
    scores: np.ndarray


def predicate_mask(starts: np.ndarray, ends: np.ndarray, span: Span) -> np.ndarray:
    """1 on the subwords inside the character span ``span``.

    >>> predicate_mask(np.array([0, 4, 7]), np.array([3, 7, 9]), (4, 9)).tolist()
    [0, 1, 1]
    """
    return ((starts >= span[0]) & (ends <= span[1]) & (ends > starts)).astype(np.int64)


def one_span_per_core_role(labels: list[str], scores: np.ndarray) -> list[str]:
    """Labels with each core role kept on its best span only (highest mean word score); the
    role's other spans become ``O``.

    >>> one_span_per_core_role(["B-ARG0", "O", "B-ARG0", "I-ARG0"], np.array([.5, 1, .9, .7]))
    ['O', 'O', 'B-ARG0', 'I-ARG0']
    """
    best: dict[str, tuple[float, int, int]] = {}
    out = list(labels)
    for role, first, last in chunks(labels):
        if role not in CORE_ROLES:
            continue
        mean = float(np.mean(scores[first : last + 1]))
        kept = best.get(role)
        if kept is None or mean > kept[0]:
            if kept is not None:
                out[kept[1] : kept[2] + 1] = [OUTSIDE] * (kept[2] - kept[1] + 1)
            best[role] = (mean, first, last)
        else:
            out[first : last + 1] = [OUTSIDE] * (last - first + 1)
    return out


def frame_context(text: str, starts: np.ndarray, predicate: int, content: int
                  ) -> tuple[int, int]:
    """The subwords ``[lo, hi)`` a frame reads: the sentence holding subword ``predicate``
    (``seqlab.tokenize.sentence_starts``), as the model was trained on single sentences; at
    most ``content`` of them, centred on the predicate where the sentence is longer.

    >>> text = "Jo ran. Mo sat down. Flo left."
    >>> starts = np.array([0, 3, 6, 8, 11, 15, 19, 21, 25, 29])
    >>> frame_context(text, starts, 4, 10), frame_context(text, starts, 4, 3)
    ((3, 7), (3, 6))
    """
    bounds = np.concatenate([[0], sentence_starts(text, starts), [len(starts)]])
    k = int(np.searchsorted(bounds, predicate, side="right")) - 1
    lo, hi = int(bounds[k]), int(bounds[k + 1])
    if hi - lo > content:
        lo = min(max(lo, predicate - content // 2), hi - content)
        hi = lo + content
    return lo, hi


class FrameTagger:
    """Holds an SRL model; ``frames(batch, predicates)`` decodes every (row, predicate)."""

    def __init__(self, loaded: LoadedModel, batch_tokens: int = 16384,
                 decoder: str = "greedy", core_once: bool = False,
                 max_length: int | None = None) -> None:
        """``core_once``: each core role (``CORE_ROLES``) on one span of a frame at most.
        ``max_length``: the most subwords a frame reads, special tokens included (default:
        the length the model was trained on, else 512)."""
        encoding = loaded.metadata.get("predicate_encoding")
        if loaded.metadata.get("task") != "srl" or encoding != "indicator":
            raise ModelError(f"{loaded.name} is not an SRL model with the predicate indicator "
                             f"(seqlab.json task {loaded.metadata.get('task')!r}, predicate "
                             f"encoding {encoding!r})",
                             fix="pass a model trained with seqlab train --task srl")
        self.tagger = Tagger(loaded, batch_tokens)
        # the token types carry the predicate even where the model has no case feature
        self.case_feature = self.tagger.case_feature
        self.tagger.case_feature = True
        self.names = np.asarray(loaded.labels.labels, dtype=object)
        self.decode = WordDecoder(loaded.labels, decoder)
        self.core_once = core_once
        specials = len(self.tagger.prefix) + len(self.tagger.suffix)
        self.content = (max_length or trained_window(loaded.metadata) or 512) - specials

    def frames(self, batch: pa.RecordBatch, predicates: list[list[Span]]
               ) -> list[list[FrameWords | None]]:
        """For each row, one ``FrameWords`` per predicate span (None for rows not ``ok`` or
        predicates with no subword)."""
        status = batch.column(schema.STATUS).to_pylist()
        windows, keys = [], []
        for row, spans in enumerate(predicates):
            if status[row] != schema.OK:
                continue
            for n, span in enumerate(spans):
                found = self._windows(batch, row, span, len(keys))
                if found:
                    windows += found
                    keys.append((row, n))
        outputs: dict[tuple[int, int], np.ndarray] = {}
        for group in self.tagger._micro_batches(windows):
            for window, probs in zip(group, self.tagger.forward(group)):
                outputs[(window.row, window.index)] = probs
        by_frame = {window.row: window for window in windows}
        result: list[list[FrameWords | None]] = [[None] * len(spans) for spans in predicates]
        for frame, (row, n) in enumerate(keys):
            result[row][n] = self._decode(batch, row, frame, by_frame, outputs)
        return result

    def _windows(self, batch: pa.RecordBatch, row: int, span: Span, frame: int
                 ) -> list[Window]:
        starts = batch.column(schema.STARTS)[row].values.to_numpy()
        ends = batch.column(schema.ENDS)[row].values.to_numpy()
        mask = predicate_mask(starts, ends, span)
        if not mask.any():
            return []
        text = batch.column(schema.TEXT)[row].as_py()
        lo, hi = frame_context(text, starts, int(np.flatnonzero(mask)[0]), self.content)
        types = PREDICATE_TYPE * mask[lo:hi]
        if self.case_feature:
            types = types + case_types(text, starts, ends)[lo:hi]
        ids = batch.column(schema.IDS)[row].values.to_numpy()
        return [Window(frame, lo, ids[lo:hi], types)]  # index: the sentence's first subword

    def _decode(self, batch: pa.RecordBatch, row: int, frame: int,
                windows: dict[int, Window], outputs: dict[tuple[int, int], np.ndarray]
                ) -> FrameWords:
        window = windows[frame]
        lo, hi = window.index, window.index + len(window.ids)
        words = batch.column(schema.WORDS)[row].values.to_numpy()[lo:hi]
        first, label_ids, scores = self.decode(outputs[(frame, lo)], words)
        last = np.append(first[1:], len(words)) - 1
        labels = self.names[label_ids].tolist()
        if self.core_once:
            labels = one_span_per_core_role(labels, scores)
        return FrameWords(batch.column(schema.STARTS)[row].values.to_numpy()[lo:hi][first],
                          batch.column(schema.ENDS)[row].values.to_numpy()[lo:hi][last],
                          labels, scores)
