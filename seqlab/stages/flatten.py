"""Rows of the mentions and frames tables, flattened from the documents' list columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from seqlab import schema


def mentions(documents: pa.RecordBatch | pa.Table, column: str = schema.ENTITIES,
             model: tuple[str, str] | None = None) -> pa.Table:
    """One row per entity of the documents' ``column``, with the documents' provenance;
    ``model``: the (name, revision) that found them, where the rows name several models."""
    return _flatten(documents, column, schema.ENTITY, schema.MENTIONS, model)


def frames(documents: pa.RecordBatch | pa.Table, column: str = schema.FRAMES_COLUMN,
           model: tuple[str, str] | None = None) -> pa.Table:
    """One row per frame of the documents' ``column`` (the ``frames`` table), as
    ``mentions``."""
    return _flatten(documents, column, schema.FRAME, schema.FRAMES, model)


def _flatten(documents: pa.RecordBatch | pa.Table, column: str, struct: pa.StructType,
             target: pa.Schema, model: tuple[str, str] | None) -> pa.Table:
    table = pa.Table.from_batches([documents]) if isinstance(documents, pa.RecordBatch) \
        else documents
    table = table.select([schema.DOC_ID, column, *[f.name for f in schema.PROVENANCE]])
    values = table.column(column).combine_chunks()
    counts = values.value_lengths().fill_null(0)
    repeat = np.repeat(np.arange(table.num_rows), counts.to_numpy(zero_copy_only=False))
    flat = values.flatten()
    keys = table.drop_columns([column]).take(pa.array(repeat, pa.int64()))
    columns = {name: keys.column(name) for name in keys.column_names}
    columns.update({f.name: flat.field(f.name) for f in struct})
    if model is not None:
        columns["model"] = pa.array([model[0]] * len(repeat), pa.string())
        columns["model_revision"] = pa.array([model[1]] * len(repeat), pa.string())
    return pa.Table.from_arrays([columns[f.name].cast(f.type) for f in target], schema=target)
