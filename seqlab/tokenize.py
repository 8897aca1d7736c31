"""The tokenize stage: documents -> subword tokens with character offsets, word ids and windows.

Words come from the fast tokenizer's own pre-tokenizer (whitespace and punctuation for BERT),
through ``word_ids()``, so a label is given per word exactly as transformers' pipeline and the
training alignment see words. A document longer than one window is cut into windows of
``max_length`` tokens (special tokens included) that overlap by ``stride`` tokens; the tag stage
stitches them back by the maximum-context rule.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from tokenizers import Tokenizer as Tokenizer_
from transformers import PreTrainedTokenizerBase

from seqlab import schema
from seqlab.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowSpec:
    """How documents are cut into model windows."""

    max_length: int = 512
    stride: int = 128
    max_chars: int = 1_000_000

    def content_length(self, n_special: int) -> int:
        return self.max_length - n_special

    def validate(self, n_special: int, model_max_length: int | None) -> None:
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
            for name, values in self._encode(encoding).items():
                columns[name][i] = values
        out = batch.drop_columns([schema.STATUS, schema.ERROR])
        out = out.append_column(schema.STATUS, pa.array(status, pa.string()))
        out = out.append_column(schema.ERROR, pa.array(error, pa.string()))
        for field in schema.TOKENIZED:
            out = out.append_column(field, pa.array(columns[field.name], field.type))
        return out

    def _encode(self, encoding) -> dict[str, np.ndarray]:  # encoding: tokenizers.Encoding
        offsets = np.asarray(encoding.offsets, dtype=np.int32).reshape(-1, 2)
        starts, lens = window_starts(len(encoding.ids), self.content, self.spec.stride)
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


def case_types(text: str, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """1 for each subword whose characters ``text[start:end]`` hold an upper-case letter, else 0.

    Uncased vocabularies (all-MiniLM-L6-v2's among them) lower-case text before it reaches the
    encoder, dropping the strongest single cue for names and proper nouns. Models trained with
    ``case_feature`` get it back as BERT's token type ids (see ``seqlab.train``).

    >>> case_types("Hello world NYC", np.array([0, 6, 12]), np.array([5, 11, 15])).tolist()
    [1, 0, 1]
    """
    upper = np.fromiter(map(str.isupper, text), dtype=np.int32, count=len(text))
    before = np.concatenate([[0], np.cumsum(upper)])
    return (before[ends] > before[starts]).astype(np.int64)


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
