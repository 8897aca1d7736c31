"""The end of a run: its invariants checked, aggregates listed, the manifest written last."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timezone

from seqlab import __version__, schema
from seqlab.config import RESUMABLE
from seqlab.errors import RunError
from seqlab.pause import pause_at
from seqlab.run import aggregates as merging
from seqlab.run.land import merge_counts
from seqlab.run.plan import RunPlan, kept_files
from seqlab.store import compact, incremental
from seqlab.store.index import write_index
from seqlab.store.manifest import (
    FailedInput,
    IncrementalRun,
    InputEntry,
    Manifest,
    ModelInfo,
    Part,
    Resume,
    Rows,
    RunState,
)
from seqlab.store.parts import FragmentRecord, PartInfo, write_table

log = logging.getLogger(__name__)


TABLE_SCHEMAS = {"mentions": schema.MENTIONS, "frames": schema.FRAMES,
                 "aggregates": schema.AGGREGATES}


def finish_run(plan: RunPlan, engine: str, extra: dict | None = None,
               aggregates: list[PartInfo] | None = None) -> dict:
    """End the run: check its invariants, list the aggregates, write the manifest; return it
    as a plain dict (``Manifest.to_dict()``, the JSON the file holds: ``manifest["rows"]``).
    ``extra`` holds the engine's own sections of the manifest (``tagging``, ``ray``...); a
    resumed run adds ``attempt``, what this attempt did itself (``attempt_section``).

    ``aggregates`` are the parts the engine's merge tasks wrote (``seqlab.run.aggregates``,
    run where the engine runs its work); without them the merge runs here, a task at a time.

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
    if aggregates is None:
        aggregates = merging.merge(plan)
    pause_at("aggregates-gather")
    buckets = _attach_aggregates(plan, records, aggregates)
    out.cleanup(keep=kept_files(out, records, plan.increment) | {p.path for p in aggregates},
                run_id=plan.provenance.run_id if plan.increment is not None else None)
    rows_in = sum(r.rows_in for r in records)
    rows_out = sum(p.rows for r in records for p in r.parts.get("documents", []))
    if rows_in != rows_out:
        raise RunError(
            f"the run read {rows_in} rows but wrote {rows_out} documents rows",
            fix="this is a bug in seqlab; please report it with the run's logs",
        )
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
        tables["aggregates"] = sorted(aggregates, key=lambda p: p.path)
        merging.clear(out)
    state, listed = out.state(), _parts(tables)
    manifest = Manifest(
        run_id=plan.provenance.run_id,
        seqlab_version=__version__,
        schema_version=schema.SCHEMA_VERSION,
        complete=not failed,
        engine=engine,
        attempts=state.attempts if state else (),
        model=ModelInfo(plan.config.model, plan.provenance.model_revision, plan.labels.scheme,
                        tuple(plan.labels.labels)),
        models=tuple(model.summary() for model in plan.models),
        config=_redacted(plan.config.to_dict()),
        resume=Resume(tuple(sorted(state.fingerprint if state else {})), tuple(RESUMABLE)),
        processed_at=plan.provenance.processed_at.isoformat(),
        finished_at=datetime.now(timezone.utc).isoformat(),
        elapsed_s=round(time.time() - plan.started, 3),
        rows=Rows(rows_in, rows_out),
        counts=merge_counts(r.counts for r in records),
        inputs=tuple(InputEntry(r.fragment, r.rows_in, _parts(r.parts)) for r in records),
        failed_inputs=tuple(FailedInput(f.fragment, f.index, f.error, f.rows) for f in failed),
        tables=listed,
        aggregates=listed["aggregates"],
        extra={**(extra or {}), **attempt_section(plan, records, state)},
        quarantined=tuple(out.quarantined) or None,
        aggregate_buckets=buckets,
    )
    if plan.increment is None:
        out.finish(manifest, keep_progress=bool(failed))
    else:
        manifest = _finish_increment(plan, manifest, records)
    if failed:
        log.warning("%d input files could not be read (see failed_inputs in %s); rerun the "
                    "same command to retry them", len(failed), out.url)
    return manifest.to_dict()


def attempt_section(plan: RunPlan, records: list[FragmentRecord],
                    state: RunState | None) -> dict[str, dict[str, int | float]]:
    """The manifest's ``attempt`` section of a resumed run (none for a run's first attempt,
    whose time and counts are ``elapsed_s`` and ``counts``): which attempt this is, its
    seconds from its plan to its end, and the documents, words and characters of the input
    files it annotated itself (not those an earlier attempt finished), so that the run's
    rate can be this attempt's words over this attempt's time."""
    number = len(state.attempts) if state else 1
    if number <= 1:
        return {}
    counts = merge_counts(r.counts for r in records if r.fragment not in plan.done)
    return {"attempt": {"number": number, "seconds": round(time.time() - plan.started, 3),
                        "documents": counts.get("documents", 0),
                        "words": counts.get("tokens", 0),
                        "characters": counts.get("characters", 0)}}


def _attach_aggregates(plan: RunPlan, records: list[FragmentRecord],
                       aggregates: list[PartInfo]) -> int | None:
    """Check the merge wrote the parts the records call for; an incremental run's go to the
    records of their input files. Returns the manifest's ``aggregate_buckets``: K in a single
    run, None in an incremental one (one part per input file)."""
    layout = plan.out.layout
    if plan.increment is not None:
        expected = {layout.part("aggregates", r.index) for r in records if r.partials}
    else:
        buckets = merging.bucket_count(sum(r.counts.get("entities", 0) for r in records))
        expected = {merging.bucket_part(b) for b in range(buckets)}
    if {p.path for p in aggregates} != expected or len(aggregates) != len(expected):
        raise RunError(f"the aggregates merge wrote {len(aggregates)} parts, not the "
                       f"{len(expected)} the run's records call for",
                       fix="rerun the same command: the merge is redone; please report it")
    if plan.increment is None:
        return len(expected)
    by_path = {p.path: p for p in aggregates}
    for record in records:
        if record.partials:
            record.parts["aggregates"] = [by_path[layout.part("aggregates", record.index)]]
    return None


def _parts(parts: dict[str, list[PartInfo]]) -> dict[str, tuple[Part, ...]]:
    """Parts as the manifest lists them, per table."""
    return {table: tuple(Part(p.path, p.rows, p.bytes, p.sha256) for p in listed)
            for table, listed in parts.items()}


def _finish_increment(plan: RunPlan, manifest: Manifest,
                      records: list[FragmentRecord]) -> Manifest:
    """Build the table's next index from the version the run was planned on, supersede the
    earlier files of what this run annotated again or pruned (moved aside, or replaced in the
    Iceberg commit), write the index, then the manifest and the markers; return the manifest.
    A finish retried after a crash writes the same index version again. Failed inputs are not
    retried by resuming this run: the next run finds them still to do."""
    out, increment = plan.out, plan.increment
    annotated = {r.fragment for r in records}
    index = incremental.base_index(out, increment, manifest.run_id)
    # a compacted file shared with inputs that stay is rewritten without the ones that leave
    superseded = compact.release(out, index, increment.leaving(annotated), manifest.run_id)
    identities = {f.name: f.identity for f in increment.inputs}
    manifest = replace(
        manifest,
        inputs=tuple(replace(entry, identity=identities[entry.fragment])
                     for entry in manifest.inputs),
        run_date=increment.run_date, table=plan.table,
        incremental=IncrementalRun(
            increment.config_key, increment.unchanged,
            tuple(sorted(set(increment.replaces) & annotated)),
            tuple(sorted(increment.pruned)), tuple(superseded)))
    index.add_run(manifest)
    # per table: its schema, the files the run adds (its parts and the compacted files
    # rewritten without what left) and those it supersedes, as paths in the output
    rewritten = compact.rewritten(index, manifest.run_id)
    changes = {table: (plan.documents_schema if table == "documents" else TABLE_SCHEMAS[table],
                       [p.path for p in parts] + rewritten.get(table, []),
                       [p for p in superseded if p.startswith(table + "/")])
               for table, parts in manifest.tables.items()}
    properties = {"seqlab.run_date": increment.run_date, "seqlab.model": plan.config.model,
                  "seqlab.model_revision": plan.provenance.model_revision}
    if plan.config.table_format == "iceberg":
        from seqlab.store import iceberg  # pyiceberg only where Iceberg tables are asked for

        manifest = replace(manifest, iceberg=iceberg.commit_run(
            plan.config.catalog, plan.config.namespace, manifest.run_id,
            {table: iceberg.TableChange(table_schema, [out.url_of(p) for p in added],
                                        [out.url_of(p) for p in removed])
             for table, (table_schema, added, removed) in changes.items()},
            {**properties, "seqlab.output": out.location}))
    else:
        if plan.config.table_format == "delta":  # the Delta log drops them, then they move
            from seqlab.store import delta  # deltalake only where Delta tables are asked for

            manifest = replace(manifest, extra={**manifest.extra, "delta": delta.commit_run(
                out, manifest.run_id,
                {table: delta.TableChange(*change) for table, change in changes.items()},
                properties)})
        incremental.supersede(out, superseded)
    write_index(out, index, manifest.run_id)  # before the manifest: an ended run has its index
    out.finish(manifest, keep_progress=True)
    incremental.mark_ended(out, manifest)
    out.drop_progress()
    return manifest


def _redacted(config: dict) -> dict:
    """The configuration as the manifest shows it: storage option names, never their values
    (they may hold credentials).

    >>> _redacted({"storage_options": {"key": "AKIA..."}, "model": "ner"})
    {'storage_options': {'key': '<redacted>'}, 'model': 'ner'}
    """
    return {**config,
            "storage_options": dict.fromkeys(config.get("storage_options") or {}, "<redacted>")}
