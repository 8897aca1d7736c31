import errno
import gc
import json
import os
import subprocess
import sys
from argparse import SUPPRESS

import pytest

from seqlab.cli.annotate import ENGINE_FLAGS, annotate_options
from seqlab.cli.main import Commands, build_parser, main
from seqlab.config import build_config
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


def test_incremental_annotate_then_runs_show_and_report(ner_model, tmp_path, capsys):
    from tests.seqlab import rows, write_parquet

    write_parquet(tmp_path / "in" / "a.parquet", rows(4, "a"))
    flags = ["--model", str(ner_model), "--id-column", "id", "--max-length", "64",
             "--incremental"]
    out = str(tmp_path / "out")
    assert main(["annotate", str(tmp_path / "in"), out, *flags, "--run-date", "2026-12-01"]) == 0
    write_parquet(tmp_path / "in" / "b.parquet", rows(3, "b"))
    assert main(["annotate", str(tmp_path / "in"), out, *flags, "--run-date", "2026-12-02"]) == 0
    summary = capsys.readouterr().out
    assert "1 annotated, 1 unchanged" in summary and "2026-12-02" in summary

    assert main(["runs", out]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["run_id", "run_date", "status"]
    assert [line.split()[1:3] for line in lines] == [["2026-12-01", "complete"],
                                                     ["2026-12-02", "complete"]]
    assert main(["runs", out, "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [(r["inputs"], r["unchanged"], r["rows"]) for r in runs] == [(1, 0, 4), (1, 1, 3)]

    assert main(["show", out, "--list"]) == 0  # the documents of every partition
    listed = capsys.readouterr().out
    assert all(f"{p}0" in listed for p in "ab")
    page = tmp_path / "report.html"
    assert main(["report", out, "--html", str(page)]) == 0  # the latest run
    assert runs[-1]["run_id"] in page.read_text()

    assert main(["runs", str(tmp_path / "in")]) == 2
    assert "not an incremental table" in capsys.readouterr().err


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
        [sys.executable, "-m", "seqlab.cli.main", "-q", "annotate", str(corpus_parquet),
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


@pytest.mark.parametrize("module", ["seqlab", "seqlab.cli", "seqlab.cli.main"])
def test_module_entry_points_know_every_command(module):
    result = subprocess.run([sys.executable, "-m", module, "evaluate", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--decoder" in result.stdout


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _flag_blocks(help_text: str) -> dict[str, str]:
    """Each option's help entry, by its first flag ("  --seed SEED   (default: 42)")."""
    blocks: dict[str, str] = {}
    name = None
    for line in help_text.splitlines():
        if line.startswith("  -"):
            name = line.split()[0].rstrip(",")
            blocks[name] = line
        elif name and line.startswith("    "):
            blocks[name] += " " + line.strip()
        else:
            name = None
    return blocks


def test_top_level_help_describes_the_product_and_its_commands(capsys):
    shown = _help([], capsys)
    assert shown.startswith("usage: seqlab")
    assert "Annotate large text corpora" in shown and "The command line" not in shown
    for name in ("annotate", "show", "train", "evaluate", "submit"):
        assert f"\n    {name} " in shown
    assert "seqlab COMMAND --help" in shown


@pytest.mark.parametrize("command, flag, default", [
    ("annotate", "--engine", "local"), ("annotate", "--decoder", "greedy"),
    ("annotate", "--rows-per-part", "100000"), ("annotate", "--gpus-per-actor", "1 on a"),
    ("annotate", "--tokenize-cpus", "1 when"), ("annotate", "--limit", "all"),
    ("train", "--epochs", ""), ("train", "--seed", ""), ("train", "--engine", "local"),
    ("evaluate", "--decoder", "greedy"), ("show", "--limit", "1"),
    ("submit", "--address", "$RAY_ADDRESS"),
])
def test_flags_show_their_defaults(command, flag, default, capsys):
    block = _flag_blocks(_help([command], capsys))[flag]
    assert f"(default: {default}" in block, block


@pytest.mark.parametrize("command", ["annotate", "show", "train", "evaluate", "submit"])
def test_every_flag_with_a_default_says_it(command, capsys):
    commands = next(a for a in build_parser()._actions if isinstance(a, Commands))
    parser = commands.choices[command]
    blocks = _flag_blocks(_help([command], capsys))
    for action in parser._actions:
        if action.option_strings and action.default not in (None, False, [], SUPPRESS):
            assert "default" in blocks[action.option_strings[0]], blocks[action.option_strings[0]]


def test_usage_shows_the_words_after_the_double_dash(capsys):
    assert "-- COMMAND [ARG ...]" in _help(["submit"], capsys).split("\n\n")[0]
    assert "[-- BEAM_OPTION ...]" in _help(["annotate"], capsys).split("\n\n")[0]


@pytest.mark.parametrize("argv", [["--help"], ["annotate", "--help"], ["show", "--help"],
                                  ["submit", "--help"]])
def test_help_does_not_import_torch_or_transformers(argv):
    probe = ("import sys\nfrom seqlab.cli.main import main\ntry:\n    main(sys.argv[1:])\n"
             "except SystemExit:\n    pass\n"
             "print([m for m in ('torch', 'transformers', 'peft') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize("argv, command", [
    (["annotate", "in", "out", "--id-colum", "id"], "annotate"),
    (["annotate", "in", "out", "--bogus"], "annotate"),
    (["show", "out", "--lim", "2"], "show"),
    (["submit", "--addr", "http://h:8265"], "submit"),
    (["evaluate", "ner", "dev.conll", "--decod", "viterbi"], "evaluate"),
])
def test_abbreviated_or_unknown_flags_are_refused_with_the_commands_usage(argv, command,
                                                                        capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    flag = next(word for word in argv if word.startswith("--"))
    assert err.startswith(f"usage: seqlab {command} ")
    assert f"seqlab {command}: error: unrecognized arguments: {flag}" in err


@pytest.mark.parametrize("argv, meant", [
    (["annotate", "in", "out", "--id-colunm", "id"], "--id-column"),
    (["annotate", "in", "out", "--id-colum=id"], "--id-column"),
    (["show", "out", "--lmit", "2"], "--limit"),
    (["evaluate", "ner", "dev.conll", "--decod", "viterbi"], "--decoder"),
])
def test_a_misspelled_flag_gets_the_one_it_was_meant_to_be(argv, meant, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert capsys.readouterr().err.rstrip().endswith(f"(did you mean {meant}?)")


def test_a_missing_input_fails_before_the_model_stack_is_imported(tmp_path):
    missing, out = str(tmp_path / "missing"), str(tmp_path / "out")
    probe = ("import sys\nfrom seqlab.cli.main import main\n"
             f"code = main(['annotate', {missing!r}, {out!r}])\n"
             "print(code, [m for m in ('torch', 'transformers') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.splitlines()[-1] == "2 []", result.stderr
    assert "does not exist" in result.stderr and not (tmp_path / "out").exists()


def test_an_unknown_flag_like_no_other_gets_no_guess(capsys):
    with pytest.raises(SystemExit):
        main(["annotate", "in", "out", "--bogus"])
    assert "did you mean" not in capsys.readouterr().err


def test_verbosity_flags_also_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["annotate", "a", "b", "-v"]).verbose is True
    assert parser.parse_args(["-v", "annotate", "a", "b"]).verbose is True
    args = parser.parse_args(["-q", "show", "out"])
    assert (args.verbose, args.quiet) == (False, True)


def test_storage_options_reach_the_config_over_the_yaml_ones(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("storage_options:\n  anon: false\n  endpoint_url: http://old:9000\n")
    args = build_parser().parse_args([
        "annotate", "s3://b/in", "s3://b/out", "--config", str(config),
        "--storage-options", '{"endpoint_url": "http://127.0.0.1:9000"}'])
    options = build_config(**annotate_options(args, ENGINE_FLAGS)).storage_options
    assert options == {"anon": False, "endpoint_url": "http://127.0.0.1:9000"}


@pytest.mark.parametrize("value", ["{endpoint_url: x}", "[1, 2]", "http://127.0.0.1:9000"])
def test_storage_options_must_be_a_json_object(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["annotate", "in", "out", "--storage-options", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --storage-options: not a JSON object" in err
    assert """fix: pass one in single quotes, e.g. '{"endpoint_url": """ in err


class EndpointConnectionError(Exception):
    """What botocore raises when an S3 endpoint stops answering (not an OSError)."""


def _input(tmp_path) -> str:
    """An input that exists (the annotate call itself is replaced)."""
    (tmp_path / "in.jsonl").write_text('{"text": "a"}\n')
    return str(tmp_path / "in.jsonl")


def _fails_mid_run(exc: Exception):
    def annotate(input, output, *, config, progress):
        # a batch landed, then the storage went away
        progress.update({"documents": 16, "tokens": 1200})
        raise exc

    return annotate


@pytest.mark.parametrize("verbose", [False, True])
def test_storage_failure_mid_run_is_one_line_and_a_fix(verbose, monkeypatch, tmp_path, capsys):
    failure = EndpointConnectionError('Could not connect to the endpoint URL: "http://s3:9000/"')
    monkeypatch.setattr("seqlab.api.annotate", _fails_mid_run(failure))
    argv = ["annotate", _input(tmp_path), str(tmp_path / "out"), *(["-v"] if verbose else [])]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert ("seqlab annotate: error: EndpointConnectionError: Could not connect to the "
            'endpoint URL: "http://s3:9000/"') in err
    assert "fix: check that the storage (and its endpoint) is reachable, then rerun the " \
        "same command to resume the run" in err
    assert ("Traceback (most recent call last)" in err) is verbose
    assert len(err.splitlines()) == 2 or verbose


def test_other_unexpected_errors_point_at_the_traceback(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("seqlab.api.annotate", _fails_mid_run(KeyError("n_tokens")))
    assert main(["annotate", _input(tmp_path), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["seqlab annotate: error: KeyError: 'n_tokens'",
                   "  fix: rerun with -v for the traceback; rerun the same command to resume "
                   "the run"]


@pytest.mark.parametrize("verbose", [False, True])
def test_a_full_disk_is_one_line_and_a_fix_and_the_traceback_only_with_v(verbose, monkeypatch,
                                                                          tmp_path, capsys):
    part = tmp_path / "out" / "documents" / "part-00003-0000000000.parquet"
    failure = OSError(errno.ENOSPC, "No space left on device", str(part))
    monkeypatch.setattr("seqlab.api.annotate", _fails_mid_run(failure))
    argv = ["annotate", _input(tmp_path), str(tmp_path / "out"), *(["-v"] if verbose else [])]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert ("Traceback (most recent call last)" in err) is verbose
    assert err.splitlines()[-2:] == [
        f"seqlab annotate: error: no space left on the device writing {part} (the file system "
        f"mounted at {_mount_point(tmp_path)})",
        "  fix: free space and rerun the same command: it resumes (input files already done "
        "are kept)"]


def _mount_point(path):
    while not os.path.ismount(path):
        path = path.parent
    return path


def test_a_closed_pipe_is_not_an_error():
    """``seqlab show OUT | head``: the reader stops early; seqlab exits quietly, without a
    BrokenPipeError taken for a storage failure. (The output is larger than a pipe's buffer.)"""
    import subprocess
    import sys

    script = ("import sys\nimport seqlab.cli.main as cli\n"
              "cli.COMMANDS['show'] = lambda args: [print('x' * 100) for _ in range(20000)] and 0"
              "\nsys.exit(cli.main(['show', 'out']))\n")
    done = subprocess.run(f"{sys.executable} -c \"$SCRIPT\" | head -c 10", shell=True,
                          capture_output=True, text=True, timeout=120,
                          env={**__import__('os').environ, "SCRIPT": script})
    assert done.stdout == "x" * 10
    assert "error" not in done.stderr, done.stderr


# ---------------------------------------------------------------- OUTPUT that cannot be written

def _annotate(input, out, model, *extra: str) -> int:
    return main(["annotate", str(input), str(out), "--model", str(model), "--id-column", "id",
                 "--max-length", "64", "-q", *extra])


def _locked(folder):
    """``folder`` given mode 0o555; whether that stops this user writing in it (root writes
    anyway)."""
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except PermissionError:
        return True
    (folder / "probe").unlink()
    return False


def test_an_output_that_is_a_file_is_refused_before_any_work(ner_model, tmp_path, capsys):
    from tests.seqlab import rows, write_parquet

    write_parquet(tmp_path / "in" / "a.parquet", rows(4))
    taken = tmp_path / "notes.txt"
    taken.write_text("mine\n")
    before = sorted(tmp_path.rglob("*"))
    for extra in ([], ["--overwrite"]):  # --overwrite replaces a run, never a file
        assert _annotate(tmp_path / "in", taken, ner_model, *extra) == 2
        err = capsys.readouterr().err.splitlines()
        assert err == [f"seqlab annotate: error: {taken} is a file, not a directory",
                       "  fix: pass a directory as OUTPUT: a new one, or an earlier run's"]
    assert taken.read_text() == "mine\n" and sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_an_output_that_cannot_be_written_names_it_and_the_fix(code, ner_model, tmp_path,
                                                               monkeypatch, capsys):
    from seqlab.store.outdir import OutputDir
    from tests.seqlab import rows, write_parquet

    write_parquet(tmp_path / "in" / "a.parquet", rows(4))
    folder = tmp_path / "locked"
    folder.mkdir()
    out = folder / "out"
    if not (code == errno.EACCES and _locked(folder)):
        # root ignores the mode, and a read-only mount needs privileges: the first write of
        # the run fails as the file system would fail it
        def refused(self, relpath, data):
            raise OSError(code, os.strerror(code), self.path(relpath))

        monkeypatch.setattr(OutputDir, "write_json", refused)
    try:
        assert _annotate(tmp_path / "in", out, ner_model) == 2
    finally:
        folder.chmod(0o755)
    message, fix = capsys.readouterr().err.splitlines()
    said = "permission denied on" if code == errno.EACCES else "cannot write"
    assert message.startswith(f"seqlab annotate: error: {said} {out}")
    if code == errno.EACCES:  # the fix names the nearest folder there is (OUTPUT, if made)
        named = out if out.exists() else folder
        assert fix == (f"  fix: give this user write permission on {named} (chmod u+rwx or "
                       "chown), or choose an OUTPUT it may write to (on object storage: "
                       "credentials allowed to write there)")
    else:
        assert message.endswith("it is on a read-only file system")
        assert fix == ("  fix: choose an OUTPUT on a writable file system (or remount this one "
                       "read-write)")
    assert not out.exists() or not any(out.rglob("*"))  # nothing written


def test_a_full_disk_mid_run_exits_1_and_the_rerun_resumes(ner_model, tmp_path, monkeypatch,
                                                           capsys):
    from fsspec.implementations.local import LocalFileOpener

    from tests.seqlab import rows, write_parquet

    write_parquet(tmp_path / "in" / "a.parquet", rows(12, "a"))
    write_parquet(tmp_path / "in" / "b.parquet", rows(12, "b"))
    out = tmp_path / "out"
    flags = ["--rows-per-part", "5", "--batch-docs", "4"]
    real_write = LocalFileOpener.write
    left = [3000]  # bytes the disk takes once the first input file is recorded

    def write(self, data):
        if (out / "_progress" / "fragment-00000.json").exists() and \
                self.path.endswith(".parquet"):
            left[0] -= len(memoryview(data))
            if left[0] < 0:  # as a full disk fails a write: without naming the file
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(LocalFileOpener, "write", write)
    unraisable = []  # e.g. a Parquet writer that fails to close when it is collected
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    assert _annotate(tmp_path / "in", out, ner_model, *flags) == 1
    gc.collect()
    assert not unraisable
    message, fix = capsys.readouterr().err.splitlines()
    assert message.startswith(f"seqlab annotate: error: no space left on the device writing {out}/")
    assert "/part-00001-" in message and "(the file system mounted at /" in message
    assert fix == ("  fix: free space and rerun the same command: it resumes (input files "
                   "already done are kept)")
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]
    monkeypatch.undo()

    assert _annotate(tmp_path / "in", out, ner_model, *flags) == 0
    landed = read_output(out)
    ids = landed["documents"].column("doc_id").to_pylist()
    assert ids == sorted(f"{p}{i}" for p in "ab" for i in range(12))
    manifest = landed["manifest"]
    assert manifest["rows"]["in"] == manifest["rows"]["out"] == 24
    assert len(manifest["attempts"]) == 2
