"""Readers and writers of labelled sentence files: CoNLL-2003, WNUT-17, CoNLL-U, Universal NER
(IOB2 with CoNLL-U-like comments) and Parquet.

Every reader returns a list of ``Sentence`` (words and one label per word) and every file is
opened through fsspec, so URLs work as paths. Quirks of the public files are handled here:

- CoNLL-2003 (``token POS chunk NER``, space separated) is tagged IOB1 and splits documents
  with ``-DOCSTART-`` lines, which are not sentences.
- WNUT-17 (``token<TAB>tag``) separates many sentences with a line holding only a TAB, and has
  a byte-order mark inside a token of the dev file (``Dubbz\\ufeff``).
- CoNLL-U carries multiword-token lines (ID ``19-20``) and empty nodes (ID ``8.1``) next to
  the words; only plain word lines are kept.
- Universal NER (``.iob2``: ``index<TAB>word<TAB>tag``, two more columns on annotated words,
  ``# newdoc``/``# sent_id``/``# text`` comments) has ``B-O`` tags on punctuation in the
  English-EWT train file: they are read as ``O``. Its ``OTH`` spans are kept as they are; what
  they mean to a model is a training mixture's label mapping (``seqlab.training.specs``).
- Parquet holds one sentence per row, a list column of tokens and a list column of tags, and
  optionally a ``document`` column.

Sentences remember the document they come from (CoNLL-2003's ``-DOCSTART-``, CoNLL-U's
``# newdoc`` comments): training and evaluation read each sentence with its neighbours, as
``seqlab annotate`` reads a document.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from seqlab.errors import ConfigError, InputError

log = logging.getLogger(__name__)

FORMATS = ("conll", "wnut", "conllu", "uner", "parquet")
COLUMNS = ("ner", "upos", "xpos")
# what a sentence is read with, in training and evaluation: its document, or nothing
CONTEXTS = ("document", "sentence")
# Characters that are no text: a byte-order mark may sit at a file's start or inside a token.
_INVISIBLE = "\ufeff"
_CONLLU_COLUMN = {"upos": 3, "xpos": 4}
# Universal NER's first English-EWT train file tags some punctuation ``B-O``: outside.
_UNER_OUTSIDE = ("B-O", "I-O")
DOCSTART = "-DOCSTART-"


@dataclass(frozen=True)
class Sentence:
    """Words, one label per word, and the document the sentence belongs to (None: its own)."""

    words: tuple[str, ...]
    labels: tuple[str, ...]
    document: str | None = None

    def __post_init__(self) -> None:
        if len(self.words) != len(self.labels):
            raise InputError(f"a sentence has {len(self.words)} words but "
                             f"{len(self.labels)} labels", fix="check the input file")


def format_of(path: str, format: str | None = None) -> str:
    """The format named, or the one a file's name implies.

    >>> format_of("data/en_ewt-ud-dev.conllu"), format_of("x.parquet"), format_of("eng.testa")
    ('conllu', 'parquet', 'conll')
    >>> format_of("uner_ewt/en_ewt-ud-dev.iob2")
    'uner'
    """
    if format:
        if format not in FORMATS:
            raise ConfigError(f"unknown --format {format!r}", fix=f"use one of {FORMATS}")
        return format
    name = path.rstrip("/").lower()
    if name.endswith(".conllu"):
        return "conllu"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith(".iob2"):
        return "uner"
    if "wnut" in name or "emerging" in name:
        return "wnut"
    return "conll"


def read_sentences(path: str, format: str | None = None,
                   column: str | None = None) -> list[Sentence]:
    """Read a labelled file in any supported format."""
    fmt = format_of(path, format)
    if column is not None and column not in COLUMNS:
        raise ConfigError(f"unknown --column {column!r}", fix=f"use one of {COLUMNS}")
    if fmt == "parquet":
        sentences = read_parquet(path)
    elif fmt == "conllu":
        sentences = read_conllu(path, column or "upos")
    elif fmt == "wnut":
        sentences = read_wnut(path)
    elif fmt == "uner":
        sentences = read_uner(path)
    else:
        sentences = read_conll(path)
    if not sentences:
        raise InputError(f"no sentences found in {path} (read as {fmt})",
                         fix="check the path and pass the right --format")
    log.info("read %d sentences, %d words from %s (%s)", len(sentences),
             sum(len(s.words) for s in sentences), path, fmt)
    return sentences


def documents(sentences: Sequence[Sentence]) -> list[list[Sentence]]:
    """Consecutive sentences of one document grouped; a sentence with no document stands alone.

    >>> [len(d) for d in documents([Sentence(("a",), ("O",), "d1"), Sentence(("b",), ("O",), "d1"),
    ...                              Sentence(("c",), ("O",)), Sentence(("d",), ("O",), "d2")])]
    [2, 1, 1]
    """
    groups: list[list[Sentence]] = []
    for sentence in sentences:
        same = groups and groups[-1][-1].document == sentence.document
        if same and sentence.document is not None:
            groups[-1].append(sentence)
        else:
            groups.append([sentence])
    return groups


def _lines(path: str) -> Iterator[str]:
    try:
        with fsspec.open(path, "rt", encoding="utf-8") as handle:
            yield from handle
    except FileNotFoundError as exc:
        raise InputError(f"no file at {path}", fix="check the path") from exc


def _blocks(lines: Iterable[str]) -> Iterator[list[str]]:
    """Groups of non-blank lines; a line that is blank after strip (even a lone TAB) ends one."""
    block: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n").replace(_INVISIBLE, "")
        if not line.strip():
            if block:
                yield block
            block = []
        else:
            block.append(line)
    if block:
        yield block


def _clean(word: str) -> str:
    return word.replace(_INVISIBLE, "").strip()


def read_conll(path: str) -> list[Sentence]:
    """CoNLL-2003: the first column is the word and the last the (IOB1) NER tag."""
    sentences, document, n_documents = [], None, 0
    for block in _blocks(_lines(path)):
        if any(line.startswith(DOCSTART) for line in block):
            document, n_documents = f"doc{n_documents}", n_documents + 1
        rows = [line.split() for line in block if not line.startswith(DOCSTART)]
        if rows:
            sentences.append(Sentence(tuple(_clean(r[0]) for r in rows),
                                      tuple(r[-1] for r in rows), document))
    return sentences


def read_wnut(path: str) -> list[Sentence]:
    """WNUT-17: ``word<TAB>tag`` lines; lines blank after strip separate sentences."""
    sentences = []
    for block in _blocks(_lines(path)):
        rows = [line.rsplit("\t", 1) if "\t" in line else line.rsplit(None, 1) for line in block]
        sentences.append(Sentence(tuple(_clean(r[0]) for r in rows),
                                  tuple(r[-1].strip() for r in rows)))
    return sentences


def read_conllu(path: str, column: str = "upos") -> list[Sentence]:
    """CoNLL-U words with their UPOS or XPOS tag; multiword tokens and empty nodes skipped."""
    if column not in _CONLLU_COLUMN:
        raise ConfigError(f"--column {column} does not exist in CoNLL-U",
                          fix="use --column upos or --column xpos")
    index = _CONLLU_COLUMN[column]

    def word(fields: list[str], line: str) -> tuple[str, str] | None:
        if len(fields) != 10:
            raise InputError(f"{path}: a CoNLL-U line has {len(fields)} columns, not 10: "
                             f"{line[:80]!r}", fix="check that the file is CoNLL-U")
        if not fields[0].isdigit():  # "19-20" multiword token, "8.1" empty node
            return None
        return _clean(fields[1]), fields[index]

    return _tabbed_sentences(path, word)


def _tabbed_sentences(path: str,
                      word: Callable[[list[str], str], tuple[str, str] | None]
                      ) -> list[Sentence]:
    """The sentences of a file of blank-line separated blocks of TAB separated word lines
    (CoNLL-U, Universal NER): ``#`` comment lines skipped, ``# newdoc`` starting a document,
    ``word(fields, line)`` giving a line's (word, tag), or None for a line that is no word."""
    sentences, document = [], None
    for block in _blocks(_lines(path)):
        words, tags = [], []
        for line in block:
            if line.startswith("#"):
                document = _newdoc(line, f"doc{len(sentences)}") or document
                continue
            found = word(line.split("\t"), line)
            if found is not None:
                words.append(found[0])
                tags.append(found[1])
        if words:
            sentences.append(Sentence(tuple(words), tuple(tags), document))
    return sentences


def _newdoc(comment: str, unnamed: str) -> str | None:
    """The document a ``# newdoc id = ...`` (or a bare ``# newdoc``) comment line starts.

    >>> _newdoc("# newdoc id = weblog-1", "doc0"), _newdoc("# newdoc", "doc3"), _newdoc("# x", "d")
    ('weblog-1', 'doc3', None)
    """
    key, _, value = comment[1:].partition("=")
    return (value.strip() or unnamed) if key.split()[:1] == ["newdoc"] else None


def read_uner(path: str) -> list[Sentence]:
    """Universal NER IOB2: ``index<TAB>word<TAB>tag[<TAB>...]`` lines after ``#`` comments;
    ``# newdoc id = ...`` starts a document; ``B-O`` (and ``I-O``) tags read as ``O``."""

    def word(fields: list[str], line: str) -> tuple[str, str]:
        if len(fields) < 3:
            raise InputError(f"{path}: a Universal NER line has {len(fields)} columns, not "
                             f"3 or more: {line[:80]!r}",
                             fix="check that the file is Universal NER IOB2 (index, word, "
                             "tag, TAB separated), or pass another format")
        tag = fields[2].strip()
        return _clean(fields[1]), "O" if tag in _UNER_OUTSIDE else tag

    return _tabbed_sentences(path, word)


def read_parquet(path: str, tokens: str = "tokens", tags: str = "tags",
                 document: str = "document") -> list[Sentence]:
    """One sentence per row: a list column of tokens, a list column of tags and, optionally,
    a ``document`` column (consecutive rows with the same value form a document)."""
    with fsspec.open(path, "rb") as handle:
        table = pq.read_table(handle)
    missing = [c for c in (tokens, tags) if c not in table.column_names]
    if missing:
        raise ConfigError(f"{path} has no column(s) {missing}; it has {table.column_names}",
                          fix=f"write the words to a list column {tokens!r} and the labels "
                          f"to a list column {tags!r}")
    docs = (table.column(document).cast(pa.string()).to_pylist()
            if document in table.column_names else [None] * table.num_rows)
    return [Sentence(tuple(_clean(w) for w in ws), tuple(ls), doc)
            for ws, ls, doc in zip(table.column(tokens).to_pylist(),
                                   table.column(tags).to_pylist(), docs)
            if ws]


def write_sentences(sentences: Sequence[Sentence], path: str, format: str) -> None:
    """Write sentences in one of ``FORMATS``, document boundaries included (CoNLL is written
    as ``word label`` lines)."""
    fmt = format_of(path, format)
    if fmt == "parquet":
        columns = {"tokens": pa.array([list(s.words) for s in sentences], pa.list_(pa.string())),
                   "tags": pa.array([list(s.labels) for s in sentences], pa.list_(pa.string()))}
        if any(s.document is not None for s in sentences):
            columns["document"] = pa.array([s.document for s in sentences], pa.string())
        with fsspec.open(path, "wb") as handle:
            pq.write_table(pa.table(columns), handle)
        return
    with fsspec.open(path, "wt", encoding="utf-8") as handle:
        for n, document in enumerate(documents(sentences)):
            if fmt == "conll" and (n == 0 or document[0].document is not None):
                handle.write(f"{DOCSTART} -X- -X- O\n\n")
            elif fmt in ("conllu", "uner") and document[0].document is not None:
                handle.write(f"# newdoc id = {document[0].document}\n")
            for sentence in document:
                handle.write("".join(_format_line(fmt, i, w, t) for i, (w, t)
                                     in enumerate(zip(sentence.words, sentence.labels), 1)))
                handle.write("\n")


def _format_line(fmt: str, i: int, word: str, label: str) -> str:
    if fmt == "wnut":
        return f"{word}\t{label}\n"
    if fmt == "uner":
        return f"{i}\t{word}\t{label}\n"
    if fmt == "conllu":
        return f"{i}\t{word}\t_\t{label}\t_\t_\t{max(i - 1, 0)}\t_\t_\t_\n"
    return f"{word} {label}\n"


def sentence_text(words: Sequence[str]) -> tuple[str, list[int]]:
    """The words joined by single spaces, and each word's start offset.

    >>> sentence_text(("New", "York", "."))
    ('New York .', [0, 4, 9])
    """
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + 1
    return " ".join(words), starts
