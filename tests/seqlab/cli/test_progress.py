"""The end-of-run summary and the progress shown while a run goes (seqlab.cli.progress)."""

from __future__ import annotations

import io
import json
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


def test_summary_says_where_the_rows_not_annotated_are_listed(capsys):
    print_summary({**MANIFEST, "config": {**MANIFEST["config"], "max_chars": 1000}}, 2.0)
    out = " ".join(capsys.readouterr().out.split())
    assert "too_long: over --max-chars 1,000" in out
    assert f"seqlab show {MANIFEST['config']['output']} --list" in out
    print_summary({**MANIFEST, "counts": {"status.ok": 10, "tokens": 5}}, 1.0)
    assert "--list" not in capsys.readouterr().out


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


def progress_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "seqlab.cli.progress"]


def test_progress_shows_the_share_of_text_done_and_an_eta(caplog):
    """Characters move on long documents: the line has a total, a percentage and an ETA."""
    target = Console(file=io.StringIO())
    with caplog.at_level(logging.INFO, logger="seqlab.cli.progress"):
        with RunProgress(every_s=0.05, target=target) as progress:
            progress.start(8_000_000)
            progress.update({"documents": 0, "tokens": 5_000, "characters": 1_000_000})
            time.sleep(0.05)
            progress.update({"documents": 0, "tokens": 5_000, "characters": 1_000_000})
            time.sleep(0.2)
            during = progress_lines(caplog)[-1]
            progress.update({"documents": 3, "tokens": 1, "characters": 5_000_000})
    assert during.startswith("annotated 25% of 8.0 M characters, ETA 0:0")
    assert "0 documents" in during and "10,000 words" in during
    # a clean end: 100% of the text that landed (the expected total was an estimate)
    assert progress_lines(caplog)[-1].startswith("annotated 100% of 7.0 M characters, ETA 0:00")


def test_progress_moves_on_text_tagged_before_any_row_lands(caplog):
    target = Console(file=io.StringIO())
    with caplog.at_level(logging.INFO, logger="seqlab.cli.progress"):
        with RunProgress(every_s=0.05, target=target) as progress:
            progress.start(1_000_000)
            time.sleep(0.1)
            assert progress.share() == "0% of 1.0 M characters, ETA -"
            progress.advance(100_000)
            assert progress.share() == "10% of 1.0 M characters, ETA -"  # no rate from one move
            time.sleep(0.1)
            progress.advance(150_000)
            time.sleep(0.1)
            line = progress_lines(caplog)[-1]
    assert line.startswith("annotated 25% of 1.0 M characters, ETA 0:0")  # about 0.6 s left
    assert "; 0 documents" in line and " 0 words" in line


def test_landed_rows_replace_what_was_advanced_and_the_share_never_goes_back():
    progress = RunProgress(enabled=False)
    progress.start(1_000)
    progress.advance(400)
    progress.update({"documents": 1, "tokens": 50, "characters": 300})  # 100 still in flight
    assert (progress.characters, progress.shown) == (300, 400)
    # rows that never went through the models (too long for them) land too
    progress.update({"documents": 2, "tokens": 0, "characters": 150})
    assert progress.shown == 450
    progress.advance(200)
    progress.update({"documents": 1, "tokens": 40, "characters": 200})  # no double count
    assert progress.shown == 650 and progress.characters == 650
    progress.update({"documents": 1, "tokens": 10, "characters": 100})  # heard of before...
    progress.advance(100)  # ...its last pass was (Ray's relay runs behind): not twice
    assert progress.shown == 750
    progress.advance(600)  # a retried batch tagged twice: held at the total
    assert progress.shown == 1_000 and progress.share().startswith("100% of")
    assert (progress.docs, progress.words) == (5, 100)  # landed rows only


def test_without_a_known_total_the_line_counts_characters(caplog):
    target = Console(file=io.StringIO())
    with caplog.at_level(logging.INFO, logger="seqlab.cli.progress"):
        with RunProgress(every_s=0.05, target=target) as progress:
            progress.start(None)
            progress.advance(2_500_000)
            time.sleep(0.15)
    assert progress_lines(caplog)[0].startswith("annotated 2.5 M characters; 0 documents")


class Recorder:
    """A progress that keeps what the engine told it, in order."""

    def __init__(self) -> None:
        self.expected: int | None = None
        self.events: list[tuple[str, object]] = []

    def start(self, expected_characters: int | None) -> None:
        self.expected = expected_characters

    def advance(self, characters: int) -> None:
        self.events.append(("advance", characters))

    def update(self, counts) -> None:
        self.events.append(("update", dict(counts)))


def long_document(words: int) -> str:
    vocab = "john smith said the bank of new york was in london .".split()
    return " ".join(vocab[(i * 7) % len(vocab)] for i in range(words))


@pytest.mark.parametrize("models", [("ner_model",), ("ner_model", "pos_model")])
def test_the_local_engine_advances_through_one_long_document_before_it_lands(
        request, tmp_path, models):
    """One document of many windows: the share moves per micro-batch, its characters add
    up to the text's exactly once whatever the number of models, then the row lands."""
    from seqlab.api import annotate

    text = long_document(3_000)
    source = tmp_path / "big.jsonl"
    source.write_text(json.dumps({"id": "big", "text": text}) + "\n")
    recorder = Recorder()
    model = ",".join(str(request.getfixturevalue(name)) for name in models)
    manifest = annotate(str(source), str(tmp_path / "out"), model=model, max_length=64,
                        stride=16, batch_tokens=256, device="cpu", progress=recorder)
    kinds = [kind for kind, _ in recorder.events]
    first_landing = kinds.index("update")
    assert kinds.count("update") == 1 and first_landing >= 5  # many moves before it lands
    advanced = sum(n for kind, n in recorder.events if kind == "advance")
    landed = recorder.events[first_landing][1]
    assert advanced == landed["characters"] == len(text) == manifest["counts"]["characters"]
    assert landed["documents"] == 1 and recorder.expected >= len(text)


def test_run_progress_over_a_real_run_ends_at_100_percent(ner_model, tmp_path, caplog):
    from seqlab.api import annotate

    source = tmp_path / "big.jsonl"
    source.write_text(json.dumps({"id": "big", "text": long_document(1_000)}) + "\n")
    seen: list[int] = []
    with caplog.at_level(logging.INFO, logger="seqlab.cli.progress"):
        with RunProgress(every_s=60, target=Console(file=io.StringIO())) as progress:
            original = progress.advance
            progress.advance = lambda n: (original(n), seen.append(progress.shown))
            annotate(str(source), str(tmp_path / "out"), model=str(ner_model), max_length=64,
                     stride=16, batch_tokens=256, device="cpu", progress=progress)
    assert len(seen) > 1 and seen == sorted(seen) and seen[-1] <= progress.expected
    assert progress_lines(caplog)[-1].startswith("annotated 100% of 0.0 M characters")
    assert "; 1 documents" in progress_lines(caplog)[-1]


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
