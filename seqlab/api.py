"""The Python API; the command line mirrors it flag for flag."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from seqlab.config import AnnotateConfig, build_config
from seqlab.errors import missing_extra
from seqlab.run import plan_run

log = logging.getLogger(__name__)

# engine name -> (module, the extra that installs its dependencies)
ENGINE_MODULES = {"local": ("pipelines.local", None), "ray": ("pipelines.ray_data", "ray"),
                  "beam": ("pipelines.beam", "beam")}


def engine_module(name: str):
    module, extra = ENGINE_MODULES[name]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if extra and exc.name and exc.name.split(".")[0] in ("ray", "apache_beam"):
            raise missing_extra(exc.name.split(".")[0], extra) from exc
        raise


def annotate(input: str, output: str, *, config: AnnotateConfig | None = None,
             progress: Callable[[int, int], None] | None = None, **options: Any) -> dict:
    """Annotate a corpus and return the run's manifest.

    ``options`` are ``AnnotateConfig`` fields (``model``, ``engine``, ``text_column``,
    ``max_length``, ``decoder``...). ``progress(documents, words)`` is called as batches land.
    """
    config = config or build_config(input=input, output=output, **options)
    engine = engine_module(config.engine)  # a missing extra fails before any work
    plan = plan_run(config)
    log.info("run %s: %d input fragments (%d to do), model %s (%s), engine %s",
             plan.provenance.run_id, len(plan.fragments), len(plan.todo), config.model,
             plan.labels.scheme, config.engine)
    return engine.run(plan, progress=progress)
