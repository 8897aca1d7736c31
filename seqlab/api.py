"""The Python API; its keywords are the command line's flags (``drop_text=True`` is
``--drop-text``)."""

from __future__ import annotations

import logging
from typing import Any

from seqlab.config import AnnotateConfig, build_config
from seqlab.engine import Engine, Progress, load_engine
from seqlab.errors import ConfigError
from seqlab.run.finish import finish_run
from seqlab.run.lineage import Lineage, open_lineage, run_events
from seqlab.run.metrics import RunMetrics
from seqlab.run.plan import plan_run
from seqlab.store.incremental import today
from seqlab.store.lease import held
from seqlab.store.manifest import Manifest
from seqlab.store.outdir import OutputDir

log = logging.getLogger(__name__)


def annotate(input: str | None, output: str | None, *, config: AnnotateConfig | None = None,
             progress: Progress | None = None, **options: Any) -> dict:
    """Annotate a corpus and return the run's manifest, as a plain dict: the JSON the
    manifest file holds (``seqlab.store.manifest.Manifest.to_dict()``; ``manifest["rows"]``).

    ``options`` are ``AnnotateConfig`` fields (``model``, ``engine``, ``text_column``,
    ``max_length``, ``decoder``...), or a whole ``config``. ``progress`` (a
    ``seqlab.engine.Progress``) hears how much text the run holds, the text the models tag as
    they go (``advance``, on engines that can report before their end) and the counters of
    rows as they land.
    """
    if config is None:
        config = build_config(input=input, output=output, **options)
    elif options or (input, output) != (config.input, config.output) and \
            (input is not None or output is not None):
        raise ConfigError("annotate() got a config and other arguments that would be ignored",
                          fix="pass either config=... alone (input and output as None or the "
                          "config's own), or input, output and options without config")
    # --metrics-pushgateway: pushed when the command ends, its run ended or failed
    with RunMetrics(config) as metrics:
        return metrics.ended(_annotate(config, progress))


def _annotate(config: AnnotateConfig, progress: Progress | None) -> dict:
    engine = load_engine(config.engine)  # a missing extra fails before any work
    engine_options = engine.parse_options(config.engine_options)
    lineage = open_lineage(config)  # None when off; --lineage without a transport fails here
    wanted = config.run_date or today()  # before the run: one that passes midnight is one run
    manifest = _run(config, engine, engine_options, progress, lineage)
    ended = Manifest.from_dict(manifest)
    if config.incremental and ended.run_date != wanted:
        # that was an earlier day's unfinished run, resumed under its own date; now the run
        # this command asked for
        log.info("run %s of %s finished; starting the run of %s", ended.run_id,
                 ended.run_date, wanted)
        manifest = _run(config, engine, engine_options, progress, lineage)
    if config.compact:
        _compact(config)
    return manifest


def _compact(config: AnnotateConfig) -> None:
    """``--compact``: the table's small files rewritten once the run has ended."""
    from seqlab.config import DEFAULT_TARGET_FILE_SIZE
    from seqlab.store.compact import compact

    summary = compact(config.output, int(config.target_file_size or DEFAULT_TARGET_FILE_SIZE),
                      config.storage_options, config.take_over)
    log.info("compaction %s: %s; live files %s, before %s", summary["compaction_id"],
             summary["status"], summary["files_after"], summary["files_before"])


def _run(config: AnnotateConfig, engine: Engine, engine_options: Any,
         progress: Progress | None, lineage: Lineage | None = None) -> dict:
    # one writer at a time: the lease is held from before the plan touches the output until
    # the run has ended, finished or failed; its OpenLineage events (where lineage is on):
    # START once planned, then COMPLETE, FAIL or ABORT
    with run_events(lineage, config) as events, \
            held(OutputDir(config.output, config.storage_options), config.engine,
                 config.take_over) as lease:
        if config.incremental:  # a compaction a crash left half done ends before the plan
            from seqlab.store.compact import finish_pending

            finish_pending(lease.out)
        plan = plan_run(config)
        lease.renew(plan.provenance.run_id)
        events.start(plan)
        log.info("run %s: %d input fragments (%d to do), model %s (%s), engine %s",
                 plan.provenance.run_id, len(plan.fragments), len(plan.work), config.model,
                 plan.labels.scheme, config.engine)
        if not plan.work:  # nothing new to annotate (or a resumed run whose files all landed)
            return events.complete(finish_run(plan, engine=config.engine))
        if progress is not None:
            progress.start(plan.expected_characters())
        return events.complete(engine.run(plan, engine_options, progress))
