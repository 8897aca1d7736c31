"""What a run's manifest says of its models and of its speed, for ``seqlab show`` and
``seqlab report``: one header per model (task, scheme, labels, decoder, precision) and the
documents and words per second of the run, and of its last attempt when it was resumed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from seqlab import schema
from seqlab.store.manifest import Manifest, ModelSummary

ENTITIES, TAGS, FRAMES = "entities", "tags", "frames"  # what a model's columns hold


@dataclass(frozen=True)
class ModelHeader:
    """One model of a run as the views name it: its key (the prefix of its columns in a run of
    several), what it does and how it decoded, and the documents columns it filled."""

    key: str
    name: str
    task: str  # the model's own task (ner, upos, srl), else what its columns hold
    kind: str  # ENTITIES, TAGS or FRAMES
    scheme: str
    labels: tuple[str, ...]
    decoder: str
    precision: str
    columns: tuple[str, ...]
    predicates: str | None = None  # a semantic role labeller's predicate labeller
    revision: str = ""

    def column(self, name: str) -> str | None:
        """This model's documents column ``name`` (``tokens``, ``entities``, ``frames``)."""
        return next((c for c in self.columns if c == name or c.endswith("_" + name)), None)

    def fields(self) -> list[tuple[str, str]]:
        """(name, value) pairs of the header, in the order the views print them."""
        found = [("task", self.task), ("scheme", self.scheme),
                 ("labels", str(len(self.labels))), ("decoder", self.decoder),
                 ("precision", self.precision)]
        return found + ([("predicates", self.predicates)] if self.predicates else [])


def model_headers(manifest: Manifest) -> list[ModelHeader]:
    """A header per model of the run; a manifest written before runs named their models
    gives one, from ``model`` and the configuration."""
    precision = run_precision(manifest)
    if not manifest.models:
        model = manifest.model
        kind = TAGS if model.scheme == "tags" else ENTITIES
        decoder = manifest.config.get("decoder") or "–"
        return [ModelHeader("", model.name, kind, kind, model.scheme, tuple(model.labels),
                            str(decoder), precision, (schema.TOKENS, schema.ENTITIES),
                            revision=model.revision)]
    per_model = model_precisions(manifest)
    return [_header(m, per_model.get(m.key, precision)) for m in manifest.models]


def model_precisions(manifest: Manifest) -> dict[str, str]:
    """Each model key's precision and backend, where the engine recorded them per model
    (``tagging.models``): ``{"ner": "int8 (onnxruntime)"}``."""
    tagging = manifest.extra.get("tagging")
    models = tagging.get("models") if isinstance(tagging, Mapping) else None
    if not isinstance(models, Mapping):
        return {}
    return {key: f"{m['precision']} ({m['backend']})" if m.get("backend") else m["precision"]
            for key, m in models.items() if isinstance(m, Mapping) and m.get("precision")}


def _header(model: ModelSummary, precision: str) -> ModelHeader:
    columns = tuple(model.columns)
    if any(c.endswith(schema.FRAMES_COLUMN) for c in columns):
        kind = FRAMES
    else:
        kind = TAGS if model.scheme == "tags" else ENTITIES
    return ModelHeader(model.key, model.name, model.task or kind, kind, model.scheme,
                       tuple(model.labels), model.decoder, precision, columns,
                       model.predicates.name if model.predicates else None, model.revision)


def run_precision(manifest: Manifest) -> str:
    """The precision the models ran in, as the engine recorded it (``fp32``; ``fp32,bf16``
    when the models differ), else as asked (``auto``)."""
    for section in manifest.extra.values():
        if isinstance(section, Mapping) and section.get("precision"):
            return str(section["precision"])
    config = manifest.config
    return str(config.get("precision") or config.get("dtype") or "–")


def header_lines(headers: list[ModelHeader]) -> list[str]:
    """The headers as aligned lines for a terminal, one a model.

    >>> h = ModelHeader("ner", "ner", "ner", ENTITIES, "iob2", ("O", "B-PER", "I-PER"),
    ...                 "greedy", "fp32", ("ner_entities",))
    >>> header_lines([h])
    ['model ner  task ner  scheme iob2  labels 3  decoder greedy  precision fp32  ner']
    """
    rows = [[f"model {h.key or h.task}"] + [f"{k} {v}" for k, v in h.fields()[:5]]
            + [h.name + (f" (predicates {h.predicates})" if h.predicates else "")]
            for h in headers]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


# ------------------------------------------------------------------------------- speed


@dataclass(frozen=True)
class Rate:
    """What a stretch of a run annotated and in how long: the whole run, or one attempt."""

    scope: str
    documents: int | None
    words: int | None
    seconds: float
    note: str = ""


def rates(manifest: Manifest) -> list[Rate]:
    """The run's speed. One attempt: all rows over ``elapsed_s``. A resumed run: the last
    attempt's own documents and words over its own seconds (the manifest's ``attempt``
    section), and the whole run's: all rows over the attempts' summed seconds where each
    entry of ``attempts`` records them, else over the wall-clock time from the first
    attempt's start to the end (pauses between attempts included: a lower bound)."""
    documents = manifest.counts.get("documents", manifest.rows.written)
    words = manifest.counts.get("tokens", 0)
    attempts = manifest.attempts
    if len(attempts) <= 1:
        return [Rate("run", documents, words, manifest.elapsed_s)]
    n = len(attempts)
    own = manifest.extra.get("attempt")
    if isinstance(own, Mapping) and own.get("seconds") is not None:
        last = Rate(f"last attempt ({own.get('number', n)} of {n})", own.get("documents"),
                    own.get("words"), float(own["seconds"]))
    else:
        last = Rate(f"last attempt ({n} of {n})", None, None, manifest.elapsed_s,
                    "the manifest does not record what this attempt annotated")
    seconds = [getattr(a, "seconds", None) for a in attempts]
    if None not in seconds:
        return [last, Rate(f"whole run ({n} attempts)", documents, words, sum(seconds))]
    span = _seconds_between(attempts[0].started_at, manifest.finished_at)
    return [last, Rate(f"whole run ({n} attempts)", documents, words,
                       span if span is not None else manifest.elapsed_s,
                       "wall-clock time from the first attempt's start, pauses included")]


def _seconds_between(start: str, end: str) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return None


def per_second(n: int | None, seconds: float, unit: str) -> tuple[str, str]:
    """A rate as (value, unit), precise however slow: ``n / seconds`` at one or more a
    second, else the seconds each ``unit`` took.

    >>> per_second(20, 488, "document"), per_second(20, 0.5, "document")
    (('24.4 s', 'per document'), ('40.0', 'documents/s'))
    >>> per_second(123456, 2.0, "word"), per_second(1, 7200, "document")
    (('61,728', 'words/s'), ('2.0 h', 'per document'))
    """
    if not n or seconds <= 0:
        return "–", f"{unit}s/s"
    rate = n / seconds
    if rate >= 1:
        return (f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}" if rate >= 10
                else f"{rate:.2f}"), f"{unit}s/s"
    each = seconds / n
    if each >= 3600:
        return f"{each / 3600:.1f} h", f"per {unit}"
    if each >= 60:
        return f"{each / 60:.1f} min", f"per {unit}"
    return f"{each:.3g} s", f"per {unit}"
