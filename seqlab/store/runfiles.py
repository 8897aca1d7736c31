"""An incremental run's manifest as two files: its summary in JSON, its files in Parquet.

    OUT/_runs/RUNID/manifest.json   the run: configuration, counts, what it changed, and
                                    ``files``: the listing beside it and its counts
    OUT/_runs/RUNID/files.parquet   one row per (input file, table, landed file), each file's
                                    rows, bytes and sha256; the files of no input; the files
                                    the run superseded

Listing every file in the JSON takes ~2.4 KB per input file, so a run over many files wrote
megabytes of JSON that every reader of the manifest parsed. The listing is a Parquet file
written before the JSON (a manifest that is there has its listing), and ``read_manifest``
(``seqlab.store.manifest``) joins the two back into one ``Manifest``: ``inputs``, ``tables``,
``aggregates`` and ``incremental.superseded`` as a manifest that lists them in JSON holds them.
A manifest written before the split, with its files in the JSON, reads as it always did. A
single run's ``_manifest.json`` keeps its files in the JSON.

The functions here turn a manifest's JSON object into the two and back (``split``, ``join``);
rows keep each file's place in ``tables`` (``position``), so the join gives the object the
split took.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

import pyarrow as pa

LISTING = "files"  # the key of a split manifest.json that describes its listing
FILES = "files.parquet"

SCHEMA = pa.schema([
    pa.field("input", pa.string()),  # the input file; null for a file of no input
    pa.field("input_rows", pa.int64()),  # the input file's rows read
    pa.field("identity", pa.string()),  # JSON [size, version] of the input file
    pa.field("table", pa.string()),  # null: an input file without parts
    pa.field("path", pa.string()),  # null: an input file's table without parts
    pa.field("position", pa.int64()),  # the file's place in tables[table] or superseded
    pa.field("rows", pa.int64()),
    pa.field("bytes", pa.int64()),
    pa.field("sha256", pa.string()),
    pa.field("superseded", pa.bool_()),  # an earlier file the run moved out of the table
])


def listing_path(manifest_path: str, summary: dict[str, Any]) -> str:
    """Where the listing of the split manifest at ``manifest_path`` is."""
    return posixpath.join(posixpath.dirname(manifest_path), summary[LISTING]["path"])


def split(manifest: dict[str, Any]) -> tuple[dict[str, Any], pa.Table]:
    """A manifest's JSON object as its summary (for ``manifest.json``) and its listing."""
    tables = manifest["tables"]
    places = {p["path"]: (table, i) for table, listed in tables.items()
              for i, p in enumerate(listed)}
    rows: list[dict[str, Any]] = []
    owned = set()
    for entry in manifest["inputs"]:
        base = {"input": entry["fragment"], "input_rows": entry["rows"],
                "identity": json.dumps(entry["identity"])
                if entry.get("identity") is not None else None}
        if not entry["parts"]:
            rows.append(base)
        for table, listed in entry["parts"].items():
            if not listed:
                rows.append({**base, "table": table})
            for p in listed:
                rows.append({**base, **_file(table, p, places.get(p["path"], (None, None))[1])})
                owned.add(p["path"])
    for table, listed in tables.items():
        rows += [_file(table, p, i) for i, p in enumerate(listed) if p["path"] not in owned]
    increment = dict(manifest["incremental"])
    superseded = increment.pop("superseded")
    rows += [{"table": path.split("/")[0], "path": path, "position": i, "superseded": True}
             for i, path in enumerate(superseded)]
    summary = {k: v for k, v in manifest.items() if k not in ("inputs", "tables")}
    summary["incremental"] = increment
    if manifest["aggregates"] == tables.get("aggregates", []):
        del summary["aggregates"]
    summary[LISTING] = {"path": FILES, "inputs": len(manifest["inputs"]),
                        "tables": {table: len(listed) for table, listed in tables.items()},
                        "superseded": len(superseded)}
    return summary, pa.Table.from_pylist(rows, schema=SCHEMA)


def _file(table: str, part: dict[str, Any], position: int | None) -> dict[str, Any]:
    return {"table": table, "path": part["path"], "position": position, "rows": part["rows"],
            "bytes": part["bytes"], "sha256": part["sha256"], "superseded": False}


def join(summary: dict[str, Any], listing: pa.Table | None) -> dict[str, Any]:
    """The manifest's JSON object from its summary and its listing (None: the summary alone,
    its inputs and files left empty)."""
    described = summary[LISTING]
    manifest = {k: v for k, v in summary.items() if k != LISTING}
    inputs: dict[str, dict[str, Any]] = {}
    placed: dict[str, list[tuple[int, dict[str, Any]]]] = {t: [] for t in described["tables"]}
    superseded: list[tuple[int, str]] = []
    for row in listing.to_pylist() if listing is not None else []:
        part = None if row["path"] is None else {
            "path": row["path"], "rows": row["rows"], "bytes": row["bytes"],
            "sha256": row["sha256"]}
        if row["superseded"]:
            superseded.append((row["position"], row["path"]))
            continue
        if row["input"] is not None:
            entry = inputs.setdefault(row["input"], {
                "fragment": row["input"], "rows": row["input_rows"], "parts": {},
                **({"identity": json.loads(row["identity"])} if row["identity"] else {})})
            if row["table"] is not None:
                entry["parts"].setdefault(row["table"], [])
                if part is not None:
                    entry["parts"][row["table"]].append(part)
        if part is not None and row["position"] is not None:
            placed.setdefault(row["table"], []).append((row["position"], part))
    manifest["inputs"] = list(inputs.values())
    manifest["tables"] = {t: [p for _, p in sorted(listed, key=lambda item: item[0])]
                          for t, listed in placed.items()}
    manifest.setdefault("aggregates", manifest["tables"].get("aggregates", []))
    manifest["incremental"] = {**manifest["incremental"],
                               "superseded": [p for _, p in sorted(superseded)]}
    return manifest
