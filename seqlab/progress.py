"""Progress and the end-of-run summary on the terminal (used by the CLI only).

Counts are of documents and words (the ``n_tokens`` column: the tokenizer's pre-tokenized
words, not subwords), named "words" everywhere they are shown.
"""

from __future__ import annotations

import logging
import threading
import time

from rich.console import Console
from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
from rich.table import Table
from rich.text import Text

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


def _count(value: int, elapsed: float, unit: str) -> str:
    """
    >>> _count(1500, 3.0, "words")
    '1,500 words (500/s)'
    """
    rate = value / elapsed if elapsed > 0 else 0.0
    return f"{value:,} {unit} ({rate:,.0f}/s)"


class RunProgress:
    """Documents and words done, with their rates: a live line on a terminal; elsewhere (a
    log file, a CI job) a log line every ``every_s`` seconds, since a redrawn line would be
    either invisible or thousands of lines of noise there."""

    def __init__(self, enabled: bool = True, every_s: float = 30.0,
                 target: Console | None = None) -> None:
        self.console = target or console
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self.every_s = every_s
        self.docs = self.words = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._logger: threading.Thread | None = None
        self.progress = Progress(SpinnerColumn(), TextColumn("annotating"),
                                 _Rate("docs", "documents"), _Rate("words", "words"),
                                 console=self.console, transient=True)
        self.task = None

    def __enter__(self) -> RunProgress:
        self.started = time.monotonic()
        if self.live:
            self.progress.start()
            self.task = self.progress.add_task("annotate", docs=0, words=0)
        elif self.enabled:
            self._logger = threading.Thread(target=self._log_every, daemon=True,
                                            name="seqlab-progress")
            self._logger.start()
        return self

    def update(self, docs: int, words: int) -> None:
        """The engines' ``progress`` callback: documents and words done since the last call
        (called from engine threads too)."""
        with self._lock:
            self.docs += docs
            self.words += words
            totals = self.docs, self.words
        if self.task is not None:
            self.progress.update(self.task, docs=totals[0], words=totals[1])

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        return (f"annotated {_count(self.docs, elapsed, 'documents')}, "
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


def print_summary(manifest: dict, elapsed: float) -> None:
    counts = manifest.get("counts", {})
    table = Table(title=f"run {manifest['run_id']}", show_header=False)
    table.add_row("output", manifest["config"]["output"])
    table.add_row("model", f"{manifest['model']['name']} ({manifest['model']['scheme']})")
    table.add_row("documents", f"{manifest['rows']['out']:,}")
    for name, value in status_rows(counts):
        table.add_row(name, value)
    # the manifest's "tokens" count is the n_tokens column: words
    words = counts.get("words", counts.get("tokens", 0))
    table.add_row("words", f"{words:,}")
    table.add_row("entities", f"{counts.get('entities', 0):,}")
    table.add_row("time", f"{elapsed:,.1f} s")
    table.add_row("words/s", f"{words / elapsed:,.0f}" if elapsed > 0 else "-")
    Console().print(table)
