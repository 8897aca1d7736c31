"""The end of a run: its invariants checked, aggregates landed, the manifest written last."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from seqlab import __version__, schema
from seqlab.config import RESUMABLE
from seqlab.errors import RunError
from seqlab.run.land import merge_counts
from seqlab.run.plan import RunPlan, _kept, _redacted
from seqlab.stages import aggregate
from seqlab.store import incremental
from seqlab.store.parts import FragmentRecord, read_table, write_table

log = logging.getLogger(__name__)


TABLE_SCHEMAS = {"mentions": schema.MENTIONS, "frames": schema.FRAMES,
                 "aggregates": schema.AGGREGATES}


def finish_run(plan: RunPlan, engine: str, extra: dict | None = None) -> dict:
    """End the run: check its invariants, land the aggregates, write the manifest; return it.

    Every fragment of the plan's work must be recorded as finished or failed. Parts no record
    names (those of failed fragments) are removed, so the table folders hold exactly the files
    the manifest lists.
    """
    out = plan.out
    records = sorted(out.done_fragments().values(), key=lambda r: r.index)
    failed = out.failed_fragments()
    settled = {r.index for r in records} | {f.index for f in failed}
    unsettled = [item.fragment.name for item in plan.work if item.fragment.index not in settled]
    if unsettled:
        raise RunError(f"the {engine} engine ended without finishing {unsettled[:5]}",
                       fix="rerun the same command to resume; please report it with the logs")
    out.cleanup(keep=_kept(out, records, plan.increment))
    rows_in = sum(r.rows_in for r in records)
    rows_out = sum(p.rows for r in records for p in r.parts.get("documents", []))
    if rows_in != rows_out:
        raise RunError(
            f"the run read {rows_in} rows but wrote {rows_out} documents rows",
            fix="this is a bug in seqlab; please report it with the run's logs",
        )
    if plan.increment is not None:
        incremental.land_aggregates(out, records)
    row_tables = ["mentions"] + (["frames"] if plan.span_columns(schema.FRAMES_COLUMN) else [])
    tables = {table: [p for r in records for p in r.parts.get(table, [])]
              for table in ("documents", *row_tables, "aggregates")}
    for table in row_tables:  # a loader pointed at an empty prefix needs a schema
        if plan.increment is not None:
            if not tables[table] and not incremental.holds(plan.increment, table):
                tables[table] = [incremental.empty_part(out, table, TABLE_SCHEMAS[table])]
        elif not tables[table]:
            tables[table] = [write_table(out.fs, out.root, f"{table}/part-empty.parquet",
                                         TABLE_SCHEMAS[table].empty_table())]
    if plan.increment is None:
        partials = (read_table(out.fs, out.path(path)) for r in records for path in r.partials)
        tables["aggregates"] = [write_table(out.fs, out.root, "aggregates/part-00000.parquet",
                                            aggregate.finalize(aggregate.fold(partials)))]
    state = out.state() or {}
    manifest = {
        "run_id": plan.provenance.run_id,
        "seqlab_version": __version__,
        "schema_version": schema.SCHEMA_VERSION,
        "complete": not failed,
        "engine": engine,
        "attempts": state.get("attempts", []),
        "model": {"name": plan.config.model, "revision": plan.provenance.model_revision,
                  "scheme": plan.labels.scheme, "labels": list(plan.labels.labels)},
        "models": [model.summary() for model in plan.models],
        "config": _redacted(plan.config.to_dict()),
        "resume": {"must_match": sorted(state.get("fingerprint", {})),
                   "may_change": list(RESUMABLE)},
        "processed_at": plan.provenance.processed_at.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "elapsed_s": round(time.time() - plan.started, 3),
        "rows": {"in": rows_in, "out": rows_out},
        "counts": merge_counts(r.counts for r in records),
        "inputs": [{"fragment": r.fragment, "rows": r.rows_in,
                    "parts": {k: [vars(p) for p in v] for k, v in r.parts.items()}}
                   for r in records],
        "failed_inputs": [vars(f) for f in failed],
        "tables": {table: [vars(p) for p in parts] for table, parts in tables.items()},
        "aggregates": [vars(p) for p in tables["aggregates"]],
        **(extra or {}),
    }
    if plan.increment is None:
        out.finish(manifest, keep_progress=bool(failed))
    else:
        _finish_increment(plan, manifest, records)
    if failed:
        log.warning("%d input files could not be read (see failed_inputs in %s); rerun the "
                    "same command to retry them", len(failed), out.url)
    return manifest


def _finish_increment(plan: RunPlan, manifest: dict, records: list[FragmentRecord]) -> None:
    """Supersede the earlier files of what this run annotated again (moved aside, or replaced
    in the Iceberg commit), then write the manifest and the markers. Failed inputs are not
    retried by resuming this run: the next run finds them still to do."""
    out, increment = plan.out, plan.increment
    superseded = increment.superseded({r.fragment for r in records})
    identities = {f.name: f.identity for f in increment.inputs}
    for entry in manifest["inputs"]:
        entry["identity"] = identities[entry["fragment"]]
    manifest["run_date"] = increment.run_date
    manifest["table"] = plan.table
    manifest["incremental"] = {
        "config_key": increment.config_key, "unchanged": increment.unchanged,
        "replaced": sorted(set(increment.replaces) & {r.fragment for r in records}),
        "pruned": sorted(increment.pruned), "superseded": superseded}
    if plan.config.table_format == "iceberg":
        from seqlab.store import iceberg  # pyiceberg only where Iceberg tables are asked for

        manifest["iceberg"] = iceberg.commit_run(
            plan.config.catalog, plan.config.namespace, manifest["run_id"],
            {table: iceberg.TableChange(
                plan.documents_schema if table == "documents" else TABLE_SCHEMAS[table],
                [out.url_of(p["path"]) for p in manifest["tables"][table]],
                [out.url_of(p) for p in superseded if p.startswith(table + "/")])
             for table in manifest["tables"]},
            {"seqlab.run_date": increment.run_date, "seqlab.models.load": plan.config.model,
             "seqlab.model_revision": plan.provenance.model_revision,
             "seqlab.store.outdir": out.location})
    else:
        incremental.supersede(out, superseded)
    out.finish(manifest, keep_progress=True)
    incremental.mark_ended(out, manifest)
    out.drop_progress()
