"""Progress and the end-of-run summary on the terminal (used by the CLI only).

Counts are of documents and words (the ``n_tokens`` column: the tokenizer's pre-tokenized
words, not subwords), named "words" everywhere they are shown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
from rich.table import Table
from rich.text import Text

from seqlab.store.manifest import IncrementalRun, Manifest

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
    """``41% of 12.3 M characters, ETA 3:05`` (``1.2 M characters`` while the total is
    unknown), from the run's progress."""

    def __init__(self, owner: RunProgress) -> None:
        super().__init__()
        self.owner = owner

    def render(self, task: Task) -> Text:
        return Text(self.owner.share())


def _count(value: int, elapsed: float, unit: str) -> str:
    """
    >>> _count(1500, 3.0, "words")
    '1,500 words (500/s)'
    """
    rate = value / elapsed if elapsed > 0 else 0.0
    return f"{value:,} {unit} ({rate:,.0f}/s)"


def _share(done: float, total: float | None, left_s: float | None) -> str:
    """The part of the text done, its size, and the time left (None: not known yet).

    >>> _share(2_500_000, 10_000_000, 180.0)
    '25% of 10.0 M characters, ETA 3:00'
    >>> _share(0, 10_000_000, None)
    '0% of 10.0 M characters, ETA -'
    >>> _share(1_234_567, None, None)
    '1.2 M characters'
    """
    if not total:
        return f"{done / 1e6:,.1f} M characters"
    eta = "-" if left_s is None else f"{int(left_s // 60)}:{int(left_s % 60):02d}"
    return f"{min(done, total) / total:.0%} of {total / 1e6:,.1f} M characters, ETA {eta}"


class RunProgress:
    """Progress of a run: the share of its text done with an ETA (when the text's size is
    known up front: Parquet footers, file sizes), documents and words with their rates. A live
    line on a terminal; elsewhere (a log file, a CI job, a Ray or Beam driver's log) a log line
    every ``every_s`` seconds, since a redrawn line would be either invisible or thousands of
    lines of noise there, and one more with the totals when the run ends.

    Characters are the unit that moves: a run over a few long documents lands no document for
    minutes but moves through their text. ``advance`` hears of text as the models tag it (an
    estimate: a retried batch is tagged twice), ``update`` of the rows that landed (exact);
    the text done is the larger of the two, never their sum. The characters shown never go
    backwards and never pass the expected total; documents and words are the landed rows'
    only. The ETA comes from the rate since the text first moved, so model loading does not
    inflate it. A run that ends cleanly ends at 100% of the characters that landed."""

    def __init__(self, enabled: bool = True, every_s: float = 30.0,
                 target: Console | None = None) -> None:
        self.console = target or console
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self.every_s = every_s
        self.docs = self.words = self.characters = 0  # landed rows'
        self.tagged = 0  # characters the models reported tagging (an estimate: see advance)
        self.shown = 0  # characters shown: never backwards, never past the expected total
        self.first_move: tuple[float, int] | None = None  # (time, characters) of the first
        self.expected: int | None = None
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._logger: threading.Thread | None = None
        self.progress = Progress(SpinnerColumn(), TextColumn("annotating"), BarColumn(),
                                 _Share(self), _Rate("docs", "documents"),
                                 _Rate("words", "words"), console=self.console, transient=True)
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
        """The run's plan is made: this much text is to be annotated (None: unknown). The
        counts start over (``seqlab.annotate`` may run an earlier day's unfinished run of an
        incremental table first, then the day's)."""
        with self._lock:
            self.expected = expected_characters or None
            self.docs = self.words = self.characters = self.tagged = self.shown = 0
            self.first_move = None
            self.started = time.monotonic()
        if self.task is not None:
            self.progress.reset(self.task, total=self.expected, docs=0, words=0)

    def advance(self, characters: int) -> None:
        """The models have tagged this many more characters of text; called from engine
        threads. The text done is the larger of what was tagged and what landed: the tagged
        text of rows that landed is in both, never counted twice, whichever is heard of
        first (a Ray driver may hear of a batch's last passes after its rows landed)."""
        with self._lock:
            self.tagged += characters
            self._move()
        self._refresh()

    def update(self, counts: Mapping[str, int]) -> None:
        """Counters of rows that landed (``seqlab.run.land.count``); called from engine
        threads too."""
        with self._lock:
            self.docs += counts.get("documents", 0)
            self.words += counts.get("tokens", 0)
            self.characters += counts.get("characters", 0)
            self._move()
        self._refresh()

    def _move(self) -> None:
        """The characters shown, from the landed ones and the estimate (under the lock)."""
        done = max(self.characters, self.tagged)
        if self.expected:
            done = min(done, self.expected)
        if done > self.shown:
            self.shown = done
            if self.first_move is None:
                self.first_move = (time.monotonic(), done)

    def _refresh(self) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=self.shown, docs=self.docs,
                                 words=self.words)

    def eta_s(self) -> float | None:
        """Seconds left at the rate since the text first moved; None until a rate is known."""
        if self.expected and self.shown >= self.expected:
            return 0.0
        if not self.expected or self.first_move is None:
            return None
        since, at = self.first_move
        elapsed, moved = time.monotonic() - since, self.shown - at
        if moved <= 0 or elapsed <= 0:
            return None
        return (self.expected - self.shown) * elapsed / moved

    def share(self) -> str:
        """The text done (nothing while neither its total nor any of it is known)."""
        if not self.expected and not self.shown:
            return ""
        return _share(self.shown, self.expected, self.eta_s())

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        share = self.share()
        return (f"annotated {share + '; ' if share else ''}"
                f"{_count(self.docs, elapsed, 'documents')}, "
                f"{_count(self.words, elapsed, 'words')} in {elapsed:,.0f} s")

    def _log_every(self) -> None:
        while not self._stop.wait(self.every_s):
            log.info("%s", self.line())

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:  # all of the text landed: the share ends at 100% of it
            with self._lock:
                self.shown = self.characters
                self.expected = self.characters if self.expected else None
            self._refresh()
        if self.live:
            self.progress.stop()
        if self._logger is not None:
            self._stop.set()
            self._logger.join()
            if exc_type is None:
                log.info("%s", self.line())


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


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def superseded(increment: IncrementalRun) -> str:
    """The input files whose earlier annotation this run took out of the table, with the
    earlier files (parts of every table) that held it.

    >>> superseded(IncrementalRun("k", 3, ("b.parquet",), (), (
    ...     "aggregates/x.parquet", "documents/x.parquet", "mentions/x.parquet")))
    '1 input file (annotated again); 3 earlier files (aggregates 1, documents 1, mentions 1)'
    >>> superseded(IncrementalRun("k", 3, (), (), ()))
    '0 input files'
    """
    inputs = len(increment.replaced) + len(increment.pruned)
    why = [f"{len(names):,} {reason}" if inputs > len(names) else reason
           for names, reason in ((increment.replaced, "annotated again"),
                                 (increment.pruned, "gone, pruned")) if names]
    text = _plural(inputs, "input file") + (f" ({', '.join(why)})" if why else "")
    if increment.superseded:
        tables = Counter(path.split("/", 1)[0] for path in increment.superseded)
        text += (f"; {_plural(len(increment.superseded), 'earlier file')} ("
                 + ", ".join(f"{t} {n:,}" for t, n in sorted(tables.items())) + ")")
    return text


def rate_rows(manifest: Manifest, words: int, elapsed: float) -> list[tuple[str, str]]:
    """The time and words/s rows: ``elapsed`` is this attempt's time. A resumed run's words
    were partly annotated by earlier attempts: this attempt's rate counts the words it
    annotated itself (the manifest's ``attempt`` section), and the whole run's counts all of
    them over the time from the first attempt's start to the end, the time between attempts
    included (an attempt that stopped early did not say when)."""
    this = manifest.extra.get("attempt") or {}
    attempts = max(len(manifest.attempts), int(this.get("number", 1)))
    if attempts <= 1:
        return [("time", f"{elapsed:,.1f} s"),
                ("words/s", f"{words / elapsed:,.0f}" if elapsed > 0 else "-")]
    rows = [("time", f"{elapsed:,.1f} s (attempt {attempts} of {attempts})")]
    if "words" in this and elapsed > 0:
        rows.append(("words/s", f"{this['words'] / elapsed:,.0f} in this attempt "
                     f"({this['words']:,} words in {elapsed:,.1f} s)"))
    else:  # a manifest that does not say what this attempt annotated
        rows.append(("words/s", "- in this attempt"))
    span = (datetime.fromisoformat(manifest.finished_at)
            - datetime.fromisoformat(manifest.processed_at)).total_seconds()
    rows.append(("whole run", f"{words / span:,.0f} words/s ({words:,} words over "
                 f"{attempts} attempts, {span:,.0f} s from the first start to the end, the "
                 "time between attempts included)" if span > 0 else "-"))
    return rows


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
        table.add_row("superseded", superseded(increment))
    table.add_row("documents", f"{manifest.rows.written:,}")
    for name, value in status_rows(counts):
        table.add_row(name, value)
    # the manifest's "tokens" count is the n_tokens column: words
    words = counts.get("words", counts.get("tokens", 0))
    table.add_row("words", f"{words:,}")
    table.add_row("entities", f"{counts.get('entities', 0):,}")
    if "frames" in counts:  # a run with a semantic role labeller
        table.add_row("frames", f"{counts['frames']:,}")
    for name, value in rate_rows(manifest, words, elapsed):
        table.add_row(name, value)
    if manifest.quarantined:
        table.add_row("WARNING", f"{len(manifest.quarantined):,} files no manifest listed "
                      "moved to _quarantine/ (seqlab verify checks the table)")
    if note := rows_note(counts, manifest.config):
        table.add_row("", note)
    Console().print(table)


def rows_note(counts: Mapping[str, int], config: Mapping[str, Any]) -> str | None:
    """Where to find the rows a run did not annotate, and why a too_long row was not.

    >>> rows_note({"status.ok": 3, "status.too_long": 1}, {"output": "out", "max_chars": 100})
    'too_long: over --max-chars 100; seqlab show out --list names each row with its error'
    >>> rows_note({"status.ok": 3, "status.empty": 1}, {"output": "out"}) is None
    True
    """
    statuses = {k for k, v in counts.items()
                if k.startswith("status.") and v and k not in ("status.ok", "status.empty")}
    if not statuses:
        return None
    limit = config.get("max_chars")
    why = (f"too_long: over --max-chars {limit:,}; "
           if "status.too_long" in statuses and limit else "")
    return f"{why}seqlab show {config.get('output')} --list names each row with its error"
