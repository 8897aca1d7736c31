"""Damaged or missing state against every command that reads a table: each state file cut
short or deleted, a live part deleted, an unlisted file added, then ``annotate`` (the next
run), ``runs``, ``report`` and ``verify``. A command either works (and the table still holds
each input row once) or stops with exit 2 naming the damaged file; never a traceback, never
data removed."""

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from seqlab.cli.main import main
from tests.seqlab import SMALL, rows, write_parquet

DAMAGE = ["cut the last run's manifest", "delete the last run's manifest",
          "cut latest.json", "delete latest.json", "delete a live part", "add an unlisted file"]
COMMANDS = ["annotate", "runs", "report", "verify"]


def argv(command: str, corpus: Path, out: Path, model: Path, tmp: Path,
         day: str = "2026-12-03") -> list[str]:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    return {"annotate": ["annotate", str(corpus), str(out), "--model", str(model),
                         "--id-column", "id", "--incremental", "--run-date", day, *flags],
            "runs": ["runs", str(out)],
            "report": ["report", str(out), "--html", str(tmp / "report.html")],
            "verify": ["verify", str(out)]}[command]


@pytest.fixture(scope="module")
def table(tmp_path_factory, ner_model) -> tuple[Path, Path]:
    """A two-run table to copy and damage."""
    root = tmp_path_factory.mktemp("damaged")
    corpus = root / "in"
    write_parquet(corpus / "a.parquet", rows(4, "a"))
    write_parquet(corpus / "b.parquet", rows(3, "b"))
    out = root / "table"
    for day, extra in (("2026-12-01", None), ("2026-12-02", "c")):
        if extra:
            write_parquet(corpus / f"{extra}.parquet", rows(2, extra))
        assert main(argv("annotate", corpus, out, ner_model, root, day)) == 0
    return corpus, out


def damage(out: Path, how: str) -> Path:
    """Damage the table; returns the file concerned."""
    latest = out / "_runs" / "latest.json"
    last = out / json.loads(latest.read_text())["manifest"]
    if how == "cut the last run's manifest":
        last.write_text(last.read_text()[:200])
        return last
    if how == "delete the last run's manifest":
        last.unlink()
        return last
    if how == "cut latest.json":
        latest.write_text(latest.read_text()[:10])
        return latest
    if how == "delete latest.json":
        latest.unlink()
        return latest
    if how == "delete a live part":
        part = sorted((out / "documents").rglob("*.parquet"))[0]
        part.unlink()
        return part
    stray = out / "mentions" / "copied-by-hand.parquet"
    shutil.copy(sorted((out / "mentions").rglob("*.parquet"))[0], stray)
    return stray


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_state_is_named_or_survived_never_a_traceback(table, tmp_path, ner_model,
                                                              capsys, how, command):
    corpus, source = table
    out = tmp_path / "table"
    shutil.copytree(source, out)
    concerned = damage(out, how)
    capsys.readouterr()
    code = main(argv(command, corpus, out, ner_model, tmp_path))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 2:
        assert str(concerned) in err or concerned.name in err, err  # names the damaged file
        return
    if command == "verify" and code == 1:  # findings, one line each
        return
    assert code == 0, err
    if command == "annotate":  # the table still holds each current input row once
        ids = pq.read_table(out / "documents").column("doc_id").to_pylist()
        assert len(ids) == len(set(ids)) == 9
        if how == "add an unlisted file":  # moved aside, not deleted
            assert (out / "_quarantine" / concerned.relative_to(out)).is_file()


def test_a_single_runs_files_without_its_manifest_are_never_removed(tmp_path, ner_model,
                                                                    capsys):
    write_parquet(tmp_path / "in.parquet", rows(5))
    run = ["annotate", str(tmp_path / "in.parquet"), str(tmp_path / "out"), "--model",
           str(ner_model), "--id-column", "id",
           *[f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]]
    assert main(run) == 0
    (tmp_path / "out" / "_manifest.json").unlink()
    parts = sorted((tmp_path / "out").rglob("*.parquet"))
    capsys.readouterr()
    assert main(run) == 2
    assert "holds documents, mentions, aggregates files but no manifest or run state" in \
        capsys.readouterr().err
    assert sorted((tmp_path / "out").rglob("*.parquet")) == parts  # untouched
    assert main([*run, "--overwrite"]) == 0
