"""Semantic role labelling data: PropBank frames over sentences, one JSON object per sentence.

A line holds a sentence's words, their PTB tags, and its predicates, each with its word index,
lemma, roleset and one IOB2 role tag per word (``B-V`` on the predicate itself)::

    {"sent_id": "...", "words": [...], "pos": [...],
     "predicates": [{"index": 3, "lemma": "get", "roleset": "get.01", "tags": [...]}]}

Training and scoring work on frames, one per (sentence, predicate) pair, as Shi & Lin (2019)
and the CoNLL-2005 scorer do. The predicate-identification labeller learns, from the same
sentences, one label per word: ``B-<kind>`` on every annotated predicate word (``VERB``,
``NOUN``, ``ADJ`` or ``OTHER`` by its PTB tag, so that predicted predicates can be kept to the
verbal ones as CoNLL-2005 does), ``O`` elsewhere.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import fsspec

from seqlab.errors import ConfigError, InputError
from seqlab.training.formats import Sentence

log = logging.getLogger(__name__)

PREDICATE_CHOICES = ("gold", "predicted")
PREDICATE_FILTERS = ("all", "verbs")
_KINDS = (("VB", "VERB"), ("NN", "NOUN"), ("JJ", "ADJ"))


@dataclass(frozen=True)
class Frame:
    """One predicate of a sentence and its role tags (IOB2, one per word)."""

    index: int
    tags: tuple[str, ...]
    lemma: str | None = None
    roleset: str | None = None


@dataclass(frozen=True)
class SrlSentence:
    sent_id: str
    words: tuple[str, ...]
    pos: tuple[str, ...]
    frames: tuple[Frame, ...]

    @property
    def document(self) -> str:
        """The document of an EWT sentence id (``<genre>-<doc>-<number>``)."""
        return self.sent_id.rsplit("-", 1)[0]


def predicate_kind(pos: str) -> str:
    """The predicate kind of a PTB tag.

    >>> predicate_kind("VBD"), predicate_kind("NNS"), predicate_kind("JJR"), predicate_kind("IN")
    ('VERB', 'NOUN', 'ADJ', 'OTHER')
    """
    return next((kind for prefix, kind in _KINDS if pos.startswith(prefix)), "OTHER")


def is_verbal(pos: str) -> bool:
    """CoNLL-2005's verbal predicates: PTB tags starting with VB.

    >>> is_verbal("VBZ"), is_verbal("NN")
    (True, False)
    """
    return pos.startswith("VB")


def read_srl(path: str) -> list[SrlSentence]:
    """The sentences of an SRL JSON Lines file (any fsspec URL), sentences without predicates
    included (the predicate labeller learns from them that they have none)."""
    sentences = []
    try:
        with fsspec.open(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    sentences.append(_sentence(json.loads(line), path, number))
    except FileNotFoundError as exc:
        raise InputError(f"no file at {path}", fix="check the path") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not JSON Lines: {exc}",
                         fix="pass an SRL .jsonl file, one sentence object per line") from exc
    if not sentences:
        raise InputError(f"no sentences in {path}", fix="check the path")
    log.info("read %d sentences, %d frames from %s", len(sentences),
             sum(len(s.frames) for s in sentences), path)
    return sentences


def _sentence(row: dict, path: str, number: int) -> SrlSentence:
    try:
        words, pos = tuple(row["words"]), tuple(row.get("pos") or ["_"] * len(row["words"]))
        frames = tuple(Frame(int(p["index"]), tuple(p["tags"]), p.get("lemma"), p.get("roleset"))
                       for p in row.get("predicates", []))
    except (KeyError, TypeError) as exc:
        raise InputError(f"{path}:{number}: an SRL line needs words and predicates with index "
                         f"and tags ({exc!r})", fix="see seqlab.srl.data for the format") from exc
    for frame in frames:
        if len(frame.tags) != len(words) or not 0 <= frame.index < len(words):
            raise InputError(f"{path}:{number}: a predicate's tags or index do not fit the "
                             f"sentence's {len(words)} words", fix="check the file")
    return SrlSentence(str(row.get("sent_id", number)), words, pos, frames)


def keep_frames(sentences: list[SrlSentence], which: str = "all") -> list[SrlSentence]:
    """``all`` frames, or only the ``verbs`` (predicate tagged VB*), as CoNLL-2005 scores."""
    if which not in PREDICATE_FILTERS:
        raise ConfigError(f"unknown predicate filter {which!r}",
                          fix=f"use one of {', '.join(PREDICATE_FILTERS)}")
    if which == "all":
        return sentences
    return [SrlSentence(s.sent_id, s.words, s.pos,
                        tuple(f for f in s.frames if is_verbal(s.pos[f.index])))
            for s in sentences]


def unique_frames(sentence: SrlSentence) -> tuple[Frame, ...]:
    """A sentence's frames without repeats (the source lists a few split predicates twice)."""
    seen, out = set(), []
    for frame in sentence.frames:
        key = (frame.index, frame.tags)
        if key not in seen:
            seen.add(key)
            out.append(frame)
    return tuple(out)


def predicate_sentences(sentences: list[SrlSentence]) -> list[Sentence]:
    """Sentences for the predicate labeller: ``B-<kind>`` on each predicate word, else ``O``.

    >>> s = SrlSentence("d-1", ("I", "ran"), ("PRP", "VBD"), (Frame(1, ("B-ARG0", "B-V")),))
    >>> predicate_sentences([s])[0].labels
    ('O', 'B-VERB')
    """
    out = []
    for s in sentences:
        labels = ["O"] * len(s.words)
        for frame in s.frames:
            labels[frame.index] = f"B-{predicate_kind(s.pos[frame.index])}"
        out.append(Sentence(s.words, tuple(labels), s.document))
    return out


def role_labels(sentences: list[SrlSentence]) -> list[str]:
    """The role labels of the frames in id order: ``O``, then ``B-``/``I-`` of each role."""
    roles = sorted({tag[2:] for s in sentences for f in s.frames for tag in f.tags
                    if tag != "O"})
    return ["O"] + [f"{prefix}-{role}" for role in roles for prefix in "BI"]
