"""The ``frames`` table: one row per predicate occurrence of a document, with its arguments.

Types follow the landed tables of ``seqlab.schema`` (int32 character offsets, float64 scores,
lists of non-null structs, no maps), so warehouses load it as they load ``mentions``. Offsets
index the document's text: ``text[start_char:end_char]`` is the predicate and each argument. An
argument's score is the mean of its words' scores, as for entities; the predicate's own ``V``
span is not an argument.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from seqlab import schema
from seqlab.entities import find_entities
from seqlab.srl_data import VERB
from seqlab.srl_tag import FrameWords

ARGUMENT = pa.struct([
    pa.field("role", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("start_char", pa.int32(), nullable=False),
    pa.field("end_char", pa.int32(), nullable=False),
    pa.field("score", pa.float64(), nullable=False),
])
PREDICATE = pa.struct([
    pa.field("text", pa.string(), nullable=False),
    pa.field("start_char", pa.int32(), nullable=False),
    pa.field("end_char", pa.int32(), nullable=False),
    pa.field("score", pa.float64(), nullable=False),
])
FRAMES = pa.schema([
    pa.field(schema.DOC_ID, pa.string(), nullable=False),
    pa.field("frame", pa.int32(), nullable=False),  # the predicate's number in its document
    pa.field("predicate", PREDICATE, nullable=False),
    pa.field("arguments", pa.list_(pa.field("element", ARGUMENT, nullable=False)),
             nullable=False),
    *schema.PROVENANCE,
])

Predicate = tuple[int, int, float]  # start_char, end_char, score


def arguments(text: str, words: FrameWords) -> list[dict]:
    """A decoded frame's argument spans (``V`` left out), in text order."""
    return [{"role": e.label, "text": e.text, "start_char": e.start_char,
             "end_char": e.end_char, "score": e.score}
            for e in find_entities(text, words.labels, words.scores, words.starts, words.ends)
            if e.label != VERB]


def frame_rows(doc_id: str, text: str, predicates: Sequence[Predicate],
               decoded: Sequence[FrameWords | None]) -> list[dict]:
    """The frames of one document (predicates with no decoded frame are left out)."""
    rows = []
    for (start, end, score), words in zip(predicates, decoded):
        if words is None:
            continue
        rows.append({schema.DOC_ID: doc_id, "frame": len(rows),
                     "predicate": {"text": text[start:end], "start_char": start,
                                   "end_char": end, "score": float(score)},
                     "arguments": arguments(text, words)})
    return rows


def frames_table(rows: list[dict], provenance: dict[str, pa.Array]) -> pa.Table:
    """``rows`` (``frame_rows``) with the run's provenance columns, in ``FRAMES``' schema;
    ``provenance`` maps each provenance column to an array of ``len(rows)`` values."""
    columns = {f.name: pa.array([r[f.name] for r in rows], f.type)
               for f in FRAMES if f.name in (schema.DOC_ID, "frame", "predicate", "arguments")}
    columns.update(provenance)
    return pa.Table.from_arrays([columns[f.name].cast(f.type) for f in FRAMES], schema=FRAMES)
