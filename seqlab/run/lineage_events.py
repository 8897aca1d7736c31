"""What a run's OpenLineage events hold (``seqlab.run.lineage`` sends them): the names of its
datasets and its run id, and the event itself, built with openlineage-python's classes.

Datasets are named as OpenLineage's naming conventions name files: ``file`` and the absolute
path on a local disk, the bucket or container as namespace and the key as name on an object
store (``s3://bucket``, ``gs://bucket``), ``scheme://authority`` and the path elsewhere. The
input is one dataset (a glob names the folder it reads), each output table another
(``OUT/documents``...), with its schema from ``seqlab.schema`` and, on COMPLETE, the rows, bytes
and files the run wrote (the manifest's ``tables``). seqlab's own run facet, ``seqlab``, holds
seqlab's run id, the engine and the models with their revisions; its JSON schema is
docs/lineage/SeqlabRunFacet.json.
"""

from __future__ import annotations

import os
import posixpath
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from hashlib import sha256
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pyarrow as pa

from seqlab import __version__, schema

if TYPE_CHECKING:
    from seqlab.config import AnnotateConfig
    from seqlab.run.plan import RunPlan

# who made the events: seqlab has no URL of its own to name, so a URN with its version
PRODUCER = f"urn:seqlab:{__version__}"
FACET = "seqlab"  # the key of seqlab's own run facet
FACET_SCHEMA = "urn:seqlab:lineage:1-0-0:SeqlabRunFacet.json"  # docs/lineage/SeqlabRunFacet.json
OBJECT_STORES = {"s3": "s3", "s3a": "s3", "s3n": "s3", "gs": "gs", "gcs": "gs", "abfs": "abfs",
                 "abfss": "abfss", "wasb": "wasb", "wasbs": "wasbs", "az": "az", "adl": "adl"}
DEFAULT_TABLES = ("documents", "mentions", "aggregates")  # a run that failed before its plan


def dataset_id(url: str) -> tuple[str, str]:
    """The (namespace, name) of the files at ``url``, as OpenLineage's naming conventions give
    them; a glob names the folder it reads.

    >>> dataset_id("s3a://bucket/corpus/"), dataset_id("gcs://bucket/in/*.parquet")
    (('s3://bucket', 'corpus'), ('gs://bucket', 'in'))
    >>> dataset_id("file:///data/out/"), dataset_id("hdfs://namenode:8020/corpus")
    (('file', '/data/out'), ('hdfs://namenode:8020', '/corpus'))
    >>> dataset_id("abfss://texts@account.dfs.core.windows.net/corpus")
    ('abfss://texts@account.dfs.core.windows.net', 'corpus')
    """
    cut = min((url.find(c) for c in "*?[" if c in url), default=-1)
    if cut >= 0:
        url = url[:cut].rsplit("/", 1)[0]
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("", "file", "local") or len(scheme) == 1:  # a path (C:\ on Windows)
        return "file", os.path.abspath(parts.path if scheme in ("file", "local") else url)
    if scheme in OBJECT_STORES:
        return f"{OBJECT_STORES[scheme]}://{parts.netloc}", parts.path.strip("/") or "/"
    if scheme == "memory" or not parts.netloc:  # no authority: the whole path names it
        return scheme, "/" + (parts.netloc + parts.path).strip("/")
    return f"{scheme}://{parts.netloc}", parts.path.rstrip("/") or "/"


def table_dataset(output: str, table: str) -> tuple[str, str]:
    """The (namespace, name) of the table ``table`` of the output ``output``.

    >>> table_dataset("s3://bucket/annotated/ner/", "mentions")
    ('s3://bucket', 'annotated/ner/mentions')
    """
    namespace, root = dataset_id(output)
    name = posixpath.join(root, table)
    return namespace, name if namespace == "file" or root != "/" else table


def default_job(output: str) -> str:
    """The job's name where ``--lineage-job`` gives none: the output it annotates into.

    >>> default_job("s3://bucket/annotated/ner/"), default_job("file:///data/out")
    ('annotate:s3://bucket/annotated/ner', 'annotate:/data/out')
    """
    namespace, name = dataset_id(output)
    return "annotate:" + (name if namespace == "file" else f"{namespace}/{name}")


def run_uuid(run_id: str, started: datetime) -> str:
    """The OpenLineage run id of seqlab's run ``run_id``, which started at ``started``: a UUIDv7
    (time-ordered, as OpenLineage's clients make them) whose time is the run's start and whose
    other bits come from the run id, so every attempt of a resumed run sends the same one.

    >>> run, when = "20261205T101500Z-1a2b3c4d", datetime(2026, 12, 5, 10, 15, tzinfo=timezone.utc)
    >>> run_uuid(run, when) == run_uuid(run, when), uuid.UUID(run_uuid(run, when)).version
    (True, 7)
    """
    node = int.from_bytes(sha256(run_id.encode()).digest()[:10], "big")
    return str(uuid7(started, node))


def uuid7(when: datetime, node: int) -> uuid.UUID:
    """A UUIDv7 (RFC 9562) of the millisecond ``when`` and 80 bits of ``node`` (the 6 bits the
    version and the variant take are dropped)."""
    value = (int(when.timestamp() * 1000) & (2**48 - 1)) << 80 | node & (2**80 - 1)
    value = value & ~(0xF << 76) | 7 << 76  # the version
    value = value & ~(0x3 << 62) | 0x2 << 62  # the variant
    return uuid.UUID(int=value)


@dataclass(frozen=True)
class Parent:
    """A run that started this one: its job's namespace and name, and its run id."""

    namespace: str
    job: str
    run_id: str


@dataclass(frozen=True)
class RunRef:
    """The run an event is about: its OpenLineage run id, its job and the runs above it."""

    run_id: str
    namespace: str
    job: str
    parent: Parent | None = None
    root: Parent | None = None


def schema_fields(fields: pa.Schema | list[pa.Field]) -> list[dict[str, Any]]:
    """A table's fields as the schema facet lists them: name and Arrow type, with a struct's
    fields and a list's element nested under them.

    >>> schema_fields(pa.schema([("doc_id", pa.string())]))
    [{'name': 'doc_id', 'type': 'string'}]
    >>> schema_fields(pa.schema([("ids", pa.list_(pa.int32()))]))
    [{'name': 'ids', 'type': 'list', 'fields': [{'name': 'item', 'type': 'int32'}]}]
    """
    found = []
    for f in fields:
        nested: list[pa.Field] = []
        if pa.types.is_struct(f.type):
            nested, kind = list(f.type), "struct"
        elif pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
            nested, kind = [f.type.value_field], "list"
        else:
            kind = str(f.type)
        found.append({"name": f.name, "type": kind,
                      **({"fields": schema_fields(nested)} if nested else {})})
    return found


def output_schemas(plan: RunPlan | None) -> dict[str, pa.Schema | None]:
    """The run's tables and their schemas (none known for a run that failed before its plan)."""
    if plan is None:
        return dict.fromkeys(DEFAULT_TABLES)
    from seqlab.run.finish import TABLE_SCHEMAS

    frames = ["frames"] if plan.span_columns(schema.FRAMES_COLUMN) else []
    return {"documents": plan.documents_schema,
            **{table: TABLE_SCHEMAS[table] for table in ("mentions", *frames, "aggregates")}}


def build_event(kind: str, when: datetime, run: RunRef, config: AnnotateConfig,
                plan: RunPlan | None = None, manifest: Mapping[str, Any] | None = None,
                error: BaseException | None = None) -> Any:
    """The RunEvent ``kind`` (START, COMPLETE, FAIL or ABORT) of ``run``: ``plan`` once the run
    has one, ``manifest`` on COMPLETE, ``error`` on FAIL."""
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import error_message_run, job_type_job

    run_facets = {**_run_facets(run), FACET: _seqlab_facet(config, plan)}
    if error is not None:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=str(error), programmingLanguage="python",
            stackTrace="".join(traceback.format_exception(error)), producer=PRODUCER)
    job_type = job_type_job.JobTypeJobFacet(processingType="BATCH", integration="SEQLAB",
                                            jobType="JOB", producer=PRODUCER)
    return RunEvent(
        eventType=RunState[kind], eventTime=when.astimezone(timezone.utc).isoformat(),
        producer=PRODUCER, run=Run(runId=run.run_id, facets=run_facets),
        job=Job(namespace=run.namespace, name=run.job, facets={"jobType": job_type}),
        inputs=[_input(config, manifest)], outputs=_outputs(config, plan, manifest))


def _run_facets(run: RunRef) -> dict[str, Any]:
    from openlineage.client import constants
    from openlineage.client.facet_v2 import parent_run, processing_engine_run

    facets: dict[str, Any] = {"processing_engine": processing_engine_run.ProcessingEngineRunFacet(
        version=__version__, name="seqlab", openlineageAdapterVersion=constants.__version__,
        producer=PRODUCER)}
    parent, root = run.parent, run.root
    if parent is not None:
        facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent.run_id),
            job=parent_run.Job(namespace=parent.namespace, name=parent.job),
            root=None if root is None else parent_run.Root(
                run=parent_run.RootRun(runId=root.run_id),
                job=parent_run.RootJob(namespace=root.namespace, name=root.job)),
            producer=PRODUCER)
    return facets


@cache
def _facet_class() -> type:
    """seqlab's run facet, made on first use: openlineage-python is an optional extra."""
    import attr
    from openlineage.client.facet_v2 import RunFacet

    @attr.define(kw_only=True)
    class SeqlabRunFacet(RunFacet):
        engine: str
        model: str
        runId: str | None = None
        modelRevision: str | None = None
        runDate: str | None = None
        models: list[dict[str, Any]] | None = None

        @staticmethod
        def _get_schema() -> str:
            return FACET_SCHEMA + "#/$defs/SeqlabRunFacet"

    return SeqlabRunFacet


def _seqlab_facet(config: AnnotateConfig, plan: RunPlan | None) -> Any:
    facet = _facet_class()
    if plan is None:  # the run failed before its plan: what was asked for
        return facet(engine=config.engine, model=config.model, producer=PRODUCER)
    return facet(engine=config.engine, model=config.model, producer=PRODUCER,
                 runId=plan.provenance.run_id, modelRevision=plan.provenance.model_revision,
                 runDate=plan.increment.run_date if plan.increment is not None else None,
                 models=[model.summary().to_dict() for model in plan.models])


def _input(config: AnnotateConfig, manifest: Mapping[str, Any] | None) -> Any:
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.facet_v2 import input_statistics_input_dataset as statistics

    namespace, name = dataset_id(config.input)
    read = {}
    if manifest is not None:  # the input files this run annotated and their rows
        read["inputStatistics"] = statistics.InputStatisticsInputDatasetFacet(
            rowCount=manifest["rows"]["in"], fileCount=len(manifest["inputs"]),
            producer=PRODUCER)
    return InputDataset(namespace=namespace, name=name, inputFacets=read)


def _outputs(config: AnnotateConfig, plan: RunPlan | None,
             manifest: Mapping[str, Any] | None) -> list[Any]:
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset as statistics
    from openlineage.client.facet_v2 import schema_dataset

    def fields(listed: list[dict[str, Any]]) -> list[Any]:
        return [schema_dataset.SchemaDatasetFacetFields(
            name=f["name"], type=f["type"], fields=fields(f.get("fields", [])) or None)
            for f in listed]

    datasets = []
    for table, table_schema in output_schemas(plan).items():
        namespace, name = table_dataset(config.output, table)
        facets = {} if table_schema is None else {"schema": schema_dataset.SchemaDatasetFacet(
            fields=fields(schema_fields(table_schema)), producer=PRODUCER)}
        written = {}
        if manifest is not None:  # the files the run wrote into the table
            parts = manifest["tables"].get(table, [])
            written["outputStatistics"] = statistics.OutputStatisticsOutputDatasetFacet(
                rowCount=sum(p["rows"] for p in parts), size=sum(p["bytes"] for p in parts),
                fileCount=len(parts), producer=PRODUCER)
        datasets.append(OutputDataset(namespace=namespace, name=name, facets=facets,
                                      outputFacets=written))
    return datasets
