import numpy as np
import pyarrow as pa
import pytest
from transformers import AutoTokenizer

from seqlab import schema
from seqlab.errors import ConfigError
from seqlab.tokenize import Tokenizer, WindowSpec, window_starts


@pytest.mark.parametrize("n,content,stride", [(1, 10, 2), (10, 10, 2), (11, 10, 2),
                                              (1000, 62, 16), (25_000, 510, 128)])
def test_windows_cover_every_token_with_the_requested_overlap(n, content, stride):
    starts, lens = window_starts(n, content, stride)
    covered = np.zeros(n, dtype=int)
    for s, length in zip(starts, lens):
        assert 0 < length <= content
        covered[s:s + length] += 1
    assert covered.min() >= 1 and starts[0] == 0 and starts[-1] + lens[-1] == n
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
    word_texts = [text[starts[a]:ends[b - 1]] for a, b in zip(first, list(first[1:]) + [len(words)])]
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
