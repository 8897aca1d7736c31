"""The decode, mentions and aggregate stages as RecordBatch -> RecordBatch functions.

Together with ``Tokenizer`` (seqlab.stages.tokenize) and ``Tagger`` (seqlab.stages.tag) these
are the whole pipeline; engines only wire them together:

    read -> Tokenizer -> Tagger -> Decoder -> documents -> mentions -> aggregate partials
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqlab import schema
from seqlab.labels import LabelSet
from seqlab.stages.decode import WordDecoder, word_boundaries, word_distributions
from seqlab.stages.entities import find_entities


@dataclass(frozen=True)
class Provenance:
    """Which run and model produced the rows; stamped on every landed row."""

    run_id: str
    model: str
    model_revision: str
    processed_at: datetime

    def columns(self, n: int) -> dict[str, pa.Array]:
        values = {
            "run_id": self.run_id,
            "model": self.model,
            "model_revision": self.model_revision,
            "processed_at": self.processed_at,
        }
        return {f.name: pa.array([values[f.name]] * n, f.type) for f in schema.PROVENANCE}


class _ListBuilder:
    """Accumulates one list<struct> column as flat child arrays plus offsets."""

    def __init__(self, type_: pa.ListType) -> None:
        self.type = type_
        self.children: dict[str, list] = {f.name: [] for f in type_.value_type}
        # children given as Arrow arrays (nested lists such as a token's ``top``), by chunk
        self.chunks: dict[str, list[pa.Array]] = {f.name: [] for f in type_.value_type}
        self.offsets = [0]
        self.valid: list[bool] = []

    def add(self, **children: list | np.ndarray | pa.Array) -> None:
        n = 0
        for name, values in children.items():
            if isinstance(values, pa.Array):
                self.chunks[name].append(values)
            else:
                self.children[name].extend(values.tolist() if isinstance(values, np.ndarray)
                                           else values)
            n = len(values)
        self.offsets.append(self.offsets[-1] + n)
        self.valid.append(True)

    def add_null(self) -> None:
        self.offsets.append(self.offsets[-1])
        self.valid.append(False)

    def finish(self) -> pa.Array:
        struct_type = self.type.value_type
        values = pa.StructArray.from_arrays(
            [pa.concat_arrays([c.cast(f.type) for c in self.chunks[f.name]])
             if self.chunks[f.name] else pa.array(self.children[f.name], f.type)
             for f in struct_type],
            fields=list(struct_type),
        )
        mask = pa.array([not v for v in self.valid], pa.bool_())
        offsets = pa.array(self.offsets, pa.int32())
        return pa.ListArray.from_arrays(offsets, values, type=self.type, mask=mask)


class TokenDecoder:
    """Callable stage of one tagging model: the stitched ``_probs`` -> its ``tokens`` (and
    ``entities``) columns, named behind ``prefix``; ``_probs`` is dropped. Rows that are not
    ``ok`` get nulls.

    ``min_score``: entities whose score (the mean of their words' scores) is below it are left
    out of ``entities``, and so of mentions and aggregates; their words keep their labels in
    ``tokens``. ``top_k``: each token also carries its ``top_k`` most probable labels (from the
    word's distribution, best first) in ``top``, which is null when ``top_k`` is 0.
    ``decoder`` None is greedy (``seqlab.run.plan.plan_run`` settles it from the model first).
    ``entities`` false: no ``entities`` column (a model of several whose labels are no spans).
    ``repair_spans``: the words' labels are decoded with the span-edge repair
    (``seqlab.stages.spans``: no mention begins or ends with stray punctuation), so tokens,
    entities, mentions, aggregates and ``seqlab evaluate`` all see the repaired labels; off
    only to measure what it changes (``benchmarks/spans.py``); never with ``entities`` false.
    """

    def __init__(self, labels: LabelSet, decoder: str | None = "greedy",
                 aggregation: str = "first", min_score: float | None = None, top_k: int = 0,
                 prefix: str = "", entities: bool = True, repair_spans: bool = True) -> None:
        self.labels = labels
        self.names = np.asarray(labels.labels, dtype=object)
        self.words = WordDecoder(labels, decoder or "greedy", aggregation,
                                 repair=repair_spans and entities)
        self.min_score = min_score
        self.top_k = min(top_k, len(self.names))
        self.fields = schema.output_fields(schema.KIND_TAGS, prefix, entities)
        self.entities = entities

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        n_labels = len(self.names)
        texts = batch.column(schema.TEXT).to_pylist()
        status = batch.column(schema.STATUS).to_pylist()
        tokens = _ListBuilder(schema.TOKENS_TYPE)
        entities = _ListBuilder(schema.ENTITIES_TYPE)
        probs_col, words_col = batch.column(schema.PROBS), batch.column(schema.WORDS)
        starts_col, ends_col = batch.column(schema.STARTS), batch.column(schema.ENDS)
        for row, text in enumerate(texts):
            if status[row] != schema.OK:
                tokens.add_null()
                entities.add_null()
                continue
            probs = probs_col[row].values.to_numpy().reshape(-1, n_labels)
            words = words_col[row].values.to_numpy()
            first = word_boundaries(words)
            last = np.append(first[1:], len(words)) - 1
            starts = starts_col[row].values.to_numpy()[first]
            ends = ends_col[row].values.to_numpy()[last]
            label_ids, scores = self.words.decode(probs, first, text, starts, ends)
            top = self._top(probs, first)
            labels = self.names[label_ids].tolist()
            tokens.add(text=[text[s:e] for s, e in zip(starts.tolist(), ends.tolist())],
                       start_char=starts, end_char=ends, label=labels, score=scores, top=top)
            if not self.entities:
                continue
            found = (find_entities(text, labels, scores, starts, ends)
                     if self.labels.has_entities else [])
            if self.min_score is not None:
                found = [e for e in found if e.score >= self.min_score]
            entities.add(**{f.name: [getattr(e, f.name) for e in found]
                            for f in schema.ENTITY})
        out = batch.drop_columns([schema.PROBS])
        columns = (tokens.finish(), entities.finish()) if self.entities else (tokens.finish(),)
        for field_, column in zip(self.fields, columns):
            out = out.append_column(field_, column)
        return out

    def _top(self, probs: np.ndarray, first: np.ndarray) -> pa.Array:
        """Each word's ``top_k`` labels and probabilities, best first (ties: label order);
        all null when ``top_k`` is 0."""
        top_type = schema.TOKEN.field(schema.TOP).type
        if not self.top_k:
            return pa.nulls(len(first), top_type)
        dist = word_distributions(probs, first, self.words.aggregation)
        best = np.argsort(-dist, axis=1, kind="stable")[:, : self.top_k]
        entries = pa.StructArray.from_arrays(
            [pa.array(self.names[best].ravel().tolist(), pa.string()),
             pa.array(np.take_along_axis(dist, best, axis=1).ravel(), pa.float64())],
            fields=list(top_type.value_type))
        offsets = pa.array(np.arange(len(first) + 1) * self.top_k, pa.int32())
        return pa.ListArray.from_arrays(offsets, entries, type=top_type)


class Documents:
    """The last stage: a batch that carries every model's columns -> ``documents`` rows in
    the declared schema (plus the location columns when the batch carries them), with
    ``n_tokens`` and the run's provenance. A row that is not ``ok`` keeps no model output:
    one that failed in a later model's stage has the earlier models' columns nulled too."""

    def __init__(self, documents: pa.Schema, provenance: Provenance,
                 outputs: list[str]) -> None:
        """``outputs``: the models' columns (nulled on rows that are not ``ok``)."""
        self.documents = documents
        self.provenance = provenance
        self.outputs = outputs

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        ok = pc.equal(batch.column(schema.STATUS), schema.OK)
        columns = {name: batch.column(name) for name in batch.schema.names}
        for name in self.outputs:
            columns[name] = pc.if_else(ok, columns[name],
                                       pa.nulls(batch.num_rows, columns[name].type))
        columns[schema.N_TOKENS] = pa.array(n_words(batch), pa.int32())
        columns.update(self.provenance.columns(batch.num_rows))
        target = self.output_schema(batch.schema)
        return pa.RecordBatch.from_arrays([columns[f.name].cast(f.type) for f in target],
                                          schema=target)

    def output_schema(self, source: pa.Schema) -> pa.Schema:
        """The documents schema, plus the location columns when the batch carries them."""
        location = [f for f in schema.LOCATION if f.name in source.names]
        return pa.schema(list(self.documents) + location)


def n_words(batch: pa.RecordBatch) -> np.ndarray:
    """The words of each row (0 for rows that are not ``ok``): the entries its ``tokens``
    columns have, counted from the tokenize stage's word ids."""
    status = batch.column(schema.STATUS).to_pylist()
    words = batch.column(schema.WORDS)
    return np.array([len(word_boundaries(words[row].values.to_numpy()))
                     if status[row] == schema.OK else 0 for row in range(batch.num_rows)],
                    dtype=np.int32)


class Decoder:
    """Callable stage of a run of one tagging model: tagged batch -> ``documents`` batch
    (``TokenDecoder`` then ``Documents``). Options as ``TokenDecoder``'s."""

    def __init__(self, labels: LabelSet, documents: pa.Schema, provenance: Provenance,
                 decoder: str | None = "greedy", aggregation: str = "first",
                 min_score: float | None = None, top_k: int = 0) -> None:
        self.tokens = TokenDecoder(labels, decoder, aggregation, min_score, top_k)
        self.documents = Documents(documents, provenance, [f.name for f in self.tokens.fields])
        self.labels = labels

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return self.documents(self.tokens(batch))

    def output_schema(self, source: pa.Schema) -> pa.Schema:
        return self.documents.output_schema(source)
