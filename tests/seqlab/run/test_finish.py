"""seqlab.run.finish as the end-of-run summary reads it: what a resumed attempt did itself,
and which input files an incremental run superseded (seqlab.cli.progress.print_summary)."""

from __future__ import annotations

from collections import Counter

from seqlab.cli.progress import print_summary
from seqlab.run.finish import finish_run
from tests.seqlab import drive, make_plan, rows, write_parquet
from tests.seqlab.store import test_incremental as incremental_runs

corpus = incremental_runs.corpus  # a.jsonl (2 rows), b.parquet (4), keep/k.parquet (3)


def summary_rows(capsys, manifest: dict, elapsed: float = 2.0) -> dict[str, str]:
    """The summary table's rows: name -> value (a value that wraps is joined)."""
    print_summary(manifest, elapsed)
    found: dict[str, str] = {}
    name = ""
    for line in capsys.readouterr().out.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 2:
            name = cells[0] or name
            found[name] = " ".join(filter(None, (found.get(name, ""), cells[1])))
    return found


def test_one_changed_input_file_supersedes_one_input_file_and_its_parts(
        tmp_path, corpus, ner_model, capsys):
    out = tmp_path / "out"
    first = incremental_runs.run(corpus, out, ner_model, run_date="2026-12-01")
    write_parquet(corpus / "b.parquet", rows(5, "b", start=20))  # one file changed
    second = incremental_runs.run(corpus, out, ner_model, run_date="2026-12-02")
    assert second["incremental"]["replaced"] == ["b.parquet"]
    earlier = next(i for i in first["inputs"] if i["fragment"] == "b.parquet")["parts"]
    by_table = {table: len(parts) for table, parts in earlier.items() if parts}
    assert sum(by_table.values()) == len(second["incremental"]["superseded"]) >= 3
    shown = summary_rows(capsys, second)
    assert shown["superseded"] == (
        f"1 input file (annotated again); {sum(by_table.values())} earlier files ("
        + ", ".join(f"{t} {n}" for t, n in sorted(by_table.items())) + ")")
    assert shown["input files"] == "1 annotated, 2 unchanged"


def test_changed_and_pruned_input_files_are_counted_apart(tmp_path, corpus, ner_model, capsys):
    out = tmp_path / "out"
    incremental_runs.run(corpus, out, ner_model, run_date="2026-12-01")
    incremental_runs.grow(corpus)  # c new, b changed, a gone
    second = incremental_runs.run(corpus, out, ner_model, run_date="2026-12-02", prune=True)
    files = second["incremental"]["superseded"]
    tables = Counter(path.split("/")[0] for path in files)
    shown = summary_rows(capsys, second)["superseded"]
    assert shown.startswith("2 input files (1 annotated again, 1 gone, pruned); "
                            f"{len(files)} earlier files (")
    assert all(f"{table} {n}" in shown for table, n in tables.items())


def test_a_resumed_run_rates_this_attempt_on_the_words_it_annotated(tmp_path, ner_model,
                                                                     capsys):
    write_parquet(tmp_path / "in" / "a.parquet", rows(6, "a"))
    write_parquet(tmp_path / "in" / "b.parquet", rows(2, "b"))
    first = make_plan(tmp_path / "in", tmp_path / "out", ner_model, id_column="id")
    drive(first, first.work[:1])  # a lands, then the attempt stops
    second = make_plan(tmp_path / "in", tmp_path / "out", ner_model, id_column="id")
    drive(second)
    manifest = finish_run(second, engine="test")
    attempt, counts = manifest["attempt"], manifest["counts"]
    assert attempt["number"] == len(manifest["attempts"]) == 2
    assert attempt["documents"] == 2 and counts["documents"] == 8
    assert 0 < attempt["words"] < counts["tokens"]
    assert 0 < attempt["characters"] < counts["characters"]
    assert 0 < attempt["seconds"] <= manifest["elapsed_s"] + 1
    shown = summary_rows(capsys, manifest, elapsed=2.0)
    assert shown["time"] == "2.0 s (attempt 2 of 2)"
    assert shown["words/s"] == (f"{attempt['words'] / 2:,.0f} in this attempt "
                                f"({attempt['words']:,} words in 2.0 s)")
    whole = shown["whole run"]
    assert whole.endswith("the time between attempts included)")
    assert f" words/s ({counts['tokens']:,} words over 2 attempts, " in whole


def test_a_first_attempt_has_no_attempt_section_and_one_rate(tmp_path, ner_model, capsys):
    write_parquet(tmp_path / "in" / "a.parquet", rows(4, "a"))
    plan = make_plan(tmp_path / "in", tmp_path / "out", ner_model, id_column="id")
    drive(plan)
    manifest = finish_run(plan, engine="test")
    assert "attempt" not in manifest
    shown = summary_rows(capsys, manifest, elapsed=4.0)
    assert shown["time"] == "4.0 s" and "whole run" not in shown
    assert shown["words/s"] == f"{manifest['counts']['tokens'] / 4:,.0f}"
