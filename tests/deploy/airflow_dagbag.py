"""Run with the Python of an environment that has Airflow (not seqlab's): loads deploy/airflow
with Airflow's own ``DagBag`` and prints, as JSON, what tests/deploy/test_schedules.py checks:
the import errors, each DAG's settings, and each task's templates rendered by Airflow's
template engine for a few runs (a scheduled run, its retry, a manual run with no logical date).

    python tests/deploy/airflow_dagbag.py DAG_FOLDER RESULT.json
    python tests/deploy/airflow_dagbag.py DAG_FOLDER RESULT.json --landed OUTPUT RUN_DATE ...

With ``--landed`` it writes what the ``landed`` sensor's callable answers for each table root
and date instead (``true``, ``false``, or the error it raises). The result goes to a file:
Airflow logs to stdout.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from types import SimpleNamespace


def load(folder: str):
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag
    bag = DagBag(dag_folder=folder, include_examples=False) if _airflow2() else \
        DagBag(dag_folder=folder)
    return bag


def _airflow2() -> bool:
    import airflow

    return airflow.__version__.startswith("2.")


RUNS = {  # name: (logical date or None, try number, the run's run_after)
    "scheduled": (datetime(2026, 1, 2, 2, tzinfo=timezone.utc), 1),
    "retry": (datetime(2026, 1, 2, 2, tzinfo=timezone.utc), 2),
    "manual": (None, 1),
}
RUN_AFTER = datetime(2026, 1, 3, 9, 30, tzinfo=timezone.utc)


def context(dag, logical_date, try_number: int) -> dict:
    ctx = {
        "params": dag.params.dump() if hasattr(dag.params, "dump") else dict(dag.params),
        "ti": SimpleNamespace(try_number=try_number),
        "dag_run": SimpleNamespace(run_after=RUN_AFTER, logical_date=logical_date),
        "dag": dag,
    }
    if logical_date is not None:
        ctx.update(ds=logical_date.strftime("%Y-%m-%d"), logical_date=logical_date,
                   ds_nodash=logical_date.strftime("%Y%m%d"))
    return ctx


def describe(bag) -> dict:
    dags = {}
    for dag_id, dag in sorted(bag.dags.items()):
        tasks = {}
        for task in dag.tasks:
            rendered = {}
            for run, (logical_date, try_number) in RUNS.items():
                ctx = context(dag, logical_date, try_number)
                fields = {}
                for name in task.template_fields:
                    value = getattr(task, name, None)
                    if value:
                        fields[name] = task.render_template(value, ctx)
                rendered[run] = fields
            tasks[task.task_id] = {
                "operator": type(task).__name__,
                "retries": task.retries,
                "execution_timeout_s": task.execution_timeout.total_seconds()
                if task.execution_timeout else None,
                "upstream": sorted(task.upstream_task_ids),
                "outlets": [getattr(o, "uri", str(o)) for o in task.outlets],
                "mode": getattr(task, "mode", None),
                "timeout_s": getattr(task, "timeout", None),
                "rendered": rendered,
            }
        dags[dag_id] = {
            "schedule": str(getattr(dag, "schedule", None) or dag.schedule_interval),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "params": context(dag, None, 1)["params"],
            "tasks": tasks,
        }
    return dags


def main(argv: list[str]) -> int:
    bag = load(argv[0])
    result = _result(bag, argv[2:])
    with open(argv[1], "w") as f:
        json.dump(result, f, default=str)
    return 0


def _result(bag, argv: list[str]):
    if argv[:1] == ["--landed"]:
        check = next(iter(bag.dags.values())).get_task("landed").python_callable
        answers = []
        for output, run_date in zip(argv[1::2], argv[2::2]):
            try:
                answers.append(check(output=output, run_date=run_date))
            except Exception as exc:  # noqa: BLE001 - the test reads what it raised
                answers.append({"error": f"{type(exc).__name__}: {exc}"})
        return answers
    return {"import_errors": {k: str(v) for k, v in bag.import_errors.items()},
            "dags": describe(bag)}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
