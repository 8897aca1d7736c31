"""The frames stage: a semantic role labeller's ``frames`` column for a tokenized batch.

The predicate labeller runs on the document's windows as any tagging model does (``Tagger`` ->
``TokenDecoder``); each word it labels a predicate (with ``--predicates verbs``, a verbal one)
is one frame, whose roles ``seqlab.srl.tag.FrameTagger`` labels on the same subwords (the
predicate's sentence), then ``seqlab.srl.frames`` turns into the predicate and its argument
spans.
"""

from __future__ import annotations

import pyarrow as pa

from seqlab import schema
from seqlab.labels import OUTSIDE
from seqlab.models.load import LoadedModel
from seqlab.srl.frames import Predicate, frame_rows
from seqlab.srl.tag import FrameTagger
from seqlab.stages.tag import Tagger
from seqlab.stages.tokens import TokenDecoder


class PredicateFinder:
    """The predicate labeller through the tag and decode stages: predicate words per row."""

    def __init__(self, loaded: LoadedModel, verbs_only: bool, batch_tokens: int = 16384,
                 decoder: str = "greedy") -> None:
        self.tag = Tagger(loaded, batch_tokens)
        self.decode = TokenDecoder(loaded.labels, decoder, entities=False)
        self.verbs_only = verbs_only

    def __call__(self, tokenized: pa.RecordBatch) -> list[list[Predicate]]:
        """Per row: ``(start_char, end_char, score)`` of each predicted predicate word (none
        for rows that are not ``ok``)."""
        rows = self.decode(self.tag(tokenized)).column(schema.TOKENS).to_pylist()
        return [[(t["start_char"], t["end_char"], t["score"]) for t in tokens or []
                 if t["label"] != OUTSIDE and (not self.verbs_only
                                               or t["label"].endswith("-VERB"))]
                for tokens in rows]


class FrameStage:
    """Callable stage of one SRL model: tokenized batch -> the batch plus its frames column
    (``prefix + "frames"``, null on rows that are not ``ok``)."""

    def __init__(self, predicates: LoadedModel, roles: LoadedModel, batch_tokens: int = 16384,
                 decoder: str = "greedy", predicate_decoder: str = "greedy",
                 verbs_only: bool = False,
                 prefix: str = "") -> None:
        self.finder = PredicateFinder(predicates, verbs_only, batch_tokens, predicate_decoder)
        self.frames = FrameTagger(roles, batch_tokens, decoder)
        self.field = schema.output_fields(schema.KIND_FRAMES, prefix)[0]

    @property
    def taggers(self) -> list[Tagger]:
        return [self.finder.tag, self.frames.tagger]

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        found = self.finder(batch)
        decoded = self.frames.frames(batch, [[(a, b) for a, b, _ in row] for row in found])
        status = batch.column(schema.STATUS).to_pylist()
        texts = batch.column(schema.TEXT).to_pylist()
        values = [frame_rows(texts[row], found[row], decoded[row])
                  if status[row] == schema.OK else None for row in range(batch.num_rows)]
        return batch.append_column(self.field, pa.array(values, self.field.type))
