"""OpenLineage events for every run of ``seqlab annotate``, whichever engine runs it.

A run sends START once its plan has given it its id, then COMPLETE with what it wrote, FAIL
with its error, or ABORT when it was interrupted: Ctrl-C, or SIGTERM (a scheduler or Kubernetes
stopping it), which then ends the run as Ctrl-C does (its lease is given back) and the process
with status 143. A run that fails before its plan (a model that cannot be read, an output that
another run holds) sends START and FAIL together, under a fresh run id.

The run id is made from seqlab's run id (``run_uuid``), so every attempt of a resumed run sends
the same one. The job is in the namespace ``seqlab`` (or ``OPENLINEAGE_NAMESPACE``, as other
integrations read it) and named after the output (``annotate:s3://bucket/annotated/ner``), or as
``--lineage-job NAMESPACE/NAME`` names it. The run that started this one is its parent:
``--lineage-parent``, else ``OPENLINEAGE_PARENT_ID``, as ``NAMESPACE/JOB/RUN_ID`` (the form of
the Airflow provider's ``lineage_parent_id`` macro, which dbt-ol reads from the same variable),
with ``OPENLINEAGE_ROOT_PARENT_ID`` as its root. What each event holds: ``lineage_events``.

The events go wherever ``openlineage.client.OpenLineageClient()`` sends them, configured as
OpenLineage configures its clients (``OPENLINEAGE_URL``, ``OPENLINEAGE_CONFIG`` or an
``openlineage.yml``, ``OPENLINEAGE__TRANSPORT__*`` variables): such a configuration turns
lineage on by itself, ``--lineage`` asks for it and refuses to run without one, and
``OPENLINEAGE_DISABLED=true`` turns it off. Sending never fails a run: an event that cannot be
sent is a warning.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from seqlab.errors import ConfigError, missing_extra
from seqlab.run.lineage_events import Parent, RunRef, build_event, default_job, run_uuid, uuid7

if TYPE_CHECKING:
    from seqlab.config import AnnotateConfig
    from seqlab.run.plan import RunPlan

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "seqlab"
PARENT_ENV = "OPENLINEAGE_PARENT_ID"
ROOT_ENV = "OPENLINEAGE_ROOT_PARENT_ID"
CLOSE_TIMEOUT_S = 30.0  # the longest a run's end waits for an asynchronous transport's events
CONFIG_FIX = ("set OPENLINEAGE_URL (e.g. http://localhost:5000 for Marquez), or point "
              "OPENLINEAGE_CONFIG at an openlineage.yml with a transport; or drop --lineage")
PARENT_FIX = ("pass the parent run as NAMESPACE/JOB/RUN_ID, as Airflow's "
              "{{ macros.OpenLineageProviderPlugin.lineage_parent_id(task_instance) }} gives it")


def parse_parent(text: str, source: str) -> Parent:
    """A parent run as ``NAMESPACE/JOB/RUN_ID`` (with a UUID run id); ``source`` names it in
    errors.

    >>> parse_parent("ns/dag.task/01937a5e-8f2b-7c3d-9e4f-0a1b2c3d4e5f", "--lineage-parent")
    Parent(namespace='ns', job='dag.task', run_id='01937a5e-8f2b-7c3d-9e4f-0a1b2c3d4e5f')
    """
    parts = text.strip().split("/")
    try:
        valid = len(parts) == 3 and all(parts) and bool(uuid.UUID(parts[2]))
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(f"{source} {text!r} is not NAMESPACE/JOB/RUN_ID with a UUID run id",
                          fix=PARENT_FIX)
    return Parent(*parts)


def parse_job(text: str | None, output: str, namespace: str = DEFAULT_NAMESPACE
              ) -> tuple[str, str]:
    """The job's (namespace, name): ``--lineage-job NAMESPACE/NAME`` or ``NAME``, else
    ``namespace`` and the output's ``default_job``.

    >>> parse_job("warehouse/wiki_ner", "out"), parse_job("wiki_ner", "out")
    (('warehouse', 'wiki_ner'), ('seqlab', 'wiki_ner'))
    """
    if text is None:
        return namespace, default_job(output)
    given, slash, name = text.strip().partition("/")
    if not slash:
        given, name = "", given
    if not name or (slash and not given):
        raise ConfigError(f"--lineage-job {text!r} names no job",
                          fix="pass --lineage-job NAMESPACE/NAME, or NAME alone")
    return given or namespace, name


def parents(given: str | None) -> tuple[Parent | None, Parent | None]:
    """The parent run (``--lineage-parent``, else ``OPENLINEAGE_PARENT_ID``) and its root
    (``OPENLINEAGE_ROOT_PARENT_ID``). A malformed variable is a warning: whatever started the
    run set it, and the run should not fail for it."""
    parent = parse_parent(given, "--lineage-parent") if given is not None else _env(PARENT_ENV)
    return parent, _env(ROOT_ENV) if parent is not None else None


def _env(name: str) -> Parent | None:
    if not os.environ.get(name):
        return None
    try:
        return parse_parent(os.environ[name], name)
    except ConfigError as exc:
        log.warning("OpenLineage: %s; the events name no parent run", exc.message)
        return None


def configured() -> bool:
    """Whether OpenLineage's own configuration is there, where its client looks for it."""
    env = os.environ
    if env.get("OPENLINEAGE_URL") or env.get("OPENLINEAGE_CONFIG") or \
            any(key.startswith("OPENLINEAGE__TRANSPORT") for key in env):
        return True
    return any(os.path.isfile(path) for path in (
        os.path.join(os.getcwd(), "openlineage.yml"),
        os.path.join(os.path.expanduser("~"), ".openlineage", "openlineage.yml")))


def new_client() -> Any:
    """``OpenLineageClient()``, configured as OpenLineage configures its clients."""
    from openlineage.client import OpenLineageClient

    return OpenLineageClient()


class Lineage:
    """Where the runs of one ``annotate`` call send their events, and the job they belong to."""

    def __init__(self, config: AnnotateConfig, client: Any) -> None:
        namespace = os.environ.get("OPENLINEAGE_NAMESPACE") or DEFAULT_NAMESPACE
        self.namespace, self.job = parse_job(config.lineage_job, config.output, namespace)
        self.parent, self.root = parents(config.lineage_parent)
        self._client = client

    def emit(self, event: Any, kind: str) -> None:
        """Send ``event``; a transport that fails is a warning, never the run's failure."""
        try:
            if self._client is None:  # closed at the end of an earlier run of the call
                self._client = new_client()
            self._client.emit(event)
        except Exception as exc:  # noqa: BLE001 - lineage never fails a run
            log.warning("OpenLineage: the %s event was not sent (%s: %s); the run goes on",
                        kind, type(exc).__name__, exc)

    def close(self) -> None:
        """Wait for the events an asynchronous transport still sends, at the end of a run."""
        client, self._client = self._client, None
        try:
            if client is not None:
                client.close(CLOSE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001
            log.warning("OpenLineage: closing the client failed (%s); events may be lost", exc)


def open_lineage(config: AnnotateConfig) -> Lineage | None:
    """The lineage of ``config``'s runs; None where it is off: no ``--lineage`` and no
    OpenLineage configuration, or ``OPENLINEAGE_DISABLED=true``. ``--lineage`` without
    openlineage-python or without a transport raises ConfigError, before any work, as do a
    malformed ``--lineage-job`` or ``--lineage-parent``, lineage on or off."""
    if config.lineage_parent is not None:
        parse_parent(config.lineage_parent, "--lineage-parent")
    parse_job(config.lineage_job, config.output)
    if os.environ.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return None
    if not (config.lineage or configured()):
        return None
    try:
        import openlineage.client  # noqa: F401
    except ImportError:
        if config.lineage:
            raise missing_extra("openlineage-python", "lineage") from None
        log.warning("OpenLineage is configured but openlineage-python is not installed: this "
                    "run sends no lineage events (pip install 'seqlab[lineage]')")
        return None
    try:
        client = new_client()
    except Exception as exc:  # noqa: BLE001 - a configuration the client cannot use
        if config.lineage:
            raise ConfigError(f"OpenLineage's configuration cannot be used: {exc}",
                              fix=CONFIG_FIX) from exc
        log.warning("OpenLineage's configuration cannot be used (%s): this run sends no "
                    "lineage events", exc)
        return None
    asked = (client.config.transport or {}).get("type")
    if client.transport.kind == "console" and asked != "console":
        # no transport configured: the client would print the events
        if config.lineage:
            raise ConfigError("--lineage found no OpenLineage transport configuration",
                              fix=CONFIG_FIX)
        return None
    return Lineage(config, client)


class RunEvents:
    """The events of one run (see ``run_events``); without lineage, each call does nothing."""

    def __init__(self, lineage: Lineage | None, config: AnnotateConfig) -> None:
        self.lineage, self.config = lineage, config
        self.plan: RunPlan | None = None
        self.run_id: str | None = None
        self.started = datetime.now(timezone.utc)
        self.sent: list[str] = []  # the event types sent, or tried

    def start(self, plan: RunPlan) -> None:
        """START, once ``plan_run`` has given the run its id."""
        self.plan = plan
        self.run_id = run_uuid(plan.provenance.run_id, plan.provenance.processed_at)
        self._send("START", datetime.now(timezone.utc))

    def complete(self, manifest: dict) -> dict:
        """COMPLETE with what the run wrote (its ``manifest``, returned as it is)."""
        self._send("COMPLETE", datetime.now(timezone.utc), manifest=manifest)
        return manifest

    def ended(self, exc: BaseException) -> None:
        """FAIL with ``exc``, or ABORT where it is an interruption; START first where the run
        failed before its plan gave it an id."""
        if self.lineage is None or {"COMPLETE", "FAIL", "ABORT"} & set(self.sent):
            return
        if "START" not in self.sent:
            self.run_id = str(uuid7(self.started, secrets.randbits(80)))
            self._send("START", self.started)
        interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
        self._send("ABORT" if interrupted else "FAIL", datetime.now(timezone.utc),
                   error=None if interrupted else exc)

    def _send(self, kind: str, when: datetime, manifest: Mapping[str, Any] | None = None,
              error: BaseException | None = None) -> None:
        lineage = self.lineage
        if lineage is None or self.run_id is None:
            return
        self.sent.append(kind)
        run = RunRef(self.run_id, lineage.namespace, lineage.job, lineage.parent, lineage.root)
        try:
            event = build_event(kind, when, run, self.config, self.plan, manifest, error)
        except Exception as exc:  # noqa: BLE001 - lineage never fails a run
            log.warning("OpenLineage: the %s event could not be made (%s: %s)", kind,
                        type(exc).__name__, exc)
            return
        if kind == "START":
            log.info("OpenLineage: run %s of job %s/%s", run.run_id, run.namespace, run.job)
        lineage.emit(event, kind)
        if kind != "START":
            lineage.close()


@contextmanager
def run_events(lineage: Lineage | None, config: AnnotateConfig) -> Iterator[RunEvents]:
    """The events of the run inside the block, which calls ``start(plan)`` and
    ``complete(manifest)``; leaving it on an exception sends FAIL, on an interruption ABORT."""
    events = RunEvents(lineage, config)
    if lineage is None:
        yield events
        return
    with _sigterm_ends_run():
        try:
            yield events
        except BaseException as exc:
            events.ended(exc)
            raise


@contextmanager
def _sigterm_ends_run() -> Iterator[None]:
    """SIGTERM raises SystemExit in the main thread, so that the run unwinds as Ctrl-C unwinds
    it and its ABORT is sent. Only where SIGTERM has its default action: a handler someone else
    set stays."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def end(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, end)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is end:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
