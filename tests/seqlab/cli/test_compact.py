"""``seqlab compact`` and ``seqlab annotate --incremental --compact`` on the command line."""

from __future__ import annotations

import json
import random

import pytest

from seqlab.cli.main import main
from tests.conftest import make_text
from tests.seqlab import write_parquet

pytestmark = pytest.mark.timeout(180)


def corpus(root, n: int) -> str:
    """``n`` one-document input files of ~14 KB of documents each."""
    for i in range(n):
        write_parquet(root / f"f{i:02d}.parquet",
                      [{"id": f"f{i:02d}", "text": make_text(random.Random(i), 150)}])
    return str(root)


def test_annotate_compacts_after_its_run_and_compact_then_has_nothing_to_do(
        ner_model, tmp_path, capsys):
    out = tmp_path / "out"
    flags = ["--model", str(ner_model), "--id-column", "id", "--max-length", "64",
             "--incremental", "--run-date", "2026-12-01"]
    assert main(["annotate", corpus(tmp_path / "in", 12), str(out), *flags, "--compact",
                 "--target-file-size", "100KB"]) == 0
    documents = sorted(p.name for p in (out / "documents").rglob("*.parquet"))
    assert 1 <= len(documents) <= 2 and all("part-compact-" in n for n in documents)
    assert len(list((out / "aggregates").rglob("*.parquet"))) == 12
    capsys.readouterr()

    assert main(["compact", str(out), "--target-file-size", "100KB"]) == 0
    printed = capsys.readouterr().out
    assert f"documents: {len(documents)} -> {len(documents)} files" in printed
    assert "unchanged" in printed
    assert main(["compact", str(out), "--json", "--target-file-size", "100000"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "unchanged" and summary["target_bytes"] == 100_000
    assert sorted(p.name for p in (out / "documents").rglob("*.parquet")) == documents


def test_compact_mistakes_name_the_fix(ner_model, tmp_path, capsys):
    inputs = corpus(tmp_path / "in", 1)
    assert main(["annotate", inputs, str(tmp_path / "o"), "--model", str(ner_model),
                 "--compact"]) == 2
    err = capsys.readouterr().err
    assert "--compact only applies to incremental runs" in err and "fix: add --incremental" in err
    assert main(["compact", inputs]) == 2
    err = capsys.readouterr().err
    assert "is not an incremental table" in err and "fix: point seqlab compact at" in err
    with pytest.raises(SystemExit) as refused:
        main(["compact", inputs, "--target-file-size", "big"])
    assert refused.value.code == 2
    assert "'big' is not a size; fix: give a size such as 512MB" in capsys.readouterr().err
