"""Reading an output directory back, for assertions shared by the engine tests."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

VOLATILE = ["run_id", "processed_at"]


def read_output(out: Path | str) -> dict[str, pa.Table]:
    out = Path(out)
    tables = {name: pq.read_table(out / name) for name in ("documents", "mentions", "aggregates")}
    return {
        "documents": tables["documents"].sort_by("doc_id"),
        "mentions": tables["mentions"].sort_by([("doc_id", "ascending"),
                                                ("start_char", "ascending")]),
        "aggregates": tables["aggregates"].sort_by([("label", "ascending"),
                                                    ("text", "ascending")]),
        "manifest": json.loads((out / "_manifest.json").read_text()),
    }


def comparable(tables: dict) -> dict[str, list[dict]]:
    """Rows of each table without the columns that differ from run to run."""
    return {
        name: tables[name].drop_columns([c for c in VOLATILE if c in tables[name].column_names])
        .to_pylist()
        for name in ("documents", "mentions", "aggregates")
    }
