import json
import subprocess
import sys

import pytest

from seqlab.cli import main
from tests.helpers import read_output


def test_annotate_show_and_html(corpus_parquet, ner_model, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["annotate", str(corpus_parquet), str(out), "--model", str(ner_model),
                 "--id-column", "id", "--max-length", "64", "--stride", "16", "--decoder",
                 "viterbi", "--aggregation", "average", "--limit", "20"])
    assert code == 0
    summary = capsys.readouterr().out
    assert "documents" in summary and "20" in summary and "words/s" in summary
    manifest = read_output(out)["manifest"]
    assert manifest["config"]["decoder"] == "viterbi" and manifest["rows"]["in"] == 20

    doc = read_output(out)["documents"].to_pylist()[3]
    assert main(["show", str(out), "--doc", doc["doc_id"]]) == 0
    shown = capsys.readouterr().out
    assert doc["doc_id"] in shown and doc["text"].split()[0] in shown

    page = tmp_path / "doc.html"
    assert main(["show", str(out), "--doc", doc["doc_id"], "--html", str(page)]) == 0
    html = page.read_text()
    assert html.count("<mark") == len(doc["entities"]) + len({e["label"] for e in doc["entities"]})
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html


def test_errors_name_the_fix(corpus_parquet, ner_model, tmp_path, capsys):
    code = main(["annotate", str(corpus_parquet), str(tmp_path / "o"), "--model", str(ner_model),
                 "--text-column", "body"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no text column 'body'" in err and "fix: name the text column with --text-column" in err
    assert main(["annotate", str(tmp_path / "missing.parquet"), str(tmp_path / "o"),
                 "--model", str(ner_model)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_yaml_config_and_flags_override(corpus_parquet, ner_model, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"model: {ner_model}\nmax-length: 64\nstride: 8\nlimit: 5\n"
                      "id_column: id\n")
    out = tmp_path / "out"
    assert main(["annotate", str(corpus_parquet), str(out), "--config", str(config),
                 "--limit", "7"]) == 0
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["config"]["stride"] == 8 and manifest["rows"]["in"] == 7


def test_console_script_runs(ner_model, corpus_parquet, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "seqlab.cli", "-q", "annotate", str(corpus_parquet),
         str(tmp_path / "o"), "--model", str(ner_model), "--limit", "3"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "_manifest.json").exists()


@pytest.mark.parametrize("argv", [["--version"], ["annotate", "--help"]])
def test_help_and_version(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "seqlab" in capsys.readouterr().out


@pytest.mark.parametrize("module", ["seqlab", "seqlab.cli"])
def test_module_entry_points_know_every_command(module):
    result = subprocess.run([sys.executable, "-m", module, "evaluate", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--decoder" in result.stdout
