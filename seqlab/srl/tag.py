"""Frame tagging: role distributions for each predicate of a tokenized text.

Works on the tokenize stage's output (``seqlab.stages.tokenize.Tokenizer``), so frames are read from
the same subwords and offsets as every other annotation. A predicate is a character span of the
text (a word the predicate labeller found, or a gold predicate); its subwords are those inside
the span. Each frame reads the sentence that holds its predicate (``frame_context``: SRL models
are trained on sentences, and a frame's arguments lie in its sentence), with the predicate
indicator (``seqlab.srl.examples``) in the token types, through the ``Tagger``'s micro-batching
and forward pass, and is decoded to one role label per word of that sentence like any tagging
output. A document's cost thus grows with its predicates times their sentences' length, not
times the document's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from seqlab import schema
from seqlab.errors import ModelError
from seqlab.labels import OUTSIDE, chunks
from seqlab.models.load import LoadedModel
from seqlab.stages.casing import case_types
from seqlab.stages.decode import WordDecoder
from seqlab.stages.tag import Tagger, Window
from seqlab.stages.tokenize import sentence_starts

Span = tuple[int, int]  # start_char, end_char
PREDICATE_TYPE = 2  # added to the case type (0 or 1) on the predicate's subwords
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


def sentence_bounds(text: str, starts: np.ndarray) -> np.ndarray:
    """The first subword of each sentence of ``text`` (``seqlab.stages.tokenize.sentence_starts``),
    and the subword count last.

    >>> text = "Jo ran. Mo sat down. Flo left."
    >>> sentence_bounds(text, np.array([0, 3, 6, 8, 11, 15, 19, 21, 25, 29])).tolist()
    [0, 3, 7, 10]
    """
    return np.concatenate([[0], sentence_starts(text, starts), [len(starts)]]).astype(np.int64)


def frame_context(bounds: np.ndarray, predicate: int, content: int) -> tuple[int, int]:
    """The subwords ``[lo, hi)`` a frame reads: the sentence (``bounds``: ``sentence_bounds``)
    holding subword ``predicate``, as the model was trained on single sentences; at most
    ``content`` of them, centred on the predicate where the sentence is longer.

    >>> bounds = np.array([0, 3, 7, 10])
    >>> frame_context(bounds, 4, 10), frame_context(bounds, 4, 3)
    ((3, 7), (3, 6))
    """
    k = int(np.searchsorted(bounds, predicate, side="right")) - 1
    lo, hi = int(bounds[k]), int(bounds[k + 1])
    if hi - lo > content:
        lo = min(max(lo, predicate - content // 2), hi - content)
        hi = lo + content
    return lo, hi


@dataclass
class _Row:
    """One document's subwords as every frame of it reads them, computed once per row."""

    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    words: np.ndarray
    bounds: np.ndarray  # sentence_bounds
    cases: np.ndarray | None  # case_types, for models with the case feature


class FrameTagger:
    """Holds an SRL model; ``frames(batch, predicates)`` decodes every (row, predicate)."""

    def __init__(self, loaded: LoadedModel, batch_tokens: int = 16384,
                 decoder: str = "greedy", core_once: bool | None = None,
                 max_length: int | None = None) -> None:
        """``core_once``: each core role (``CORE_ROLES``) on one span of a frame at most
        (default: as the model's ``seqlab.json`` ``core_once`` recommends, else off).
        ``max_length``: the most subwords a frame reads, special tokens included (default:
        the length the model was trained on, else 512)."""
        metadata = loaded.metadata
        if metadata.task != "srl" or metadata.predicate_encoding != "indicator":
            raise ModelError(f"{loaded.name} is not an SRL model with the predicate indicator "
                             f"(seqlab.json task {metadata.task!r}, predicate "
                             f"encoding {metadata.predicate_encoding!r})",
                             fix="pass a model trained with seqlab train --task srl")
        self.tagger = Tagger(loaded, batch_tokens)
        # the token types carry the predicate even where the model has no case feature
        self.case_feature = self.tagger.case_feature
        self.tagger.case_feature = True
        self.names = np.asarray(loaded.labels.labels, dtype=object)
        self.decode = WordDecoder(loaded.labels, decoder)
        self.core_once = metadata.core_once if core_once is None else core_once
        specials = len(self.tagger.prefix) + len(self.tagger.suffix)
        self.content = (max_length or metadata.window or 512) - specials

    def frames(self, batch: pa.RecordBatch, predicates: list[list[Span]]
               ) -> list[list[FrameWords | None]]:
        """For each row, one ``FrameWords`` per predicate span (None for rows not ``ok`` or
        predicates with no subword)."""
        status = batch.column(schema.STATUS).to_pylist()
        windows, keys, rows = [], [], {}
        for row, spans in enumerate(predicates):
            if status[row] != schema.OK or not spans:
                continue
            rows[row] = self._row(batch, row)
            for n, span in enumerate(spans):
                window = self._window(rows[row], span, len(keys))
                if window is not None:
                    windows.append(window)
                    keys.append((row, n))
        outputs: dict[int, np.ndarray] = {}
        for group in self.tagger._micro_batches(windows):
            for window, probs in zip(group, self.tagger.forward(group)):
                outputs[window.row] = probs
        result: list[list[FrameWords | None]] = [[None] * len(spans) for spans in predicates]
        for window, (row, n) in zip(windows, keys):
            result[row][n] = self._decode(rows[row], window, outputs[window.row])
        return result

    def _row(self, batch: pa.RecordBatch, row: int) -> _Row:
        text = batch.column(schema.TEXT)[row].as_py()
        starts = batch.column(schema.STARTS)[row].values.to_numpy()
        ends = batch.column(schema.ENDS)[row].values.to_numpy()
        return _Row(batch.column(schema.IDS)[row].values.to_numpy(), starts, ends,
                    batch.column(schema.WORDS)[row].values.to_numpy(),
                    sentence_bounds(text, starts),
                    case_types(text, starts, ends) if self.case_feature else None)

    def _window(self, row: _Row, span: Span, frame: int) -> Window | None:
        """The frame's one window (``index``: its first subword), None when no subword of the
        text lies inside the predicate's span."""
        mask = predicate_mask(row.starts, row.ends, span)
        if not mask.any():
            return None
        lo, hi = frame_context(row.bounds, int(np.flatnonzero(mask)[0]), self.content)
        types = PREDICATE_TYPE * mask[lo:hi]
        if row.cases is not None:
            types = types + row.cases[lo:hi]
        return Window(frame, lo, row.ids[lo:hi], types)

    def _decode(self, row: _Row, window: Window, probs: np.ndarray) -> FrameWords:
        lo, hi = window.index, window.index + len(window.ids)
        words = row.words[lo:hi]
        first, label_ids, scores = self.decode(probs, words)
        last = np.append(first[1:], len(words)) - 1
        labels = self.names[label_ids].tolist()
        if self.core_once:
            labels = one_span_per_core_role(labels, scores)
        return FrameWords(row.starts[lo:hi][first], row.ends[lo:hi][last], labels, scores)
