"""seqlab.run.read and seqlab.run.sources: finding input files, reading them in the reader
schema, bad rows and bad files."""

import uuid

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqlab import schema
from seqlab.errors import InputError
from seqlab.run.read import Reader
from seqlab.run.sources import FragmentError, discover
from tests.seqlab import rows, truncate, write_parquet


@pytest.fixture
def memory_root():
    """A fresh folder on fsspec's in-memory filesystem, removed afterwards."""
    fs = fsspec.filesystem("memory")
    root = f"/seqlab-io-{uuid.uuid4().hex[:8]}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def put(fs, path: str, data: bytes) -> None:
    with fs.open(path, "wb") as handle:
        handle.write(data)


def parquet_bytes(records: list[dict]) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(records), sink)
    return sink.getvalue().to_pybytes()


def read_all(reader: Reader, index: int = 0) -> list[dict]:
    return [r for batch in reader.read(reader.fragments[index]) for r in batch.to_pylist()]


def test_discover_a_directory_skips_markers_and_hidden_files(memory_root):
    fs, root = memory_root
    for name in ("b.jsonl", "sub/a.parquet", "c.ndjson.gz", "_SUCCESS", "_part.parquet",
                 ".hidden.jsonl", "sub/.tmp.parquet", "notes.txt"):
        put(fs, f"{root}/{name}", b"")
    _, fragments = discover(f"memory://{root}/")
    assert [(f.index, f.name, f.format) for f in fragments] == [
        (0, "b.jsonl", "jsonl"), (1, "c.ndjson.gz", "jsonl"), (2, "sub/a.parquet", "parquet")]
    assert fragments[2].path == f"{root}/sub/a.parquet"


def test_discover_skips_files_inside_marker_and_hidden_folders(memory_root):
    fs, root = memory_root
    for name in ("part-0.parquet", "_temporary/0/task_1/part-0.parquet",
                 ".spark-staging/part-1.parquet", "_delta_log/00000000000000000000.json"):
        put(fs, f"{root}/{name}", b"")
    _, fragments = discover(f"memory://{root}")
    assert [f.name for f in fragments] == ["part-0.parquet"]


def test_discover_a_glob_names_files_relative_to_its_folder(memory_root):
    fs, root = memory_root
    for name in ("x/one.jsonl", "x/two.jsonl", "x/three.parquet", "x/_four.jsonl"):
        put(fs, f"{root}/{name}", b"")
    _, fragments = discover(f"memory://{root}/x/*.jsonl")
    assert [f.name for f in fragments] == ["one.jsonl", "two.jsonl"]


@pytest.mark.parametrize("names", [[], ["_SUCCESS", ".keep.parquet", "readme.md"]])
def test_discover_refuses_an_input_without_data_files(memory_root, names):
    fs, root = memory_root
    fs.makedirs(root, exist_ok=True)
    for name in names:
        put(fs, f"{root}/{name}", b"x")
    with pytest.raises(InputError, match="no Parquet or JSON Lines files"):
        discover(f"memory://{root}")
    with pytest.raises(InputError, match="does not exist"):
        discover(f"memory://{root}/missing.parquet")


def test_ids_default_to_file_and_row_across_batches(memory_root):
    fs, root = memory_root
    put(fs, f"{root}/in/sub/docs.jsonl", b"".join(
        b'{"text": "the city %d"}\n' % i for i in range(5)))
    fs_, fragments = discover(f"memory://{root}/in")
    reader = Reader(fs_, fragments, batch_rows=2)
    batches = list(reader.read(fragments[0]))
    assert [b.num_rows for b in batches] == [2, 2, 1]
    ids = [r["doc_id"] for b in batches for r in b.to_pylist()]
    assert ids == [f"sub/docs.jsonl:{i}" for i in range(5)]


def test_a_null_id_falls_back_to_file_and_row(memory_root):
    fs, root = memory_root
    put(fs, f"{root}/a.jsonl", b'{"id": 7, "text": "x"}\n{"id": null, "text": "y"}\n')
    fs_, fragments = discover(f"memory://{root}/a.jsonl")
    docs = read_all(Reader(fs_, fragments, id_column="id"))
    assert [d["doc_id"] for d in docs] == ["7", "a.jsonl:1"]
    assert "id" not in docs[0]  # the id column is the doc_id, not a passthrough column


def test_jsonl_bad_lines_become_rows_that_say_why(memory_root):
    fs, root = memory_root
    lines = [b'{"text": "the bank", "n": 1}', b'{"text": "broken', b"", b"[1, 2]",
             b'{"text": "caf\xe9", "n": 2}', b'{"text": 42, "n": 3}', b'{"text": "ok", "n": 4}']
    put(fs, f"{root}/a.jsonl", b"\n".join(lines) + b"\n")
    fs_, fragments = discover(f"memory://{root}/a.jsonl")
    docs = read_all(Reader(fs_, fragments))
    assert [(d["doc_id"], d["status"]) for d in docs] == [
        ("a.jsonl:0", schema.OK), ("a.jsonl:1", schema.BAD_RECORD),
        ("a.jsonl:2", schema.BAD_RECORD), ("a.jsonl:3", schema.BAD_ENCODING),
        ("a.jsonl:4", schema.BAD_TYPE), ("a.jsonl:5", schema.OK)]
    errors = [d["error"] for d in docs]
    assert errors[0] is None and errors[5] is None
    assert "line 2 is not valid JSON" in errors[1]
    assert "line is JSON list, expected an object" in errors[2]
    assert "line 5 is not valid UTF-8" in errors[3]
    assert "text is int" in errors[4]
    assert [d["text"] for d in docs] == ["the bank", None, None, None, None, "ok"]
    assert [d["n"] for d in docs] == [1, None, None, None, 3, 4]


def test_a_passthrough_value_that_does_not_fit_fails_only_its_row(tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", rows(2))  # year: int64
    write_parquet(tmp_path / "in" / "b.parquet",
                  [{"id": "b0", "title": "t", "year": "1950", "text": "the city"},
                   {"id": "b1", "title": "t", "year": "circa 1900", "text": "the bank"},
                   {"id": "b2", "title": "t", "year": None, "text": "the war"}])
    fs, fragments = discover(str(tmp_path / "in"))
    reader = Reader(fs, fragments, id_column="id")
    assert reader.passthrough.field("year").type == pa.int64()
    docs = read_all(reader, 1)
    assert [(d["doc_id"], d["status"], d["year"]) for d in docs] == [
        ("b0", schema.OK, 1950), ("b1", schema.BAD_RECORD, None), ("b2", schema.OK, None)]
    assert "'year'" in docs[1]["error"] and "'circa 1900'" in docs[1]["error"]
    assert docs[0]["error"] is None and docs[2]["error"] is None
    assert docs[1]["title"] == "t" and docs[1]["text"] is None


def test_a_truncated_parquet_file_fails_as_a_fragment(tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", rows(3))
    truncate(write_parquet(tmp_path / "in" / "b.parquet", rows(40), row_group_size=8))
    fs, fragments = discover(str(tmp_path / "in"))
    reader = Reader(fs, fragments, id_column="id")
    with pytest.raises(FragmentError, match="b.parquet"):
        list(reader.read(fragments[1]))
    assert reader.count_rows(fragments[1]) is None
    assert reader.count_rows(fragments[0]) == 3
    assert reader.count_rows(discover(str(tmp_path / "in" / "a.parquet"))[1][0]) == 3


def test_passthrough_schema_comes_from_the_first_readable_file(tmp_path):
    truncate(write_parquet(tmp_path / "in" / "a.parquet", rows(40)))
    write_parquet(tmp_path / "in" / "b.parquet", rows(2))
    fs, fragments = discover(str(tmp_path / "in"))
    reader = Reader(fs, fragments, id_column="id")
    assert reader.passthrough.names == ["title", "year"]
    assert [d["doc_id"] for d in read_all(reader, 1)] == ["d0", "d1"]
    truncate(tmp_path / "in" / "b.parquet")
    with pytest.raises(InputError, match="cannot read"):
        Reader(fs, fragments, id_column="id")


def test_read_stops_at_the_limit_inside_a_batch(tmp_path):
    write_parquet(tmp_path / "a.parquet", rows(10))
    fs, fragments = discover(str(tmp_path / "a.parquet"))
    reader = Reader(fs, fragments, id_column="id", batch_rows=4)
    assert [b.num_rows for b in reader.read(fragments[0], limit=6)] == [4, 2]
    assert list(reader.read(fragments[0], limit=0)) == []


def test_a_parquet_file_with_a_corrupt_page_fails_as_a_fragment(tmp_path):
    path = write_parquet(tmp_path / "a.parquet", rows(40), row_group_size=8)
    page = pq.ParquetFile(path).metadata.row_group(3).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    data[page + 20: page + 60] = b"\xab" * 40  # the footer is intact: the file opens
    path.write_bytes(bytes(data))
    fs, fragments = discover(str(path))
    reader = Reader(fs, fragments, id_column="id", batch_rows=8)
    assert reader.count_rows(fragments[0]) == 40
    with pytest.raises(FragmentError, match="after 24 rows"):
        list(reader.read(fragments[0]))
