"""Schemas of the landed tables for warehouses, generated from ``seqlab.schema``.

Every format is derived from the Arrow schemas declared there (``documents_schema``,
``MENTIONS``, ``AGGREGATES``), so a schema printed here is the schema a run lands and cannot
drift from it: BigQuery's JSON schema file, Snowflake and DuckDB ``CREATE TABLE`` statements,
the Iceberg (spec v2) table schema, and the Arrow schema itself.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from seqlab.errors import ConfigError
from seqlab.schema import (
    AGGREGATES,
    FRAMES,
    MENTIONS,
    SCHEMA_VERSION,
    check_passthrough,
    documents_schema,
)

TABLES = ("documents", "mentions", "frames", "aggregates")
FIXED = {"mentions": MENTIONS, "frames": FRAMES, "aggregates": AGGREGATES}
FORMATS = ("bigquery", "snowflake", "duckdb", "iceberg", "arrow")

Name = str | Callable[[pa.DataType], str]
# The primitive types of each format, in order of test (tz-aware timestamps before naive ones).
# Naive timestamps, dates, times, decimals and fixed binaries only come with passthrough
# columns; seqlab's own columns use booleans, int32/int64, float64, string and UTC timestamps.
PRIMITIVES: list[tuple[Callable[[pa.DataType], bool], dict[str, Name]]] = [
    (pa.types.is_boolean, dict(bigquery="BOOLEAN", snowflake="BOOLEAN", duckdb="BOOLEAN",
                               iceberg="boolean")),
    (pa.types.is_int8, dict(bigquery="INTEGER", snowflake="INTEGER", duckdb="TINYINT",
                            iceberg="int")),
    (pa.types.is_int16, dict(bigquery="INTEGER", snowflake="INTEGER", duckdb="SMALLINT",
                             iceberg="int")),
    (pa.types.is_int32, dict(bigquery="INTEGER", snowflake="INTEGER", duckdb="INTEGER",
                             iceberg="int")),
    (pa.types.is_int64, dict(bigquery="INTEGER", snowflake="INTEGER", duckdb="BIGINT",
                             iceberg="long")),
    (pa.types.is_float32, dict(bigquery="FLOAT", snowflake="FLOAT", duckdb="FLOAT",
                               iceberg="float")),
    (pa.types.is_float64, dict(bigquery="FLOAT", snowflake="FLOAT", duckdb="DOUBLE",
                               iceberg="double")),
    (pa.types.is_string, dict(bigquery="STRING", snowflake="VARCHAR", duckdb="VARCHAR",
                              iceberg="string")),
    (pa.types.is_binary, dict(bigquery="BYTES", snowflake="BINARY", duckdb="BLOB",
                              iceberg="binary")),
    (pa.types.is_fixed_size_binary, dict(bigquery="BYTES", snowflake="BINARY", duckdb="BLOB",
                                         iceberg=lambda t: f"fixed[{t.byte_width}]")),
    (pa.types.is_date, dict(bigquery="DATE", snowflake="DATE", duckdb="DATE", iceberg="date")),
    (pa.types.is_time, dict(bigquery="TIME", snowflake="TIME", duckdb="TIME", iceberg="time")),
    # an instant (Parquet isAdjustedToUTC=true, whatever the zone): BigQuery's TIMESTAMP,
    # Snowflake's TIMESTAMP_LTZ (stored in UTC), not TIMESTAMP_TZ (which keeps an offset)
    (lambda t: pa.types.is_timestamp(t) and t.tz is not None,
     dict(bigquery="TIMESTAMP", snowflake="TIMESTAMP_LTZ", duckdb="TIMESTAMPTZ",
          iceberg="timestamptz")),
    (pa.types.is_timestamp, dict(bigquery="DATETIME", snowflake="TIMESTAMP_NTZ",
                                 duckdb="TIMESTAMP", iceberg="timestamp")),
    (pa.types.is_decimal, dict(
        bigquery=lambda t: "NUMERIC" if t.scale <= 9 and t.precision - t.scale <= 29
        else "BIGNUMERIC",
        snowflake=lambda t: f"NUMBER({t.precision},{t.scale})",
        duckdb=lambda t: f"DECIMAL({t.precision},{t.scale})",
        iceberg=lambda t: f"decimal({t.precision},{t.scale})")),
]

# Snowflake's reserved words: a column named so must be quoted (and is then case-sensitive).
SNOWFLAKE_RESERVED = frozenset("""
    ACCOUNT ALL ALTER AND ANY AS BETWEEN BY CASE CAST CHECK COLUMN CONNECT CONNECTION
    CONSTRAINT CREATE CROSS CURRENT CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP CURRENT_USER
    DATABASE DELETE DISTINCT DROP ELSE EXISTS FALSE FOLLOWING FOR FROM FULL GRANT GROUP
    GSCLUSTER HAVING ILIKE IN INCREMENT INNER INSERT INTERSECT INTO IS ISSUE JOIN LATERAL LEFT
    LIKE LOCALTIME LOCALTIMESTAMP MINUS NATURAL NOT NULL OF ON OR ORDER ORGANIZATION QUALIFY
    REGEXP REVOKE RIGHT RLIKE ROW ROWS SAMPLE SCHEMA SELECT SET SOME START TABLE TABLESAMPLE
    THEN TO TRIGGER TRUE TRY_CAST UNION UNIQUE UPDATE USING VALUES VIEW WHEN WHENEVER WHERE
    WITH""".split())


def warehouse_schema(table: str, format: str, passthrough: str | pa.Schema = "",
                     keep_text: bool = True, name: str | None = None,
                     model: str | None = None) -> str:
    """The schema of ``table`` as ``format`` writes it: a JSON document or SQL DDL.

    ``passthrough`` is the input's own columns (a schema, or ``"title:string,year:int64"``),
    which the documents table carries after ``doc_id``; ``name`` is the table name of the DDL;
    ``model``: the run's ``--model`` (one tagging model when None), whose columns the
    documents table holds.
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown schema format {format!r}", fix=f"use one of {FORMATS}")
    if name is not None and format not in ("snowflake", "duckdb"):
        raise ConfigError(f"--name names the table of a CREATE TABLE statement; {format} "
                          "schemas hold no table name", fix="drop --name, or use --format "
                          "snowflake or duckdb")
    if isinstance(passthrough, str):
        passthrough = parse_columns(passthrough)
    arrow = table_schema(table, passthrough, keep_text, model)
    if format == "bigquery":
        return json.dumps(bigquery_schema(arrow), indent=2)
    if format == "iceberg":
        return json.dumps(iceberg_schema(arrow), indent=2)
    if format == "arrow":
        return arrow_text(arrow)
    sql = snowflake_ddl if format == "snowflake" else duckdb_ddl
    return sql(arrow, table, name or table)


def table_schema(table: str, passthrough: pa.Schema | None = None,
                 keep_text: bool = True, model: str | None = None) -> pa.Schema:
    """The declared Arrow schema of a landed table."""
    if table not in TABLES:
        raise ConfigError(f"unknown table {table!r}", fix=f"use one of {TABLES}")
    passthrough = passthrough if passthrough is not None else pa.schema([])
    if table != "documents":
        if len(passthrough) or not keep_text or model:
            raise ConfigError(f"passthrough columns, --no-text and --model shape the documents "
                              f"table, not {table}", fix="drop --passthrough, --no-text and "
                              "--model")
        return FIXED[table]
    outputs = None
    if model:
        from seqlab.config import build_config  # the models' own settings decide the columns
        from seqlab.run.models import plan_models

        outputs = [f for m in plan_models(build_config(input="", output="", model=model))
                   for f in m.fields]
    check_passthrough(passthrough.names, [f.name for f in outputs or []])
    landed = documents_schema(passthrough, keep_text, outputs)
    return pa.schema([f.with_type(_landed_type(f.type)) for f in landed])


def _landed_type(type_: pa.DataType) -> pa.DataType:
    """A passthrough type as Parquet gives it back: list elements are named ``element``
    (Parquet's 3-level lists), where ``pa.list_`` names them ``item``."""
    if pa.types.is_list(type_):
        value = type_.value_field
        return pa.list_(value.with_name("element").with_type(_landed_type(value.type)))
    if pa.types.is_struct(type_):
        return pa.struct([f.with_type(_landed_type(f.type)) for f in type_])
    return type_


def arrow_text(schema: pa.Schema) -> str:
    """The Arrow schema in pyarrow's text form, nested types in full."""
    return schema.to_string(show_field_metadata=False, show_schema_metadata=False,
                            element_size_limit=1 << 30)


def bigquery_schema(schema: pa.Schema) -> list[dict[str, Any]]:
    """The JSON schema file of ``bq load --schema``: lists are REPEATED fields, structs
    RECORDs (Parquet lists load so with ``--parquet_enable_list_inference=true``)."""
    return [_bigquery_field(field, field.name) for field in schema]


def _bigquery_field(field: pa.Field, path: str) -> dict[str, Any]:
    type_, mode = field.type, "NULLABLE" if field.nullable else "REQUIRED"
    if _is_list(type_):
        # a null list loads as an empty array: REPEATED has no null
        type_, mode = type_.value_type, "REPEATED"
        if _is_list(type_):
            raise ConfigError(f"column {path} is a list of lists, which BigQuery cannot hold",
                              fix="wrap the inner list in a struct, or drop the column")
    if pa.types.is_struct(type_):
        return {"name": field.name, "type": "RECORD", "mode": mode,
                "fields": [_bigquery_field(f, f"{path}.{f.name}") for f in type_]}
    return {"name": field.name, "type": primitive(type_, "bigquery", path), "mode": mode}


def iceberg_schema(schema: pa.Schema) -> dict[str, Any]:
    """The Iceberg table schema (spec v2) as its JSON form, with field ids numbered as Iceberg
    numbers a new table's: a struct's fields first, then what they hold, depth first."""
    ids = itertools.count(1)
    return {"type": "struct", "schema-id": 0, "fields": _iceberg_fields(list(schema), ids, "")}


def _iceberg_fields(fields: list[pa.Field], ids: Iterator[int], path: str) -> list[dict]:
    numbered = [(next(ids), field) for field in fields]
    return [{"id": id_, "name": field.name, "required": not field.nullable,
             "type": _iceberg_type(field.type, ids, path + field.name)}
            for id_, field in numbered]


def _iceberg_type(type_: pa.DataType, ids: Iterator[int], path: str) -> Any:
    if _is_list(type_):
        element_id = next(ids)
        return {"type": "list", "element-id": element_id,
                "element": _iceberg_type(type_.value_type, ids, path + "[]"),
                "element-required": not type_.value_field.nullable}
    if pa.types.is_struct(type_):
        return {"type": "struct", "fields": _iceberg_fields(list(type_), ids, path + ".")}
    return primitive(type_, "iceberg", path)


def snowflake_ddl(schema: pa.Schema, table: str, name: str) -> str:
    """``CREATE TABLE`` for Snowflake. Parquet lists load as ARRAY and structs as OBJECT,
    semi-structured columns whose values are VARIANTs; a comment gives their shape."""
    columns = []
    for field in schema:
        shape = _snowflake_shape(field.type, field.name)
        type_ = ("ARRAY" if _is_list(field.type) else
                 "OBJECT" if pa.types.is_struct(field.type) else shape)
        column = f"{_snowflake_name(field.name)} {type_}"
        columns.append((column + ("" if field.nullable else " NOT NULL"),
                        shape if shape != type_ else None))
    table_name = ".".join(_snowflake_name(part) for part in name.split("."))
    header = [
        f"-- seqlab {table} table (schema version {SCHEMA_VERSION}), generated from its "
        "declared Arrow schema.",
        f"-- Load: COPY INTO {table_name} FROM @STAGE/OUT/{table}/",
        "--   FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE",
    ]
    if any(comment for _, comment in columns):
        header += ["-- Lists load as ARRAY and structs as OBJECT, semi-structured (their values "
                   "are VARIANT);",
                   "-- query them as e.g. entities[0]:label::VARCHAR or with "
                   "LATERAL FLATTEN(entities)."]
    return _create_table(header, table_name, columns)


def _snowflake_shape(type_: pa.DataType, path: str) -> str:
    if _is_list(type_):
        return f"ARRAY of {_snowflake_shape(type_.value_type, path + '[]')}"
    if pa.types.is_struct(type_):
        inner = ", ".join(f"{f.name} {_snowflake_shape(f.type, f'{path}.{f.name}')}"
                          for f in type_)
        return f"OBJECT({inner})"
    return primitive(type_, "snowflake", path)


def _snowflake_name(name: str) -> str:
    """An identifier as is when Snowflake takes it unquoted (it then folds it to upper case,
    which ``MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE`` matches), else quoted.

    >>> _snowflake_name("doc_id"), _snowflake_name("order"), _snowflake_name("Page Title")
    ('doc_id', '"order"', '"Page Title"')
    """
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", name) and name.upper() not in SNOWFLAKE_RESERVED:
        return name
    return _quoted(name)


def duckdb_ddl(schema: pa.Schema, table: str, name: str) -> str:
    """``CREATE TABLE`` for DuckDB with its nested types: ``STRUCT(...)`` and ``T[]``."""
    columns = [(f"{_quoted(f.name)} {_duckdb_type(f.type, f.name)}"
                + ("" if f.nullable else " NOT NULL"), None) for f in schema]
    table_name = ".".join(_quoted(part) for part in name.split("."))
    header = [
        f"-- seqlab {table} table (schema version {SCHEMA_VERSION}), generated from its "
        "declared Arrow schema.",
        f"-- Load: INSERT INTO {table_name} BY NAME SELECT * FROM "
        f"read_parquet('OUT/{table}/*.parquet')",
    ]
    return _create_table(header, table_name, columns)


def _duckdb_type(type_: pa.DataType, path: str) -> str:
    if _is_list(type_):
        return f"{_duckdb_type(type_.value_type, path + '[]')}[]"
    if pa.types.is_struct(type_):
        inner = ", ".join(f"{_quoted(f.name)} {_duckdb_type(f.type, f'{path}.{f.name}')}"
                          for f in type_)
        return f"STRUCT({inner})"
    return primitive(type_, "duckdb", path)


def _create_table(header: list[str], name: str, columns: list[tuple[str, str | None]]) -> str:
    lines = [*header, f"CREATE TABLE {name} ("]
    for i, (column, comment) in enumerate(columns):
        line = f"    {column}{',' if i < len(columns) - 1 else ''}"
        lines.append(f"{line}  -- {comment}" if comment else line)
    return "\n".join([*lines, ");"])


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _is_list(type_: pa.DataType) -> bool:
    return (pa.types.is_list(type_) or pa.types.is_large_list(type_)
            or pa.types.is_fixed_size_list(type_))


def primitive(type_: pa.DataType, format: str, path: str) -> str:
    """The name of a non-nested Arrow type in a format.

    >>> primitive(pa.timestamp("us", tz="UTC"), "snowflake", "processed_at")
    'TIMESTAMP_LTZ'
    """
    for test, names in PRIMITIVES:
        if test(type_):
            name = names[format]
            return name(type_) if callable(name) else name
    raise ConfigError(f"column {path} has type {type_}, which has no {format} type here",
                      fix="cast the column in the input to a string, integer, float, boolean, "
                      "binary, date, time, timestamp or decimal type (or lists and structs of "
                      "them)")


def parse_columns(text: str) -> pa.Schema:
    """Passthrough columns written ``name:type,...`` with Arrow type names, as a schema.

    >>> parse_columns("title:string, year:int64, tags:list<string>").types
    [DataType(string), DataType(int64), ListType(list<item: string>)]
    """
    fields = []
    for item in _split(text):
        name, colon, type_text = item.partition(":")
        if not colon or not name.strip():
            raise ConfigError(f"passthrough column {item!r} is not NAME:TYPE",
                              fix="write them as 'title:string,year:int64'")
        fields.append(pa.field(name.strip(), parse_type(type_text)))
    return pa.schema(fields)


def parse_type(text: str) -> pa.DataType:
    """An Arrow type from its name as pyarrow prints it (``list<item: string>`` and
    ``list<string>`` alike).

    >>> parse_type("struct<a: int32 not null, b: timestamp[us, tz=UTC]>")
    StructType(struct<a: int32 not null, b: timestamp[us, tz=UTC]>)
    """
    text = text.strip()
    nested = re.fullmatch(r"(\w+)\s*<(.*)>", text, re.DOTALL)
    if nested and nested[1] in ("list", "large_list"):
        field = _parse_field(nested[2], default_name="item")
        return pa.list_(field) if nested[1] == "list" else pa.large_list(field)
    if nested and nested[1] == "struct":
        return pa.struct([_parse_field(part) for part in _split(nested[2])])
    if nested and nested[1] == "map" and len(parts := _split(nested[2])) == 2:
        # parsed to be refused by name: warehouses do not load maps (schema.warehouse_type)
        return pa.map_(parse_type(parts[0]), parse_type(parts[1]))
    if match := re.fullmatch(r"timestamp\[(\w+),\s*tz=([^\]]+)\]", text):
        return pa.timestamp(match[1], tz=match[2].strip())
    if match := re.fullmatch(r"decimal(128|256)?\((\d+),\s*(-?\d+)\)", text):
        make = pa.decimal256 if match[1] == "256" else pa.decimal128
        return make(int(match[2]), int(match[3]))
    if match := re.fullmatch(r"fixed_size_binary\[(\d+)\]", text):
        return pa.binary(int(match[1]))
    try:
        return pa.type_for_alias(text)
    except ValueError:
        raise ConfigError(f"unknown Arrow type {text!r}",
                          fix="use an Arrow type name such as string, int64, float64, bool, "
                          "date32, timestamp[us, tz=UTC], decimal128(10, 2), list<string> or "
                          "struct<a: int64, b: string>") from None


def _parse_field(text: str, default_name: str | None = None) -> pa.Field:
    text = text.strip()
    nullable = not text.endswith(" not null")
    text = text.removesuffix(" not null")
    named = re.fullmatch(r"([^:<>()\[\],]+?)\s*:\s*(.+)", text, re.DOTALL)
    if named:
        return pa.field(named[1].strip(), parse_type(named[2]), nullable=nullable)
    if default_name is None:
        raise ConfigError(f"struct field {text!r} is not NAME: TYPE",
                          fix="write structs as struct<a: int64, b: string>")
    return pa.field(default_name, parse_type(text), nullable=nullable)


def _split(text: str) -> list[str]:
    """Split at the commas outside brackets, dropping empty items.

    >>> _split("a:int64, b:struct<x: int8, y: int8>, c:timestamp[us, tz=UTC]")
    ['a:int64', 'b:struct<x: int8, y: int8>', 'c:timestamp[us, tz=UTC]']
    """
    items, depth, start = [], 0, 0
    for i, char in enumerate(text + ","):
        depth += (char in "<([") - (char in ">)]")
        if char == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    return [item for item in items if item]
