"""Progress and the end-of-run summary on the terminal (used by the CLI only).

Counts are of documents and words (the ``n_tokens`` column: the tokenizer's pre-tokenized
words, not subwords), named "words" everywhere they are shown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
from rich.table import Table
from rich.text import Text

from seqlab.store.manifest import Manifest

log = logging.getLogger(__name__)

# Shared by the live line and log records, so that a record printed while the line is live
# lands above it instead of cutting through it.
console = Console(stderr=True)

# Row statuses that are no failure: the input had nothing to annotate, or more than
# --max-chars. Every other status except ok is a failure (see seqlab.schema).
SKIPPED = ("empty", "too_long")


class ConsoleHandler(logging.Handler):
    """Writes log records through a rich console: plain lines (no markup, no wrapping), and
    above the live progress line while it is shown."""

    def __init__(self, target: Console | None = None) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        try:
            (self.target or console).print(self.format(record), markup=False, highlight=False,
                                           emoji=False, soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


def log_handler() -> logging.Handler:
    return ConsoleHandler()


class _Rate(ProgressColumn):
    def __init__(self, field: str, unit: str) -> None:
        super().__init__()
        self.field, self.unit = field, unit

    def render(self, task: Task) -> Text:
        return Text(_count(task.fields.get(self.field, 0), task.elapsed or 0.0, self.unit))


class _Share(ProgressColumn):
    """``41% of 12.3 M characters, ETA 3:05`` while the total is known."""

    def render(self, task: Task) -> Text:
        if not task.total:
            return Text("")
        return Text(_share(task.completed, task.total, task.elapsed or 0.0))


def _count(value: int, elapsed: float, unit: str) -> str:
    """
    >>> _count(1500, 3.0, "words")
    '1,500 words (500/s)'
    """
    rate = value / elapsed if elapsed > 0 else 0.0
    return f"{value:,} {unit} ({rate:,.0f}/s)"


def _share(done: float, total: float, elapsed: float) -> str:
    """The part of the text done, its size, and the time left at the rate so far.

    >>> _share(2_500_000, 10_000_000, 60.0)
    '25% of 10.0 M characters, ETA 3:00'
    >>> _share(0, 10_000_000, 5.0)
    '0% of 10.0 M characters, ETA -'
    """
    done = min(done, total)
    left = (total - done) * elapsed / done if done and elapsed > 0 else None
    eta = "-" if left is None else f"{int(left // 60)}:{int(left % 60):02d}"
    return f"{done / total:.0%} of {total / 1e6:,.1f} M characters, ETA {eta}"


class RunProgress:
    """Progress of a run: the share of its text done with an ETA (when the text's size is
    known up front: Parquet footers, file sizes), documents and words with their rates. A live
    line on a terminal; elsewhere (a log file, a CI job, a Ray or Beam driver's log) a log line
    every ``every_s`` seconds, since a redrawn line would be either invisible or thousands of
    lines of noise there. Characters are the unit that moves: a run over a few long
    documents lands no document for minutes but moves through their text."""

    def __init__(self, enabled: bool = True, every_s: float = 30.0,
                 target: Console | None = None) -> None:
        self.console = target or console
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self.every_s = every_s
        self.docs = self.words = self.characters = 0
        self.expected: int | None = None
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._logger: threading.Thread | None = None
        self.progress = Progress(SpinnerColumn(), TextColumn("annotating"), BarColumn(),
                                 _Share(), _Rate("docs", "documents"), _Rate("words", "words"),
                                 console=self.console, transient=True)
        self.task = None

    def __enter__(self) -> RunProgress:
        self.started = time.monotonic()
        if self.live:
            self.progress.start()
            self.task = self.progress.add_task("annotate", total=None, docs=0, words=0)
        elif self.enabled:
            self._logger = threading.Thread(target=self._log_every, daemon=True,
                                            name="seqlab-progress")
            self._logger.start()
        return self

    def start(self, expected_characters: int | None) -> None:
        """The run's plan is made: this much text is to be annotated (None: unknown)."""
        self.expected = expected_characters or None
        self.started = time.monotonic()
        if self.task is not None:
            self.progress.reset(self.task, total=self.expected, docs=0, words=0)

    def update(self, counts: Mapping[str, int]) -> None:
        """Counters of rows that landed (``seqlab.run.land.count``); called from engine
        threads too."""
        with self._lock:
            self.docs += counts.get("documents", 0)
            self.words += counts.get("tokens", 0)
            self.characters += counts.get("characters", 0)
            docs, words, characters = self.docs, self.words, self.characters
        if self.task is not None:
            self.progress.update(self.task, completed=characters, docs=docs, words=words)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        share = f"{_share(self.characters, self.expected, elapsed)}; " if self.expected else ""
        return (f"annotated {share}{_count(self.docs, elapsed, 'documents')}, "
                f"{_count(self.words, elapsed, 'words')} in {elapsed:,.0f} s")

    def _log_every(self) -> None:
        while not self._stop.wait(self.every_s):
            log.info("%s", self.line())

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()
        if self._logger is not None:
            self._stop.set()
            self._logger.join()


def status_rows(counts: dict[str, int]) -> list[tuple[str, str]]:
    """Summary rows for the row statuses: ok, skipped (nothing to annotate) and failed.

    >>> status_rows({"status.ok": 5, "status.empty": 2, "status.bad_type": 1})
    [('ok', '5'), ('skipped', '2  (empty: 2)'), ('failed', '1  (bad_type: 1)')]
    """
    statuses = {k.split(".", 1)[1]: v for k, v in counts.items() if k.startswith("status.")}
    ok = statuses.pop("ok", 0)
    skipped = {k: v for k, v in statuses.items() if k in SKIPPED}
    failed = {k: v for k, v in statuses.items() if k not in SKIPPED}
    return [("ok", f"{ok:,}"), ("skipped", _breakdown(skipped)), ("failed", _breakdown(failed))]


def _breakdown(statuses: dict[str, int]) -> str:
    total = f"{sum(statuses.values()):,}"
    parts = [f"{k}: {v:,}" for k, v in sorted(statuses.items()) if v]
    return f"{total}  ({', '.join(parts)})" if parts else total


def print_summary(manifest: Manifest | Mapping[str, Any], elapsed: float) -> None:
    """The run's summary table: ``manifest`` as ``annotate`` returns it, or read."""
    if not isinstance(manifest, Manifest):
        manifest = Manifest.from_dict(manifest)
    counts = manifest.counts
    table = Table(title=f"run {manifest.run_id}", show_header=False)
    table.add_row("output", str(manifest.config.get("output")))
    models = [(m.key, m.name, m.scheme) for m in manifest.models or ()] or [
        ("", manifest.model.name, manifest.model.scheme)]
    for n, (key, name, scheme) in enumerate(models):
        shown = f"{key}: " if len(models) > 1 else ""
        table.add_row("model" if n == 0 else "", f"{shown}{name} ({scheme})")
    if manifest.incremental is not None:  # a run of an incremental table
        increment = manifest.incremental
        table.add_row("run date", str(manifest.run_date))
        table.add_row("input files", f"{len(manifest.inputs):,} annotated, "
                      f"{increment.unchanged:,} unchanged")
        table.add_row("superseded", f"{len(increment.superseded):,} earlier files")
    table.add_row("documents", f"{manifest.rows.written:,}")
    for name, value in status_rows(counts):
        table.add_row(name, value)
    # the manifest's "tokens" count is the n_tokens column: words
    words = counts.get("words", counts.get("tokens", 0))
    table.add_row("words", f"{words:,}")
    table.add_row("entities", f"{counts.get('entities', 0):,}")
    if "frames" in counts:  # a run with a semantic role labeller
        table.add_row("frames", f"{counts['frames']:,}")
    table.add_row("time", f"{elapsed:,.1f} s")
    table.add_row("words/s", f"{words / elapsed:,.0f}" if elapsed > 0 else "-")
    if manifest.quarantined:
        table.add_row("WARNING", f"{len(manifest.quarantined):,} files no manifest listed "
                      "moved to _quarantine/ (seqlab verify checks the table)")
    Console().print(table)
