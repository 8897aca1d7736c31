"""seqlab.run.lineage and seqlab.run.lineage_events: the OpenLineage events of real runs (a
finished one, failed ones, an interrupted and resumed incremental run, a Beam run), captured with
openlineage-python's file transport and with an HTTP receiver on 127.0.0.1, each validated
against the OpenLineage spec's JSON schemas (openlineage_spec/) and checked against what the
run wrote."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from tests import require
from tests.seqlab import SMALL, rows, write_parquet

require("openlineage.client", "lineage")
jsonschema = require("jsonschema", "dev")

from referencing import Registry, Resource  # noqa: E402

import seqlab  # noqa: E402
from seqlab.cli.annotate import annotate_options  # noqa: E402
from seqlab.cli.flags import add_lineage_flags  # noqa: E402
from seqlab.config import build_config  # noqa: E402
from seqlab.errors import ConfigError, SeqlabError  # noqa: E402
from seqlab.run.lineage import open_lineage, parents  # noqa: E402
from seqlab.run.lineage_events import run_uuid, schema_fields  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SPEC = Path(__file__).with_name("openlineage_spec")
RUN_EVENT = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
PARENT = "airflow/seqlab_daily_ray.annotate/01937a5e-8f2b-7c3d-9e4f-0a1b2c3d4e5f"
ROOT_PARENT = "airflow/seqlab_daily_ray/01937a5e-0000-7c3d-9e4f-0a1b2c3d4e5f"


@cache
def registry() -> Registry:
    """The spec's schemas and seqlab's own facet's, by their ``$id``."""
    files = [SPEC / "OpenLineage.json", *sorted((SPEC / "facets").glob("*.json")),
             ROOT / "docs" / "lineage" / "SeqlabRunFacet.json"]
    resources = [Resource.from_contents(json.loads(path.read_text())) for path in files]
    return Registry().with_resources((r.contents["$id"], r) for r in resources)


def check(instance: dict, ref: str) -> None:
    validator = jsonschema.Draft202012Validator(
        {"$ref": ref}, registry=registry(),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]
    assert not errors, f"{ref}:\n" + "\n".join(errors)


def validate(event: dict) -> None:
    """``event`` is a RunEvent of the spec, and each of its facets is valid under the schema
    its ``_schemaURL`` names (which must be one of openlineage_spec/ or seqlab's)."""
    check(event, RUN_EVENT)
    assert datetime.fromisoformat(event["eventTime"]).tzinfo is not None
    facets = [*event["run"]["facets"].values(), *event["job"]["facets"].values()]
    for dataset in event["inputs"] + event["outputs"]:
        for key in ("facets", "inputFacets", "outputFacets"):
            facets += dataset.get(key, {}).values()
    for facet in facets:
        known = facet["_schemaURL"].split("#")[0]
        assert known in {str(uri) for uri in registry()}, f"no schema for {known}"
        check(facet, facet["_schemaURL"])


@pytest.fixture
def clean_env(tmp_path, monkeypatch) -> Iterator[Path]:
    """No OpenLineage configuration but what the test sets: none of the machine's variables, no
    openlineage.yml in the working directory or the home. The client turns OPENLINEAGE_URL
    into OPENLINEAGE__* variables of its own, removed after the test."""
    for key in [k for k in os.environ if k.startswith("OPENLINEAGE")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for key in [k for k in os.environ if k.startswith("OPENLINEAGE")]:
        del os.environ[key]


@pytest.fixture
def event_file(clean_env, monkeypatch) -> Path:
    """Events appended to a file by the file transport, configured by OPENLINEAGE_CONFIG."""
    log = clean_env / "events.jsonl"
    config = clean_env / "lineage.yml"
    config.write_text(f"transport:\n  type: file\n  log_file_path: {log}\n  append: true\n")
    monkeypatch.setenv("OPENLINEAGE_CONFIG", str(config))
    return log


def events_in(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def receiver(clean_env, monkeypatch) -> Iterator[SimpleNamespace]:
    """An HTTP lineage endpoint on 127.0.0.1 (OPENLINEAGE_URL points at it) that keeps the
    events posted to it and answers ``status``."""
    got = SimpleNamespace(events=[], paths=[], status=200)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.paths.append(self.path)
            got.events.append(json.loads(body))
            self.send_response(got.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("OPENLINEAGE_URL", f"http://127.0.0.1:{server.server_port}")
    yield got
    server.shutdown()
    server.server_close()


def annotate(source: Path, out: Path, model: Path, **options) -> dict:
    return seqlab.annotate(str(source), str(out), model=str(model), id_column="id",
                           **{**SMALL, **options})


def on_disk(folder: Path) -> dict[str, int]:
    """The rows, bytes and files of the Parquet files under ``folder``."""
    files = sorted(folder.rglob("*.parquet"))
    return {"rowCount": sum(pq.read_metadata(f).num_rows for f in files),
            "size": sum(f.stat().st_size for f in files), "fileCount": len(files)}


def kinds(events: list[dict]) -> list[str]:
    return [event["eventType"] for event in events]


def run_id_of(manifest: dict) -> str:
    return run_uuid(manifest["run_id"], datetime.fromisoformat(manifest["processed_at"]))


def test_a_run_sends_start_then_complete_with_what_it_wrote(event_file, monkeypatch,
                                                           ner_model, tmp_path):
    monkeypatch.setenv("OPENLINEAGE_PARENT_ID", PARENT)
    monkeypatch.setenv("OPENLINEAGE_ROOT_PARENT_ID", ROOT_PARENT)
    write_parquet(tmp_path / "in" / "a.parquet", rows(4, "a"))
    write_parquet(tmp_path / "in" / "b.parquet", rows(3, "b"))
    out = tmp_path / "out"
    manifest = annotate(tmp_path / "in", out, ner_model)  # lineage on by its configuration
    start, complete = events = events_in(event_file)
    assert kinds(events) == ["START", "COMPLETE"]
    for event in events:
        validate(event)
        assert event["run"]["runId"] == run_id_of(manifest)
        assert uuid.UUID(event["run"]["runId"]).version == 7
        assert (event["job"]["namespace"], event["job"]["name"]) == ("seqlab", f"annotate:{out}")
        assert event["inputs"][0]["namespace"] == "file"
        assert event["inputs"][0]["name"] == str(tmp_path / "in")
        assert [(d["namespace"], d["name"]) for d in event["outputs"]] == \
            [("file", f"{out}/{table}") for table in ("documents", "mentions", "aggregates")]
        parent = event["run"]["facets"]["parent"]
        assert (parent["job"]["namespace"], parent["job"]["name"], parent["run"]["runId"]) == \
            tuple(PARENT.split("/"))
        assert parent["root"]["job"]["name"] == "seqlab_daily_ray"
        facet = event["run"]["facets"]["seqlab"]
        assert (facet["runId"], facet["engine"], facet["model"]) == \
            (manifest["run_id"], "local", str(ner_model))
        assert facet["modelRevision"] == manifest["model"]["revision"]
        assert facet["models"][0]["labels"] == manifest["model"]["labels"]
        for dataset in event["outputs"]:  # the schemas of the files the run wrote
            table = out / dataset["name"].rsplit("/", 1)[1]
            written = pq.read_schema(next(table.rglob("*.parquet")))
            assert dataset["facets"]["schema"]["fields"] == schema_fields(written)
    assert start["eventTime"] <= complete["eventTime"]
    assert "outputStatistics" not in start["outputs"][0].get("outputFacets", {})
    for dataset in complete["outputs"]:  # rows, bytes and files as they are on disk
        table = out / dataset["name"].rsplit("/", 1)[1]
        statistics = dataset["outputFacets"]["outputStatistics"]
        assert {k: statistics[k] for k in ("rowCount", "size", "fileCount")} == on_disk(table)
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 7
    assert complete["inputs"][0]["inputFacets"]["inputStatistics"]["rowCount"] == 7
    assert complete["inputs"][0]["inputFacets"]["inputStatistics"]["fileCount"] == 2


def test_a_run_whose_model_cannot_be_read_sends_start_and_fail(receiver, tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", rows(2))
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    with pytest.raises(SeqlabError) as raised:
        annotate(tmp_path / "in", tmp_path / "out", broken, lineage=True)
    assert kinds(receiver.events) == ["START", "FAIL"]
    assert set(receiver.paths) == {"/api/v1/lineage"}
    start, fail = receiver.events
    for event in receiver.events:
        validate(event)
        assert "schema" not in event["outputs"][0].get("facets", {})  # no plan: no schema
    assert start["run"]["runId"] == fail["run"]["runId"]  # a fresh id: the run had none
    assert uuid.UUID(fail["run"]["runId"]).version == 7
    error = fail["run"]["facets"]["errorMessage"]
    assert error["message"] == str(raised.value) and error["programmingLanguage"] == "python"
    assert type(raised.value).__name__ in error["stackTrace"]
    assert "runId" not in fail["run"]["facets"]["seqlab"]


class Stop:
    """A progress that stops the run once its plan is made, as ``signal`` or ``error`` does."""

    def __init__(self, signal_number: int | None = None, error: Exception | None = None):
        self.signal_number, self.error = signal_number, error

    def start(self, expected_characters: int | None) -> None:
        if self.signal_number is not None:
            os.kill(os.getpid(), self.signal_number)
        raise self.error or AssertionError("the signal ended nothing")

    def advance(self, characters: int) -> None: ...

    def update(self, counts) -> None: ...


def test_a_run_that_fails_and_its_resumption_share_a_run_id(receiver, ner_model, tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", rows(3))
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk gone"):
        annotate(tmp_path / "in", out, ner_model, lineage=True,
                 progress=Stop(error=OSError("disk gone")))
    manifest = annotate(tmp_path / "in", out, ner_model, lineage=True)  # resumes the run
    assert kinds(receiver.events) == ["START", "FAIL", "START", "COMPLETE"]
    for event in receiver.events:
        validate(event)
    assert {event["run"]["runId"] for event in receiver.events} == {run_id_of(manifest)}
    assert len(manifest["attempts"]) == 2
    fail = receiver.events[1]
    assert fail["run"]["facets"]["errorMessage"]["message"] == "disk gone"
    assert fail["run"]["facets"]["seqlab"]["runId"] == manifest["run_id"]


def test_an_incremental_run_stopped_by_sigterm_aborts_and_resumes_under_its_id(
        event_file, ner_model, tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", rows(3, "a"))
    out = tmp_path / "table"
    first_day = dict(incremental=True, run_date="2026-12-01")
    # the process's own handler, as in a fresh `seqlab annotate` (an earlier test's ray.init
    # in this process installs one of Ray's, which the run then leaves alone)
    earlier = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        sigterm_aborts_and_resumes(out, tmp_path, ner_model, first_day, event_file)
    finally:
        signal.signal(signal.SIGTERM, earlier)


def sigterm_aborts_and_resumes(out, tmp_path, ner_model, first_day, event_file):
    with pytest.raises(SystemExit) as stopped:
        annotate(tmp_path / "in", out, ner_model, progress=Stop(signal.SIGTERM), **first_day)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the default handler is back
    first = annotate(tmp_path / "in", out, ner_model, **first_day)  # resumes the stopped run
    write_parquet(tmp_path / "in" / "b.parquet", rows(2, "b"))
    second = annotate(tmp_path / "in", out, ner_model, incremental=True, run_date="2026-12-02")
    events = events_in(event_file)
    assert kinds(events) == ["START", "ABORT", "START", "COMPLETE", "START", "COMPLETE"]
    for event in events:
        validate(event)
    assert "errorMessage" not in events[1]["run"]["facets"]
    assert {e["run"]["runId"] for e in events[:4]} == {run_id_of(first)}
    assert {e["run"]["runId"] for e in events[4:]} == {run_id_of(second)} != {run_id_of(first)}
    assert events[5]["run"]["facets"]["seqlab"]["runDate"] == "2026-12-02"
    # the tables are the same datasets every day; each run's statistics count its own files
    assert [d["name"] for d in events[3]["outputs"]] == [d["name"] for d in events[5]["outputs"]]
    for dataset in events[5]["outputs"]:
        day = out / dataset["name"].rsplit("/", 1)[1] / "run_date=2026-12-02"
        statistics = dataset["outputFacets"]["outputStatistics"]
        assert {k: statistics[k] for k in ("rowCount", "size", "fileCount")} == on_disk(day)
    assert events[5]["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 2
    assert events[5]["inputs"][0]["inputFacets"]["inputStatistics"]["fileCount"] == 1


def test_a_transport_that_fails_only_warns(receiver, ner_model, tmp_path, caplog):
    receiver.status = 400  # the endpoint refuses every event
    write_parquet(tmp_path / "in" / "a.parquet", rows(2))
    with caplog.at_level(logging.WARNING, logger="seqlab.run.lineage"):
        manifest = annotate(tmp_path / "in", tmp_path / "out", ner_model, lineage=True)
    assert manifest["complete"] and manifest["rows"] == {"in": 2, "out": 2}
    assert kinds(receiver.events) == ["START", "COMPLETE"]
    assert "the START event was not sent (HTTPError" in caplog.text
    assert "the COMPLETE event was not sent (HTTPError" in caplog.text


def test_a_beam_run_sends_the_same_events(event_file, ner_model, tmp_path):
    require("apache_beam", "beam")
    write_parquet(tmp_path / "in" / "a.parquet", rows(4))
    out = tmp_path / "out"
    manifest = annotate(tmp_path / "in", out, ner_model, engine="beam",
                        lineage_job="warehouse/wiki_ner",
                        engine_options={"beam_args": ["--direct_num_workers=1"]})
    events = events_in(event_file)
    assert kinds(events) == ["START", "COMPLETE"]
    for event in events:
        validate(event)
        assert event["run"]["runId"] == run_id_of(manifest)
        assert (event["job"]["namespace"], event["job"]["name"]) == ("warehouse", "wiki_ner")
        assert event["run"]["facets"]["seqlab"]["engine"] == "beam"
        assert "parent" not in event["run"]["facets"]
    for dataset in events[1]["outputs"]:
        table = out / dataset["name"].rsplit("/", 1)[1]
        statistics = dataset["outputFacets"]["outputStatistics"]
        assert {k: statistics[k] for k in ("rowCount", "size", "fileCount")} == on_disk(table)


def test_lineage_without_a_transport_fails_before_any_work(clean_env):
    # neither the input nor the model exists: the lineage check comes first
    with pytest.raises(ConfigError, match="--lineage found no OpenLineage transport") as raised:
        seqlab.annotate("missing-in", "out", model="missing-model", lineage=True)
    assert "OPENLINEAGE_URL" in raised.value.fix
    assert open_lineage(build_config(input="in", output="out")) is None  # off: no flag, no config


def test_without_openlineage_python_lineage_fails_and_a_configuration_only_warns(
        clean_env, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "openlineage.client", None)  # its import fails
    with pytest.raises(ConfigError, match="openlineage-python is not installed") as raised:
        open_lineage(build_config(input="in", output="out", lineage=True))
    assert "pip install 'seqlab[lineage]'" in raised.value.fix
    monkeypatch.setenv("OPENLINEAGE_URL", "http://127.0.0.1:5000")
    with caplog.at_level(logging.WARNING, logger="seqlab.run.lineage"):
        assert open_lineage(build_config(input="in", output="out")) is None
    assert "this run sends no lineage events" in caplog.text


def test_lineage_flags_and_parents(clean_env, monkeypatch, caplog):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")  # as seqlab annotate has it
    add_lineage_flags(parser)
    args = parser.parse_args(["--lineage", "--lineage-job", "ns/job", "--lineage-parent", PARENT])
    config = build_config(input="in", output="out", **annotate_options(args))
    assert (config.lineage, config.lineage_job, config.lineage_parent) == (True, "ns/job", PARENT)
    assert not build_config(input="in", output="out",
                            **annotate_options(parser.parse_args([]))).lineage
    monkeypatch.setenv("OPENLINEAGE_PARENT_ID", "airflow/not-a-run-id")
    with caplog.at_level(logging.WARNING, logger="seqlab.run.lineage"):
        assert parents(None) == (None, None)  # a variable set by someone else only warns
    assert "OPENLINEAGE_PARENT_ID 'airflow/not-a-run-id' is not NAMESPACE/JOB/RUN_ID" in caplog.text
    assert parents(PARENT)[0].job == "seqlab_daily_ray.annotate"
    for flag, value in (("lineage_parent", "airflow/job"), ("lineage_job", "ns/")):
        with pytest.raises(ConfigError, match=f"--{flag.replace('_', '-')}"):
            open_lineage(build_config(input="in", output="out", **{flag: value}))
