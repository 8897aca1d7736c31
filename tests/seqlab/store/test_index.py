"""The table index: versions written whole, read back as they were, old ones removed."""

from __future__ import annotations

import pytest

from seqlab.errors import OutputError
from seqlab.store.index import (
    CURRENT,
    Entry,
    Span,
    TableIndex,
    compare,
    read_index,
    read_version,
    write_index,
)
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


def test_compare_follows_rows_not_paths_and_names_what_differs():
    index, folded = an_index(), an_index()
    written = {"documents/a0.parquet", "documents/a1.parquet", "mentions/a0.parquet",
               "documents/old.parquet"}
    assert compare(index, folded, written) == []
    # a compaction moves a's documents rows into one file shared with another input
    index.drop("a.parquet")
    index.files["documents/c.parquet"] = ("documents", part("documents/c.parquet", 9))
    index.files["mentions/a0.parquet"] = ("mentions", part("mentions/a0.parquet", 7))
    index.inputs["a.parquet"] = Entry("a.parquet", (10, "v1"), "R1", "k1", [
        Span("documents/c.parquet", 4, 5), Span("mentions/a0.parquet", 0, 7)])
    assert compare(index, folded, written) == []
    index.inputs["a.parquet"].spans[0] = Span("documents/c.parquet", 4, 3)
    index.files["documents/old.parquet"] = ("documents", part("documents/old.parquet", 1))
    index.add_file("mentions", part("mentions/stray-empty.parquet", 0))
    del index.inputs["empty.parquet"]
    assert compare(index, folded, written) == [
        ("a.parquet", "the index has rows {'documents': 3, 'mentions': 7}, the run "
         "manifests {'documents': 5, 'mentions': 7}"),
        ("empty.parquet", "input held by the run manifests, not by the index"),
        ("documents/old.parquet", "live in the index, but superseded or pruned by the run "
         "manifests"),
        ("mentions/stray-empty.parquet", "a file of no input in only one of the index and "
         "the run manifests")]


def test_the_last_run_and_the_versions_before_read_back(tmp_path):
    out = OutputDir(str(tmp_path))
    index = an_index()
    index.last_run = "R1"
    index.version = write_index(out, index, "R1")
    index.add(Entry("b.parquet", (3, "v1"), "R2", "k1"), {"documents": [part("documents/b", 3)]})
    index.last_run = "R2"
    write_index(out, index, "R2")
    assert read_index(out).last_run == "R2" and read_index(out).version == 2
    before = read_version(out, 1)
    assert "b.parquet" not in before.inputs and set(before.inputs) == {"a.parquet",
                                                                       "empty.parquet"}
    with pytest.raises(OutputError, match="v-0000000007.parquet, the version of the index") \
            as caught:
        read_version(out, 7)
    assert "remove _progress/" in caught.value.fix
