"""Arrow schemas of every table that crosses a stage or lands on disk, declared once.

Landed tables follow what BigQuery, Snowflake, Redshift/Athena and Databricks load without
manual schema work: signed integers, plain ``string``, float64 scores, ``timestamp[us, UTC]``,
standard 3-level lists with non-null elements, no maps.

Internal columns (prefixed ``_``) carry a document's subword tokens and windows between the
tokenize, tag and decode stages; they never land on disk.
"""

from __future__ import annotations

import pyarrow as pa

from seqlab.errors import ConfigError

# 2: tokens carry ``top`` (their K best labels with ``--top-k K``, else null)
SCHEMA_VERSION = 2

DOC_ID = "doc_id"
TEXT = "text"
STATUS = "status"
ERROR = "error"
N_TOKENS = "n_tokens"  # words of the document (the entries of ``tokens``)
TOKENS = "tokens"
TOP = "top"  # a token's K most probable labels (``--top-k``)
ENTITIES = "entities"

# Row statuses. Anything but OK is a row that could not be annotated; its error says why.
OK = "ok"
EMPTY = "empty"
TOO_LONG = "too_long"
BAD_TYPE = "bad_type"
BAD_ENCODING = "bad_encoding"
BAD_RECORD = "bad_record"
FAILED = "failed"

TIMESTAMP = pa.timestamp("us", tz="UTC")

# A label and its probability, one entry of a token's ``top``.
LABEL_SCORE = pa.struct(
    [
        pa.field("label", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
    ]
)
# ``top`` is in the token struct on every run, null when ``--top-k`` is 0 (the default), rather
# than a field only runs with ``--top-k`` have: the documents schema stays one schema, so
# every engine writes it, parts of runs with and without ``--top-k`` load into one warehouse
# table, and loaders see the same columns whatever the flags. A null list costs a definition
# level per token in Parquet. A list of (label, score) structs, not a map: warehouses do not
# load maps, and the order (best first) is part of the value.
TOKEN = pa.struct(
    [
        pa.field("text", pa.string(), nullable=False),
        pa.field("start_char", pa.int32(), nullable=False),
        pa.field("end_char", pa.int32(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field(TOP, pa.list_(pa.field("element", LABEL_SCORE, nullable=False))),
    ]
)
ENTITY = pa.struct(
    [
        pa.field("text", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("start_char", pa.int32(), nullable=False),
        pa.field("end_char", pa.int32(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
    ]
)

# Columns that say which run and model produced a row.
PROVENANCE = [
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("model_revision", pa.string(), nullable=False),
    pa.field("processed_at", TIMESTAMP, nullable=False),
]

STATUS_FIELDS = [pa.field(STATUS, pa.string(), nullable=False), pa.field(ERROR, pa.string())]

TOKENS_TYPE = pa.list_(pa.field("element", TOKEN, nullable=False))
ENTITIES_TYPE = pa.list_(pa.field("element", ENTITY, nullable=False))

# What the documents table adds after the input's own columns, for a run of one tagging model.
# (A run's own columns come from ``output_fields``: one set per model.)
ANNOTATION = [
    *STATUS_FIELDS,
    pa.field(N_TOKENS, pa.int32(), nullable=False),
    pa.field(TOKENS, TOKENS_TYPE),
    pa.field(ENTITIES, ENTITIES_TYPE),
]

# A frame of semantic role labelling: one predicate occurrence and its arguments, offsets into
# the document's text (``text[start_char:end_char]`` is the predicate and each argument); an
# argument's score is the mean of its words' scores, as for entities. The predicate's own ``V``
# span is not an argument.
ARGUMENT = pa.struct(
    [
        pa.field("role", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("start_char", pa.int32(), nullable=False),
        pa.field("end_char", pa.int32(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
    ]
)
PREDICATE = pa.struct(
    [
        pa.field("text", pa.string(), nullable=False),
        pa.field("start_char", pa.int32(), nullable=False),
        pa.field("end_char", pa.int32(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
    ]
)
FRAME_FIELDS = [
    pa.field("frame", pa.int32(), nullable=False),  # the predicate's number in its document
    pa.field("predicate", PREDICATE, nullable=False),
    pa.field("arguments", pa.list_(pa.field("element", ARGUMENT, nullable=False)),
             nullable=False),
]
FRAME = pa.struct(FRAME_FIELDS)

MENTIONS = pa.schema(
    [
        pa.field(DOC_ID, pa.string(), nullable=False),
        pa.field("start_char", pa.int32(), nullable=False),
        pa.field("end_char", pa.int32(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        *PROVENANCE,
    ]
)

FRAMES_COLUMN = "frames"
FRAMES_TYPE = pa.list_(pa.field("element", FRAME, nullable=False))

# The kinds of model a run applies: token labels (NER, POS, any tagging), or frames (SRL).
KIND_TAGS = "tags"
KIND_FRAMES = "frames"


def output_fields(kind: str, prefix: str = "", entities: bool = True) -> list[pa.Field]:
    """The documents columns one model fills: ``tokens`` and ``entities`` for a tagging model
    (``entities`` left out when ``entities`` is false), ``frames`` for a frames model, each
    name behind ``prefix`` (``"ner_"`` in a run of several models, ``""`` alone).

    >>> [f.name for f in output_fields(KIND_TAGS, "upos_", entities=False)]
    ['upos_tokens']
    >>> [f.name for f in output_fields(KIND_FRAMES)]
    ['frames']
    """
    if kind == KIND_FRAMES:
        return [pa.field(prefix + FRAMES_COLUMN, FRAMES_TYPE)]
    fields = [pa.field(prefix + TOKENS, TOKENS_TYPE)]
    return fields + [pa.field(prefix + ENTITIES, ENTITIES_TYPE)] if entities else fields


# One row per frame (a predicate occurrence with its arguments).
FRAMES = pa.schema([pa.field(DOC_ID, pa.string(), nullable=False), *FRAME_FIELDS, *PROVENANCE])

# Mergeable partial aggregates: sums only, so partials combine in any order and a warehouse
# can re-aggregate across runs (mean score = score_sum / mentions). Scores are summed as
# integer micro-units so that the sum is exact whatever the order of the merges.
AGGREGATE_PARTIAL = pa.schema(
    [
        pa.field("label", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("mentions", pa.int64(), nullable=False),
        pa.field("documents", pa.int64(), nullable=False),
        pa.field("score_micros", pa.int64(), nullable=False),
    ]
)
AGGREGATES = pa.schema(
    [
        pa.field("label", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("mentions", pa.int64(), nullable=False),
        pa.field("documents", pa.int64(), nullable=False),
        pa.field("score_sum", pa.float64(), nullable=False),
    ]
)

# Internal columns added by the tokenize stage (one row per document, whole document).
IDS = "_ids"  # subword ids, no special tokens
STARTS = "_starts"  # character start of each subword
ENDS = "_ends"  # character end of each subword
WORDS = "_words"  # word index of each subword
WIN_STARTS = "_win_starts"  # first subword of each window
WIN_LENS = "_win_lens"  # subwords in each window
TOKENIZED = [pa.field(name, pa.list_(pa.int32()))
             for name in (IDS, STARTS, ENDS, WORDS, WIN_STARTS, WIN_LENS)]
# Added by the tag stage: the stitched softmax distribution of every subword, flattened
# row-major (n_subwords * n_labels).
PROBS = "_probs"
TAGGED = [pa.field(PROBS, pa.list_(pa.float32()))]

# Where a row comes from: its input fragment and row number there, and whether it is the
# fragment's last row. Added when a fragment is read and carried through every stage up to
# landing, so that an engine that regroups rows (Ray Data) still lands each fragment's rows
# under names that say which rows they hold (see ``seqlab.run.land``).
FRAGMENT = "_fragment"
ROW = "_row"
LAST = "_last"
LOCATION = [pa.field(FRAGMENT, pa.int32(), nullable=False),
            pa.field(ROW, pa.int64(), nullable=False),
            pa.field(LAST, pa.bool_(), nullable=False)]

INTERNAL = {field.name for field in TOKENIZED + TAGGED + LOCATION}

RESERVED = {DOC_ID, TEXT, FRAMES_COLUMN} | {f.name for f in ANNOTATION + PROVENANCE} | INTERNAL


def warehouse_type(type_: pa.DataType) -> pa.DataType:
    """The type a passthrough column lands as, so every warehouse loads it as is.

    >>> warehouse_type(pa.large_string())
    DataType(string)
    >>> warehouse_type(pa.uint32())
    DataType(int64)
    """
    if pa.types.is_dictionary(type_):
        return warehouse_type(type_.value_type)
    if pa.types.is_large_string(type_) or pa.types.is_string_view(type_):
        return pa.string()
    if pa.types.is_large_binary(type_) or pa.types.is_binary_view(type_):
        return pa.binary()
    if pa.types.is_unsigned_integer(type_):
        return pa.int64()
    if pa.types.is_float16(type_):
        return pa.float32()
    if pa.types.is_timestamp(type_):
        return pa.timestamp("us", tz=type_.tz)
    if pa.types.is_large_list(type_) or pa.types.is_list_view(type_):
        return pa.list_(warehouse_type(type_.value_type))
    if pa.types.is_list(type_):
        return pa.list_(warehouse_type(type_.value_type))
    if pa.types.is_struct(type_):
        return pa.struct([f.with_type(warehouse_type(f.type)) for f in type_])
    if pa.types.is_map(type_):
        raise ConfigError(
            f"column type {type_} is a map, which warehouses do not load from Parquet",
            fix="drop the column from the input or convert it to a list of structs",
        )
    return type_


def read_schema(passthrough: pa.Schema) -> pa.Schema:
    """Schema of the rows the reader hands to the tokenize stage.

    ``status``/``error`` already mark rows that could not be read (a bad JSON line, text that
    is not a string or not UTF-8); the later stages pass such rows through untouched.
    """
    fields = [pa.field(DOC_ID, pa.string(), nullable=False)]
    fields += [pa.field(f.name, warehouse_type(f.type)) for f in passthrough]
    fields += [pa.field(TEXT, pa.string()), *STATUS_FIELDS]
    return pa.schema(fields)


def check_passthrough(names: list[str], outputs: list[str] = ()) -> None:
    """Refuse input columns whose names the output already uses (``outputs``: the run's
    models' columns)."""
    clash = sorted(set(names) & (RESERVED | set(outputs)))
    if clash:
        raise ConfigError(
            f"input columns {clash} clash with seqlab's output columns",
            fix="rename them in the input, or name them with --text-column/--id-column if "
            "they are the text or the id",
        )


def documents_schema(passthrough: pa.Schema, keep_text: bool = True,
                     outputs: list[pa.Field] | None = None) -> pa.Schema:
    """Schema of ``documents/*.parquet`` for an input with these passthrough columns;
    ``outputs``: the models' columns (``output_fields``), by default one tagging model's."""
    fields = [f for f in read_schema(passthrough) if f.name not in (STATUS, ERROR)]
    if not keep_text:
        fields = [f for f in fields if f.name != TEXT]
    if outputs is None:
        outputs = ANNOTATION[3:]
    return pa.schema(fields + ANNOTATION[:3] + outputs + PROVENANCE)
