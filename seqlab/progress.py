"""Progress and the end-of-run summary on the terminal (used by the CLI only)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
from rich.table import Table
from rich.text import Text

console = Console(stderr=True)


class _Rate(ProgressColumn):
    def __init__(self, field: str, unit: str) -> None:
        super().__init__()
        self.field, self.unit = field, unit

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        value = task.fields.get(self.field, 0)
        rate = value / elapsed if elapsed > 0 else 0.0
        return Text(f"{value:,} {self.unit} ({rate:,.0f}/s)")


class RunProgress:
    """A live line: documents and words done, with their rates."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.docs = 0
        self.words = 0
        self.progress = Progress(SpinnerColumn(), TextColumn("annotating"),
                                 _Rate("docs", "docs"), _Rate("words", "words"),
                                 console=console, transient=True)
        self.task = None

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self.progress.start()
            self.task = self.progress.add_task("annotate", docs=0, words=0)
        return self

    def update(self, docs: int, words: int) -> None:
        self.docs += docs
        self.words += words
        if self.task is not None:
            self.progress.update(self.task, docs=self.docs, words=self.words)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.progress.stop()


def print_summary(manifest: dict, elapsed: float) -> None:
    counts = manifest.get("counts", {})
    table = Table(title=f"run {manifest['run_id']}", show_header=False)
    table.add_row("output", manifest["config"]["output"])
    table.add_row("model", f"{manifest['model']['name']} ({manifest['model']['scheme']})")
    table.add_row("documents", f"{manifest['rows']['out']:,}")
    statuses = {k.split(".", 1)[1]: v for k, v in counts.items() if k.startswith("status.")}
    ok = statuses.pop("ok", 0)
    table.add_row("ok / failed", f"{ok:,} / {sum(statuses.values()):,}"
                  + (f"  ({', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))})"
                     if statuses else ""))
    words = counts.get("tokens", 0)
    table.add_row("tokens", f"{words:,}")
    table.add_row("entities", f"{counts.get('entities', 0):,}")
    table.add_row("time", f"{elapsed:,.1f} s")
    table.add_row("tokens/s", f"{words / elapsed:,.0f}" if elapsed > 0 else "-")
    Console().print(table)
