"""The commands that read or describe landed tables: ``seqlab show``, ``report``, ``runs``,
``verify`` and ``schema``. Each imports its library code when it runs, so building their flags
is free."""

from __future__ import annotations

import argparse
import json

from seqlab.cli.commands import command
from seqlab.cli.flags import add_storage_flag

SHOW = """\
Print documents of an annotate run with their entities (coloured on a terminal, marked as
[text](LABEL) in a pipe or a file), each tagging model's tag beside every word, and each SRL
frame on a line; or list the documents, or write an HTML page. Without options: a short
overview of the run (its models, the first documents listed, the first one cut short)."""


@command("show")
def show_cli(args: argparse.Namespace) -> int:
    from seqlab.report import show

    if args.list:
        show.print_list(show.list_documents(args.output, args.limit, args.storage_options))
        return 0
    if (args.doc, args.limit, args.chars, args.html) == (None,) * 4 and not args.all_frames:
        from seqlab.report.overview import print_overview

        print_overview(args.output, args.storage_options)
        return 0
    models = show.run_models(args.output, args.storage_options)
    documents = show.load_documents(args.output, args.doc, args.limit or 1,
                                    args.storage_options, models)
    documents = [show.clip(document, args.chars) for document in documents]
    if not args.all_frames:
        documents = [show.drop_bare_frames(document) for document in documents]
    if args.html:
        from seqlab.report.show_html import write_html

        write_html(documents, args.html, models)
        print(f"wrote {args.html}")
    else:
        show.print_documents(documents, models=models)
    return 0


def add_show_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", help="output directory of an annotate run")
    p.add_argument("--doc", metavar="ID", help="document id (default: the first ok "
                   "documents)")
    p.add_argument("--limit", type=int, metavar="N", help="documents to show (default: 1) "
                   "or to --list (default: all)")
    p.add_argument("--chars", type=int, metavar="N", help="show only the first N characters "
                   "of each document, and only the entities, tagged words and frames inside "
                   "them (default: all)")
    p.add_argument("--all-frames", action="store_true", help="show frames without arguments "
                   "too (hidden by default: most are auxiliaries such as was or is)")
    p.add_argument("--list", action="store_true", help="print each document's id, status "
                   "and number of entities, one per line")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML page instead")
    add_storage_flag(p, "OUTPUT")


REPORT = """\
Write one self-contained HTML page that reviews a whole annotate run: the run, its speed and a
header per model, rows by status, entities per label, top entities, score histograms, the
documents with the most entities, a section per tagging model (its tags' words and a tagged
sentence) and per SRL model (predicates, argument roles and a document's frames), and a
navigable sample of documents with their entities highlighted."""


@command("report")
def report_cli(args: argparse.Namespace) -> int:
    from seqlab.report.html import write_report

    write_report(args.output, args.html, args.sample, args.storage_options)
    print(f"wrote {args.html}")
    return 0


def add_report_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", help="output directory of an annotate run")
    p.add_argument("--html", metavar="FILE", required=True, help="the HTML page to write")
    p.add_argument("--sample", type=int, default=50, metavar="N",
                   help="documents to show with their entities")
    add_storage_flag(p, "OUTPUT")


RUNS = """\
List the runs of an incremental table (seqlab annotate --incremental): when each ran, how
many input files it annotated and left unchanged, rows and entities it wrote, how many earlier
files it superseded, and how many of its own files later runs replaced. Reads every run's
manifest (_runs/RUN_ID/manifest.json and the files.parquet beside it)."""
RUN_COLUMNS = ("run_id", "run_date", "status", "engine", "inputs", "unchanged", "rows",
               "entities", "superseded", "replaced_later")


@command("runs")
def runs_cli(args: argparse.Namespace) -> int:
    from seqlab.errors import InputError
    from seqlab.store.incremental import list_runs
    from seqlab.store.outdir import OutputDir

    out = OutputDir(args.output, args.storage_options)
    if not out.incremental():
        raise InputError(f"{args.output} is not an incremental table (it has no _runs/)",
                         fix="point seqlab runs at the OUTPUT of seqlab annotate --incremental")
    runs = list_runs(out)
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    cells = [[str(run[c]) if run[c] is not None else "-" for c in RUN_COLUMNS] for run in runs]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(RUN_COLUMNS)]
    for row in [list(RUN_COLUMNS), *cells]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def add_runs_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", help="OUTPUT of seqlab annotate --incremental")
    p.add_argument("--json", action="store_true", help="print the runs as JSON")
    add_storage_flag(p, "OUTPUT")



VERIFY = """\
Check that OUTPUT (one run, or an incremental table) holds exactly what its manifests list:
every live file with its size and sha256, no unlisted file in the table folders, mentions and
frames rows that name live documents rows, aggregates equal to the sums of the live mentions,
an incremental table's index (_index/) equal to what its run manifests give, and an Iceberg
table's current snapshot equal to the live files. Exit 0 when all hold, 1 with one line per
finding naming the file."""


@command("verify")
def verify_cli(args: argparse.Namespace) -> int:
    from seqlab.store.verify import verify

    result = verify(args.output, args.storage_options, quick=args.quick, repair=args.repair)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0 if result.ok else 1
    for finding in result.findings:
        print(finding.line())
    for path in result.quarantined:
        print(f"moved to {path}")
    runs = f"{len(result.runs)} run{'s' if len(result.runs) != 1 else ''}"
    checked = f"{result.files} live files of {runs}" + (" (sizes only)" if args.quick else "")
    if result.unfinished:
        checked += f"; run {result.unfinished} has not ended"
    print(f"{'ok' if result.ok else f'{len(result.findings)} finding(s)'}: {checked}")
    return 0 if result.ok else 1


def add_verify_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", help="OUTPUT of seqlab annotate (any fsspec URL)")
    p.add_argument("--quick", action="store_true",
                   help="compare file sizes only, not sha256 (reads no data files' bytes)")
    p.add_argument("--repair", action="store_true",
                   help="move files no manifest lists to OUTPUT/_quarantine/ (nothing is "
                   "deleted)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_storage_flag(p, "OUTPUT")

SCHEMA = """\
Print the schema of a landed table for a warehouse, generated from the schema seqlab lands:
BigQuery's JSON schema file (bq load --schema FILE --parquet_enable_list_inference=true),
CREATE TABLE for Snowflake or DuckDB, the Iceberg table schema (JSON), or the Arrow schema.
The documents table holds the input's own columns after doc_id: give them with --passthrough."""
# the same as seqlab.store.warehouse.TABLES and FORMATS, written out so that --help imports
# no pyarrow
SCHEMA_TABLES = ("documents", "mentions", "frames", "aggregates")
SCHEMA_FORMATS = ("bigquery", "snowflake", "duckdb", "iceberg", "arrow")


@command("schema")
def schema_cli(args: argparse.Namespace) -> int:
    from seqlab.store.warehouse import warehouse_schema

    print(warehouse_schema(args.table, args.format, args.passthrough or "", args.keep_text,
                           args.name, args.model))
    return 0


def add_schema_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", choices=SCHEMA_TABLES, help="the landed table")
    p.add_argument("--format", required=True, choices=SCHEMA_FORMATS,
                   help="the warehouse or schema language")
    p.add_argument("--passthrough", metavar="'NAME:TYPE,...'",
                   help="the input's own columns that land in documents, with Arrow type "
                   "names, e.g. 'title:string,year:int64,tags:list<string>' (every input "
                   "column but the text and --id-column)")
    p.add_argument("--model", metavar="NAME[,NAME...]", help="the documents table of a run "
                   "of these models, as seqlab annotate --model takes them (default: one "
                   "tagging model: tokens and entities)")
    p.add_argument("--no-text", dest="keep_text", action="store_false",
                   help="the documents table of a run with --drop-text (default: with text)")
    p.add_argument("--name", metavar="TABLE_NAME", help="table name of the CREATE TABLE "
                   "statement, e.g. db.schema.documents (default: the table)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="show annotated documents", description=SHOW)
    add_show_flags(p)

    p = sub.add_parser("report", help="write an HTML report of a run", description=REPORT)
    add_report_flags(p)

    p = sub.add_parser("runs", help="list the runs of an incremental table", description=RUNS)
    add_runs_flags(p)

    p = sub.add_parser("verify", help="check a run's or table's files against its manifests",
                       description=VERIFY)
    add_verify_flags(p)

    p = sub.add_parser("schema", help="print a table's schema for a warehouse",
                       description=SCHEMA)
    add_schema_flags(p)
