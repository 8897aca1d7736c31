from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tests.tiny import NER_LABELS, POS_LABELS, WORDS, build_tiny_model

# The tiny models' matrices are too small to gain from a second thread, and on a 2-core machine
# whose other core runs Ray or Beam workers (or another suite) two threads wait on each other:
# a 3-model run of the conformance corpus took 37 s with two and 6 s with one.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ner_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "ner", NER_LABELS)


@pytest.fixture(scope="session")
def cased_ner_model(tmp_path_factory) -> Path:
    """The tiny NER model, marked as trained with the case feature (token type ids)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "cased-ner", NER_LABELS,
                            case_feature=True)


@pytest.fixture(scope="session")
def pos_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "pos", POS_LABELS, seed=1)


@pytest.fixture
def lake(tmp_path, monkeypatch) -> str:
    """An Iceberg catalog named ``lake`` (pyiceberg's SQL catalog on SQLite, its warehouse in
    tmp_path), configured only through the environment, as a pyiceberg user would."""
    from seqlab.store import changes

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.pyiceberg.yaml of the machine
    monkeypatch.delenv("PYICEBERG_HOME", raising=False)
    monkeypatch.setenv("PYICEBERG_CATALOG__LAKE__URI", f"sqlite:///{tmp_path}/catalog.db")
    monkeypatch.setenv("PYICEBERG_CATALOG__LAKE__WAREHOUSE", (tmp_path / "warehouse").as_uri())
    monkeypatch.setattr(changes, "BACKOFF_S", 0.01)  # commit retries
    return "lake"


def make_text(rng: random.Random, n_words: int) -> str:
    """Text with capitals, punctuation, subword splits and unknown characters."""
    words = []
    for i in range(n_words):
        word = rng.choice(WORDS + ["Reuters", "walking", "Zürich", "naïve", "2024", "O'Neil"])
        if rng.random() < 0.2:
            word = word.capitalize()
        words.append(word)
        if rng.random() < 0.1:
            words.append(rng.choice([",", ".", ";", "(", ")"]))
        if i % 40 == 39:
            words.append("\n")
    return " ".join(words)


def make_corpus(n_docs: int = 50, seed: int = 0, long_every: int = 10,
                long_words: int = 1500) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n_docs):
        n = long_words if long_every and i % long_every == 5 else rng.randint(3, 120)
        rows.append({"id": f"doc-{i:03d}", "title": f"Title {i}", "year": 1990 + i,
                     "text": make_text(rng, n)})
    return rows


BAD_ROWS = [
    {"id": "bad-null", "title": "null", "year": 1, "text": None},
    {"id": "bad-empty", "title": "empty", "year": 2, "text": ""},
    {"id": "bad-blank", "title": "blank", "year": 3, "text": "  \n\t "},
]


@pytest.fixture
def corpus_rows() -> list[dict]:
    return make_corpus() + BAD_ROWS


@pytest.fixture
def corpus_parquet(tmp_path, corpus_rows) -> Path:
    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.Table.from_pylist(corpus_rows), path, row_group_size=16)
    return path
