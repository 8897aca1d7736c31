"""Scoring a model on a labelled file through the same stages that ``seqlab annotate`` runs.

The words of each document (CoNLL-2003's ``-DOCSTART-`` sections, CoNLL-U's ``# newdoc``;
with ``context="sentence"``, or in files without documents, of each sentence) are joined with
single spaces into a text, the text goes through ``Tokenizer -> Tagger -> Decoder`` exactly as
a document given to ``seqlab annotate`` would, and each gold word takes the label of the
predicted word that starts at the gold word's first character. What is measured is therefore
what users get: the tokenizer's own word split, windows and their stitching, the aggregation
and the decoder (greedy or Viterbi) all count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from seqlab import schema
from seqlab.config import settle_decoder, settle_window
from seqlab.errors import ConfigError
from seqlab.labels import OUTSIDE, LabelSet, convert
from seqlab.models.load import LoadedModel, ModelSpec, load_model
from seqlab.models.metadata import recommended_decoder, trained_window
from seqlab.stages.tag import Tagger
from seqlab.stages.tokenize import Tokenizer, WindowSpec, model_max_length
from seqlab.stages.tokens import Decoder, Provenance
from seqlab.training.formats import CONTEXTS, Sentence, documents, read_sentences, sentence_text
from seqlab.training.metrics import confusion_matrix, label_class, score

log = logging.getLogger(__name__)

BATCH_SENTENCES = 512
Stage = Callable[[pa.RecordBatch], pa.RecordBatch]
# A gold word the tokenizer produced no word for (only characters it drops) gets this label.
MISSING = "<none>"


@dataclass
class Predictions:
    gold: list[list[str]]
    pred: list[list[str]]
    labels: LabelSet


def model_decoder(loaded: LoadedModel, decoder: str | None = None) -> str:
    """``decoder``, else the one the model recommends (``seqlab.json``), else greedy."""
    return settle_decoder(decoder, recommended_decoder(loaded.metadata))


def read_units(loaded: LoadedModel, sentences: list[Sentence], stages: Stage,
               context: str = "document", max_length: int | None = None,
               window_cuts: str = "sentence"
               ) -> Iterator[tuple[list[list[Sentence]], list[list[int]], pa.RecordBatch]]:
    """The sentences as annotate reads text: each document (or sentence) as one text, its
    words joined by spaces, tokenized in the model's windows (cut as ``--window-cuts``
    cuts them) and passed through ``stages``. Yields, a batch at a time, the units, the
    character offset of each unit's words, and ``stages``' output (one row per unit)."""
    if context not in CONTEXTS:
        raise ConfigError(f"unknown --context {context!r}", fix=f"use one of {CONTEXTS}")
    window = settle_window(max_length, None, trained_window(loaded.metadata),
                           model_max_length(loaded.tokenizer))
    tokenize = Tokenizer(loaded.tokenizer, WindowSpec(*window, cuts=window_cuts))
    units = documents(sentences) if context == "document" else [[s] for s in sentences]
    done = 0
    for batch in _batches(units, BATCH_SENTENCES):
        texts = [sentence_text([w for s in unit for w in s.words]) for unit in batch]
        yield batch, [offsets for _, offsets in texts], \
            stages(tokenize(text_batch(done, [t for t, _ in texts])))
        done += sum(len(unit) for unit in batch)
        log.info("tagged %d of %d sentences", done, len(sentences))


def predict(loaded: LoadedModel, sentences: list[Sentence], decoder: str | None = "greedy",
            batch_tokens: int = 16384, context: str = "document",
            max_length: int | None = None, window_cuts: str = "sentence") -> list[list[str]]:
    """One predicted label per gold word, through the annotate stages (``decoder`` None: the
    model's recommended decoder, else greedy)."""
    tag = Tagger(loaded, batch_tokens)
    provenance = Provenance("evaluate", loaded.name, loaded.revision,
                            datetime.now(timezone.utc))
    decode = Decoder(loaded.labels, schema.documents_schema(pa.schema([])), provenance,
                     model_decoder(loaded, decoder))
    predicted: list[list[str]] = []
    for batch, offsets_of, rows in read_units(loaded, sentences, lambda b: decode(tag(b)),
                                              context, max_length, window_cuts):
        for unit, offsets, tokens, status in zip(
                batch, offsets_of, rows.column("tokens").to_pylist(),
                rows.column(schema.STATUS).to_pylist()):
            by_start = {t["start_char"]: t["label"] for t in tokens or []}
            if status != schema.OK:
                log.warning("a text could not be tagged (%s); its words count as wrong", status)
            words = iter(offsets)
            for sentence in unit:
                predicted.append([by_start.get(next(words), MISSING) for _ in sentence.words])
    return predicted


def _batches(units: list[list[Sentence]], size: int):
    """Consecutive units, about ``size`` sentences at a time."""
    batch: list[list[Sentence]] = []
    for unit in units:
        batch.append(unit)
        if sum(len(u) for u in batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def text_batch(first: int, texts: list[str]) -> pa.RecordBatch:
    """Texts as a read batch (ids from ``first`` on), as the read stage would give them."""
    fields = schema.read_schema(pa.schema([]))
    n = len(texts)
    return pa.RecordBatch.from_arrays(
        [pa.array([f"s{first + i}" for i in range(n)], pa.string()),
         pa.array(texts, pa.string()), pa.array([schema.OK] * n, pa.string()),
         pa.array([None] * n, pa.string())], schema=fields)


def gold_in_scheme(sentences: list[Sentence], labels: LabelSet) -> list[list[str]]:
    """Gold labels re-encoded in the model's scheme (CoNLL-2003's IOB1 -> IOB2, ...)."""
    if not labels.has_entities:
        return [list(s.labels) for s in sentences]
    return [convert(s.labels, labels.scheme) for s in sentences]


def evaluate(model: str, data: str, format: str | None = None, column: str | None = None,
             decoder: str | None = None, device: str = "auto", batch_tokens: int = 16384,
             report: str | None = None, loaded: LoadedModel | None = None,
             context: str = "document", max_length: int | None = None,
             precision: str = "auto", window_cuts: str = "sentence") -> dict:
    """Scores of ``model`` on the labelled file ``data``: ``{"f1", "precision", "recall",
    "accuracy", "per_label"}``; with ``report`` a directory, also a confusion matrix image
    and a markdown table there. ``context`` is ``"document"`` (each sentence read within its
    document, as annotate reads documents) or ``"sentence"``; ``max_length`` sets the window
    (default as ``seqlab annotate``: the length the model was trained on, else 512);
    ``decoder`` None is the model's recommended decoder (``seqlab.json``), else greedy;
    ``precision`` is what the model runs in, as ``seqlab annotate --precision``;
    ``window_cuts`` where windows end, as ``seqlab annotate --window-cuts``."""
    loaded = loaded or load_model(ModelSpec(name=model, device=device, precision=precision))
    sentences = read_sentences(data, format, column)
    gold = gold_in_scheme(sentences, loaded.labels)
    pred = predict(loaded, sentences, decoder, batch_tokens, context, max_length, window_cuts)
    if loaded.labels.has_entities:  # words with no prediction are outside any entity
        pred = [[OUTSIDE if p == MISSING else p for p in row] for row in pred]
    scores = score(gold, pred, loaded.labels.has_entities)
    if report:
        write_report(Path(report), Predictions(gold, pred, loaded.labels), scores, model, data)
    return scores


def write_report(directory: Path, predictions: Predictions, scores: dict, model: str,
                 data: str) -> None:
    """``confusion.png`` and ``report.md`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    labels = predictions.labels
    if labels.has_entities:
        classes = sorted({label_class(label) for label in labels.labels})
    else:
        classes = list(labels.labels)
    matrix = confusion_matrix(predictions.gold, predictions.pred, classes, labels.has_entities)
    _plot_confusion(matrix, classes, directory / "confusion.png")
    (directory / "report.md").write_text(markdown_table(scores, model, data, labels))
    log.info("wrote %s and %s", directory / "confusion.png", directory / "report.md")


def markdown_table(scores: dict, model: str, data: str, labels: LabelSet) -> str:
    """The scores as a markdown table, one row per entity type (or tag) and one overall."""
    unit = "entity type" if labels.has_entities else "tag"
    lines = [f"# {model} on {data}", "",
             f"Scheme {labels.scheme}; token accuracy {scores['accuracy']:.4f}.", "",
             f"| {unit} | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for name, row in scores["per_label"].items():
        lines.append(f"| {name} | {row['precision']:.4f} | {row['recall']:.4f} | "
                     f"{row['f1']:.4f} | {row['support']} |")
    support = sum(row["support"] for row in scores["per_label"].values())
    lines.append(f"| **overall** | {scores['precision']:.4f} | {scores['recall']:.4f} | "
                 f"{scores['f1']:.4f} | {support} |")
    return "\n".join(lines) + "\n"


def _plot_confusion(matrix, classes: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    size = max(4.0, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(len(classes)):
        for j in range(len(classes)):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
