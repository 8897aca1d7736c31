"""seqlab.engine: engines found by name through entry points, and their typed options."""

from dataclasses import dataclass

import pytest

from seqlab import engine as engine_module
from seqlab.config import build_config
from seqlab.engine import ENTRY_POINTS, Engine, load_engine
from seqlab.errors import ConfigError


@dataclass(frozen=True)
class Options:
    workers: int = 1
    address: str | None = "auto"


def fake_run(plan, options, progress):
    return {}


def test_the_local_engine_is_installed():
    local = load_engine("local")
    assert isinstance(local, Engine) and local.name == "local"
    assert callable(local.run)
    assert local.parse_options({}) == local.options()


def test_an_unknown_engine_lists_the_installed_ones():
    with pytest.raises(ConfigError, match=r"no engine 'spark' is installed") as error:
        load_engine("spark")
    assert "['beam', 'local', 'ray']" in error.value.message
    assert "pip install" in error.value.fix


def test_parse_options_refuses_names_the_engine_does_not_know():
    fake = Engine("fake", fake_run, Options)
    assert fake.parse_options({"workers": 4}) == Options(workers=4)
    assert fake.parse_options({"address": None}) == Options()  # None: the engine's default
    with pytest.raises(ConfigError, match=r"options \['threads', 'zone'\] do not apply to "
                       "--engine fake") as error:
        fake.parse_options({"threads": 2, "zone": "eu", "workers": 1})
    assert error.value.fix.endswith("--engine fake takes address, workers")
    with pytest.raises(ConfigError) as error:
        load_engine("local").parse_options({"workers": 2})
    assert "no engine options" in error.value.fix


class BrokenEntryPoint:
    def __init__(self, missing: str) -> None:
        self.missing = missing

    def load(self):
        raise ModuleNotFoundError(f"No module named {self.missing!r}", name=self.missing)


@pytest.mark.parametrize("missing, extra", [("ray.data", "ray"), ("apache_beam", "beam")])
def test_an_engine_without_its_extra_names_the_pip_command(monkeypatch, missing, extra):
    def entry_points(group, name=None):
        assert group == ENTRY_POINTS
        return [BrokenEntryPoint(missing)]

    monkeypatch.setattr(engine_module, "entry_points", entry_points)
    with pytest.raises(ConfigError, match="is not installed") as error:
        load_engine(extra)
    assert error.value.fix == f"install it with: pip install 'seqlab[{extra}]'"


def test_an_engine_with_another_missing_module_is_not_hidden(monkeypatch):
    monkeypatch.setattr(engine_module, "entry_points",
                        lambda group, name=None: [BrokenEntryPoint("pipelines.typo")])
    with pytest.raises(ModuleNotFoundError):
        load_engine("local")


class FakeEntryPoint:
    def __init__(self, name: str) -> None:
        self.name = name

    def load(self) -> Engine:
        return Engine(self.name, fake_run, Options)


def test_an_engine_a_third_party_package_registers_is_accepted(monkeypatch):
    from importlib.metadata import entry_points as installed

    def entry_points(group, name=None):
        found = [*installed(group=group), FakeEntryPoint("spark")]
        return [ep for ep in found if name is None or ep.name == name]

    monkeypatch.setattr(engine_module, "entry_points", entry_points)
    assert engine_module.engine_names() == ["beam", "local", "ray", "spark"]
    config = build_config(input="in.jsonl", output="out", engine="spark")
    assert config.engine == "spark" and load_engine("spark").name == "spark"
    with pytest.raises(ConfigError, match=r"no engine 'flink' is installed .*'spark'"):
        build_config(input="in.jsonl", output="out", engine="flink")
