"""seqlab.run.metrics: the metrics of real runs pushed to Debian's Prometheus Pushgateway on
127.0.0.1 and read back from its /metrics page; a failed run keeps the last success's time;
an unreachable gateway only warns."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import REQUIRE_EXTRAS, require

require("prometheus_client", "metrics")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import seqlab  # noqa: E402
from seqlab import schema  # noqa: E402
from seqlab.cli.annotate import annotate_options  # noqa: E402
from seqlab.cli.flags import add_metrics_flags  # noqa: E402
from seqlab.config import build_config  # noqa: E402
from seqlab.errors import ConfigError  # noqa: E402
from seqlab.run import finish  # noqa: E402
from seqlab.run.metrics import RunMetrics  # noqa: E402
from tests.conftest import BAD_ROWS, make_corpus  # noqa: E402

PUSHGATEWAY = "prometheus-pushgateway"
INSTALL = "apt-get install -y prometheus-pushgateway"
DOCS = 12
# texts longer than this land as too_long rows: the corpus has ok, empty and too_long rows
MAX_CHARS = 300


def free_port() -> int:
    """A port nothing listens on (the socket that found it is closed again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pushgateway_binary() -> str:
    """Debian's Pushgateway; missing, the test fails where every extra must be installed
    (SEQLAB_REQUIRE_EXTRAS=1, as CI sets) and is skipped elsewhere."""
    found = shutil.which(PUSHGATEWAY) or next(
        (path for path in (f"/usr/bin/{PUSHGATEWAY}",) if os.access(path, os.X_OK)), None)
    if found is None:
        message = f"no {PUSHGATEWAY} on this machine: {INSTALL}"
        if os.environ.get(REQUIRE_EXTRAS):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory) -> Iterator[str]:
    """A Pushgateway on a free port of 127.0.0.1, its metrics in memory only (Debian's build
    persists them to /var/lib/prometheus/pushgateway.data unless told otherwise, which would
    carry one session's metrics into the next); ended (only the process started here) when
    the module's tests are done."""
    binary = pushgateway_binary()
    port = free_port()
    logged = tmp_path_factory.mktemp("pushgateway") / "pushgateway.log"
    with logged.open("wb") as sink:
        process = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}",
                                    "--persistence.file="],
                                   stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the Pushgateway did not start:\n{logged.read_text()}")
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pushed(gateway: str, table: str, job: str = "seqlab") -> dict[tuple[str, str | None], float]:
    """The gateway's samples of one group, by (name, status label), parsed with
    prometheus_client's text parser."""
    with urllib.request.urlopen(f"{gateway}/metrics", timeout=5) as page:
        text = page.read().decode()
    return {(sample.name, sample.labels.get("status")): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.labels.get("job") == job and sample.labels.get("table") == table}


def write_corpus(folder: Path) -> Path:
    path = folder / "corpus.parquet"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(make_corpus(DOCS, long_every=0) + BAD_ROWS), path)
    return path


def run(source: Path, out: Path, model: Path, **options) -> dict:
    return seqlab.annotate(str(source), str(out), model=str(model), id_column="id",
                           max_chars=MAX_CHARS, **options)


def check_counts(got: dict, out: Path) -> None:
    """The pushed counts are those of the tables the run landed."""
    documents = pq.read_table(out / "documents")
    statuses = Counter(documents.column(schema.STATUS).to_pylist())
    assert {schema.OK, schema.EMPTY, schema.TOO_LONG} <= set(statuses)  # the corpus's mix
    for status in (schema.OK, schema.EMPTY, schema.TOO_LONG, schema.FAILED):
        assert got[("seqlab_run_documents", status)] == statuses.get(status, 0), status
    assert got[("seqlab_run_words", None)] == sum(documents.column(schema.N_TOKENS).to_pylist())
    assert got[("seqlab_run_entities", None)] == pq.read_table(out / "mentions").num_rows
    assert got[("seqlab_run_input_files", None)] == 1
    assert got[("seqlab_run_failed_input_files", None)] == 0
    assert got[("seqlab_run_failed", None)] == 0


def test_a_run_pushes_the_counts_of_what_it_landed(pushgateway, ner_model, tmp_path):
    source, out = write_corpus(tmp_path / "in"), tmp_path / "out"
    before = time.time()
    manifest = run(source, out, ner_model, metrics_pushgateway=pushgateway)
    after = time.time()
    assert manifest["complete"]
    got = pushed(pushgateway, out.as_uri())  # the table's full URL, not the path as given
    check_counts(got, out)
    seconds = got[("seqlab_run_duration_seconds", None)]
    assert 0 < seconds <= after - before
    assert before <= got[("seqlab_last_success_timestamp_seconds", None)] <= after
    assert got[("seqlab_run_words_per_second", None)] == pytest.approx(
        got[("seqlab_run_words", None)] / seconds)


def test_a_failed_run_keeps_the_last_success_and_its_rerun_replaces_it(
        pushgateway, ner_model, tmp_path, monkeypatch):
    source, out = write_corpus(tmp_path / "in"), tmp_path / "out"
    options = {"metrics_pushgateway": pushgateway, "metrics_job": "nightly"}
    run(source, out, ner_model, **options)
    first = pushed(pushgateway, out.as_uri(), job="nightly")

    def storage_gone(step: str) -> None:  # the run dies after tagging, before its manifest
        if step == "aggregates-gather":
            raise RuntimeError("the storage went away")

    monkeypatch.setattr(finish, "pause_at", storage_gone)
    with pytest.raises(RuntimeError, match="the storage went away"):
        run(source, out, ner_model, overwrite=True, **options)
    failed = pushed(pushgateway, out.as_uri(), job="nightly")
    assert failed[("push_time_seconds", None)] > first[("push_time_seconds", None)]
    assert failed[("seqlab_run_failed", None)] == 1
    assert failed[("seqlab_run_duration_seconds", None)] != \
        first[("seqlab_run_duration_seconds", None)]
    kept = {key: value for key, value in first.items() if key[0] not in (
        "push_time_seconds", "seqlab_run_failed", "seqlab_run_duration_seconds")}
    assert {key: failed[key] for key in kept} == kept  # the last success's time and counts

    monkeypatch.undo()
    before = time.time()
    run(source, out, ner_model, overwrite=True, **options)  # the same command, resumed
    again = pushed(pushgateway, out.as_uri(), job="nightly")
    assert again[("seqlab_run_failed", None)] == 0
    assert again[("seqlab_last_success_timestamp_seconds", None)] >= before
    check_counts(again, out)


def test_an_interrupted_command_pushes_a_failure(pushgateway, tmp_path):
    config = SimpleNamespace(metrics_pushgateway=pushgateway, metrics_job="interrupted",
                             output=str(tmp_path / "table"), storage_options={})
    with pytest.raises(KeyboardInterrupt), RunMetrics(config):
        raise KeyboardInterrupt
    got = pushed(pushgateway, (tmp_path / "table").as_uri(), job="interrupted")
    assert got[("seqlab_run_failed", None)] == 1
    assert ("seqlab_last_success_timestamp_seconds", None) not in got  # never succeeded
    assert ("seqlab_run_words", None) not in got


def test_the_beam_engine_pushes_the_counts_of_what_it_landed(pushgateway, ner_model,
                                                             tmp_path):
    require("apache_beam", "beam")
    source, out = write_corpus(tmp_path / "in"), tmp_path / "out"
    run(source, out, ner_model, engine="beam", metrics_pushgateway=pushgateway)
    got = pushed(pushgateway, out.as_uri())
    check_counts(got, out)
    assert got[("seqlab_last_success_timestamp_seconds", None)] > 0


def test_an_unreachable_gateway_only_warns(ner_model, tmp_path, caplog):
    source, out = write_corpus(tmp_path / "in"), tmp_path / "out"
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="seqlab.run.metrics"):
        manifest = run(source, out, ner_model, metrics_pushgateway=nowhere)
    assert manifest["complete"] and manifest["rows"]["out"] == DOCS + len(BAD_ROWS)
    assert f"could not push the run's metrics to {nowhere}" in caplog.text


def test_without_prometheus_client_the_command_stops_before_any_work(monkeypatch, ner_model,
                                                                     tmp_path):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # its import fails
    source, out = write_corpus(tmp_path / "in"), tmp_path / "out"
    with pytest.raises(ConfigError, match="needs prometheus-client") as caught:
        run(source, out, ner_model, metrics_pushgateway="http://127.0.0.1:9091")
    assert "seqlab[metrics]" in caught.value.fix
    assert not out.exists()


def test_the_flags_reach_the_config():
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("output")
    add_metrics_flags(parser)
    args = parser.parse_args(["in", "out", "--metrics-pushgateway", "pushgateway.monitoring:9091",
                              "--metrics-job", "seqlab-daily"])
    config = build_config(**annotate_options(argparse.Namespace(**vars(args), config=None)))
    assert config.metrics_pushgateway == "http://pushgateway.monitoring:9091"
    assert config.metrics_job == "seqlab-daily"
    plain = build_config(input="in", output="out")
    assert config.fingerprint() == plain.fingerprint()  # a resumed run may turn them on


@pytest.mark.parametrize(("options", "message"), [
    ({"metrics_job": "nightly"}, "--metrics-job names the job of --metrics-pushgateway"),
    ({"metrics_pushgateway": "s3://bucket/gateway"}, "is not an http"),
    ({"metrics_pushgateway": "http://:9091"}, "names no host"),
    ({"metrics_pushgateway": "http://pushgateway:port"}, "has a bad port"),
    ({"metrics_pushgateway": "http://user:secret@pushgateway:9091"}, "holds credentials"),
    ({"metrics_pushgateway": "http://pushgateway:9091", "metrics_job": " "}, "is empty"),
])
def test_bad_metrics_options_are_refused_with_their_fix(options, message):
    with pytest.raises(ConfigError, match=message) as caught:
        build_config(input="in", output="out", **options)
    assert caught.value.fix
