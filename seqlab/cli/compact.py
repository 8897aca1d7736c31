"""The ``seqlab compact`` command: an incremental table's small files rewritten into large ones."""

from __future__ import annotations

import argparse
import json

from seqlab.cli.commands import command
from seqlab.cli.flags import add_storage_flag, add_target_size_flag

COMPACT = """\
Rewrite the small documents, mentions and frames files of an incremental table (seqlab
annotate --incremental), per table and run_date= partition, into files of about
--target-file-size: the files below half of it, one input file's rows after another. New files
first, then the index version that swaps them in, then the old files move to
_superseded/ID/ (an Iceberg table gets one commit per table instead). Aggregates stay one
file per input. Safe to interrupt: rerunning finishes the same compaction; on a compacted
table it does nothing."""


@command("compact")
def compact_cli(args: argparse.Namespace) -> int:
    from seqlab.config import DEFAULT_TARGET_FILE_SIZE
    from seqlab.store.compact import compact

    summary = compact(args.table, args.target_file_size or DEFAULT_TARGET_FILE_SIZE,
                      args.storage_options, take_over=args.take_over)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    before, after = summary["files_before"], summary["files_after"]
    for table in sorted(set(before) | set(after)):
        print(f"{table}: {before.get(table, 0)} -> {after.get(table, 0)} files")
    if summary["status"] == "unchanged":
        print("unchanged: no partition holds two files below half the target size")
    else:
        print(f"compaction {summary['compaction_id']}: {summary['written']} files written "
              f"({summary['bytes_written']:,} bytes), {summary['retired']} retired, "
              f"{summary['seconds']:.1f} s")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compact", help="rewrite an incremental table's small files into "
                       "large ones", description=COMPACT)
    p.add_argument("table", help="OUTPUT of seqlab annotate --incremental (any fsspec URL)")
    add_target_size_flag(p)
    p.add_argument("--take-over", action="store_true",
                   help="take the table over from a writer on another host whose heartbeat "
                   "stopped over 5 minutes ago")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_storage_flag(p, "TABLE")
