"""The Beam engine on the in-process FnApiRunner: parity with the local engine, dead letters."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import require

require("apache_beam", "beam")

import seqlab  # noqa: E402
from pipelines import beam_cli  # noqa: E402
from seqlab import schema  # noqa: E402
from seqlab.cli.main import main as cli_main  # noqa: E402
from seqlab.errors import ConfigError  # noqa: E402
from seqlab.run.plan import (
    plan_run,  # noqa: E402
    work_items,  # noqa: E402
)
from seqlab.stages import aggregate
from tests.conftest import BAD_ROWS, make_corpus  # noqa: E402
from tests.tiny import build_tiny_model  # noqa: E402

# small windows and budget: long documents get many windows, batches hold several documents
OPTIONS = ["--max-length", "64", "--stride", "16", "--batch-tokens", "1024", "--batch-docs", "16"]
KEYS = {"documents": ["doc_id"], "mentions": ["doc_id", "start_char"],
        "aggregates": ["label", "text"]}


def write_corpus(root: Path) -> Path:
    """A Parquet file and a JSON Lines file one folder down, with bad rows and bad lines."""
    (root / "sub").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(make_corpus(36, long_every=9, long_words=600) + BAD_ROWS),
                   root / "a.parquet", row_group_size=16)
    lines = [json.dumps(r) for r in make_corpus(10, seed=4, long_every=0)]
    lines[3:3] = ['{"id": "broken", "text": ', '[1, 2]', json.dumps({"id": "n", "text": 7})]
    (root / "sub" / "b.jsonl").write_bytes(
        ("\n".join(lines) + "\n").encode() + b'{"id": "latin", "text": "caf\xe9"}\n')
    return root


def read(out: Path, table: str) -> pa.Table:
    data = pq.read_table(out / table)
    data = data.drop_columns([c for c in ("run_id", "processed_at") if c in data.column_names])
    return data.sort_by([(k, "ascending") for k in KEYS[table]])


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    # trained-with-casing: the token type ids must reach the model on every engine
    return build_tiny_model(tmp_path_factory.mktemp("beam-model") / "ner", case_feature=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, model) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("beam-parity")
    corpus = write_corpus(root / "in")
    outs = {"local": root / "local", "beam": root / "beam"}
    for engine, out in outs.items():
        argv = ["-q", "annotate", str(corpus), str(out), "--model", str(model), *OPTIONS,
                "--engine", engine]
        if engine == "beam":
            argv += ["--", "--direct_num_workers=1"]
        assert cli_main(argv) == 0
    return outs


@pytest.mark.parametrize("table", ["documents", "mentions", "aggregates"])
def test_beam_and_local_land_identical_rows(runs, table: str) -> None:
    local, beam = read(runs["local"], table), read(runs["beam"], table)
    assert beam.schema.equals(local.schema)
    assert beam.num_rows == local.num_rows > 0
    assert beam.equals(local)


def test_bad_rows_and_file_row_ids_match(runs) -> None:
    docs = read(runs["beam"], "documents").to_pylist()
    ids = {d["doc_id"] for d in docs}
    assert {"a.parquet:0", "a.parquet:38", "sub/b.jsonl:0", "sub/b.jsonl:13"} <= ids
    statuses = {d["doc_id"]: d["status"] for d in docs}
    assert statuses["a.parquet:36"] == schema.EMPTY  # null text
    assert statuses["sub/b.jsonl:3"] == schema.BAD_RECORD  # broken JSON line
    assert statuses["sub/b.jsonl:5"] == schema.BAD_TYPE  # text is a number
    assert statuses["sub/b.jsonl:13"] not in (schema.OK, schema.FAILED)  # not UTF-8


def test_manifest_describes_the_beam_parts(runs) -> None:
    beam = json.loads((runs["beam"] / "_manifest.json").read_text())
    local = json.loads((runs["local"] / "_manifest.json").read_text())
    assert beam["engine"] == "beam" and beam["beam"]["runner"] == "FnApiRunner"
    assert beam["rows"] == local["rows"] == {"in": 53, "out": 53}
    assert beam["counts"] == local["counts"]
    assert [(i["fragment"], i["rows"]) for i in beam["inputs"]] == [
        (i["fragment"], i["rows"]) for i in local["inputs"]]
    parts = beam["tables"]["documents"] + beam["tables"]["mentions"] + beam["aggregates"]
    for part in parts:
        path = runs["beam"] / part["path"]
        assert path.stat().st_size == part["bytes"]
        assert pq.ParquetFile(path).metadata.num_rows == part["rows"]
    assert sum(p["rows"] for p in beam["tables"]["documents"]) == 53
    landed = {f"{t}/{p.name}" for t in ("documents", "mentions", "aggregates")
              for p in (runs["beam"] / t).iterdir()}
    assert landed == {p["path"] for p in parts}  # nothing in the tables but the manifest's
    assert not (runs["beam"] / "_progress").exists()


def explode(step: str, doc_id: str, cls, monkeypatch) -> None:
    """Make ``cls.__call__`` raise for any batch holding ``doc_id``."""
    original = cls.__call__

    def call(self, batch):
        if doc_id in batch.column(schema.DOC_ID).to_pylist():
            raise RuntimeError(f"injected {step} failure")
        return original(self, batch)

    monkeypatch.setattr(cls, "__call__", call)


def test_rows_that_raise_land_as_failed_documents(tmp_path, model, monkeypatch,
                                                  caplog) -> None:
    from seqlab.stages.tag import Tagger
    from seqlab.stages.tokenize import Tokenizer
    from seqlab.stages.tokens import TokenDecoder

    rows = make_corpus(14, seed=2, long_every=7, long_words=300)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    failing = {"doc-002": ("tokenize", Tokenizer), "doc-007": ("tag", Tagger),
               "doc-011": ("decode", TokenDecoder)}
    for doc_id, (step, cls) in failing.items():
        explode(step, doc_id, cls, monkeypatch)
    out = tmp_path / "out"
    caplog.set_level(logging.INFO, logger="pipelines.beam")
    assert beam_cli.main(["--input", str(tmp_path / "in.parquet"), "--output", str(out),
                             "--model", str(model), "--id_column", "id", *OPTIONS]) == 0

    docs = {d["doc_id"]: d for d in pq.read_table(out / "documents").to_pylist()}
    assert len(docs) == len(rows)
    for doc_id, (step, _) in failing.items():
        assert docs[doc_id]["status"] == schema.FAILED
        assert docs[doc_id]["error"] == f"{step} failed: RuntimeError: injected {step} failure"
        assert docs[doc_id]["tokens"] is None and docs[doc_id]["n_tokens"] == 0
        assert docs[doc_id]["text"] == rows[int(doc_id[4:])]["text"]
    assert all(d["status"] == schema.OK for k, d in docs.items() if k not in failing)

    mentions = pq.read_table(out / "mentions")
    assert not set(mentions.column("doc_id").to_pylist()) & set(failing)
    landed = pq.read_table(out / "aggregates")
    assert landed.equals(aggregate.finalize(aggregate.partials(mentions)))
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["counts"]["status.failed"] == 3
    assert "documents=14" in caplog.text


def test_limit_takes_the_first_rows_in_fragment_order(tmp_path, model) -> None:
    corpus = write_corpus(tmp_path / "in")
    plan = plan_run(seqlab.config.build_config(input=str(corpus), output=str(tmp_path / "o"),
                                               model=str(model), limit=45, engine="beam"))
    assert [(i.fragment.index, i.limit) for i in plan.work] == [(0, 45), (1, 6)]
    plan.config.limit = 20
    assert [(i.fragment.index, i.limit) for i in work_items(plan)] == [(0, 20)]


def test_an_output_beam_cannot_write_is_refused_before_work(tmp_path, model) -> None:
    pq.write_table(pa.Table.from_pylist(make_corpus(2)), tmp_path / "in.parquet")
    with pytest.raises(ConfigError, match="Beam cannot write"):
        seqlab.annotate(str(tmp_path / "in.parquet"), "memory://seqlab-beam/out",
                        model=str(model), engine="beam")


TWO_WORKERS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def sent_to_workers(runner) -> dict:
    """The pipeline options a local worker process starts with, read as the worker reads them
    (``SubprocessSdkWorker`` passes the provision info's options as JSON)."""
    from apache_beam.runners.worker.sdk_worker_main import _load_pipeline_options
    from google.protobuf import json_format

    return _load_pipeline_options(
        json_format.MessageToJson(runner._provision_info.provision_info.pipeline_options))


def test_local_worker_processes_get_the_run_options() -> None:
    from pipelines import beam

    runner, _ = beam.pipeline_options(beam.BeamOptions(
        beam_args=[*TWO_WORKERS, "--pickle_library=cloudpickle"]))
    sent = sent_to_workers(runner)
    assert sent["pickle_library"] == "cloudpickle" and sent["direct_num_workers"] == "2"
    # Beam's plumbing quiet, seqlab's steps at INFO
    assert sent["default_sdk_harness_log_level"] == "WARNING"
    assert sent["sdk_harness_log_level_overrides"] == {"seqlab": "INFO", "pipelines": "INFO"}

    runner, _ = beam.pipeline_options(beam.BeamOptions(
        beam_args=[*TWO_WORKERS, "--default_sdk_harness_log_level=DEBUG"]))
    sent = sent_to_workers(runner)  # a level the user gives is theirs
    assert sent["default_sdk_harness_log_level"] == "DEBUG"
    assert "sdk_harness_log_level_overrides" not in sent
    runner, _ = beam.pipeline_options(beam.BeamOptions())
    assert "default_sdk_harness_log_level" not in sent_to_workers(runner)  # in-process


def test_local_running_mode_and_worker_threads(monkeypatch) -> None:
    from pipelines import beam

    about = beam.describe(*beam.pipeline_options(beam.BeamOptions(beam_args=TWO_WORKERS)))
    assert about == {"runner": "FnApiRunner", "running_mode": "multi_processing", "workers": 2}
    assert beam.describe("DataflowRunner", None) == {"runner": "DataflowRunner"}
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(beam.os, "cpu_count", lambda: 8)
    assert beam.worker_threads(about) == 4  # the CPUs shared among the worker processes
    assert beam.worker_threads({**about, "workers": 16}) == 1
    everyone = beam.describe(*beam.pipeline_options(beam.BeamOptions(
        beam_args=["--direct_running_mode=multi_processing", "--direct_num_workers=0"])))
    assert everyone["workers"] == 8 and beam.worker_threads(everyone) == 1  # one per CPU
    in_process = beam.describe(*beam.pipeline_options(beam.BeamOptions()))
    assert in_process["running_mode"] == "in_memory" and beam.worker_threads(in_process) is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert beam.worker_threads(about) is None  # the user's setting stands
