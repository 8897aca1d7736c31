"""``seqlab show OUTPUT`` with no option: a short look at a run, never a whole book. The
documents and their statuses, the run's models, the first few rows of the documents list,
the first ok document cut to a few hundred characters, and the options that show more."""

from __future__ import annotations

import pyarrow.dataset as ds
from rich.console import Console

from seqlab import schema
from seqlab.errors import InputError
from seqlab.report.read import value_counts
from seqlab.report.run_info import header_lines, model_headers
from seqlab.report.show import (
    clip,
    drop_bare_frames,
    list_documents,
    load_documents,
    open_documents,
    print_documents,
)
from seqlab.store.manifest import Manifest
from seqlab.store.outdir import OutputDir

OVERVIEW_ROWS = 5  # rows of the documents list
OVERVIEW_CHARS = 300  # characters of the first document
HINTS = (("--doc ID", "one document, whole (with --chars N: its first N characters)"),
         ("--limit N", "the first N ok documents"),
         ("--list", "every document: id, status, entities, frames, error"),
         ("--all-frames", "frames without arguments too (hidden by default)"),
         ("--html FILE", "a page of the documents shown"))


def print_overview(output: str, storage_options: dict | None = None,
                   console: Console | None = None) -> None:
    """Print the overview of ``output`` (see the module docstring)."""
    dataset = open_documents(output, storage_options)
    manifest = OutputDir(output, storage_options).manifest()
    models = model_headers(manifest) if manifest is not None else []
    total = dataset.count_rows()
    lines = [f"{output}: {total:,} document{'s' * (total != 1)} "
             f"({_statuses(manifest, dataset)})",
             *header_lines(models), ""]
    rows = list(list_documents(output, OVERVIEW_ROWS, storage_options))
    cells = [["doc_id", "status", "entities", "frames", "error"]]
    cells += [[str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    if total > len(rows):
        lines.append(f"… and {total - len(rows):,} more (--list prints every one)")
    print("\n".join(lines) + "\n")
    try:
        first = load_documents(output, None, 1, storage_options, models)
    except InputError:
        print("No document is ok: --list shows each one's status and error.\n")
    else:
        print_documents([drop_bare_frames(clip(first[0], OVERVIEW_CHARS))], console)
        print()
    width = max(len(flag) for flag, _ in HINTS)
    print("\n".join([f"More: seqlab show {output} OPTION"]
                    + [f"  {flag.ljust(width)}  {what}" for flag, what in HINTS]))


def _statuses(manifest: Manifest | None, dataset: ds.Dataset) -> str:
    """Documents per status, most first: the manifest's counts, else read from the table.

    A status column read whole is one small string a row; a run that has ended has them in
    its manifest already."""
    if manifest is not None:
        counts = {k.removeprefix("status."): v for k, v in manifest.counts.items()
                  if k.startswith("status.")}
    else:
        column = dataset.to_table(columns=[schema.STATUS]).column(schema.STATUS)
        counts = dict(zip(*value_counts(column.combine_chunks()))) if len(column) else {}
    return ", ".join(f"{n:,} {status}" for status, n in
                     sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"
