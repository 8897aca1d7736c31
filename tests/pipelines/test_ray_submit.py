"""``seqlab submit``: token lookup, runtime_env, entrypoints, and jobs on a real Ray cluster.

The cluster fixture runs ``ray start --head`` on loopback with token authentication on (the Ray
2.60 default) and a token of its own, so the test exercises the bearer header for real. It
stops the cluster by process group and ids at the end, never by process name, so other Ray
instances on the machine are left alone.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.ray_submit import auth_token, entrypoint, job_headers, runtime_env
from seqlab.cli.main import build_parser, main
from seqlab.errors import ConfigError
from tests import require

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def test_token_lookup_order(tmp_path):
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home\n")
    (tmp_path / "token").write_text("from-path\n")
    path = {"RAY_AUTH_TOKEN_PATH": str(tmp_path / "token")}
    assert auth_token({"RAY_AUTH_TOKEN": "from-env", **path}, home=tmp_path) == "from-env"
    assert auth_token(path, home=tmp_path) == "from-path"
    assert auth_token({}, home=tmp_path) == "from-home"
    assert auth_token({}, home=tmp_path / "nobody") is None
    with pytest.raises(ConfigError, match="RAY_AUTH_TOKEN_PATH"):
        auth_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")})


def test_headers_carry_the_token_and_ray_job_headers(tmp_path):
    env = {"RAY_AUTH_TOKEN": "t0k", "RAY_JOB_HEADERS": '{"X-Team": "nlp"}'}
    assert job_headers(env, home=tmp_path) == {"X-Team": "nlp", "Authorization": "Bearer t0k"}
    assert job_headers({}, home=tmp_path) == {}
    with pytest.raises(ConfigError, match="RAY_JOB_HEADERS"):
        job_headers({"RAY_JOB_HEADERS": "not json"}, home=tmp_path)


def test_working_dir_leaves_git_ignored_files_behind(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("build/\n")
    (tmp_path / ".git" / "info" / "exclude").write_text("scratch/\n")
    for name in ("build", "scratch", "src"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f.py").write_text("x = 1\n")
    env = runtime_env(str(tmp_path), pip=["seqlab[ray]"], env_vars={"A": "1"})
    assert env["working_dir"] == str(tmp_path)
    assert {"/build/", "/scratch/", ".git/"} <= set(env["excludes"])
    assert not any("src" in e for e in env["excludes"])
    assert env["pip"] == ["seqlab[ray]"] and env["env_vars"] == {"A": "1"}
    with pytest.raises(ConfigError, match="not a directory"):
        runtime_env(str(tmp_path / "nope"))


def test_entrypoint_is_a_seqlab_command_line():
    command = ["annotate", "s3://b/my corpus/", "gs://o/out", "--engine", "ray",
               "--tag-actors", "2"]
    words = shlex.split(entrypoint(command))
    assert words[0] == "seqlab" and words[1:] == command
    args = build_parser().parse_args(words[1:])
    assert (args.command, args.engine, args.tag_actors) == ("annotate", "ray", 2)
    with pytest.raises(ConfigError, match="no seqlab command"):
        entrypoint([])


def test_submit_flags_parse():
    args = build_parser().parse_args(["submit", "--address", "http://h:8265", "--pip", "a",
                                      "--pip", "b", "--env", "K=V", "--wait"])
    assert (args.command, args.address, args.pip, args.env, args.wait) == (
        "submit", "http://h:8265", ["a", "b"], ["K=V"], True)


# --- a real cluster -------------------------------------------------------------------------


@dataclass
class Cluster:
    address: str
    token_path: Path


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _stop_process_group(pgid: int, timeout: float = 5.0) -> None:
    """Stop every process of the cluster: its process group and their descendants (workers
    and actors start their own groups)."""
    import psutil

    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (OSError, psutil.Error):
            continue
    everyone = set(members)
    for proc in members:
        try:
            everyone.update(proc.children(recursive=True))
        except psutil.Error:
            pass
    for proc in everyone:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(list(everyone), timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass


@pytest.fixture(scope="module")
def ray_cluster():
    require("ray", "ray")
    # a short path: Ray's Unix socket paths must stay under ~107 characters
    root = Path(tempfile.mkdtemp(prefix="sq-ray-", dir="/tmp"))
    token_path = root / "token"
    token_path.write_text(secrets.token_hex(32))
    gcs, dashboard, client, agent, agent_grpc, runtime_env_port, metrics = _free_ports(7)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_JOB_HEADERS")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_path),
               PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    command = [str(VENV_BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1",
               "--num-cpus", "2", "--disable-usage-stats", "--dashboard-host", "127.0.0.1",
               "--port", str(gcs), "--dashboard-port", str(dashboard),
               "--ray-client-server-port", str(client),
               "--dashboard-agent-listen-port", str(agent),
               "--dashboard-agent-grpc-port", str(agent_grpc),
               "--runtime-env-agent-port", str(runtime_env_port),
               "--metrics-export-port", str(metrics), "--temp-dir", str(root / "ray")]
    log = open(root / "ray-start.log", "w")
    start = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        if start.wait(timeout=150) != 0:
            pytest.fail(f"ray start failed: {(root / 'ray-start.log').read_text()[-3000:]}")
        yield Cluster(f"http://127.0.0.1:{dashboard}", token_path)
    finally:
        _stop_process_group(start.pid)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_jobs_on_a_real_cluster(ray_cluster, corpus_parquet, ner_model, tmp_path, capsys,
                                monkeypatch):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token to fall back on
    submit = ["submit", "--address", ray_cluster.address, "--working-dir", str(ROOT)]

    # without the token the cluster refuses, and the error says how to fix it
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    assert main([*submit, "--", "annotate", "x", "y"]) == 2
    assert "RAY_AUTH_TOKEN" in capsys.readouterr().err

    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(ray_cluster.token_path))
    out = tmp_path / "out"
    started = time.monotonic()
    code = main([*submit, "--wait", "--", "annotate", str(corpus_parquet), str(out),
                 "--engine", "ray", "--model", str(ner_model), "--max-length", "64",
                 "--stride", "16", "--batch-docs", "16"])
    logs = capsys.readouterr()
    assert code == 0, logs.out[-3000:] + logs.err[-2000:]
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["engine"] == "ray"
    assert manifest["rows"] == {"in": 53, "out": 53}
    assert "tagging actors" in logs.out  # the job's own log lines were streamed
    print(f"annotation job took {time.monotonic() - started:.1f} s", file=sys.stderr)

    # any seqlab command runs the same way; a failing one makes submit exit non-zero
    code = main([*submit, "--wait", "--", "show", str(tmp_path / "no-such-run")])
    logs = capsys.readouterr()
    assert code == 1
    assert "FAILED" in logs.err
    assert "no-such-run" in logs.out
