"""deploy/beam: the flex-template spec and recipes parse, and documented commands are valid."""

from __future__ import annotations

import argparse
import doctest
import json
import re
import shlex

import pytest

from tests import require

beam = require("apache_beam", "beam")

from packaging.requirements import Requirement  # noqa: E402

from pipelines.beam_cli import parse_args  # noqa: E402
from seqlab.cli.annotate import add_annotate_flags, add_engine_flags  # noqa: E402
from seqlab.cli.main import build_parser
from tests.deploy import DEPLOY as ALL  # noqa: E402
from tests.deploy import ROOT, check_beam_config, flex_launch, flex_template, pinned

DEPLOY = ALL / "beam"
pytestmark = pytest.mark.timeout(60)

def documented_commands() -> list[list[str]]:
    text = (DEPLOY / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith(("seqlab annotate", "python -m pipelines.beam")):
                commands.append(shlex.split(line))
    return commands


@pytest.mark.parametrize("argv", documented_commands(), ids=lambda a: " ".join(a[:5]))
def test_documented_commands_are_valid(argv: list[str]) -> None:
    if argv[0] == "seqlab":
        tail = argv[argv.index("--") + 1 :] if "--" in argv else []
        head = argv[1 : len(argv) - len(tail) - (1 if "--" in argv else 0)]
        args = build_parser().parse_args(head)
        assert args.command == "annotate" and args.engine == "beam"
        check_beam_config(args, tail)
    else:
        args, beam_args = parse_args(argv[3:])
        check_beam_config(args, beam_args)


def test_every_runner_has_a_documented_command() -> None:
    runners = set()
    for argv in documented_commands():
        if "--runner" in argv:
            runners.add(argv[argv.index("--runner") + 1])
    assert {"DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner"} <= runners
    assert any("--engine" in a and "--runner" not in a for a in documented_commands())


INCREMENTAL_SAMPLES = {"incremental": "true", "prune": "false", "run_date": "2026-01-02",
                       "table_format": "iceberg", "catalog": "prod", "namespace": "nlp"}
# parameters of an incremental run; the others are of every run
INCREMENTAL = set(INCREMENTAL_SAMPLES)
SAMPLES = {**INCREMENTAL_SAMPLES, "dtype": "auto"}


def sample(param: dict) -> str:
    if param["name"] in SAMPLES:
        return SAMPLES[param["name"]]
    regexes = " ".join(param.get("regexes", []))
    if "[0-9]" in regexes:
        return "16"  # a window of 16 fits a --batch-tokens of 16
    if "greedy" in regexes:
        return "viterbi"
    return "gs://bucket/x" if "gs|s3" in regexes else "value"


def test_flex_template_parameters_are_pipeline_flags() -> None:
    spec = json.loads((DEPLOY / "metadata.json").read_text())
    names = [p["name"] for p in spec["parameters"]]
    assert {"input", "output", "model"} <= set(names) and len(names) == len(set(names))
    parser = argparse.ArgumentParser()
    add_annotate_flags(parser)
    add_engine_flags(parser)
    flags = {s for action in parser._actions for s in action.option_strings}
    for param in spec["parameters"]:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", param["name"]) and param["helpText"]
        assert param["name"] in ("input", "output") or \
            "--" + param["name"].replace("_", "-") in flags, param["name"]
        for regex in param.get("regexes", []):
            assert re.fullmatch(regex, sample(param)), param["name"]
    # every parameter at once: those of any run, then those of an incremental run
    every = {p["name"]: sample(p) for p in spec["parameters"] if p["name"] not in INCREMENTAL}
    args, beam_args = flex_launch(every, ["--experiments=no_use_multiple_sdk_containers"])
    assert beam_args == ["--experiments=no_use_multiple_sdk_containers"]  # Beam's own option
    options = check_beam_config(args, beam_args)
    assert options["text_column"] == "value" and options["max_length"] == 16
    incremental = {p["name"]: sample(p) for p in spec["parameters"]
                   if p["name"] in INCREMENTAL | {"input", "output", "model"}}
    args, beam_args = flex_launch(incremental)
    options = check_beam_config(args, beam_args)
    assert options["incremental"] is True and "prune" not in options  # prune=false: no flag
    assert (options["run_date"], options["table_format"], options["catalog"],
            options["namespace"]) == ("2026-01-02", "iceberg", "prod", "nlp")


def test_flex_template_entry_point_turns_switches_into_flags() -> None:
    module = flex_template()
    failed, _ = doctest.testmod(module)
    assert failed == 0
    assert module.switches()["drop_text"] == "--drop-text"
    assert module.switches_as_flags(["--incremental=True", "--prune=0", "--model=ner"]) == \
        ["--incremental", "--model=ner"]
    assert module.switches_as_flags(["--incremental", "--model", "ner"]) == \
        ["--incremental", "--model", "ner"]  # already flags: as they are
    with pytest.raises(SystemExit, match="incremental=true or incremental=false"):
        module.switches_as_flags(["--incremental=maybe"])


def test_dockerfile_matches_the_installed_stack() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    # the image, the constraints and this environment run one Beam
    assert f"ARG BEAM_VERSION={pinned('apache-beam')}" in text
    assert beam.__version__ == pinned("apache-beam")
    assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}" in text
    py_file = re.search(r"FLEX_TEMPLATE_PYTHON_PY_FILE=/opt/seqlab/(\S+)", text).group(1)
    assert (ROOT / py_file).is_file()
    for source in re.findall(r"^COPY (?!--)(.+) \S+$", text, flags=re.M):
        for name in source.split():
            assert (ROOT / name).exists(), name
    assert f"torch=={pinned('torch')}" in text


def test_worker_requirements_pin_torch() -> None:
    lines = [line for line in (DEPLOY / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    requirements = {r.name: r for r in map(Requirement, lines)}
    assert str(requirements["torch"].specifier).startswith("==")


def test_pipelines_beam_help_and_underscore_flags(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--help"])
    assert exit_.value.code == 0 and "--input INPUT --output OUTPUT" in capsys.readouterr().out
    args, beam_args = parse_args(["--input", "a", "--output", "b", "--id_column=id",
                                  "--runner", "DataflowRunner", "--project", "p"])
    assert (args.input, args.output, args.id_column, args.runner) == ("a", "b", "id",
                                                                      "DataflowRunner")
    assert beam_args == ["--project", "p"]
