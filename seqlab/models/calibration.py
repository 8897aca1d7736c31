"""Temperature scaling: scores that can be thresholded, fitted on a model's dev set.

A fine-tuned tagger's softmax is over-confident: of the words it gives 0.99, fewer than 99 in
100 are right. Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural
Networks", https://arxiv.org/abs/1706.04599) divides the logits by one number ``T`` fitted on
held-out data, ``u_i = softmax(W h_i / T)``: it changes how confident the scores are, never
their order, so greedy labels are those of ``T = 1``.

``T`` is fitted to minimise the negative log-likelihood of the gold label of each dev word's
first subword, on the logits the tag stage computes as ``seqlab annotate`` runs it (the
tokenizer's words, the model's windows and their stitching, documents read whole). It is
stored in the model's ``seqlab.json`` under ``calibration``, from where the tag stage of every
engine applies it (``ModelMetadata.temperature``). The expected calibration error (ECE:
15 equal-width bins of the confidence, the share of each bin's items times the gap between
its accuracy and its mean confidence) is reported before and after, for words (confidence:
the top probability; correct: it is the gold label) and, for span labels, for entities
(confidence: the mean of the entity's word scores, as annotate scores entities; correct: the
same words and type as a gold entity).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from seqlab import schema
from seqlab.errors import ConfigError
from seqlab.labels import OUTSIDE, LabelSet, chunks
from seqlab.models.load import CACHE_DIR, LoadedModel, ModelSpec, load_model, local_model_dir
from seqlab.models.metadata import read_metadata, write_metadata
from seqlab.models.shipped import file_sha256
from seqlab.stages.decode import viterbi, word_boundaries
from seqlab.stages.tag import Tagger
from seqlab.training.evaluate import gold_in_scheme, model_decoder, read_units
from seqlab.training.formats import Sentence, read_sentences

log = logging.getLogger(__name__)

N_BINS = 15


@dataclass
class DevLogits:
    """The tag stage's logits (``T = 1``) at the first subword of every gold word of a dev set.

    ``found`` is False for a gold word no predicted word starts at (the tokenizer dropped all
    its characters): its logits row is zeros, and it counts as outside any entity.
    """

    logits: np.ndarray  # (words, labels) float64
    gold: np.ndarray  # (words,) gold label ids, -1 for a gold label the model does not have
    found: np.ndarray  # (words,) bool
    lengths: np.ndarray  # words per sentence, in order

    def scored(self) -> np.ndarray:
        """The words a temperature is fitted and words scored on."""
        return self.found & (self.gold >= 0)


def dev_logits(loaded: LoadedModel, sentences: list[Sentence], batch_tokens: int = 16384,
               context: str = "document", max_length: int | None = None) -> DevLogits:
    """Logits of every gold word's first subword, through the annotate path."""
    index = {label: i for i, label in enumerate(loaded.labels.labels)}
    gold = np.array([index.get(label, -1) for row in gold_in_scheme(sentences, loaded.labels)
                     for label in row], dtype=np.int64)
    tag = Tagger(loaded, batch_tokens, temperature=1.0, logits=True)
    n_labels = len(loaded.labels.labels)
    rows: list[np.ndarray] = []
    found: list[np.ndarray] = []
    for _, offsets_of, tagged in read_units(loaded, sentences, tag, context, max_length):
        for row, offsets in enumerate(offsets_of):
            logits, hit = _first_subword_logits(tagged, row, offsets, n_labels)
            rows.append(logits)
            found.append(hit)
    return DevLogits(np.concatenate(rows), gold, np.concatenate(found),
                     np.array([len(s.words) for s in sentences], dtype=np.int64))


def _first_subword_logits(tagged: pa.RecordBatch, row: int, offsets: list[int],
                          n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """One text's logits at the word starting at each gold word's character offset."""
    logits = np.zeros((len(offsets), n_labels), dtype=np.float64)
    hit = np.zeros(len(offsets), dtype=bool)
    if tagged.column(schema.STATUS)[row].as_py() != schema.OK:
        log.warning("a dev text could not be tagged; its words are left out")
        return logits, hit
    subwords = tagged.column(schema.PROBS)[row].values.to_numpy().reshape(-1, n_labels)
    first = word_boundaries(tagged.column(schema.WORDS)[row].values.to_numpy())
    starts = tagged.column(schema.STARTS)[row].values.to_numpy()[first]
    by_start = dict(zip(starts.tolist(), first.tolist()))
    for i, offset in enumerate(offsets):
        if offset in by_start:
            logits[i], hit[i] = subwords[by_start[offset]], True
    return logits, hit


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, gold: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the gold labels under ``softmax(logits / T)``.

    >>> round(nll(np.array([[0.0, 0.0]]), np.array([1])), 4)  # log 2
    0.6931
    """
    scaled = logits / temperature
    top = scaled.max(axis=1)
    lse = top + np.log(np.exp(scaled - top[:, None]).sum(axis=1))
    return float(np.mean(lse - scaled[np.arange(len(gold)), gold]))


def fit_temperature(logits: np.ndarray, gold: np.ndarray, iterations: int = 100) -> float:
    """The ``T`` that minimises ``nll(logits, gold, T)``.

    The NLL is convex in ``b = 1/T`` (a log-sum-exp of ``b z`` minus the linear ``b z_gold``):
    its derivative is the mean of ``E_p[z] - z_gold`` and its second derivative the mean
    variance of ``z`` under ``p``, so Newton's method on ``b``, halving steps that would not
    lower the NLL, finds the optimum in a few steps.

    >>> z = np.array([[4.0, 0.0]] * 3 + [[0.0, 4.0]])  # confident, right 3 times in 4
    >>> t = fit_temperature(z, np.array([0, 0, 0, 0]))
    >>> round(float(softmax(z / t)[0, 0]), 4)  # the fitted confidence is the accuracy
    0.75
    """
    b = 1.0
    current = nll(logits, gold, 1.0 / b)
    for _ in range(iterations):
        p = softmax(logits * b)
        mean = (p * logits).sum(axis=1)
        grad = float(np.mean(mean - logits[np.arange(len(gold)), gold]))
        curvature = float(np.mean((p * logits**2).sum(axis=1) - mean**2))
        if curvature <= 1e-12:
            break
        step = grad / curvature
        while step and (b - step <= 0 or nll(logits, gold, 1.0 / (b - step)) > current):
            step /= 2
            if abs(step) < 1e-12 * b:
                step = 0.0
        if not step:
            break
        b -= step
        current = nll(logits, gold, 1.0 / b)
        if abs(step) < 1e-9 * b:
            break
    return 1.0 / b


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray,
                               n_bins: int = N_BINS) -> float:
    """ECE over ``n_bins`` equal-width bins of confidence, ``(k/n, (k+1)/n]``: the sum over
    bins of (items in the bin / all items) x |accuracy - mean confidence| of the bin.

    >>> expected_calibration_error(np.array([0.9, 0.9, 0.3, 0.3]), np.array([1, 1, 0, 1]))
    0.15
    """
    if len(confidence) == 0:
        return 0.0
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = np.bincount(bins, weights=correct.astype(np.float64) - confidence, minlength=n_bins)
    return round(float(np.abs(gap).sum() / len(confidence)), 12)


def word_confidence(dev: DevLogits, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Each scored word's top probability and whether its label (argmax) is the gold one."""
    keep = dev.scored()
    probs = softmax(dev.logits[keep], temperature)
    return probs.max(axis=1), probs.argmax(axis=1) == dev.gold[keep]


def entity_confidence(dev: DevLogits, labels: LabelSet, temperature: float = 1.0,
                      decoder: str = "greedy") -> tuple[np.ndarray, np.ndarray]:
    """Each predicted entity's score (the mean of its words' scores) and whether a gold
    entity has its words and type, sentence by sentence over the gold words."""
    names = list(labels.labels)
    outside = names.index(OUTSIDE) if OUTSIDE in names else 0
    constraints = labels.allowed_transitions() if decoder == "viterbi" else None
    probs = softmax(dev.logits, temperature)
    gold = [names[g] if g >= 0 else OUTSIDE for g in dev.gold]
    scores: list[float] = []
    correct: list[bool] = []
    start = 0
    for length in dev.lengths.tolist():
        span = slice(start, start + length)
        start += length
        dist = probs[span]
        ids = dist.argmax(axis=1) if constraints is None else viterbi(dist, *constraints)
        ids = np.where(dev.found[span], ids, outside)
        word_scores = dist[np.arange(length), ids]
        truth = set(chunks(gold[span]))
        for chunk in chunks([names[i] for i in ids]):
            scores.append(float(np.mean(word_scores[chunk[1]: chunk[2] + 1])))
            correct.append(chunk in truth)
    return np.array(scores), np.array(correct, dtype=bool)


def calibration_entry(dev: DevLogits, labels: LabelSet, decoder: str, fitted_on: str) -> dict:
    """Fit ``T`` and measure what it changes: the ``calibration`` entry of ``seqlab.json``."""
    keep = dev.scored()
    logits, gold = dev.logits[keep], dev.gold[keep]
    temperature = fit_temperature(logits, gold)
    both = (("before", 1.0), ("after", temperature))
    entry: dict = {"temperature": round(temperature, 6), "fitted_on": fitted_on}
    for when, t in both:
        entry[f"ece_{when}"] = round(expected_calibration_error(*word_confidence(dev, t)), 6)
    for when, t in both:
        entry[f"nll_{when}"] = round(nll(logits, gold, t), 6)
    if labels.has_entities:
        for when, t in both:
            entry[f"entity_ece_{when}"] = round(
                expected_calibration_error(*entity_confidence(dev, labels, t, decoder)), 6)
        entry["entity_decoder"] = decoder
    how = ("T minimises the NLL of the gold label at each dev word's first subword, on "
           "logits from the annotate path; ECE over 15 equal-width bins of each word's top "
           "probability")
    if labels.has_entities:
        how += f" and of each entity's score (mean of its word scores, {decoder} labels)"
    entry.update({"words": int(keep.sum()), "bins": N_BINS, "how": how})
    return entry


def calibrate(model: str, data: str, format: str | None = None, column: str | None = None,
              decoder: str | None = None, device: str = "auto", batch_tokens: int = 16384,
              context: str = "document", max_length: int | None = None,
              loaded: LoadedModel | None = None, write: bool = True) -> dict:
    """Fit the temperature of ``model`` on the labelled file ``data`` and, with ``write``,
    store it in the model directory's ``seqlab.json`` (a shipped name: the package's copy).
    Returns the ``calibration`` entry; ``loaded``'s metadata gets it too, so taggers built
    from it afterwards apply it. Entity ECE uses ``decoder`` (default: the model's)."""
    directory = _writable_model_dir(model) if write else None
    loaded = loaded or load_model(ModelSpec(name=model, device=device))
    sentences = read_sentences(data, format, column)
    dev = dev_logits(loaded, sentences, batch_tokens, context, max_length)
    if not dev.scored().any():
        raise ConfigError(f"no word of {data} could be scored with {model!r}",
                          fix="pass the model's dev file, with its labels (--format, --column)")
    entry = calibration_entry(dev, loaded.labels, model_decoder(loaded, decoder), data)
    entry = {**entry, "fitted_on_sha256": file_sha256(data)}
    loaded.metadata = loaded.metadata.updated(calibration=entry)
    if directory is not None:
        write_metadata(directory, read_metadata(str(directory)).updated(calibration=entry))
        log.info("wrote temperature %.4f into %s", entry["temperature"],
                 directory / "seqlab.json")
    return entry


def _writable_model_dir(model: str) -> Path:
    """The local directory whose ``seqlab.json`` takes the calibration."""
    source = Path(local_model_dir(model))
    if not source.is_dir() or source.resolve().is_relative_to(CACHE_DIR.resolve()):
        raise ConfigError(
            f"--calibrate writes into the model's seqlab.json, and {model!r} is not a local "
            "model directory",
            fix="download or copy the model into a directory and pass that directory")
    return source
