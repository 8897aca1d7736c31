"""The aggregates merge on Ray: ``seqlab.run.aggregates``' scatter and gather tasks as Ray
tasks of one CPU each, run once annotation has ended (its actors are gone, so the tasks have
the cluster's CPUs). The driver submits the tasks and gathers what they return: bucket numbers
and one ``PartInfo`` per aggregates file, never rows or keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ray

from seqlab.run import aggregates
from seqlab.run.plan import RunPlan
from seqlab.store.parts import PartInfo

# a task whose worker died (a lost node) is run again: its files are written atomically under
# names that depend only on its input, so a second run of it overwrites the first
MAX_RETRIES = 3


@ray.remote(num_cpus=1, max_retries=MAX_RETRIES)
def _run(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


def on_ray(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """A ``seqlab.run.aggregates`` mapper: a Ray task per item, the results in item order
    (the function, with the output location in it, goes to the object store once)."""
    if not items:
        return []
    shared = ray.put(fn)
    return ray.get([_run.remote(shared, item) for item in items])


def merge(plan: RunPlan) -> list[PartInfo]:
    """The run's aggregates merged by Ray tasks: the aggregates parts they wrote."""
    return aggregates.merge(plan, mapper=on_ray)
