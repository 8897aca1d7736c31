"""What the incremental-table tests share: a corpus of three input files and its second day."""

from __future__ import annotations

from pathlib import Path

from tests.seqlab import rows, write_jsonl, write_parquet


def first_day(folder: Path) -> Path:
    """Day one: a JSON Lines file, a Parquet file, and one in a subfolder."""
    write_jsonl(folder / "a.jsonl", rows(2, "a"))
    write_parquet(folder / "b.parquet", rows(4, "b"))
    write_parquet(folder / "keep" / "k.parquet", rows(3, "k"))
    return folder


def grow(root: Path) -> None:
    """Day two: a new file, one changed file, one file gone."""
    write_parquet(root / "c.parquet", rows(3, "c"))
    write_parquet(root / "b.parquet", rows(2, "b", start=10))
    (root / "a.jsonl").unlink()
