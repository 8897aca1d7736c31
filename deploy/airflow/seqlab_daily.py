"""Daily incremental seqlab annotation, scheduled by Airflow (written for Airflow 3; the imports
fall back to Airflow 2.9+'s).

Two DAGs, one per way the annotation runs, both into the same kind of table root:

``seqlab_daily_ray``
    submits ``seqlab annotate --engine ray --incremental`` to a running Ray cluster with
    ``seqlab submit --wait`` (the task follows the job's log and ends with its status).
``seqlab_daily_dataflow``
    runs ``seqlab annotate --engine beam --runner DataflowRunner --incremental`` on the Airflow
    worker; the Beam graph runs on Dataflow and the task waits for the job.

Each passes the run's logical date as ``--run-date`` (the day's rows land in
``documents/run_date=YYYY-MM-DD/``) and ends with ``landed``, a sensor that waits for the
table's success marker: ``_runs/latest.json`` naming a complete run of that date, whose
``_runs/RUN_ID/_SUCCESS`` exists. ``landed`` updates the table's Asset, so a loader DAG
scheduled on ``Asset(OUTPUT)`` starts once the day's rows are in; a loader in another Airflow
can run the same check with :func:`run_landed`.

A retry reruns the same command, which resumes the unfinished run: no input file is annotated
twice. (A run left unfinished by an earlier day is finished first, under that day's date, and
the day's own run follows in the same command.) Two runs into one table must never overlap,
so ``max_active_runs=1``; a Ray retry first stops the job of the previous try (which may
still run when the worker died or the task timed out), and
a Dataflow retry reuses the day's job name, which Dataflow refuses while that job still runs.

The Airflow workers need ``pip install 'seqlab[ray,cloud]'`` (Ray) or
``'seqlab[beam,cloud]' 'apache-beam[gcp]'`` (Dataflow). Change the defaults below, or override
them per run in the trigger form (``params``). With ``metrics_pushgateway`` set, each run
pushes its metrics to that Prometheus Pushgateway (``--metrics-pushgateway``, from where
``seqlab annotate`` runs: the Airflow worker for Dataflow, which then needs
``seqlab[metrics]``; the Ray job's driver, whose ``ray[default]`` brings prometheus-client).
With ``lineage`` on, each run sends its OpenLineage events (``--lineage``) as a child of the
Airflow task's own run (``--lineage-parent`` from the OpenLineage provider's
``lineage_parent_id`` macro: needs apache-airflow-providers-openlineage); where ``seqlab
annotate`` runs needs ``seqlab[lineage]`` and OpenLineage's configuration, e.g.
``OPENLINEAGE_URL`` (docs/lineage.md).
"""

from __future__ import annotations

import json
import posixpath
from datetime import datetime, timedelta, timezone

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.sensors.python import PythonSensor
    from airflow.sdk import DAG, Asset, Param
except ImportError:  # Airflow 2.9-2.11
    from airflow import DAG
    from airflow.datasets import Dataset as Asset
    from airflow.models.param import Param
    from airflow.operators.bash import BashOperator
    from airflow.sensors.python import PythonSensor

INPUT = "s3://BUCKET/corpus/"
OUTPUT = "s3://BUCKET/annotated/ner/"
MODEL = "ner"
RAY_ADDRESS = "http://ray-head.ray.svc:8265"  # the cluster's dashboard (Jobs API)
# Run metrics: a Prometheus Pushgateway each run pushes its metrics to (--metrics-pushgateway,
# needs 'seqlab[metrics]' where the command runs), e.g. "http://pushgateway.monitoring:9091";
# None: off. The trigger form's metrics_pushgateway overrides it per run.
METRICS_PUSHGATEWAY = None
# OpenLineage events of each run (--lineage), under this task's run; True needs the
# OpenLineage provider here and OPENLINEAGE_URL (or openlineage.yml) where the run runs.
# The trigger form's lineage overrides it per run.
LINEAGE_ON = False

DATAFLOW_INPUT = "gs://BUCKET/corpus/"
DATAFLOW_OUTPUT = "gs://BUCKET/annotated/ner/"
DATAFLOW = {
    "project": "PROJECT",
    "region": "us-central1",
    "temp_location": "gs://BUCKET/tmp",
    "image": "us-central1-docker.pkg.dev/PROJECT/seqlab/beam:0.1.0",
    "max_workers": 8,
}

# The day of the run: the logical date (Airflow 3 gives a manually triggered run none; it then
# takes the day it was triggered). Every template below starts with it.
RUN_DATE = ("{% set run_date = ds if ds is defined "
            "else dag_run.run_after.strftime('%Y-%m-%d') %}")

# URLs and names land in shell commands: these patterns keep them to safe characters
URL = r"^[A-Za-z0-9+.-]+://[A-Za-z0-9._~/=:@%+-]+$"
NAME = r"^[A-Za-z0-9._/:@-]+$"

# --metrics-pushgateway, where the run's params name a gateway (docs/engines.md, Run metrics)
METRICS = ("{% if params.metrics_pushgateway %}"
           " --metrics-pushgateway {{ params.metrics_pushgateway }}{% endif %}")
# --lineage, the run a child of this task's run in the lineage graph (docs/lineage.md)
LINEAGE = ("{% if params.lineage %} --lineage --lineage-parent "
           "{{ macros.OpenLineageProviderPlugin.lineage_parent_id(task_instance) }}{% endif %}")

RAY_COMMAND = RUN_DATE + (
    "{% set job = 'seqlab-daily-' ~ run_date ~ '-' %}"
    # a retry: the previous try's job may still be running on the cluster (worker lost, task
    # timed out); stop it first, so that two runs never write into the table at once
    "{% if ti.try_number > 1 %}"
    "ray job stop --address {{ params.ray_address }} {{ job }}{{ ti.try_number - 1 }} || true\n"
    "{% endif %}"
    "seqlab submit --address {{ params.ray_address }} --wait"
    " --submission-id {{ job }}{{ ti.try_number }}"
    " -- annotate {{ params.input }} {{ params.output }} --engine ray --model {{ params.model }}"
    " --incremental --run-date {{ run_date }}" + METRICS + LINEAGE
)

DATAFLOW_COMMAND = RUN_DATE + (
    "seqlab annotate {{ params.input }} {{ params.output }} --engine beam"
    " --runner DataflowRunner --model {{ params.model }} --incremental --run-date {{ run_date }}"
    + METRICS + LINEAGE +
    " -- --project={{ params.project }} --region={{ params.region }}"
    " --temp_location={{ params.temp_location }} --sdk_container_image={{ params.image }}"
    " --max_num_workers={{ params.max_workers }}"
    # one job name a day: Dataflow refuses a second job of that name while the first runs
    " --job_name=seqlab-daily-{{ run_date }}"
)

DEFAULT_ARGS = {
    "owner": "seqlab",
    "retries": 2,
    "retry_delay": timedelta(minutes=15),
    "retry_exponential_backoff": True,
}


def run_landed(output: str, run_date: str, storage_options: dict | None = None) -> bool:
    """Whether the incremental table at ``output`` holds a finished, complete run of
    ``run_date`` (YYYY-MM-DD) or of a later day: its ``_runs/latest.json`` names such a run and
    that run's ``_SUCCESS`` marker exists. A run of the day that ended with input files it could
    not read (``complete: false``) raises: waiting would not change it.

    Reads through fsspec (``s3fs``/``gcsfs`` for ``s3://``/``gs://``); imports nothing of
    seqlab, so a loader can copy this function."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(output, **(storage_options or {}))
    try:
        with fs.open(posixpath.join(root, "_runs", "latest.json"), "rb") as f:
            latest = json.load(f)
    except FileNotFoundError:
        return False
    if latest["run_date"] < run_date:
        return False
    if not fs.exists(posixpath.join(root, "_runs", latest["run_id"], "_SUCCESS")):
        return False
    if not latest["complete"] and latest["run_date"] == run_date:
        raise RuntimeError(
            f"run {latest['run_id']} of {run_date} in {output} ended with input files it could "
            f"not read (failed_inputs in {latest['manifest']}); fix or remove them, then clear "
            "the annotate task to annotate them again")
    return True


def landed_sensor(output: str) -> PythonSensor:
    return PythonSensor(
        task_id="landed",
        python_callable=run_landed,
        op_kwargs={"output": "{{ params.output }}",
                   "run_date": RUN_DATE + "{{ run_date }}"},
        outlets=[Asset(output)],
        mode="reschedule",          # frees the worker slot between pokes
        poke_interval=60,
        timeout=30 * 60,
        retries=0,
    )


def params(**extra) -> dict:
    return {
        "input": Param(extra.pop("input"), type="string", pattern=URL),
        "output": Param(extra.pop("output"), type="string", pattern=URL),
        "model": Param(MODEL, type="string", pattern=NAME),
        "metrics_pushgateway": Param(METRICS_PUSHGATEWAY, type=["null", "string"], pattern=URL),
        "lineage": Param(LINEAGE_ON, type="boolean"),
        **extra,
    }


# What both DAGs share: a daily run, never two at once into one table
DAILY = dict(
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,  # one run takes in every file that arrived since the last one
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=20),
    default_args=DEFAULT_ARGS,
    tags=["seqlab"],
    doc_md=__doc__,
)

with DAG(
    dag_id="seqlab_daily_ray",
    description="Daily incremental seqlab annotation on a Ray cluster",
    params=params(input=INPUT, output=OUTPUT,
                  ray_address=Param(RAY_ADDRESS, type="string", pattern=URL)),
    **DAILY,
) as ray_dag:
    annotate = BashOperator(
        task_id="annotate",
        bash_command=RAY_COMMAND,
        # seqlab submit and ray job stop read the cluster's token from the worker's environment
        # (RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH), which the command inherits
        execution_timeout=timedelta(hours=6),
    )
    annotate >> landed_sensor(OUTPUT)

with DAG(
    dag_id="seqlab_daily_dataflow",
    description="Daily incremental seqlab annotation with Beam on Dataflow",
    params=params(
        input=DATAFLOW_INPUT, output=DATAFLOW_OUTPUT,
        project=Param(DATAFLOW["project"], type="string", pattern=NAME),
        region=Param(DATAFLOW["region"], type="string", pattern=NAME),
        temp_location=Param(DATAFLOW["temp_location"], type="string", pattern=URL),
        image=Param(DATAFLOW["image"], type="string", pattern=NAME),
        max_workers=Param(DATAFLOW["max_workers"], type="integer", minimum=1),
    ),
    **DAILY,
) as dataflow_dag:
    annotate = BashOperator(
        task_id="annotate",
        bash_command=DATAFLOW_COMMAND,
        # Google credentials: the worker's (GOOGLE_APPLICATION_CREDENTIALS or its metadata server)
        execution_timeout=timedelta(hours=6),
    )
    annotate >> landed_sensor(DATAFLOW_OUTPUT)
