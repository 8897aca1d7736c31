"""The end-of-run summary and the progress shown while a run goes (seqlab.cli.progress)."""

from __future__ import annotations

import io
import logging
import time

import pytest
from rich.console import Console

from seqlab.cli.progress import ConsoleHandler, RunProgress, print_summary

MANIFEST = {
    "run_id": "20250101T000000Z-abc", "seqlab_version": "0.1.0", "schema_version": 2,
    "complete": True, "engine": "local", "attempts": [],
    "model": {"name": "ner", "revision": "r1", "scheme": "iob2", "labels": ["O"]},
    "config": {"output": "out/"}, "resume": {"must_match": [], "may_change": []},
    "processed_at": "2025-01-01T00:00:00+00:00", "finished_at": "2025-01-01T00:00:02+00:00",
    "elapsed_s": 2.0, "rows": {"in": 10, "out": 10},
    "counts": {"status.ok": 6, "status.empty": 2, "status.too_long": 1, "status.bad_type": 1,
               "documents": 10, "tokens": 1234, "entities": 17},
    "inputs": [], "failed_inputs": [], "tables": {}, "aggregates": [],
}


def test_summary_tells_skipped_from_failed_and_counts_words(capsys):
    print_summary(MANIFEST, elapsed=2.0)
    lines = {line.split()[1]: line for line in capsys.readouterr().out.splitlines()
             if line.startswith("│")}
    assert "6" in lines["ok"]
    assert "3" in lines["skipped"] and "empty: 2" in lines["skipped"]
    assert "too_long: 1" in lines["skipped"]
    assert "1" in lines["failed"] and "bad_type: 1" in lines["failed"]
    assert "empty" not in lines["failed"]
    assert "1,234" in lines["words"] and "617" in lines["words/s"]
    assert "tokens" not in lines


def test_summary_of_a_clean_run_has_no_failures(capsys):
    manifest = {**MANIFEST, "counts": {"status.ok": 10, "tokens": 5}}
    print_summary(manifest, elapsed=1.0)
    out = capsys.readouterr().out
    failed = next(line for line in out.splitlines() if " failed " in line)
    assert failed.split("│")[2].strip() == "0"


def test_summary_warns_of_quarantined_files(capsys):
    print_summary({**MANIFEST, "quarantined": ["_quarantine/documents/a.parquet"]}, 1.0)
    assert "WARNING" in capsys.readouterr().out
    print_summary(MANIFEST, 1.0)
    assert "WARNING" not in capsys.readouterr().out


def test_progress_off_a_terminal_is_a_log_line_every_few_seconds(caplog):
    target = Console(file=io.StringIO())  # not a terminal: a log file, a CI job
    with caplog.at_level(logging.INFO, logger="seqlab.cli.progress"):
        with RunProgress(every_s=0.05, target=target) as progress:
            progress.update({"documents": 3, "tokens": 300})
            progress.update({"documents": 2, "tokens": 200})
            time.sleep(0.3)
    lines = [r.getMessage() for r in caplog.records if r.name == "seqlab.cli.progress"]
    assert len(lines) >= 2
    assert lines[-1].startswith("annotated 5 documents (") and "500 words (" in lines[-1]
    assert target.file.getvalue() == ""  # no spinner frames in the log


def test_progress_shows_the_share_of_text_done_and_an_eta(caplog):
    """Characters move on long documents: the line has a total, a percentage and an ETA."""
    target = Console(file=io.StringIO())
    with caplog.at_level(logging.INFO, logger="seqlab.cli.progress"):
        with RunProgress(every_s=0.05, target=target) as progress:
            progress.start(8_000_000)
            progress.update({"documents": 0, "tokens": 5_000, "characters": 2_000_000})
            time.sleep(0.2)
    line = [r.getMessage() for r in caplog.records if r.name == "seqlab.cli.progress"][-1]
    assert line.startswith("annotated 25% of 8.0 M characters, ETA 0:0")
    assert "0 documents" in line and "5,000 words" in line


def test_live_line_has_a_bar_with_the_total(logger):
    target = Console(file=io.StringIO(), force_terminal=True, width=160)
    with RunProgress(target=target) as progress:
        progress.start(4_000_000)
        progress.update({"documents": 1, "tokens": 10, "characters": 1_000_000})
        time.sleep(0.2)
    assert "25% of 4.0 M characters, ETA" in target.file.getvalue()


def test_quiet_progress_shows_nothing(caplog):
    target = Console(file=io.StringIO(), force_terminal=True)
    with caplog.at_level(logging.INFO, logger="seqlab.cli.progress"):
        with RunProgress(enabled=False, every_s=0.01, target=target) as progress:
            progress.update({"documents": 1, "tokens": 1})
            time.sleep(0.05)
    assert target.file.getvalue() == "" and not caplog.records


@pytest.fixture
def logger():
    log = logging.getLogger("tests.progress")
    log.setLevel(logging.INFO)
    log.propagate = False
    yield log
    log.handlers.clear()


def test_log_lines_land_above_the_live_line(logger):
    target = Console(file=io.StringIO(), force_terminal=True, width=120)
    logger.addHandler(ConsoleHandler(target))
    with RunProgress(target=target) as progress:
        progress.update({"documents": 3, "tokens": 40})
        time.sleep(0.2)
        logger.info("fragment 1 of 2 done")
        progress.update({"documents": 2, "tokens": 10})
        time.sleep(0.2)
    out = target.file.getvalue()
    assert "annotating" in out and "3 documents" in out and "40 words" in out
    # the live line is erased first, so the record starts a line of its own
    assert "\r\x1b[2Kfragment 1 of 2 done\n" in out
