"""The layout's rules (docs/architecture.md), checked on the source: what may import what, no
import circles, small modules, and tests that mirror the packages."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("seqlab", "pipelines")
ENGINE_PACKAGES = ("pipelines", "ray", "apache_beam")  # seqlab/ never imports these
MAX_LINES = 400
MAX_TOP_LEVEL = 12
# What annotating runs: none of it may import training code (``seqlab train``'s modules)
INFERENCE = ("seqlab.run", "seqlab.stages", "seqlab.store", "seqlab.models.load",
             "seqlab.models.metadata", "seqlab.models.quantize", "seqlab.models.shipped",
             "seqlab.srl.tag", "seqlab.srl.frames", "seqlab.srl.stage", "seqlab.api")
TRAINING = ("seqlab.training", "seqlab.srl.data", "seqlab.srl.examples", "seqlab.srl.train",
            "seqlab.srl.evaluate")


def modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


KNOWN = modules()


def imported(path: Path) -> set[str]:
    """Every module an import statement of the file names, at any depth (function-level and
    ``TYPE_CHECKING`` imports count: they are edges of the graph all the same)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # ``from package import module`` names the module, not the package's __init__
            subs = {f"{node.module}.{alias.name}" for alias in node.names}
            names |= subs if subs & set(KNOWN) else {node.module}
    return names


def graph() -> dict[str, set[str]]:
    return {name: {n for n in imported(path) if n in KNOWN and n != name}
            for name, path in KNOWN.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in edges[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_seqlab_never_imports_an_engine():
    offenders = {name: sorted(n for n in imported(path) if under(n, ENGINE_PACKAGES))
                 for name, path in KNOWN.items() if under(name, ("seqlab",))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_import_circles():
    assert circles(graph()) == []


def test_circles_are_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_annotating_never_imports_training_code():
    edges = graph()
    starts = [name for name in edges if under(name, INFERENCE)]
    leaks = {start: sorted(n for n in reachable(edges, start) if under(n, TRAINING))
             for start in starts}
    assert {k: v for k, v in leaks.items() if v} == {}


def test_modules_are_small_and_the_top_level_holds_few():
    sizes = {name: len(path.read_text().splitlines()) for name, path in KNOWN.items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
    top = sorted(p.name for p in (ROOT / "seqlab").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, top


def test_tests_mirror_the_packages():
    packages = {p.parent.relative_to(ROOT / "seqlab").as_posix()
                for p in (ROOT / "seqlab").rglob("__init__.py")} - {"."}
    test_dirs = {p.parent.relative_to(ROOT / "tests" / "seqlab").as_posix()
                 for p in (ROOT / "tests" / "seqlab").rglob("test_*.py")} - {"."}
    assert test_dirs == packages



def test_every_benchmark_imports():
    """The benchmarks are scripts run by hand: importing each (its main is not run) catches a
    name that moved."""
    import importlib.util
    import sys

    # run as scripts, they find their sibling modules (benchmarks/inputs.py) on sys.path[0]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
