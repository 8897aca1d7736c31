"""The table index: versions written whole, read back as they were, old ones removed."""

from __future__ import annotations

import pytest

from seqlab.errors import OutputError
from seqlab.store.index import CURRENT, Entry, Span, TableIndex, read_index, write_index
from seqlab.store.outdir import OutputDir
from seqlab.store.parts import PartInfo


def part(path: str, rows: int) -> PartInfo:
    return PartInfo(path, rows, 100 + rows, f"sha-{path}")


def an_index() -> TableIndex:
    index = TableIndex()
    index.add(Entry("a.parquet", (10, "v1"), "R1", "k1"),
              {"documents": [part("documents/a0.parquet", 3), part("documents/a1.parquet", 2)],
               "mentions": [part("mentions/a0.parquet", 7)]})
    index.add(Entry("empty.parquet", (0, "v1"), "R1", "k1"), {})
    index.add_file("frames", part("frames/part-R1-empty.parquet", 0))
    return index


def test_an_index_reads_back_as_it_was_written(tmp_path):
    out = OutputDir(str(tmp_path))
    assert read_index(out) is None
    assert write_index(out, an_index(), "R1") == 1
    back = read_index(out)
    assert back.version == 1
    assert back.inputs["a.parquet"].files == ["documents/a0.parquet", "documents/a1.parquet",
                                              "mentions/a0.parquet"]
    assert back.inputs["a.parquet"].identity == (10, "v1")
    assert back.inputs["empty.parquet"].spans == []
    assert back.files["frames/part-R1-empty.parquet"][0] == "frames"
    assert back.files["documents/a1.parquet"][1] == part("documents/a1.parquet", 2)
    assert back.holds("frames") and not back.holds("aggregates")


def test_dropping_an_input_frees_only_the_files_it_does_not_share():
    index = an_index()
    index.files["documents/c.parquet"] = ("documents", part("documents/c.parquet", 5))
    index.inputs["x"] = Entry("x", (1, "v"), "R2", "k1", [Span("documents/c.parquet", 0, 2)])
    index.inputs["y"] = Entry("y", (1, "v"), "R2", "k1", [Span("documents/c.parquet", 2, 3)])
    assert index.drop("x") == []  # c.parquet still holds y's rows
    assert index.drop("a.parquet") == ["documents/a0.parquet", "documents/a1.parquet",
                                       "mentions/a0.parquet"]
    assert "documents/a0.parquet" not in index.files and "documents/c.parquet" in index.files


def test_only_the_current_version_and_the_one_before_stay(tmp_path):
    out = OutputDir(str(tmp_path))
    index = an_index()
    for _ in range(4):
        index.version = write_index(out, index, "R1")
    assert sorted(p.name for p in (tmp_path / "_index").glob("v-*")) == [
        "v-0000000003.parquet", "v-0000000004.parquet"]
    assert read_index(out).version == 4


def test_a_missing_version_file_names_the_fix(tmp_path):
    out = OutputDir(str(tmp_path))
    write_index(out, an_index(), "R1")
    (tmp_path / "_index" / "v-0000000001.parquet").unlink()
    with pytest.raises(OutputError, match=CURRENT):
        read_index(out)
