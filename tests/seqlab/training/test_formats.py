from __future__ import annotations

import pytest

from seqlab.errors import ConfigError, InputError
from seqlab.labels import chunks
from seqlab.training.formats import Sentence, documents, format_of, read_sentences, write_sentences

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O
. . O O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

Paris NNP B-NP I-LOC
Lyon NNP B-NP B-LOC
"""

# a lone TAB separates sentences, and one token carries a byte-order mark
WNUT = "\ufeffJohn\tB-person\nwent\tO\n\t\n@Dubbz\ufeff\tB-person\nrocks\tO\n\n\n"

CONLLU = """# newdoc id = review-1
# sent_id = 1
# text = Don't go.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
3.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t3:conj\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# newdoc id = review-2
# sent_id = 2
1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_conll_skips_docstart_and_keeps_iob1(tmp_path):
    sentences = read_sentences(write(tmp_path, "eng.train", CONLL))
    assert [s.words for s in sentences] == [
        ("EU", "rejects", "German", "call", "."), ("Peter", "Blackburn"), ("Paris", "Lyon")]
    assert sentences[2].labels == ("I-LOC", "B-LOC")
    assert chunks(sentences[2].labels) == [("LOC", 0, 0), ("LOC", 1, 1)]
    assert chunks(sentences[0].labels) == [("ORG", 0, 0), ("MISC", 2, 2)]
    assert [s.document for s in sentences] == ["doc0", "doc0", "doc1"]
    assert [len(d) for d in documents(sentences)] == [2, 1]


def test_wnut_tab_separator_and_bom(tmp_path):
    sentences = read_sentences(write(tmp_path, "wnut17train.conll", WNUT))
    assert [s.words for s in sentences] == [("John", "went"), ("@Dubbz", "rocks")]
    assert sentences[1].labels == ("B-person", "O")
    assert [len(d) for d in documents(sentences)] == [1, 1]  # WNUT has no documents


@pytest.mark.parametrize("column,tags", [("upos", ("AUX", "PART", "VERB", "PUNCT")),
                                         ("xpos", ("VBP", "RB", "VB", "."))])
def test_conllu_skips_multiword_and_empty_nodes(tmp_path, column, tags):
    sentences = read_sentences(write(tmp_path, "x.conllu", CONLLU), column=column)
    assert sentences[0].words == ("Do", "n't", "go", ".")
    assert sentences[0].labels == tags
    assert sentences[1].words == ("Yes",)
    assert [s.document for s in sentences] == ["review-1", "review-2"]


@pytest.mark.parametrize("fmt,name", [("conll", "a.txt"), ("wnut", "a.tsv"),
                                      ("conllu", "a.conllu"), ("parquet", "a.parquet")])
def test_round_trip(tmp_path, fmt, name):
    docs = ("doc0", "doc0", "doc1") if fmt != "wnut" else (None, None, None)
    sentences = [Sentence(("New", "York", "is"), ("B-LOC", "I-LOC", "O"), docs[0]),
                 Sentence(("Hi",), ("O",), docs[1]), Sentence(("Bye",), ("O",), docs[2])]
    path = str(tmp_path / name)
    write_sentences(sentences, path, fmt)
    assert read_sentences(path, fmt) == sentences


def test_memory_url_round_trip():
    sentences = [Sentence(("a", "b"), ("NOUN", "VERB"))]
    write_sentences(sentences, "memory://formats/a.parquet", "parquet")
    assert read_sentences("memory://formats/a.parquet") == sentences


def test_errors(tmp_path):
    assert format_of("x/emerging.dev.conll") == "wnut"
    with pytest.raises(ConfigError, match="--format"):
        format_of("x", "csv")
    with pytest.raises(InputError, match="no file"):
        read_sentences(str(tmp_path / "missing.conll"))
    with pytest.raises(InputError, match="no sentences"):
        read_sentences(write(tmp_path, "empty.conll", "\n\t\n"))
    with pytest.raises(ConfigError, match="xpos"):
        read_sentences(write(tmp_path, "x.conllu", CONLLU), column="ner")
