"""seqlab.store.lease: one writer per output; a second run is refused naming the holder, a
holder that is gone is taken over, and the lease leaves with its run."""

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import datetime, timedelta, timezone

import pyarrow.parquet as pq
import pytest

import seqlab
from seqlab.cli.main import main
from seqlab.errors import ConfigError, OutputError
from seqlab.store.lease import LEASE, STALE_AFTER_S, Holder, acquire, held, read_holder
from seqlab.store.outdir import OutputDir
from tests.seqlab import SMALL, rows, write_parquet


def holder(host: str | None = None, pid: int | None = None, age_s: float = 0) -> Holder:
    beat = (datetime.now(timezone.utc) - timedelta(seconds=age_s)).isoformat()
    return Holder("someone", "ray", host or socket.gethostname(), pid or os.getpid(), beat,
                  beat, run_id="r-1")


def write_lease(out, held_by: Holder) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / LEASE).write_text(json.dumps(asdict(held_by)))


@pytest.fixture
def writer():
    """A live process on this host, standing for a run that is still writing."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def test_a_second_run_is_refused_naming_the_holder(tmp_path, writer):
    write_lease(tmp_path / "out", holder(pid=writer.pid))
    with pytest.raises(OutputError, match=rf"is being written by run r-1 on the ray engine "
                       rf"\(host .*, pid {writer.pid}") as error:
        acquire(OutputDir(str(tmp_path / "out")), "local")
    assert "--take-over" in error.value.fix
    assert read_holder(OutputDir(str(tmp_path / "out"))).holder == "someone"  # untouched


def test_a_holder_that_ended_on_this_host_is_taken_over(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    write_lease(tmp_path / "out", holder(pid=int(ended.stdout)))
    lease = acquire(OutputDir(str(tmp_path / "out")), "local")
    assert lease.holder.taken_over_from["pid"] == int(ended.stdout)
    assert read_holder(lease.out).holder == lease.holder.holder


def test_another_hosts_lease_is_taken_over_only_when_stale_and_asked(tmp_path):
    out = OutputDir(str(tmp_path / "out"))
    write_lease(tmp_path / "out", holder(host="node-7", age_s=10))
    with pytest.raises(OutputError, match="host node-7"):
        acquire(out, "local", take_over=True)  # its heartbeat is fresh: it may still run
    write_lease(tmp_path / "out", holder(host="node-7", age_s=STALE_AFTER_S + 60))
    with pytest.raises(OutputError, match="last heartbeat"):
        acquire(out, "local")  # stale, but not asked to take over
    lease = acquire(out, "local", take_over=True)
    assert lease.holder.taken_over_from["host"] == "node-7"


def test_the_heartbeat_renews_and_the_lease_leaves_with_its_run(tmp_path):
    out = OutputDir(str(tmp_path / "out"))
    with held(out, "local", heartbeat=0.05) as lease:
        first = read_holder(out).heartbeat_at
        lease.renew("run-9")
        deadline = time.time() + 10
        while read_holder(out).heartbeat_at == first and time.time() < deadline:
            time.sleep(0.05)
        assert read_holder(out).heartbeat_at > first and read_holder(out).run_id == "run-9"
    assert read_holder(out) is None
    assert not (tmp_path / "out").exists()  # the lease made the folder, and left it empty


def test_a_lease_taken_over_is_no_longer_written_by_its_old_holder(tmp_path, caplog):
    out = OutputDir(str(tmp_path / "out"))
    lease = acquire(out, "local")
    write_lease(tmp_path / "out", holder(host="node-2"))
    lease.renew()
    assert "was taken over by run r-1" in caplog.text
    lease.release()
    assert read_holder(out).host == "node-2"  # the new holder's lease stays


def test_a_lease_being_created_is_read_once_its_holder_is_written(tmp_path, writer):
    """A run that takes the lease creates the file, then writes its holder: a run that meets
    the empty file in between is refused naming that holder, not told the lease is damaged."""
    import threading

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LEASE).write_bytes(b"")
    threading.Timer(0.2, write_lease, (tmp_path / "out", holder(pid=writer.pid))).start()
    with pytest.raises(OutputError, match="is being written by run r-1"):
        acquire(OutputDir(str(tmp_path / "out")), "local")


def test_an_empty_lease_that_stays_empty_names_its_file(tmp_path, monkeypatch):
    monkeypatch.setattr("seqlab.store.lease.EMPTY_WAIT_S", 0.001)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LEASE).write_bytes(b"")
    with pytest.raises(OutputError, match=rf"{tmp_path}/out/{LEASE} is not a readable"):
        acquire(OutputDir(str(tmp_path / "out")), "local")


def test_a_damaged_lease_names_its_file(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LEASE).write_text('{"holder": "x", ')
    with pytest.raises(OutputError, match=rf"{tmp_path}/out/{LEASE} is not a readable"):
        acquire(OutputDir(str(tmp_path / "out")), "local")


def test_a_store_without_exclusive_create_is_refused(tmp_path, monkeypatch):
    out = OutputDir(str(tmp_path / "out"))
    monkeypatch.setattr(out.fs, "protocol", ("webdav",))
    with pytest.raises(ConfigError, match="cannot create a file only if it is absent"):
        acquire(out, "local")


@pytest.mark.timeout(300)
def test_annotate_refuses_while_another_run_writes_then_resumes_once_it_is_gone(
        tmp_path, ner_model, writer, capsys):
    write_parquet(tmp_path / "in.parquet", rows(6))
    out = tmp_path / "out"
    write_lease(out, holder(pid=writer.pid))
    argv = ["annotate", str(tmp_path / "in.parquet"), str(out), "--model", str(ner_model),
            "--id-column", "id", "--max-length", "64", "--stride", "16"]
    assert main(argv) == 2
    assert "is being written by run r-1 on the ray engine" in capsys.readouterr().err
    assert not (out / "documents").exists()  # refused before any work
    writer.kill()
    writer.wait()
    assert main(argv) == 0  # its holder ended: taken over
    assert pq.read_table(out / "documents").num_rows == 6
    assert not (out / LEASE).exists()
    manifest = seqlab.annotate(str(tmp_path / "in.parquet"), str(out), model=str(ner_model),
                               id_column="id", overwrite=True, **SMALL)
    assert manifest["rows"] == {"in": 6, "out": 6} and not (out / LEASE).exists()
