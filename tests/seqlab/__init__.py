"""Unit tests of seqlab's modules, in folders that mirror its packages (``run/test_read.py``
tests ``seqlab/run/read.py``).

The builders the run-contract tests share live here: small input files, a real plan made by
``plan_run`` with a tiny model, and the contract driven piece by piece, as an engine drives it.
seqlab is imported inside them, so that collecting this folder imports neither torch nor
transformers.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from seqlab.run.annotator import Annotator
    from seqlab.run.plan import RunPlan
    from seqlab.run.work import WorkItem
    from seqlab.stages.tag import Tagger

SMALL = dict(max_length=64, stride=16, batch_tokens=1024, batch_docs=4, device="cpu")


def rows(n: int, prefix: str = "d", start: int = 0) -> list[dict]:
    """``n`` documents with an id, two passthrough columns and text the tiny vocab knows."""
    words = "john smith said the bank of new york was in london".split()
    return [{"id": f"{prefix}{i}", "title": f"t{i}", "year": 1900 + i,
             "text": " ".join(words[: 3 + (i * 5) % 9])} for i in range(start, start + n)]


def write_parquet(path: Path, records: list[dict], **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), path, **options)
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def truncate(path: Path) -> Path:
    """Cut a file in half, as a crashed copy leaves it (its Parquet footer gone)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_plan(input, output, model, **options) -> RunPlan:
    from seqlab.config import build_config
    from seqlab.run.plan import plan_run

    return plan_run(build_config(input=str(input), output=str(output), model=str(model),
                                 **{**SMALL, **options}))


@cache
def shared_tagger(model: str, batch_tokens: int = SMALL["batch_tokens"]) -> Tagger:
    """A tiny model loaded once per session: loading it is most of an annotator's cost."""
    from seqlab.models.load import ModelSpec, load_model
    from seqlab.stages.tag import Tagger

    return Tagger(load_model(ModelSpec(model, device="cpu")), batch_tokens)


def annotator(plan: RunPlan) -> Annotator:
    from seqlab.run.annotator import Annotator

    if len(plan.models) > 1 or plan.models[0].kind != "tags":
        return Annotator(plan)
    return Annotator(plan, tagger=shared_tagger(plan.config.model, plan.config.batch_tokens))


def drive(plan: RunPlan, items: list[WorkItem] | None = None) -> None:
    """The run contract up to ``finish_run``: read, annotate, land, record; for ``items``
    (default: all of the plan's work), as any engine would."""
    from seqlab.run.land import land
    from seqlab.run.ledger import FragmentLedger
    from seqlab.run.work import read_slices

    annotate, ledger = annotator(plan), FragmentLedger(plan)
    for item in plan.work if items is None else items:
        for batch in read_slices(plan, item):
            for landed in land(plan, annotate(batch)):
                ledger.add(landed)
