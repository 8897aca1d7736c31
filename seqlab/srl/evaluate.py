"""Scoring a semantic role labeller on SRL JSON Lines through the annotate stages.

Each sentence's words are joined by spaces into a text, which goes through the tokenize stage
as a document given to ``seqlab annotate`` would; the predicates are the gold ones or those the
predicate labeller finds in the text (``Tokenizer -> Tagger -> Decoder`` of that model), and
every predicate's roles come from ``seqlab.srl.tag.FrameTagger``. Each gold word takes the role
label of the predicted word starting at its first character.

The score is CoNLL-2005's: labelled argument spans, exact match, micro precision, recall and F1
over all frames, the ``V`` span not counted. With predicted predicates (end to end), a gold
frame whose predicate was missed has all its arguments missed, and a predicted frame with no
gold predicate counts all its arguments as wrong. Predicate identification is scored on the
same texts: a predicted predicate is right when it starts at a gold predicate word.
"""

from __future__ import annotations

import logging

from seqlab.config import settle_window
from seqlab.errors import ConfigError
from seqlab.labels import OUTSIDE
from seqlab.models.load import LoadedModel, ModelSpec, load_model, local_model_dir
from seqlab.run.models import predicate_labeller
from seqlab.srl.data import PREDICATE_CHOICES, SrlSentence, keep_frames, read_srl, unique_frames
from seqlab.srl.frames import VERB
from seqlab.srl.stage import PredicateFinder
from seqlab.srl.tag import FrameTagger, FrameWords
from seqlab.stages.tokenize import Tokenizer, WindowSpec, model_max_length
from seqlab.training.evaluate import model_decoder, text_batch
from seqlab.training.formats import sentence_text
from seqlab.training.metrics import entity_scores, prf

log = logging.getLogger(__name__)

BATCH_SENTENCES = 256


def predicate_model_dir(loaded: LoadedModel, given: str | None) -> str:
    """The predicate labeller: the one given, else the one the SRL model's ``seqlab.json``
    names (``"predicates"``, a directory relative to the model's)."""
    return predicate_labeller(loaded.name, local_model_dir(loaded.name), loaded.metadata, given)


def evaluate_srl(model: str, data: str, predicates: str = "gold", verbs_only: bool = False,
                 decoder: str | None = None, predicate_model: str | None = None,
                 device: str = "auto", batch_tokens: int = 16384,
                 loaded: LoadedModel | None = None, core_once: bool | None = None) -> dict:
    """CoNLL-2005 scores of the SRL ``model`` on ``data`` (``{"f1", "precision", "recall",
    "per_label", "frames"}``), with ``gold`` or ``predicted`` predicates, all of them or only
    the verbal ones; with predicted predicates also ``"predicates"``: their identification
    precision, recall and F1. ``core_once``: each core role on one span of a frame at most
    (``seqlab.srl.tag.one_span_per_core_role``; default: as the model recommends)."""
    if predicates not in PREDICATE_CHOICES:
        raise ConfigError(f"unknown --predicates {predicates!r}",
                          fix=f"use one of {', '.join(PREDICATE_CHOICES)} (and verbs)")
    loaded = loaded or load_model(ModelSpec(name=model, device=device))
    sentences = keep_frames(read_srl(data), "verbs" if verbs_only else "all")
    frames = FrameTagger(loaded, batch_tokens, model_decoder(loaded, decoder), core_once)
    window = settle_window(None, None, loaded.metadata.window,
                           model_max_length(loaded.tokenizer))
    tokenize = Tokenizer(loaded.tokenizer, WindowSpec(*window))
    finder = None
    if predicates == "predicted":
        labeller = load_model(ModelSpec(predicate_model_dir(loaded, predicate_model),
                                        device=device))
        finder = PredicateFinder(labeller, verbs_only, batch_tokens, model_decoder(labeller))
    gold_rows: list[list[str]] = []
    pred_rows: list[list[str]] = []
    counts = {"gold": 0, "predicted": 0, "matched": 0}
    for start in range(0, len(sentences), BATCH_SENTENCES):
        chunk = sentences[start : start + BATCH_SENTENCES]
        texts = [sentence_text(s.words) for s in chunk]
        tokenized = tokenize(text_batch(start, [t for t, _ in texts]))
        spans = (finder(tokenized) if finder else
                 [[(offsets[f.index], offsets[f.index] + len(s.words[f.index]), 1.0)
                   for f in unique_frames(s)] for s, (_, offsets) in zip(chunk, texts)])
        decoded = frames.frames(tokenized, [[(a, b) for a, b, _ in row] for row in spans])
        for sentence, (_, offsets), row_spans, row_frames in zip(chunk, texts, spans, decoded):
            pairs = frame_pairs(sentence, offsets, [a for a, _, _ in row_spans], row_frames)
            for gold, pred, kind in pairs:
                gold_rows.append(gold)
                pred_rows.append(pred)
                counts[kind] += 1
        log.info("scored %d of %d sentences", start + len(chunk), len(sentences))
    scores = entity_scores(gold_rows, pred_rows, ignore=(VERB,))
    scores.pop("accuracy")
    found = counts["matched"] + counts["predicted"]
    scores["frames"] = {"gold": counts["matched"] + counts["gold"], "predicted": found}
    if finder:
        scores["predicates"] = prf(counts["matched"], found, scores["frames"]["gold"])
    return scores


def frame_pairs(sentence: SrlSentence, offsets: list[int], predicted_starts: list[int],
                predicted: list[FrameWords | None]) -> list[tuple[list[str], list[str], str]]:
    """(gold tags, predicted tags, kind) per frame over the sentence's words: ``matched``
    frames, ``gold`` ones whose predicate was not found, ``predicted`` ones with no gold."""
    word_of = {offset: n for n, offset in enumerate(offsets)}
    gold = {f.index: list(f.tags) for f in unique_frames(sentence)}
    outside = [OUTSIDE] * len(sentence.words)
    pairs, seen = [], set()
    for start, words in zip(predicted_starts, predicted):
        index = word_of.get(start)
        tags = on_words(words, offsets) if words is not None else outside
        if index in gold and index not in seen:
            seen.add(index)
            pairs.append((gold[index], tags, "matched"))
        else:
            pairs.append((outside, tags, "predicted"))
    pairs += [(tags, outside, "gold") for index, tags in gold.items() if index not in seen]
    return pairs


def on_words(words: FrameWords, offsets: list[int]) -> list[str]:
    """A decoded frame's labels on the gold words: the label of the predicted word starting
    at each gold word's first character (``O`` where none does)."""
    by_start = dict(zip(words.starts.tolist(), words.labels))
    return [by_start.get(offset, OUTSIDE) for offset in offsets]
