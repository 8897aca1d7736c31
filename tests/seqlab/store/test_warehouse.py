"""Every warehouse schema checked against the Parquet a run really landed: the Arrow schema
read back, DuckDB loading the parts into the DDL's table, BigQuery's and Snowflake's types
derived from the Parquet schema itself, and pyiceberg's own conversion."""

from __future__ import annotations

import datetime
import decimal
import json
import re
import subprocess
import sys
from argparse import SUPPRESS
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import seqlab
from seqlab.cli import main as cli
from seqlab.cli import tables as tables_cli
from seqlab.errors import ConfigError
from seqlab.store.warehouse import (
    FORMATS,
    TABLES,
    arrow_text,
    parse_columns,
    parse_type,
    warehouse_schema,
)
from tests.tiny import build_tiny_srl


@dataclass
class Run:
    out: Path
    passthrough: str | pa.Schema
    keep_text: bool
    model: str | None = None  # --model of a run of several models

    @property
    def tables(self) -> list[str]:
        return [table for table in TABLES if (self.out / table).exists()]

    def parts(self, table: str) -> list[Path]:
        return sorted((self.out / table).glob("*.parquet"))

    def schema(self, table: str, format: str, **kwargs) -> str:
        documents = table == "documents"
        return warehouse_schema(table, format, self.passthrough if documents else "",
                                self.keep_text or not documents, model=self.model
                                if documents else None, **kwargs)


def annotate(input: Path, out: Path, model: Path, **options) -> None:
    seqlab.annotate(str(input), str(out), model=str(model), id_column="id", max_length=64,
                    stride=16, **options)


@pytest.fixture
def plain(corpus_parquet, ner_model, tmp_path) -> Run:
    """The test corpus: passthrough title:string, year:int64."""
    annotate(corpus_parquet, tmp_path / "out", ner_model)
    return Run(tmp_path / "out", "title:string,year:int64", True)


@pytest.fixture
def exotic(corpus_rows, ner_model, tmp_path) -> Run:
    """Passthrough columns of every kind a warehouse converts or takes as is, --drop-text."""
    rows = corpus_rows[:6]
    n = len(rows)
    table = pa.table({
        "id": [row["id"] for row in rows], "text": [row["text"] for row in rows],
        "views": pa.array(range(n), pa.uint32()),
        "lang": pa.array(["en"] * n).dictionary_encode(),
        "seen": pa.array([datetime.datetime(2024, 1, 1)] * n, pa.timestamp("ns")),
        "day": pa.array([datetime.date(2024, 1, 1)] * n, pa.date32()),
        "price": pa.array([decimal.Decimal("1.25")] * n, pa.decimal128(12, 2)),
        "tags": pa.array([["a", "b"]] * n, pa.large_list(pa.large_string())),
        "meta": pa.array([{"a": 1, "b": 2.0}] * n,
                         pa.struct([("a", pa.int8()), ("b", pa.float32())])),
        "blob": pa.array([b"\x00"] * n, pa.binary()),
        "flag": pa.array([True] * n),
    })
    pq.write_table(table, tmp_path / "exotic.parquet")
    annotate(tmp_path / "exotic.parquet", tmp_path / "out", ner_model, keep_text=False)
    passthrough = pa.schema([f for f in table.schema if f.name not in ("id", "text")])
    return Run(tmp_path / "out", passthrough, False)


@pytest.fixture
def framed(corpus_parquet, ner_model, tmp_path) -> Run:
    """A run of an NER model and an SRL model: their columns in documents, and frames."""
    srl = build_tiny_srl(tmp_path / "srl")
    model = f"{ner_model},{srl}"
    seqlab.annotate(str(corpus_parquet), str(tmp_path / "out"), model=model, id_column="id",
                    max_length=64, stride=16)
    return Run(tmp_path / "out", "title:string,year:int64", True, model)


RUNS = ["plain", "exotic", "framed"]


@pytest.mark.parametrize("run", RUNS)
def test_arrow_is_the_landed_schema(run, request):
    run = request.getfixturevalue(run)
    for table in run.tables:
        landed = pq.read_schema(run.parts(table)[0]).remove_metadata()
        assert run.schema(table, "arrow") == arrow_text(landed)


def test_arrow_of_passthrough_written_out(plain):
    """--passthrough in Arrow's names gives what the input's own schema gives."""
    schema = pa.schema([("title", pa.large_string()), ("tags", pa.list_(pa.string())),
                        ("when", pa.timestamp("ms", tz="UTC"))])
    written = "title:large_string, tags:list<string>, when:timestamp[ms, tz=UTC]"
    assert warehouse_schema("documents", "arrow", written) == \
        warehouse_schema("documents", "arrow", schema)


@pytest.mark.parametrize("run", RUNS)
def test_duckdb_loads_the_parts_into_its_table(run, request):
    duckdb = pytest.importorskip("duckdb")
    run = request.getfixturevalue(run)
    con = duckdb.connect()
    for table in run.tables:
        con.execute(run.schema(table, "duckdb", name=f"main.t_{table}"))
        parts = f"read_parquet('{run.out}/{table}/*.parquet')"
        con.execute(f"INSERT INTO t_{table} SELECT * FROM {parts}")
        rows = sum(pq.ParquetFile(part).metadata.num_rows for part in run.parts(table))
        assert con.execute(f"SELECT count(*) FROM t_{table}").fetchone() == (rows,)
        assert rows > 0
        declared = con.execute(f"DESCRIBE t_{table}").fetchall()
        read = con.execute(f"DESCRIBE SELECT * FROM {parts}").fetchall()
        assert [c[:2] for c in declared] == [c[:2] for c in read]
        landed = pq.read_schema(run.parts(table)[0])
        assert [c[2] == "YES" for c in declared] == [f.nullable for f in landed]


# Parquet's own schema (what the warehouses read), parsed from pyarrow's print of it
PARQUET_LINE = re.compile(r"\s*(required|optional|repeated) (\S+) field_id=-?\d+ (\S+)"
                          r"(?: \((.*)\))?(?: \{|;)$")


def parquet_columns(path: Path) -> list[dict]:
    root: dict = {"children": []}
    stack = [root]
    for line in str(pq.ParquetFile(path).schema).splitlines()[1:]:
        if line.strip() == "}":
            stack.pop()
            continue
        rep, kind, name, logical = PARQUET_LINE.fullmatch(line).groups()
        node = {"rep": rep, "kind": kind, "name": name, "logical": logical or "",
                "children": []}
        stack[-1]["children"].append(node)
        if line.endswith("{"):
            stack.append(node)
    return root["children"][0]["children"]


def leaf_type(node: dict, names: dict[str, str]) -> str:
    """A Parquet leaf's type by its logical type, else its physical type."""
    logical = node["logical"]
    for prefix in ("String", "Timestamp(isAdjustedToUTC=true", "Timestamp(isAdjustedToUTC=false",
                   "Decimal", "Date", "Time(", "Int("):
        if logical.startswith(prefix):
            name = names[prefix]
            return name.format(*re.findall(r"\d+", logical)) if "{" in name else name
    return names[node["kind"].split("(")[0]]


BIGQUERY_TYPES = {"String": "STRING", "Timestamp(isAdjustedToUTC=true": "TIMESTAMP",
                  "Timestamp(isAdjustedToUTC=false": "DATETIME", "Decimal": "NUMERIC",
                  "Date": "DATE", "Time(": "TIME", "Int(": "INTEGER", "int32": "INTEGER",
                  "int64": "INTEGER", "double": "FLOAT", "float": "FLOAT",
                  "boolean": "BOOLEAN", "binary": "BYTES", "fixed_len_byte_array": "BYTES"}


def bigquery_expected(node: dict) -> dict:
    """What ``bq load --parquet_enable_list_inference=true`` makes of a Parquet column."""
    name, mode = node["name"], {"required": "REQUIRED", "optional": "NULLABLE"}[node["rep"]]
    if node["logical"] == "List":
        (repeated,) = node["children"]
        assert repeated["rep"] == "repeated" and repeated["name"] == "list"
        (node,) = repeated["children"]
        mode = "REPEATED"
    if node["kind"] == "group":
        return {"name": name, "type": "RECORD", "mode": mode,
                "fields": [bigquery_expected(child) for child in node["children"]]}
    return {"name": name, "type": leaf_type(node, BIGQUERY_TYPES), "mode": mode}


@pytest.mark.parametrize("run", RUNS)
def test_bigquery_fields_follow_the_parquet_schema(run, request):
    run = request.getfixturevalue(run)
    for table in run.tables:
        fields = json.loads(run.schema(table, "bigquery"))
        assert fields == [bigquery_expected(c) for c in parquet_columns(run.parts(table)[0])]
    if run.model:
        return
    documents = {f["name"]: f for f in json.loads(run.schema("documents", "bigquery"))}
    tokens = {f["name"]: f for f in documents["tokens"]["fields"]}
    assert documents["tokens"]["mode"] == "REPEATED" and tokens["label"]["mode"] == "REQUIRED"
    assert tokens["top"]["mode"] == "REPEATED" and tokens["top"]["type"] == "RECORD"
    assert documents["doc_id"]["mode"] == "REQUIRED" and documents["error"]["mode"] == "NULLABLE"
    assert documents["processed_at"]["type"] == "TIMESTAMP"


SNOWFLAKE_TYPES = {**BIGQUERY_TYPES, "String": "VARCHAR",
                   "Timestamp(isAdjustedToUTC=true": "TIMESTAMP_LTZ",
                   "Timestamp(isAdjustedToUTC=false": "TIMESTAMP_NTZ",
                   "Decimal": "NUMBER({},{})", "binary": "BINARY",
                   "fixed_len_byte_array": "BINARY"}


def snowflake_columns(ddl: str) -> list[tuple[str, str, bool]]:
    """(name, type, NOT NULL) of each column of a CREATE TABLE, comments dropped."""
    body = re.sub(r"--[^\n]*", "", ddl)
    body = body[body.index("(") + 1:body.rindex(")")]
    columns = []
    for line in filter(None, (line.strip().rstrip(",") for line in body.splitlines())):
        name, type_, *rest = re.fullmatch(r'("[^"]+"|\S+) (\S+)( NOT NULL)?', line).groups()
        columns.append((name.strip('"'), type_, bool(rest[0])))
    return columns


@pytest.mark.parametrize("run", RUNS)
def test_snowflake_columns_follow_the_parquet_schema(run, request):
    run = request.getfixturevalue(run)
    for table in run.tables:
        expected = []
        for node in parquet_columns(run.parts(table)[0]):
            type_ = ("ARRAY" if node["logical"] == "List" else "OBJECT"
                     if node["kind"] == "group" else leaf_type(node, SNOWFLAKE_TYPES))
            expected.append((node["name"], type_, node["rep"] == "required"))
        ddl = run.schema(table, "snowflake", name=f"db.public.{table}")
        assert f"CREATE TABLE db.public.{table} (" in ddl
        assert snowflake_columns(ddl) == expected
    if run.model:
        return
    documents = run.schema("documents", "snowflake")
    assert "tokens ARRAY,  -- ARRAY of OBJECT(text VARCHAR, start_char INTEGER" in documents


@pytest.mark.parametrize("run", RUNS)
def test_iceberg_is_pyiceberg_conversion_of_the_parts(run, request):
    pytest.importorskip("pyiceberg")
    # the conversion pyiceberg's catalogs apply to a pyarrow schema of a new table
    from pyiceberg.io.pyarrow import _ConvertToIcebergWithoutIDs, visit_pyarrow
    from pyiceberg.schema import Schema, assign_fresh_schema_ids

    run = request.getfixturevalue(run)
    for table in run.tables:
        landed = pq.read_schema(run.parts(table)[0])
        theirs = assign_fresh_schema_ids(visit_pyarrow(landed, _ConvertToIcebergWithoutIDs()))
        ours = run.schema(table, "iceberg")
        assert Schema.model_validate_json(ours) == theirs
    if run.model:
        return
    fields = {f["name"]: f for f in json.loads(run.schema("documents", "iceberg"))["fields"]}
    assert fields["processed_at"] == {"id": len(fields), "name": "processed_at",
                                      "required": True, "type": "timestamptz"}
    assert fields["tokens"]["type"]["type"] == "list"
    assert fields["tokens"]["type"]["element-required"] is True


@pytest.mark.parametrize("text", [
    "string", "int64", "date32[day]", "timestamp[us, tz=UTC]", "timestamp[ns]",
    "decimal128(10, 2)", "fixed_size_binary[4]", "list<item: string>",
    "large_list<element: int32 not null>", "struct<a: int32 not null, b: list<item: double>>",
    "map<string, int64>",
])
def test_arrow_type_names_parse_to_their_type(text):
    assert str(parse_type(text)) == text


def test_parse_columns():
    schema = parse_columns("title:string, tags:list<string>, meta:struct<a: int8, b: bool>")
    assert schema.names == ["title", "tags", "meta"]
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("meta").type == pa.struct([("a", pa.int8()), ("b", pa.bool_())])
    assert len(parse_columns("")) == 0


@pytest.mark.parametrize("args, message", [
    (dict(passthrough="title"), "not NAME:TYPE"),
    (dict(passthrough="title:text"), "unknown Arrow type 'text'"),
    (dict(passthrough="m:map<string, int64>"), "map"),
    (dict(passthrough="status:string"), "clash"),
    (dict(passthrough="x:list<list<int64>>", format="bigquery"), "list of lists"),
    (dict(format="iceberg", name="t"), "--name"),
    (dict(table="mentions", passthrough="title:string"), "documents table"),
    (dict(table="mentions", keep_text=False), "documents table"),
    (dict(table="frames", model="ner"), "documents table"),
    (dict(table="words"), "unknown table"),
    (dict(format="parquet"), "unknown schema format"),
])
def test_mistakes_are_refused_with_a_fix(args, message):
    args = {"table": "documents", "format": "duckdb", **args}
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        warehouse_schema(**args)
    assert info.value.fix


def test_names_are_quoted_where_needed():
    ddl = warehouse_schema("documents", "snowflake", "order:int64,Page Title:string",
                           name="db.public.docs")
    assert '"order" INTEGER,' in ddl and '"Page Title" VARCHAR,' in ddl
    assert "CREATE TABLE db.public.docs (" in ddl and "doc_id VARCHAR NOT NULL," in ddl
    ddl = warehouse_schema("documents", "duckdb", 'say "hi":string', name="db.docs")
    assert 'CREATE TABLE "db"."docs" (' in ddl and '"say ""hi""" VARCHAR,' in ddl


def test_cli_prints_the_schema(capsys):
    assert tables_cli.SCHEMA_TABLES == TABLES and tables_cli.SCHEMA_FORMATS == FORMATS
    code = cli.main(["schema", "documents", "--format", "duckdb", "--passthrough",
                     "title:string", "--no-text", "--name", "docs"])
    assert code == 0
    assert capsys.readouterr().out == warehouse_schema(
        "documents", "duckdb", "title:string", keep_text=False, name="docs") + "\n"
    assert cli.main(["schema", "aggregates", "--format", "bigquery", "--no-text"]) == 2
    assert "documents table" in capsys.readouterr().err


def test_schema_help_says_the_defaults_and_imports_no_model_code():
    commands = next(a for a in cli.build_parser()._actions if isinstance(a, cli.Commands))
    parser = commands.choices["schema"]
    for action in parser._actions:
        if action.option_strings and action.default not in (None, False, [], SUPPRESS):
            assert "default" in (action.help or ""), action.option_strings
    probe = ("import sys\nfrom seqlab.cli.main import main\ntry:\n    main(['schema', '--help'])\n"
             "except SystemExit:\n    pass\n"
             "print([m for m in ('torch', 'transformers', 'pyarrow') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


# ------------------------------------------------- the README's queries on an incremental table

README = Path(__file__).resolve().parents[3] / "README.md"


def readme_queries() -> dict[str, str]:
    """The README's SQL examples by their first comment line."""
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(), re.S)
    return {block.splitlines()[0].removeprefix("-- "): block for block in blocks}


@pytest.fixture(scope="module")
def table(tmp_path_factory, ner_model) -> Path:
    """A two-run incremental table: day two adds a file and changes one."""
    from tests.seqlab import rows, write_parquet

    root = tmp_path_factory.mktemp("incremental")
    options = dict(model=str(ner_model), id_column="id", incremental=True,
                   max_length=64, stride=16, batch_tokens=1024, device="cpu")
    write_parquet(root / "in" / "a.parquet", rows(5, "a"))
    write_parquet(root / "in" / "b.parquet", rows(5, "b"))
    seqlab.annotate(str(root / "in"), str(root / "out"), run_date="2026-12-01", **options)
    write_parquet(root / "in" / "b.parquet", rows(3, "b", start=7))
    write_parquet(root / "in" / "c.parquet", rows(4, "c"))
    seqlab.annotate(str(root / "in"), str(root / "out"), run_date="2026-12-02", **options)
    return root / "out"


def query(name: str, out: Path, **replace: str):
    import duckdb

    sql = readme_queries()[name].replace("'OUT/", f"'{out}/")
    for word, value in replace.items():
        sql = sql.replace(word, value)
    return duckdb.sql(sql).fetchall()


def test_the_readme_queries_read_each_current_row_once(table):
    live = pq.read_table(table / "mentions")
    assert live.num_rows > 0
    documents = pq.read_table(table / "documents").column("doc_id").to_pylist()
    assert sorted(documents) == sorted([f"a{i}" for i in range(5)] + ["b7", "b8", "b9"] +
                                       [f"c{i}" for i in range(4)])

    totals = query("totals from the aggregate sums: per run date, and over all runs "
                   "(run_date NULL)", table)
    assert [row[0] for row in totals] == [datetime.date(2026, 12, 1),
                                          datetime.date(2026, 12, 2), None]
    assert totals[-1][1] == live.num_rows == totals[0][1] + totals[1][1]
    assert totals[-1][2] == pytest.approx(sum(live.column("score").to_pylist()))

    top = query("top entities per label over all runs", table)
    per_label: dict[str, list] = {}
    for label, _text, mentions, _, mean in top:
        per_label.setdefault(label, []).append(mentions)
        assert 0 < mean <= 1
    counts = live.group_by("label").aggregate([("label", "count")]).to_pylist()
    assert set(per_label) == {row["label"] for row in counts}
    assert all(m == sorted(m, reverse=True) and len(m) <= 3 for m in per_label.values())

    doc = live.column("doc_id")[0].as_py()
    joined = query("a document's mentions joined to it", table, DOC_ID=doc)
    expected = sorted(r["start_char"] for r in live.to_pylist() if r["doc_id"] == doc)
    assert [row[2] for row in joined] == expected and {row[0] for row in joined} == {doc}
