"""Annotating a batch: tokenize -> tag -> decode, with the dead letter inside.

Every engine runs the stages through ``Annotator``, so what happens to a document that
breaks a stage is one rule everywhere: the stage is retried on each row of the batch alone,
and a row that still raises becomes a ``failed`` row whose ``error`` names the stage and the
exception. The rest of its batch lands as usual, and the row still goes through the later
stages (which pass rows that are not ``ok`` through untouched), so every input row gives one
``documents`` row.

``SEQLAB_FAULT`` (``stage:doc_id[,stage:doc_id...]``, stages ``tokenize``, ``tag``,
``decode``) makes a stage raise for the named documents on every engine and worker. It lets
the conformance tests check the rule above end to end, and users check their own
deployments' dead letter.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import pyarrow as pa

from seqlab import schema
from seqlab.run.plan import RunPlan
from seqlab.stages.tag import Tagger
from seqlab.stages.tokenize import Tokenizer
from seqlab.stages.tokens import Documents

log = logging.getLogger(__name__)

FAULT_ENV = "SEQLAB_FAULT"
STEPS = ("tokenize", "tag", "decode")

Stage = Callable[[pa.RecordBatch], pa.RecordBatch]


class InjectedFault(RuntimeError):
    """Raised by a stage for a document named in ``SEQLAB_FAULT``."""


def injected_faults(value: str | None = None) -> dict[str, set[str]]:
    """``SEQLAB_FAULT`` parsed: stage -> document ids.

    >>> {step: sorted(ids) for step, ids in injected_faults("decode:b,tokenize:a,decode:c").items()}
    {'tokenize': ['a'], 'decode': ['b', 'c']}
    """
    value = os.environ.get(FAULT_ENV, "") if value is None else value
    faults: dict[str, set[str]] = {}
    for item in filter(None, (v.strip() for v in value.split(","))):
        step, _, doc_id = item.partition(":")
        if step not in STEPS:
            raise ValueError(f"{FAULT_ENV}: unknown stage {step!r} (use one of {STEPS})")
        faults.setdefault(step, set()).add(doc_id)
    return dict(sorted(faults.items(), key=lambda kv: STEPS.index(kv[0])))


def mark_failed(batch: pa.RecordBatch, error: str, output: pa.Schema) -> pa.RecordBatch:
    """``batch``'s rows as ``failed`` rows of a stage's ``output`` schema: the columns the
    stage would have added are null."""
    n = batch.num_rows
    columns = {name: batch.column(name) for name in batch.schema.names}
    columns[schema.STATUS] = pa.array([schema.FAILED] * n, pa.string())
    columns[schema.ERROR] = pa.array([error] * n, pa.string())
    return pa.RecordBatch.from_arrays(
        [columns[f.name].cast(f.type) if f.name in columns else pa.nulls(n, f.type)
         for f in output], schema=output)


def failed_documents(batch: pa.RecordBatch, error: str, documents: pa.Schema,
                     provenance_columns: dict[str, pa.Array]) -> pa.RecordBatch:
    """``documents`` rows for rows the decode stage itself cannot turn into documents."""
    n = batch.num_rows
    columns = {name: batch.column(name) for name in batch.schema.names}
    columns.update({schema.STATUS: pa.array([schema.FAILED] * n, pa.string()),
                    schema.ERROR: pa.array([error] * n, pa.string()),
                    schema.N_TOKENS: pa.array([0] * n, pa.int32()), **provenance_columns})
    return pa.RecordBatch.from_arrays(
        [columns[f.name].cast(f.type) if f.name in columns else pa.nulls(n, f.type)
         for f in documents], schema=documents)


def apply_safely(stage: Stage, batch: pa.RecordBatch, step: str,
                 failed: Callable[[pa.RecordBatch, str], pa.RecordBatch]) -> pa.RecordBatch:
    """``stage(batch)``; if it raises, the stage on each row alone, and ``failed(row, error)``
    for a row that still raises. Rows keep their order."""
    try:
        return stage(batch)
    except Exception as exc:  # noqa: BLE001 - one bad document must not end the run
        if batch.num_rows == 1:
            doc_id = batch.column(schema.DOC_ID)[0].as_py()
            log.warning("%s failed for document %s: %s: %s", step, doc_id,
                        type(exc).__name__, exc)
            return failed(batch, f"{step} failed: {type(exc).__name__}: {exc}")
        log.warning("%s failed on a batch of %d documents (%s); retrying them one by one",
                    step, batch.num_rows, exc)
    rows = [apply_safely(stage, batch.slice(i, 1), step, failed) for i in range(batch.num_rows)]
    return pa.concat_batches(_unify(rows))


def _unify(rows: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
    """Single-row results in one schema (a failed row's nulls may differ in nullability)."""
    target = next((r.schema for r in rows if not _all_failed(r)), rows[0].schema)
    return [r if r.schema.equals(target) else pa.RecordBatch.from_arrays(
        [r.column(f.name).cast(f.type) for f in target], schema=target) for r in rows]


def _all_failed(batch: pa.RecordBatch) -> bool:
    return all(s == schema.FAILED for s in batch.column(schema.STATUS).to_pylist())


class Annotator:
    """The row-level stages of a run, built from its plan: the tokenize stage once, then each
    model's tag and decode stages (``RunPlan.model_stages``), then ``Documents``. Models load
    on first tagging, so a worker that only tokenizes (Ray's read tasks) never loads them;
    ``load=True`` loads them now. ``tagger``: an already loaded tag stage for the first model.
    ``on_tagged``: called with the characters of text each forward pass covered, as it runs
    (run progress, ``seqlab.engine.Progress.advance``). Only the first model's document tagger
    reports (a frames stage's predicate labeller), so a run of several models counts its text
    once.
    """

    def __init__(self, plan: RunPlan, tagger: Stage | None = None, load: bool = False,
                 on_tagged: Callable[[int], None] | None = None) -> None:
        self.plan = plan
        self.on_tagged = on_tagged
        self.tokenizer: Tokenizer = plan.tokenizer_stage()
        self.documents: Documents = plan.documents_stage()
        self._stages: list[tuple[Stage, Stage | None]] | None = None
        self._tagger = tagger
        self.faults = injected_faults()
        if load:
            self.stages  # noqa: B018 - loads the models

    @property
    def stages(self) -> list[tuple[Stage, Stage | None]]:
        """Each model's (tag, decode) stages."""
        if self._stages is None:
            self._stages = [self.plan.model_stages(model, self._tagger if n == 0 else None)
                            for n, model in enumerate(self.plan.models)]
            first = self._stages[0][0] if self._stages else None
            reporter = next(iter(getattr(first, "taggers", [first])), None)
            if isinstance(reporter, Tagger):  # a tagger built for another run reports here
                reporter.on_tagged = self.on_tagged
        return self._stages

    @property
    def taggers(self) -> list[Tagger]:
        """Every ``Tagger`` the run's models hold (a frames stage holds two)."""
        return [t for tag, _ in self.stages for t in getattr(tag, "taggers", [tag])]

    def tagging(self) -> dict:
        """What the forward passes ran, for the manifest."""
        taggers = self.taggers
        return {"windows": sum(t.windows_run for t in taggers),
                "padded_tokens": sum(t.padded_tokens_run for t in taggers),
                "content_tokens": sum(t.content_tokens_run for t in taggers),
                "precision": ",".join(dict.fromkeys(t.loaded.precision for t in taggers))}

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """A read batch -> its ``documents`` rows (plus the location columns)."""
        return self.tag_decode(self.tokenize(batch))

    def tokenize(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        output = _with_fields(batch.schema, schema.TOKENIZED)
        return apply_safely(self._faulty("tokenize", self.tokenizer), batch, "tokenize",
                            lambda rows, error: mark_failed(rows, error, output))

    def tag_decode(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        several = len(self.plan.models) > 1
        for model, (tag, decode) in zip(self.plan.models, self.stages):
            name = f" ({model.key})" if several else ""
            extra = schema.TAGGED if decode is not None else model.fields
            output = _with_fields(batch.schema, extra)
            batch = apply_safely(self._faulty("tag", tag), batch, "tag" + name,
                                 lambda rows, error, o=output: mark_failed(rows, error, o))
            if decode is not None:
                output = _with_fields(batch.schema.remove(batch.schema.get_field_index(
                    schema.PROBS)), model.fields)
                batch = apply_safely(self._faulty("decode", decode), batch, "decode" + name,
                                     lambda rows, error, o=output: mark_failed(rows, error, o))
        return apply_safely(self.documents, batch, "decode", self._failed_documents)

    def _failed_documents(self, rows: pa.RecordBatch, error: str) -> pa.RecordBatch:
        return failed_documents(rows, error, self.documents.output_schema(rows.schema),
                                self.plan.provenance.columns(rows.num_rows))

    def _faulty(self, step: str, stage: Stage) -> Stage:
        doomed = self.faults.get(step)
        if not doomed:
            return stage

        def run(batch: pa.RecordBatch) -> pa.RecordBatch:
            hit = doomed & {doc_id for doc_id, status in zip(
                batch.column(schema.DOC_ID).to_pylist(), batch.column(schema.STATUS).to_pylist())
                if status == schema.OK}
            if hit:
                raise InjectedFault(f"{FAULT_ENV} names {sorted(hit)[0]!r} for {step}")
            return stage(batch)

        return run


def _with_fields(base: pa.Schema, extra: list[pa.Field]) -> pa.Schema:
    names = {f.name for f in extra}
    return pa.schema([f for f in base if f.name not in names] + extra)
