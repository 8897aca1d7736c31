"""Run metrics pushed to a Prometheus Pushgateway (``--metrics-pushgateway URL``).

A batch job ends before Prometheus could scrape it, so each ``seqlab annotate`` pushes its
metrics once, when it ends, to a Pushgateway that Prometheus scrapes. Every push goes to one
group: the job (``seqlab``, or ``--metrics-job``) and the output table (grouping key
``table``, the OUTPUT's full URL), so the daily runs of one table replace each other's
metrics while the runs of other tables keep theirs. The metrics are gauges (a run's counts
are not counters that grow across runs, so none ends in ``_total``):

``seqlab_run_duration_seconds``
    the command's wall time, from the start of ``annotate`` to its end or failure.
``seqlab_run_failed``
    1 when the command failed or was interrupted before its run ended, else 0.
``seqlab_run_documents{status}``
    the run's ``documents`` rows by ``status`` (``ok``, ``empty``, ``too_long``...).
``seqlab_run_words``, ``seqlab_run_entities``
    the run's words (the ``n_tokens`` column) and entities.
``seqlab_run_words_per_second``
    the words this command annotated over its duration (a resumed run's earlier attempts
    left out, as in the run's summary).
``seqlab_run_input_files``, ``seqlab_run_failed_input_files``
    input files annotated, and those that could not be read (``failed_inputs``).
``seqlab_last_success_timestamp_seconds``
    the Unix time the last successful run of the table ended.

A run that ends pushes all of them with ``push_to_gateway`` (PUT), which replaces the
group's metrics. A failed one pushes only ``seqlab_run_duration_seconds`` and
``seqlab_run_failed`` with ``pushadd_to_gateway`` (POST), which replaces only the metrics of
those names: the last success's timestamp and counts stay as they were, so an alert on the
timestamp's age fires on missed and failed runs alike. A push that fails (the gateway down,
a timeout) is a warning: the run's result never depends on its metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from seqlab import schema
from seqlab.errors import ConfigError

log = logging.getLogger(__name__)

JOB = "seqlab"
PUSH_TIMEOUT_S = 10.0  # a gateway that does not answer delays the command's end this long
INSTALL_FIX = "pip install 'seqlab[metrics]' (prometheus-client)"
URL_FIX = "pass the Pushgateway's address, e.g. --metrics-pushgateway http://pushgateway:9091"
# every status gets a series, 0 where the run had none, so a rate or ratio never meets a gap
STATUSES = (schema.OK, schema.EMPTY, schema.TOO_LONG, schema.BAD_TYPE, schema.BAD_ENCODING,
            schema.BAD_RECORD, schema.FAILED)


def gateway_url(url: str) -> str:
    """The Pushgateway's address as pushed to: ``http://`` added where no scheme is given.

    >>> gateway_url("pushgateway.monitoring:9091"), gateway_url("https://pg.example.org/")
    ('http://pushgateway.monitoring:9091', 'https://pg.example.org/')
    """
    text = str(url).strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"--metrics-pushgateway {url!r} is not an http(s) URL", fix=URL_FIX)
    try:
        parts.port  # noqa: B018 (a port that is no number raises here)
    except ValueError:
        raise ConfigError(f"--metrics-pushgateway {url!r} has a bad port", fix=URL_FIX) \
            from None
    if not parts.hostname:
        raise ConfigError(f"--metrics-pushgateway {url!r} names no host", fix=URL_FIX)
    if parts.username is not None or parts.password is not None:
        raise ConfigError("--metrics-pushgateway holds credentials, which the run's manifest "
                          "would show", fix="pass the gateway's URL without user:password@")
    return text


def check_options(url: str | None, job: str | None) -> str | None:
    """``--metrics-pushgateway`` as pushed to (None: off), ``--metrics-job`` checked."""
    if url is None:
        if job is not None:
            raise ConfigError("--metrics-job names the job of --metrics-pushgateway",
                              fix="add --metrics-pushgateway URL, or drop --metrics-job")
        return None
    if job is not None and not str(job).strip():
        raise ConfigError("--metrics-job is empty",
                          fix=f"pass a job name, or drop --metrics-job (default: {JOB})")
    return gateway_url(url)


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ConfigError(f"--metrics-pushgateway needs prometheus-client ({exc})",
                          fix=INSTALL_FIX) from None
    return prometheus_client


def table_label(output: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """The grouping key's ``table``: OUTPUT's full URL (``file:///...``, ``s3://...``), the
    same whichever directory the command ran from."""
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(output, **(storage_options or {}))
        return fs.unstrip_protocol(root.rstrip("/") or "/")
    except Exception:  # the run itself reports an OUTPUT it cannot open
        return str(output)


def registry(manifest: Mapping[str, Any] | None, seconds: float, now: float) -> Any:
    """A fresh ``CollectorRegistry`` holding a run's metrics: those of an ended run from its
    manifest (as ``annotate`` returns it), or, for a failed one (``manifest`` None), its
    duration and ``seqlab_run_failed`` alone."""
    client = _client()
    found = client.CollectorRegistry()

    def gauge(name: str, text: str, value: float) -> None:
        client.Gauge(name, text, registry=found).set(value)

    gauge("seqlab_run_duration_seconds", "Wall time of the seqlab annotate command", seconds)
    gauge("seqlab_run_failed", "1 when the command failed before its run ended, else 0",
          float(manifest is None))
    if manifest is None:
        return found
    counts = manifest.get("counts") or {}
    documents = client.Gauge("seqlab_run_documents", "Documents rows of the run by status",
                             ["status"], registry=found)
    ran = {key.removeprefix("status.") for key in counts if key.startswith("status.")}
    for status in (*STATUSES, *sorted(ran - set(STATUSES))):
        documents.labels(status).set(counts.get(f"status.{status}", 0))
    words = counts.get("tokens", 0)
    gauge("seqlab_run_words", "Words of the run's documents", words)
    gauge("seqlab_run_entities", "Entities of the run's documents", counts.get("entities", 0))
    own = (manifest.get("attempt") or {}).get("words", words)  # a resumed run: this attempt's
    gauge("seqlab_run_words_per_second", "Words this command annotated per second of its "
          "duration", own / seconds if seconds > 0 else 0.0)
    gauge("seqlab_run_input_files", "Input files the run annotated",
          len(manifest.get("inputs") or ()))
    gauge("seqlab_run_failed_input_files", "Input files the run could not read",
          len(manifest.get("failed_inputs") or ()))
    gauge("seqlab_last_success_timestamp_seconds", "Unix time the last successful run ended",
          now)
    return found


class RunMetrics:
    """Pushes a command's metrics when it ends: ``with RunMetrics(config) as metrics:``
    around the run, ``metrics.ended(manifest)`` once it has ended; leaving the block by an
    exception (or an interrupt) pushes a failure. Does nothing without
    ``--metrics-pushgateway``; a missing prometheus-client fails here, before any work."""

    def __init__(self, config: Any) -> None:
        self.gateway = config.metrics_pushgateway
        self.job = config.metrics_job or JOB
        self.output, self.storage_options = config.output, config.storage_options
        self.started = time.time()
        self.manifest: Mapping[str, Any] | None = None
        if self.gateway is not None:
            _client()

    def __enter__(self) -> RunMetrics:
        self.started = time.time()
        return self

    def ended(self, manifest: dict) -> dict:
        """Record the run's manifest (returned as it is)."""
        self.manifest = manifest
        return manifest

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self.gateway is not None:
            self.push(self.manifest if kind is None else None)

    def push(self, manifest: Mapping[str, Any] | None) -> None:
        """Push the run's metrics (``manifest`` None: a failed run); a failed push warns."""
        client = _client()
        now = time.time()
        found = registry(manifest, now - self.started, now)
        push = client.push_to_gateway if manifest is not None else client.pushadd_to_gateway
        table = table_label(self.output, self.storage_options)
        try:
            push(self.gateway, job=self.job, registry=found, grouping_key={"table": table},
                 timeout=PUSH_TIMEOUT_S)
        except Exception as exc:  # metrics never decide a run's outcome
            log.warning("could not push the run's metrics to %s (job %s, table %s): %s; the "
                        "run itself is not affected", self.gateway, self.job, table, exc)
            return
        log.info("pushed the run's metrics to %s (job %s, table %s%s)", self.gateway,
                 self.job, table, "" if manifest is not None else ", failed run")
