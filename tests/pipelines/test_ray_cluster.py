"""The Ray engine on a real multi-node cluster that loses a worker node mid-run.

A head and two worker nodes run on 127.0.0.1 in the test process (``ray.cluster_utils.Cluster``:
each node a raylet of its own, with its own logical CPUs, object store and worker processes).
The head's 1 CPU is too little for a tagging actor (1.5 CPUs), so the two tagging actors land on
the worker nodes, one on each, and a worker node has room for both, so the surviving one can take
the lost actor in. A driver process (the CLI, as a user runs it) annotates the corpus; once its
first input file is recorded, the worker node of one tagging actor is killed outright (SIGKILL
of its raylet, object store and workers). Ray retries the lost tasks, restarts the actor on the
other worker node, and the run ends with exactly what the local engine lands from the same input.
(With a fixed count of retries per tagging batch, the count ran out while the lost node still
refused connections, before Ray had declared it dead, and the run failed: ActorUnavailableError.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import require

ray = require("ray", "ray")

from ray.cluster_utils import Cluster  # noqa: E402

import seqlab  # noqa: E402
from tests.conftest import BAD_ROWS, make_corpus  # noqa: E402
from tests.helpers import comparable, read_output  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = {"max_length": 64, "stride": 16, "batch_docs": 8, "batch_tokens": 1024}
FLAGS = ["--max-length", "64", "--stride", "16", "--batch-docs", "8", "--batch-tokens", "1024"]
# logical CPUs: the head runs the driver and some read, tokenize and land tasks; a tagging
# actor fits only on a worker node, and one worker node holds both actors
HEAD_CPUS, WORKER_CPUS, ACTOR_CPUS = 1, 3, 1.5
RAY_FLAGS = ["--tag-actors", "2", "--cpus-per-actor", str(ACTOR_CPUS), "--tokenize-cpus", "0.5"]
STORE = 150 * 1024 * 1024  # object store bytes per node
FILES = 24
TABLES = ("documents", "mentions", "aggregates")


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Twenty-four small input files with long documents, one of them JSON Lines with the bad
    rows and a line that is not JSON, so the driver is still busy when its first file is
    recorded."""
    root = tmp_path / "in"
    root.mkdir()
    for i in range(FILES):
        rows = [{**r, "id": f"f{i:02d}-{r['id']}"}
                for r in make_corpus(10, seed=i, long_every=5, long_words=300)]
        if i == 7:
            lines = [json.dumps(r) for r in rows + BAD_ROWS] + ['{"id": "broken", "text": ']
            (root / f"part-{i:02d}.jsonl").write_text("\n".join(lines) + "\n")
        else:
            pq.write_table(pa.Table.from_pylist(rows), root / f"part-{i:02d}.parquet")
    return root


@pytest.fixture
def cluster(monkeypatch):
    """A head and two worker nodes on loopback, in a Ray temp folder of their own (short: Ray's
    socket paths live in it), so /tmp/ray and its current-cluster file are never touched."""
    temp = tempfile.mkdtemp(prefix="seqlab-rc-")
    (Path(temp) / "ray").mkdir()
    monkeypatch.setenv("RAY_TMPDIR", temp)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a test cluster on loopback; no token
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # a driver given 127.0.0.1:PORT connects to the machine's own address instead, where
    # nodes started on 127.0.0.1 do not listen; this keeps nodes and drivers on loopback
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    cluster = Cluster()  # nodes added one by one, so that a failed start still shuts down
    try:
        cluster.add_node(num_cpus=HEAD_CPUS, object_store_memory=STORE,
                         include_dashboard=False, node_ip_address="127.0.0.1")
        workers = [cluster.add_node(num_cpus=WORKER_CPUS, object_store_memory=STORE,
                                    node_ip_address="127.0.0.1") for _ in range(2)]
        cluster.wait_for_nodes()
        yield cluster, workers
    finally:
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def tag_actors(cluster: Cluster) -> list[dict]:
    """The tagging actors the GCS knows: state, restarts and (last) node of each."""
    return [a for a in cluster.global_state.actor_table(None).values()
            if "TagActor" in a["ActorClassName"]]


def alive_nodes(cluster: Cluster) -> set[str]:
    return {n["NodeID"] for n in cluster.global_state.node_table() if n["Alive"]}


def test_a_worker_node_lost_mid_run(cluster, corpus, ner_model, tmp_path):
    cluster, workers = cluster
    expected = seqlab.annotate(str(corpus), str(tmp_path / "local"), model=str(ner_model),
                               engine="local", **OPTIONS)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "seqlab", "-q", "annotate", str(corpus), str(out),
               "--model", str(ner_model), "--engine", "ray", "--address", cluster.address,
               *FLAGS, *RAY_FLAGS]
    log = tmp_path / "driver.log"
    with open(log, "wb") as sink:
        driver = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT,
                                  env={**os.environ, "PYTHONPATH": ""})
        try:
            # the kill comes once an input file is recorded and both actors are up
            deadline = time.monotonic() + 200
            while True:
                assert driver.poll() is None, "the run ended before a node was lost:\n" + \
                    log.read_text()[-3000:]
                assert time.monotonic() < deadline, "no input file recorded in time:\n" + \
                    log.read_text()[-3000:]
                hosts = {a["Address"]["NodeID"] for a in tag_actors(cluster)
                         if a["State"] == "ALIVE"}
                if len(hosts) == 2 and list(out.glob("_progress/fragment-*.json")):
                    break
                time.sleep(0.05)
            assert hosts == {w.node_id for w in workers}  # one actor on each worker node
            recorded = len(list(out.glob("_progress/fragment-*.json")))
            cluster.remove_node(workers[0], allow_graceful=False)
            assert not (out / "_manifest.json").exists(), "the run ended before the kill"
            code = driver.wait(timeout=300)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
    assert code == 0, log.read_text()[-5000:]
    assert 1 <= recorded < FILES

    lost, kept = workers[0].node_id, workers[1].node_id
    assert lost not in alive_nodes(cluster)
    restarted = [a for a in tag_actors(cluster) if a["NumRestarts"] >= 1]
    assert restarted, "no tagging actor was restarted"
    assert all(a["Address"]["NodeID"] == kept for a in restarted)  # moved to the survivor

    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["complete"] and manifest["engine"] == "ray"
    assert manifest["rows"] == expected["rows"] == {"in": 10 * FILES + 4, "out": 10 * FILES + 4}
    assert manifest["counts"] == expected["counts"]
    assert [a["engine"] for a in manifest["attempts"]] == ["ray"]  # one attempt: no rerun
    ids = pq.read_table(out / "documents", columns=["doc_id"]).column("doc_id").to_pylist()
    assert len(ids) == len(set(ids)) == 10 * FILES + 4  # every doc_id exactly once
    assert comparable(read_output(out)) == comparable(read_output(tmp_path / "local"))
    listed = {p["path"] for parts in manifest["tables"].values() for p in parts}
    assert listed == {p.relative_to(out).as_posix() for t in TABLES
                      for p in (out / t).rglob("*") if p.is_file()}
    assert not (out / "_progress").exists() and not list(out.rglob(".tmp-*"))
