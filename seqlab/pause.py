"""Named steps where a test stops a real process, to kill it there (``kill -9``) and check that
the next run or command leaves the table as a clean one would.

With ``SEQLAB_TEST_PAUSE_AT=STEP`` in its environment, a process that reaches STEP logs it and
sleeps ``SEQLAB_TEST_PAUSE_S`` seconds (default 120). The steps: ``aggregates-scatter`` and
``aggregates-gather`` (``seqlab.run.aggregates``), ``index-written`` (a version of the index
written, ``current.json`` not yet switched: ``seqlab.store.index``), and compaction's
``compact-planned``, ``compact-file-written``, ``compact-written``, ``compact-indexed``,
``compact-moving`` (``seqlab.store.compact``). Unset, a step costs one environment lookup.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)

PAUSE_ENV = "SEQLAB_TEST_PAUSE_AT"
SECONDS_ENV = "SEQLAB_TEST_PAUSE_S"


def pause_at(step: str) -> None:
    """Sleep here where ``SEQLAB_TEST_PAUSE_AT`` names ``step``."""
    if os.environ.get(PAUSE_ENV) == step:
        seconds = float(os.environ.get(SECONDS_ENV, "120"))
        log.warning("pausing at %s for %g s (%s)", step, seconds, PAUSE_ENV)
        time.sleep(seconds)
