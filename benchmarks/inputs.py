"""The inputs the benchmarks read: the Wikipedia corpus and the labelled dev sets, as options.

Scripts that read them take ``--corpus PATH`` and ``--data DIR`` (defaults: ``$SEQLAB_CORPUS``
and ``$SEQLAB_DATA``, else the ``shared/`` folder beside the checkout that DATA.md describes).
A missing file stops the script with a message naming the option, before any work, instead
of a bare ``FileNotFoundError`` halfway through a run.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = Path(os.environ.get("SEQLAB_CORPUS")
                      or ROOT.parent / "shared" / "corpora" / "wikipedia-en.parquet")
DEFAULT_DATA = Path(os.environ.get("SEQLAB_DATA") or ROOT.parent / "shared" / "data")
DEV = {"ner": "conll2003/eng.testa", "upos": "ud_english_ewt/en_ewt-ud-dev.conllu"}

_chosen = {"corpus": DEFAULT_CORPUS, "data": DEFAULT_DATA}


def add_options(parser: argparse.ArgumentParser, corpus: bool = True,
                data: bool = False) -> None:
    if corpus:
        parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                            help="the Wikipedia corpus: a Parquet file with id, title and text "
                            f"columns (default: $SEQLAB_CORPUS or {DEFAULT_CORPUS})")
    if data:
        parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                            help="the folder of labelled sets (conll2003/, ud_english_ewt/...; "
                            f"default: $SEQLAB_DATA or {DEFAULT_DATA})")


def use(args: argparse.Namespace) -> None:
    """Take the paths ``args`` holds (from ``add_options``)."""
    for name in _chosen:
        if getattr(args, name, None) is not None:
            _chosen[name] = Path(getattr(args, name))


def corpus() -> Path:
    return _existing(_chosen["corpus"], "the Wikipedia corpus", "--corpus PATH",
                     "SEQLAB_CORPUS")


def data(relative: str) -> Path:
    return _existing(_chosen["data"] / relative, f"the labelled set {relative}", "--data DIR",
                     "SEQLAB_DATA")


def dev(model: str) -> Path:
    """The dev set the shipped ``model`` is scored on."""
    return data(DEV[model])


def _existing(path: Path, what: str, option: str, variable: str) -> Path:
    if not path.exists():
        raise SystemExit(f"error: {what} is not at {path}: pass {option} (or set ${variable}) "
                         "to where it is; ../shared/data/DATA.md says where each comes from")
    return path
