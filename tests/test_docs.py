"""The documentation: the site builds with ``mkdocs build --strict``, the code blocks marked
``<!-- runnable -->`` in README.md and docs/ run, and README.md's relative links resolve.

A runnable block is a fenced ``bash`` or ``python`` block on the line after the marker. The
blocks of one file run in order, from the repository root, with ``OUT`` naming a temporary
folder they share (the examples write there, never into the repository), each under a
timeout; a bash block runs with ``set -euo pipefail``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import require

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = "<!-- runnable -->"
BLOCK = re.compile(r"^<!-- runnable -->\n```(?P<lang>[\w-]*)\n(?P<code>.*?)^```", re.M | re.S)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*#*\s*$", re.M)
BLOCK_TIMEOUT_S = 180


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def runnable_blocks(text: str) -> list[tuple[str, str, int]]:
    """``(language, code, line)`` of each block marked runnable in a Markdown text.

    >>> runnable_blocks("x\\n<!-- runnable -->\\n```bash\\necho hi\\n```\\n```bash\\nno\\n```\\n")
    [('bash', 'echo hi\\n', 3)]
    """
    return [(m["lang"], m["code"], text.count("\n", 0, m.start()) + 2)
            for m in BLOCK.finditer(text)]


def slug(title: str) -> str:
    """A heading's anchor as GitHub writes it.

    >>> slug("`seqlab annotate`"), slug("What each model's `seqlab.json` records")
    ('seqlab-annotate', 'what-each-models-seqlabjson-records')
    """
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "").strip().lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def anchors(path: Path) -> set[str]:
    return {slug(m["title"]) for m in HEADING.finditer(FENCE.sub("", path.read_text()))}


def relative_links(text: str) -> list[str]:
    """The link and image targets of a Markdown text that are not URLs, outside code.

    >>> relative_links("[a](docs/a.md) ![b](b.png) [c](https://x.org) `[d](e.md)`")
    ['docs/a.md', 'b.png']
    """
    prose = re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))
    return [m["target"] for m in LINK.finditer(prose)
            if not re.match(r"[a-z][a-z0-9+.-]*:", m["target"])]


FILES_WITH_BLOCKS = [p for p in markdown_files() if runnable_blocks(p.read_text())]


def test_the_readme_and_docs_have_runnable_blocks_but_no_install_commands():
    blocks = [b for p in markdown_files() for b in runnable_blocks(p.read_text())]
    assert runnable_blocks(README.read_text()), "the README's quick start is runnable"
    assert len(blocks) >= 4
    for lang, code, _ in blocks:
        assert lang in ("bash", "python")
        assert "pip install" not in code and "venv" not in code


@pytest.mark.slow
@pytest.mark.parametrize("path", FILES_WITH_BLOCKS,
                         ids=[p.relative_to(ROOT).as_posix() for p in FILES_WITH_BLOCKS])
def test_runnable_blocks_run(path: Path, tmp_path: Path):
    before = {p.name for p in ROOT.iterdir()}
    bin_dir = str(Path(sys.executable).parent)  # the environment's seqlab command first
    env = {**os.environ, "OUT": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    for lang, code, line in runnable_blocks(path.read_text()):
        where = f"{path.relative_to(ROOT)}:{line}"
        command = (["bash", "-c", "set -euo pipefail\n" + code] if lang == "bash"
                   else [sys.executable, "-c", code])
        try:
            result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                                    timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the block at {where} ran over {BLOCK_TIMEOUT_S} s")
        assert result.returncode == 0, (
            f"the block at {where} exited {result.returncode}:\n{code}\n"
            f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-4000:]}")
    assert {p.name for p in ROOT.iterdir()} <= before, "a runnable block wrote into the " \
        "repository: write under $OUT"


def test_the_readme_links_resolve():
    targets = relative_links(README.read_text())
    assert any(t.startswith("docs/") for t in targets)
    missing = []
    for target in targets:
        path, _, anchor = target.partition("#")
        file = (README.parent / path).resolve() if path else README
        if not file.exists():
            missing.append(f"{target}: no file {file.relative_to(ROOT)}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            missing.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not missing, "README.md links to what is not there:\n" + "\n".join(missing)


def test_the_site_builds_strict(tmp_path: Path):
    require("mkdocs", "docs")
    require("material", "docs")
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                             "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    pages = {p.relative_to(site).as_posix() for p in site.rglob("index.html")}
    assert {"index.html", "usage/index.html", "models/ner/index.html",
            "models/srl/index.html", "architecture/index.html"} <= pages
    # the README's DuckDB queries are included into the output page, not copied
    output = (site / "output" / "index.html").read_text()
    assert "top entities per label over all runs" in output and "8&lt;--" not in output
