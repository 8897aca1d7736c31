"""The tokenize stage: documents -> subword tokens with character offsets, word ids and windows.

Words come from the fast tokenizer's own pre-tokenizer (whitespace and punctuation for BERT),
through ``word_ids()``, so a label is given per word exactly as transformers' pipeline and the
training alignment see words. A document longer than one window is cut into windows of at most
``max_length`` tokens (special tokens included). With ``cuts="sentence"`` (the default) a
window ends where a sentence or paragraph does, the next one starts there and the two do not
overlap: the shipped models were trained on document chunks cut at sentence boundaries, so a
window that starts with a sentence reads as their training examples did, and no token is run
twice. Where no sentence ends in the second half of a window (a list, a table, text without
punctuation), and everywhere with ``cuts="fixed"``, windows overlap by ``stride`` tokens and the
tag stage stitches them back by the maximum-context rule.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from tokenizers import Tokenizer as Tokenizer_

from seqlab import schema
from seqlab.errors import ConfigError
from seqlab.stages import WINDOW_CUTS

if TYPE_CHECKING:  # annotations only: importing transformers takes a second
    from transformers import PreTrainedTokenizerBase

# A sentence starts after ., ! or ? (closing quotes and brackets may follow) and white space,
# at an upper-case letter, a digit or an opening quote; a paragraph after a line break. A
# full stop after a lone capital (``J. Smith``) or a common title does not end a sentence.
_SENTENCE_END = re.compile(
    r"(?<![\s.][A-Z])(?<!\b(?:Mr|Ms|Dr|St|Jr|Sr|Mt|vs|No))(?<!\bMrs)(?<!\bProf)"
    r"[.!?][\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])|\n\s*(?=\S)")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowSpec:
    """How documents are cut into model windows."""

    max_length: int = 512
    stride: int = 128
    max_chars: int = 1_000_000
    cuts: str = "sentence"

    def content_length(self, n_special: int) -> int:
        return self.max_length - n_special

    def validate(self, n_special: int, model_max_length: int | None) -> None:
        if self.cuts not in WINDOW_CUTS:
            raise ConfigError(f"unknown --window-cuts {self.cuts!r}",
                              fix=f"pass one of {', '.join(WINDOW_CUTS)}")
        if model_max_length and self.max_length > model_max_length:
            raise ConfigError(
                f"--max-length {self.max_length} is above the model's limit of {model_max_length}",
                fix=f"pass --max-length {model_max_length} or less",
            )
        content = self.content_length(n_special)
        if content < 2:
            raise ConfigError(
                f"--max-length {self.max_length} leaves no room for text after "
                f"{n_special} special tokens",
                fix="pass a larger --max-length",
            )
        if not 0 <= self.stride < content:
            raise ConfigError(
                f"--stride {self.stride} must be at least 0 and below the {content} text tokens "
                f"of a window (max length {self.max_length} minus {n_special} special tokens)",
                fix=f"pass --stride between 0 and {content - 1}, e.g. {content // 4}",
            )


def window_starts(n_tokens: int, content: int, stride: int) -> tuple[list[int], list[int]]:
    """Start and length of each window over ``n_tokens`` subwords.

    >>> window_starts(10, 4, 1)
    ([0, 3, 6], [4, 4, 4])
    >>> window_starts(3, 4, 1)
    ([0], [3])
    """
    if n_tokens <= content:
        return [0], [n_tokens]
    step = content - stride
    starts = list(range(0, n_tokens - content, step)) + [None]
    # the last window is aligned to the end, so it is full and never a sliver of a few tokens
    starts[-1] = max(n_tokens - content, 0)
    if len(starts) > 1 and starts[-1] <= starts[-2]:
        starts.pop()
    return starts, [min(content, n_tokens - s) for s in starts]


def sentence_starts(text: str, starts: np.ndarray) -> np.ndarray:
    """Indices of the subwords (character ``starts``) that begin a sentence or paragraph of
    ``text``, the first subword excepted.

    >>> text = "Jo met J. Smith. He left.\\nNew day"
    >>> starts = np.array([m.start() for m in re.finditer(r"\\w+|[^\\w\\s]", text)])
    >>> [text[starts[i]:].split()[0] for i in sentence_starts(text, starts)]
    ['He', 'New']
    """
    where = np.array([m.end() for m in _SENTENCE_END.finditer(text)], dtype=np.int64)
    index = np.searchsorted(starts, where)
    keep = (index > 0) & (index < len(starts))
    index = index[keep]
    return np.unique(index[starts[index] == where[keep]])


def window_cuts(n_tokens: int, content: int, stride: int,
                boundaries: np.ndarray) -> tuple[list[int], list[int]]:
    """Start and length of each window over ``n_tokens`` subwords, cut at ``boundaries``
    (subwords that start a sentence) where one falls in the second half of a window.

    Each cut aims at an equal share of what is left, as training cut documents into chunks of
    about equal size; a cut at a boundary has no overlap, a cut with no boundary in reach
    falls at the window's end and the next window starts ``stride`` tokens back.

    >>> window_cuts(10, 6, 1, np.array([3, 5, 8]))
    ([0, 5], [5, 5])
    >>> window_cuts(10, 4, 1, np.array([]))
    ([0, 3, 6], [4, 4, 4])
    """
    if n_tokens <= content:
        return [0], [n_tokens]
    starts, lens = [], []
    start, fixed = 0, False
    while n_tokens - start > content:
        left = n_tokens - start
        target = start + -(-left // -(-left // content))
        reach = boundaries[(boundaries > start + content // 2) & (boundaries <= start + content)]
        starts.append(start)
        fixed = not len(reach)
        if fixed:
            lens.append(content)
            start += content - stride
        else:
            end = int(reach[np.argmin(np.abs(reach - target))])
            lens.append(end - start)
            start = end
    if fixed:  # as window_starts: the last window ends at the text's end and is full
        start = n_tokens - content
    starts.append(start)
    lens.append(n_tokens - start)
    return starts, lens


class Tokenizer:
    """Callable stage: adds subword and window columns to a batch of documents.

    Rows whose status is already not ``ok`` pass through with empty token columns; rows whose
    text is empty or above ``max_chars`` get a status of their own.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, spec: WindowSpec) -> None:
        if not tokenizer.is_fast:
            raise ConfigError(
                f"tokenizer {type(tokenizer).__name__} is not a fast (Rust) tokenizer, so it "
                "gives no character offsets or word ids",
                fix="use a model that ships tokenizer.json, or convert its tokenizer with "
                "transformers' convert_slow_tokenizer and save it next to the model",
            )
        self.backend = plain_backend(tokenizer)
        self.n_special = tokenizer.num_special_tokens_to_add(pair=False)
        spec.validate(self.n_special, model_max_length(tokenizer))
        self.spec = spec
        self.content = spec.content_length(self.n_special)

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        texts = batch.column(schema.TEXT).to_pylist()
        status = batch.column(schema.STATUS).to_pylist()
        error = batch.column(schema.ERROR).to_pylist()
        todo = []
        for i, text in enumerate(texts):
            if status[i] != schema.OK:
                continue
            if text is None or not text.strip():
                status[i], error[i] = schema.EMPTY, "text is null or blank"
            elif len(text) > self.spec.max_chars:
                status[i] = schema.TOO_LONG
                error[i] = (
                    f"text has {len(text)} characters, above --max-chars {self.spec.max_chars}"
                )
            else:
                todo.append(i)
        encodings = self.backend.encode_batch([texts[i] for i in todo], add_special_tokens=False)
        columns: dict[str, list[np.ndarray | None]] = {
            f.name: [None] * len(texts) for f in schema.TOKENIZED
        }
        for i, encoding in zip(todo, encodings):
            if not encoding.ids:
                status[i], error[i] = schema.EMPTY, "text has no tokens (only control characters)"
                continue
            for name, values in self._encode(encoding, texts[i]).items():
                columns[name][i] = values
        out = batch.drop_columns([schema.STATUS, schema.ERROR])
        out = out.append_column(schema.STATUS, pa.array(status, pa.string()))
        out = out.append_column(schema.ERROR, pa.array(error, pa.string()))
        for field in schema.TOKENIZED:
            out = out.append_column(field, pa.array(columns[field.name], field.type))
        return out

    def _encode(self, encoding, text: str) -> dict[str, np.ndarray]:
        """``encoding`` (a ``tokenizers.Encoding`` of ``text``) as the token columns."""
        offsets = np.asarray(encoding.offsets, dtype=np.int32).reshape(-1, 2)
        n = len(encoding.ids)
        if self.spec.cuts == "sentence" and n > self.content:
            starts, lens = window_cuts(n, self.content, self.spec.stride,
                                       sentence_starts(text, offsets[:, 0]))
        else:
            starts, lens = window_starts(n, self.content, self.spec.stride)
        return {
            schema.IDS: np.asarray(encoding.ids, dtype=np.int32),
            schema.STARTS: offsets[:, 0],
            schema.ENDS: offsets[:, 1],
            schema.WORDS: np.asarray(encoding.word_ids, dtype=np.int32),
            schema.WIN_STARTS: np.asarray(starts, dtype=np.int32),
            schema.WIN_LENS: np.asarray(lens, dtype=np.int32),
        }


def plain_backend(tokenizer: PreTrainedTokenizerBase) -> Tokenizer_:
    """A copy of the Rust tokenizer with no truncation or padding.

    Many checkpoints (sentence-transformers ones among them) save ``tokenizer.json`` with
    truncation and padding switched on, which would silently cut documents to 128 tokens;
    seqlab does its own windowing and padding.
    """
    backend = Tokenizer_.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend


def special_affixes(tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """The special tokens a tokenizer puts before and after a single sequence."""
    encoding = plain_backend(tokenizer).encode("a", add_special_tokens=True)
    content = [i for i, special in enumerate(encoding.special_tokens_mask) if not special]
    ids = np.asarray(encoding.ids, dtype=np.int64)
    return ids[: content[0]], ids[content[-1] + 1 :]


def lower_cases(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer folds case (an uncased vocabulary): ``A`` and ``a`` encode alike."""
    backend = plain_backend(tokenizer)
    return backend.encode("A", add_special_tokens=False).ids == \
        backend.encode("a", add_special_tokens=False).ids


def model_max_length(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The longest input the model takes, or None when the tokenizer does not know it."""
    # tokenizers without a known limit report a huge sentinel (int(1e30))
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if limit and limit < 1_000_000 else None
