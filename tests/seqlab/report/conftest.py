"""A real run of three models (``--model ner=...,upos=...,srl=...``) over a small corpus with
long documents and bad rows, shared by the show and report tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.conftest import BAD_ROWS, make_corpus
from tests.tiny import build_tiny_srl


@pytest.fixture(scope="session")
def srl_model(tmp_path_factory) -> Path:
    return build_tiny_srl(tmp_path_factory.mktemp("models") / "srl")


@pytest.fixture(scope="session")
def several_out(tmp_path_factory, ner_model, pos_model, srl_model) -> Path:
    from seqlab import annotate

    tmp = tmp_path_factory.mktemp("several")
    pq.write_table(pa.Table.from_pylist(make_corpus(30) + BAD_ROWS), tmp / "corpus.parquet",
                   row_group_size=8)
    annotate(str(tmp / "corpus.parquet"), str(tmp / "out"),
             model=f"ner={ner_model},upos={pos_model},srl={srl_model}", id_column="id",
             max_length=64, stride=16, rows_per_part=12, device="cpu")
    return tmp / "out"


def without_arguments(frame: dict) -> bool:
    """Every third frame of the tables that ``bare_out`` leaves without arguments."""
    return frame["frame"] % 3 == 1


@pytest.fixture(scope="session")
def bare_out(several_out, tmp_path_factory) -> Path:
    """``several_out`` with every third frame's arguments taken away, in the frames table and
    in the documents' frames alike: the shape of a real role labeller's output, where a
    predicate such as an auxiliary (was, is) often gets no argument."""
    out = tmp_path_factory.mktemp("bare") / "out"
    shutil.copytree(several_out, out)
    manifest = json.loads((out / "_manifest.json").read_text())
    for part in manifest["tables"]["frames"]:
        table = pq.read_table(out / part["path"])
        frames = [{**f, "arguments": [] if without_arguments(f) else f["arguments"]}
                  for f in table.to_pylist()]
        pq.write_table(pa.Table.from_pylist(frames, schema=table.schema), out / part["path"])
    for part in manifest["tables"]["documents"]:
        table = pq.read_table(out / part["path"])
        column = [[{**f, "arguments": [] if without_arguments(f) else f["arguments"]}
                   for f in frames] if frames is not None else None
                  for frames in table.column("srl_frames").to_pylist()]
        index = table.schema.get_field_index("srl_frames")
        table = table.set_column(index, table.schema.field(index),
                                 pa.array(column, table.schema.field(index).type))
        pq.write_table(table, out / part["path"])
    arguments = pc.list_value_length(pq.read_table(out / "frames").column("arguments"))
    assert pc.sum(pc.equal(arguments, 0)).as_py() > 0
    return out
