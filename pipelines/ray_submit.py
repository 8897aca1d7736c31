"""``seqlab submit``: run any seqlab command as a job on a Ray cluster, through the Ray Jobs API.

    seqlab submit --address http://HEAD:8265 --working-dir . --wait -- annotate IN OUT --engine ray

The words after ``--`` become the job's entrypoint (``seqlab annotate ...``). The code reaches
the cluster either as an uploaded working directory (``--working-dir``: what git would track,
so virtual environments and build output stay behind) or as packages installed into the job's
environment (``--pip 'seqlab[ray]==X'``), both through the job's ``runtime_env``.

Ray 2.60 clusters check a token on every request by default. The token is read as the ``ray``
command does: ``RAY_AUTH_TOKEN``, else the file named by ``RAY_AUTH_TOKEN_PATH``, else
``~/.ray/auth_token``; it is sent as ``Authorization: Bearer <token>``. Clusters started with
``RAY_AUTH_MODE=disabled`` need none. Extra headers can come from ``RAY_JOB_HEADERS`` (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqlab.errors import ConfigError, SeqlabError, missing_extra

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class SubmitError(SeqlabError):
    """A job that could not be submitted, or that did not succeed."""


@dataclass
class JobResult:
    job_id: str
    status: str  # a Ray JobStatus name: PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("SUCCEEDED", "PENDING", "RUNNING")


def auth_token(env: Mapping[str, str] | None = None, home: Path | None = None) -> str | None:
    """The cluster token, looked up as the ``ray`` command does; None when there is none.

    >>> auth_token({"RAY_AUTH_TOKEN": " abc\\n"})
    'abc'
    >>> auth_token({}, home=Path("/nonexistent")) is None
    True
    """
    env = os.environ if env is None else env
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return env["RAY_AUTH_TOKEN"].strip()
    path = Path(env["RAY_AUTH_TOKEN_PATH"]) if env.get("RAY_AUTH_TOKEN_PATH") else \
        (home or Path.home()) / ".ray" / "auth_token"
    try:
        token = path.read_text().strip()
    except OSError as exc:
        if env.get("RAY_AUTH_TOKEN_PATH"):
            raise ConfigError(f"cannot read the Ray token file {path} (RAY_AUTH_TOKEN_PATH)",
                              fix="point RAY_AUTH_TOKEN_PATH at the cluster's token file"
                              ) from exc
        return None
    return token or None


def job_headers(env: Mapping[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    """HTTP headers for the Jobs API: ``RAY_JOB_HEADERS`` plus the bearer token, if any.

    >>> job_headers({"RAY_AUTH_TOKEN": "abc"})
    {'Authorization': 'Bearer abc'}
    """
    env = os.environ if env is None else env
    headers: dict[str, str] = {}
    if env.get("RAY_JOB_HEADERS"):
        try:
            headers.update(json.loads(env["RAY_JOB_HEADERS"]))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise ConfigError(f"RAY_JOB_HEADERS is not a JSON object: {exc}",
                              fix='set it like RAY_JOB_HEADERS=\'{"Header": "value"}\'') from exc
    token = auth_token(env, home)
    if token and "Authorization" not in headers:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def git_ignored(directory: str | Path) -> list[str]:
    """Paths git ignores under ``directory`` (``.gitignore``, ``.git/info/exclude``, global
    excludes) as anchored patterns; empty when it is not a git checkout."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--directory"],
            cwd=directory, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [f"/{line}" for line in listed.splitlines() if line]


def runtime_env(working_dir: str | None = None, pip: Sequence[str] = (),
                env_vars: Mapping[str, str] | None = None,
                excludes: Sequence[str] = ()) -> dict[str, Any]:
    """The job's ``runtime_env``: code to upload, packages to install, environment variables.

    >>> runtime_env(pip=["seqlab[ray]==0.1.0"], env_vars={"HF_HUB_OFFLINE": "1"})
    {'pip': ['seqlab[ray]==0.1.0'], 'env_vars': {'HF_HUB_OFFLINE': '1'}}
    """
    env: dict[str, Any] = {}
    if working_dir:
        if not Path(working_dir).is_dir():
            raise ConfigError(f"--working-dir {working_dir} is not a directory",
                              fix="pass the directory holding the code to upload")
        env["working_dir"] = str(working_dir)
        env["excludes"] = [".git/", *git_ignored(working_dir), *excludes]
    if pip:
        env["pip"] = list(pip)
    if env_vars:
        env["env_vars"] = dict(env_vars)
    return env


def entrypoint(command: Sequence[str]) -> str:
    """The job's shell command for a seqlab command line.

    >>> entrypoint(["annotate", "s3://b/in", "s3://b/out", "--engine", "ray"])
    'seqlab annotate s3://b/in s3://b/out --engine ray'
    """
    if not command:
        raise ConfigError("no seqlab command to run",
                          fix="put it after --, e.g. seqlab submit -- annotate IN OUT --engine ray")
    return shlex.join(["seqlab", *command])


def _client(address: str, headers: dict[str, str]):
    try:
        from ray.job_submission import JobSubmissionClient
    except ModuleNotFoundError as exc:
        raise missing_extra("ray", "ray") from exc
    try:
        return JobSubmissionClient(address, headers=headers)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, auth errors
        fix = "check --address (the dashboard's http://HOST:8265) and that the cluster is up"
        if "auth" in str(exc).lower() or "token" in str(exc).lower():
            fix = ("set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH to the cluster's token "
                   "(`ray get-auth-token` on the head node prints it)")
        raise SubmitError(f"cannot reach the Ray Jobs API at {address}: {exc}", fix=fix) from exc


def submit(command: Sequence[str], address: str = DEFAULT_ADDRESS, *,
           working_dir: str | None = None, pip: Sequence[str] = (),
           env_vars: Mapping[str, str] | None = None, wait: bool = False,
           write: Callable[[str], None] | None = None, submission_id: str | None = None,
           num_cpus: float | None = None, num_gpus: float | None = None,
           headers: dict[str, str] | None = None) -> JobResult:
    """Submit ``seqlab <command>`` as a Ray job; with ``wait``, stream its logs to ``write``
    and return its final status."""
    client = _client(address, job_headers() if headers is None else headers)
    try:
        job_id = client.submit_job(
            entrypoint=entrypoint(command),
            runtime_env=runtime_env(working_dir, pip, env_vars) or None,
            submission_id=submission_id, entrypoint_num_cpus=num_cpus,
            entrypoint_num_gpus=num_gpus, metadata={"submitted_by": "seqlab"})
    except RuntimeError as exc:  # the Jobs API's answer to a refused submission
        raise SubmitError(f"the cluster at {address} refused the job: {exc}",
                          fix="read the message above; a runtime_env problem names its "
                          "field") from exc
    log.info("submitted job %s to %s: %s", job_id, address, entrypoint(command))
    if not wait:
        return JobResult(job_id, client.get_job_status(job_id).value)
    asyncio.run(_stream_logs(client, job_id, write or _stdout))
    return _final_status(client, job_id)


async def _stream_logs(client, job_id: str, write: Callable[[str], None]) -> None:
    async for lines in client.tail_job_logs(job_id):
        write(lines)


def _final_status(client, job_id: str, timeout_s: float = 60.0) -> JobResult:
    """The status once the log stream closed (the job may take a moment to be marked done)."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = client.get_job_info(job_id)
        status = info.status.value
        if status in TERMINAL or time.monotonic() > deadline:
            return JobResult(job_id, status, info.message)
        time.sleep(0.5)


def _stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def add_commands(subparsers) -> None:
    """Register ``seqlab submit`` (found by seqlab.cli.main)."""
    from seqlab.cli.commands import command
    from seqlab.cli.main import usage_with

    p = subparsers.add_parser(
        "submit", help="run a seqlab command as a job on a Ray cluster",
        description="Submit 'seqlab COMMAND ...' (the words after --) as a job to a Ray\n"
        "cluster, through its Jobs API.",
        epilog="example:\n  seqlab submit --address http://HEAD:8265 --working-dir . --wait \\\n"
        "      -- annotate s3://b/in s3://b/out --engine ray")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or None, metavar="URL",
                   help=f"the cluster's dashboard URL (default: $RAY_ADDRESS or "
                   f"{DEFAULT_ADDRESS})")
    p.add_argument("--working-dir", metavar="DIR", help="upload this directory as the job's "
                   "code (what git tracks; ignored files stay behind)")
    p.add_argument("--pip", action="append", default=[], metavar="REQUIREMENT",
                   help="install this requirement in the job's environment (repeatable)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment variable for the job (repeatable)")
    p.add_argument("--wait", action="store_true",
                   help="stream the job's logs and exit with its status")
    p.add_argument("--submission-id", metavar="ID", help="job id to use (default: generated)")
    p.add_argument("--entrypoint-num-cpus", type=float, metavar="N",
                   help="CPUs reserved for the driver (default: 0)")
    p.add_argument("--entrypoint-num-gpus", type=float, metavar="N",
                   help="GPUs reserved for the driver (default: 0)")
    p.usage = usage_with(p, "-- COMMAND [ARG ...]")
    command("submit")(submit_cli)


def submit_cli(args: argparse.Namespace) -> int:
    # seqlab.cli.main.main hands the words after "--" over as args.beam_args
    words = list(args.beam_args or [])
    env_vars = dict(_parse_env(item) for item in args.env)
    address = args.address or DEFAULT_ADDRESS
    try:
        result = submit(words, address, working_dir=args.working_dir, pip=args.pip,
                        env_vars=env_vars, wait=args.wait, submission_id=args.submission_id,
                        num_cpus=args.entrypoint_num_cpus, num_gpus=args.entrypoint_num_gpus)
    except KeyboardInterrupt:
        print("\nstopped following the job; it keeps running on the cluster "
              f"(ray job stop --address {address} ID stops it)", file=sys.stderr)
        return 130
    if not args.wait:
        print(f"submitted job {result.job_id} ({result.status}); follow it with: "
              f"ray job logs --address {address} --follow {result.job_id}")
        return 0
    print(f"job {result.job_id}: {result.status}" +
          (f" ({result.message})" if result.message and not result.ok else ""),
          file=sys.stderr)
    return 0 if result.status == "SUCCEEDED" else 1


def _parse_env(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise ConfigError(f"--env {item!r} is not NAME=VALUE", fix="pass --env NAME=VALUE")
    return name, value
