"""deploy/: the daily incremental schedules.

- the Airflow DAGs load with Airflow's own ``DagBag`` (in an environment of their own: Airflow
  and seqlab pin different packages), and the commands Airflow renders for a scheduled run, a
  retry and a manual run parse with seqlab's parser into incremental runs of the day;
- the ``landed`` sensor answers from the success marker of a real incremental table;
- the CronJob may create RayJobs, and renders a RayJob consistent with deploy/ray/rayjob.yaml;
- the Cloud Scheduler launch body and the documented gcloud commands launch the flex template
  with real annotate flags.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from tests import require
from tests.deploy import DEPLOY, ROOT, annotate_config, check_beam_config, flex_launch, parse_seqlab

pytestmark = pytest.mark.timeout(120)

AIRFLOW_PYTHON = Path(os.environ.get("SEQLAB_AIRFLOW_PYTHON")
                      or ROOT / ".venv" / "airflow" / "bin" / "python")
DAGBAG = Path(__file__).with_name("airflow_dagbag.py")
AIRFLOW_INSTALL = ("python3 -m venv .venv/airflow && "
                   ".venv/airflow/bin/pip install apache-airflow==3.3.2")
# the runs airflow_dagbag.py renders: (run date, try number)
RUNS = {"scheduled": ("2026-01-02", 1), "retry": ("2026-01-02", 2),
        "manual": ("2026-01-03", 1)}


def require_airflow() -> None:
    """Skip without Airflow's environment; fail instead where CI asks for it
    (SEQLAB_REQUIRE_AIRFLOW=1)."""
    if not AIRFLOW_PYTHON.exists():
        message = (f"Airflow is not installed at {AIRFLOW_PYTHON} (it has an environment of "
                   f"its own; .ci/run builds it: {AIRFLOW_INSTALL})")
        if os.environ.get("SEQLAB_REQUIRE_AIRFLOW"):
            pytest.fail(message)
        pytest.skip(message)


def airflow(tmp: Path, *args: str):
    """Run airflow_dagbag.py with Airflow's Python; its JSON result."""
    require_airflow()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV"))}
    env.update(AIRFLOW_HOME=str(tmp / "airflow-home"), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    result = tmp / "result.json"
    proc = subprocess.run([str(AIRFLOW_PYTHON), str(DAGBAG), str(DEPLOY / "airflow"),
                           str(result), *args], env=env, capture_output=True, text=True,
                          timeout=180, cwd=tmp)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return json.loads(result.read_text())


@pytest.fixture(scope="module")
def dags(tmp_path_factory) -> dict:
    loaded = airflow(tmp_path_factory.mktemp("dagbag"))
    assert loaded["import_errors"] == {}
    return loaded["dags"]


def rendered(dag: dict, task: str, run: str) -> dict:
    return dag["tasks"][task]["rendered"][run]


# ------------------------------------------------------------------------ Airflow

def test_dag_file_compiles_and_names_both_dags():
    """Without Airflow too: the DAG file is valid Python and defines both DAGs."""
    source = (DEPLOY / "airflow" / "seqlab_daily.py").read_text()
    tree = ast.parse(source)
    dag_ids = {kw.value.value for node in ast.walk(tree) if isinstance(node, ast.Call)
               for kw in node.keywords if kw.arg == "dag_id"}
    assert dag_ids == {"seqlab_daily_ray", "seqlab_daily_dataflow"}
    assert "import seqlab" not in source  # DAG parsing stays light: no torch on the scheduler


@pytest.mark.timeout(240)
def test_dags_load_with_airflows_dagbag(dags):
    assert set(dags) == {"seqlab_daily_ray", "seqlab_daily_dataflow"}
    for dag in dags.values():
        minute, hour, *days = dag["schedule"].split()
        assert days == ["*", "*", "*"] and minute.isdigit() and hour.isdigit()  # daily
        assert dag["max_active_runs"] == 1  # two runs never write into one table at once
        assert dag["catchup"] is False
        annotate, landed = dag["tasks"]["annotate"], dag["tasks"]["landed"]
        assert annotate["operator"] == "BashOperator" and annotate["retries"] >= 1
        assert 0 < annotate["execution_timeout_s"] <= 24 * 3600
        assert landed["operator"] == "PythonSensor" and landed["upstream"] == ["annotate"]
        assert landed["mode"] == "reschedule" and 0 < landed["timeout_s"]
        # downstream DAGs scheduled on the table's Asset start once the day's run landed
        assert landed["outlets"] == [dag["params"]["output"].rstrip("/")]
        for run, (run_date, _) in RUNS.items():
            kwargs = rendered(dag, "landed", run)["op_kwargs"]
            assert kwargs == {"output": dag["params"]["output"], "run_date": run_date}


@pytest.mark.timeout(240)
def test_ray_dag_submits_an_incremental_annotate_of_the_day(dags):
    dag = dags["seqlab_daily_ray"]
    params = dag["params"]
    for run, (run_date, try_number) in RUNS.items():
        lines = rendered(dag, "annotate", run)["bash_command"].splitlines()
        submit = parse_seqlab(lines[-1])
        assert submit.command == "submit" and submit.wait
        assert submit.address == params["ray_address"]
        job = f"seqlab-daily-{run_date}-"
        assert submit.submission_id == f"{job}{try_number}"  # Ray refuses a reused id
        if try_number > 1:  # the previous try's job is stopped before the retry submits
            assert shlex.split(lines[0]) == ["ray", "job", "stop", "--address",
                                             params["ray_address"], f"{job}{try_number - 1}",
                                             "||", "true"]
        else:
            assert len(lines) == 1
        args = parse_seqlab(["seqlab", *submit.rest])
        assert (args.command, args.engine, args.input, args.output) == \
            ("annotate", "ray", params["input"], params["output"])
        config = annotate_config(args)
        assert config.incremental and config.run_date == run_date and config.model == "ner"


@pytest.mark.timeout(240)
def test_dataflow_dag_runs_an_incremental_beam_job_of_the_day(dags):
    require("apache_beam", "beam")
    dag = dags["seqlab_daily_dataflow"]
    params = dag["params"]
    for run, (run_date, _) in RUNS.items():
        (line,) = rendered(dag, "annotate", run)["bash_command"].splitlines()
        args = parse_seqlab(line)
        assert (args.command, args.engine, args.runner) == \
            ("annotate", "beam", "DataflowRunner")
        assert (args.input, args.output) == (params["input"], params["output"])
        options = check_beam_config(args, args.rest)  # Beam knows every option after --
        assert options["incremental"] and options["run_date"] == run_date
        # one job name a day, the same on a retry: Dataflow refuses it while that job runs
        assert f"--job_name=seqlab-daily-{run_date}" in args.rest
        assert f"--project={params['project']}" in args.rest
        assert f"--sdk_container_image={params['image']}" in args.rest


@pytest.mark.timeout(300)
def test_landed_sensor_waits_for_the_days_success_marker(tmp_path, ner_model):
    """The sensor's own callable, under Airflow, on a real incremental table after each of
    three runs: a first day, a day with no new files, and a day with an unreadable file."""
    require_airflow()
    import seqlab

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text("".join(
        json.dumps({"id": f"a{i}", "text": "john smith went to new york"}) + "\n"
        for i in range(3)))
    table = tmp_path / "table"
    snapshots = {}

    def run(run_date: str) -> None:
        seqlab.annotate(str(corpus), str(table), model=str(ner_model), incremental=True,
                        run_date=run_date, id_column="id")
        shutil.copytree(table, tmp_path / f"after-{run_date}")
        snapshots[run_date] = str(tmp_path / f"after-{run_date}")

    run("2026-01-02")
    run("2026-01-03")  # nothing new: the day still gets a finished run and its marker
    (corpus / "b.parquet").write_bytes(b"PAR1 not a parquet file")
    run("2026-01-04")
    unmarked = tmp_path / "unmarked"
    shutil.copytree(snapshots["2026-01-02"], unmarked)
    latest = json.loads((unmarked / "_runs" / "latest.json").read_text())
    (unmarked / "_runs" / latest["run_id"] / "_SUCCESS").unlink()

    checks = [
        (str(tmp_path / "nothing-yet"), "2026-01-02", False),
        (snapshots["2026-01-02"], "2026-01-02", True),
        (snapshots["2026-01-02"], "2026-01-03", False),   # the day's run has not ended
        (snapshots["2026-01-03"], "2026-01-03", True),
        (snapshots["2026-01-03"], "2026-01-02", True),    # a later day's run ended too
        (str(unmarked), "2026-01-02", False),             # no _SUCCESS: not landed
        (snapshots["2026-01-04"], "2026-01-04", "failed_inputs"),
    ]
    answers = airflow(tmp_path, "--landed",
                      *[word for output, day, _ in checks for word in (output, day)])
    for (output, day, expected), answer in zip(checks, answers, strict=True):
        if isinstance(expected, str):
            assert expected in answer["error"], answer
        else:
            assert answer is expected, (output, day, answer)


# ------------------------------------------------------------------------ Kubernetes

def cronjob_manifests() -> dict[str, dict]:
    docs = list(yaml.safe_load_all((DEPLOY / "ray" / "cronjob.yaml").read_text()))
    kinds = {doc["kind"]: doc for doc in docs}
    assert len(kinds) == len(docs)
    return kinds


def test_cronjob_may_create_rayjobs_and_nothing_else():
    m = cronjob_manifests()
    assert set(m) == {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "CronJob"}
    account = m["ServiceAccount"]["metadata"]["name"]
    pod = m["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account
    binding = m["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": m["Role"]["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    (rule,) = m["Role"]["rules"]
    assert rule["apiGroups"] == ["ray.io"] and rule["resources"] == ["rayjobs"]
    assert {"get", "create", "patch"} <= set(rule["verbs"])  # what kubectl apply needs
    assert not {"delete", "*"} & set(rule["verbs"])


def test_cronjob_runs_daily_and_never_twice_at_once():
    spec = cronjob_manifests()["CronJob"]["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    minute, hour, *days = spec["schedule"].split()
    assert days == ["*", "*", "*"] and minute.isdigit() and hour.isdigit()
    assert spec["timeZone"] == "Etc/UTC"  # the run date is the UTC day the render step reads
    assert spec["startingDeadlineSeconds"] > 0


def render(tmp_path: Path, run_date: str | None) -> dict:
    """Run the CronJob's render step as the pod does (sh, sed, date), on the ConfigMap's
    template; the RayJob it writes for kubectl."""
    m = cronjob_manifests()
    pod = m["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (step,) = pod["initContainers"]
    env = {e["name"]: e["value"] for e in step["env"]}
    mounts = {v["name"]: v["mountPath"] for v in step["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    configmap = volumes["template"]["configMap"]["name"]
    assert configmap == m["ConfigMap"]["metadata"]["name"]
    assert env["TEMPLATE"] == f"{mounts['template']}/rayjob.yaml"
    template = tmp_path / "template" / "rayjob.yaml"
    template.parent.mkdir(parents=True)
    template.write_text(m["ConfigMap"]["data"]["rayjob.yaml"])
    out = tmp_path / "work" / "rayjob.yaml"
    out.parent.mkdir(parents=True)
    # the kubectl container applies the file the render step writes, from the same volume
    (apply,) = pod["containers"]
    assert apply["args"] == ["apply", "-f", env["RENDERED"]]
    assert {v["name"] for v in apply["volumeMounts"]} == {"work"}
    assert env["RENDERED"].startswith(mounts["work"] + "/")
    assert volumes["work"] == {"name": "work", "emptyDir": {}}
    run_env = {"PATH": os.environ["PATH"], "TEMPLATE": str(template), "RENDERED": str(out)}
    if run_date:
        run_env["RUN_DATE"] = run_date
    assert step["command"] == ["/bin/sh", "-c"]
    subprocess.run(["sh", "-c", step["args"][0]], env=run_env, check=True, timeout=30,
                   capture_output=True)
    return yaml.safe_load(out.read_text())


def test_cronjob_creates_a_rayjob_like_rayjob_yaml(tmp_path):
    reference = yaml.safe_load((DEPLOY / "ray" / "rayjob.yaml").read_text())
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    for run_date in ("2026-01-02", None):
        job = render(tmp_path / (run_date or "today"), run_date)
        day = run_date or today
        assert (job["apiVersion"], job["kind"]) == (reference["apiVersion"], reference["kind"])
        name = job["metadata"]["name"]
        assert name == f"seqlab-daily-{day}" and job["metadata"]["labels"][
            "seqlab.io/run-date"] == day
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 47
        spec, ref = job["spec"], reference["spec"]
        # the same cluster, image, retries and clean-up as the one-off RayJob
        for key in ref:
            if key != "entrypoint":
                assert spec[key] == ref[key], key
        assert set(spec) == set(ref)
        assert spec["activeDeadlineSeconds"] < 24 * 3600  # ends before the next day's run
        args = parse_seqlab(spec["entrypoint"])
        ref_args = parse_seqlab(ref["entrypoint"])
        assert (args.command, args.engine) == ("annotate", "ray") and not args.rest
        config = annotate_config(args)
        assert config.incremental and config.run_date == day
        assert args.input == ref_args.input and args.output.startswith("s3://")
        for flag in ("model", "batch_tokens", "tag_actors", "gpus_per_actor",
                     "cpus_per_actor", "tokenize_cpus"):
            assert getattr(args, flag) == getattr(ref_args, flag), flag


# ------------------------------------------------------------------------ Cloud Scheduler

# FlexTemplateRuntimeEnvironment's fields (Dataflow REST API v1b3)
FLEX_ENVIRONMENT = {
    "numWorkers", "maxWorkers", "zone", "serviceAccountEmail", "tempLocation",
    "machineType", "additionalExperiments", "network", "subnetwork", "additionalUserLabels",
    "kmsKeyName", "ipConfiguration", "workerRegion", "workerZone", "enableStreamingEngine",
    "flexrsGoal", "stagingLocation", "sdkContainerImage", "diskSizeGb",
    "autoscalingAlgorithm", "dumpHeapOnOom", "saveHeapDumpsToGcsPath", "launcherMachineType",
    "enableLauncherVmSerialPortLogging", "streamingMode",
}


def test_scheduler_launch_body_launches_an_incremental_run():
    require("apache_beam", "beam")
    body = json.loads((DEPLOY / "beam" / "scheduler-launch.json").read_text())
    launch = body["launchParameter"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", launch["jobName"])
    assert launch["containerSpecGcsPath"].startswith("gs://")
    assert set(launch["environment"]) <= FLEX_ENVIRONMENT
    spec = {p["name"]: p for p in json.loads((DEPLOY / "beam" / "metadata.json").read_text())[
        "parameters"]}
    parameters = launch["parameters"]
    assert set(parameters) <= set(spec)
    assert {name for name, p in spec.items() if not p["isOptional"]} <= set(parameters)
    for name, value in parameters.items():
        assert isinstance(value, str)  # the API takes parameters as strings
        for regex in spec[name].get("regexes", []):
            assert re.fullmatch(regex, value), (name, value)
    args, beam_args = flex_launch(parameters)
    options = check_beam_config(args, beam_args)
    # no run date in a body that does not change: the run takes the day it starts (UTC)
    assert options["incremental"] is True and "run_date" not in options


def gcloud_commands() -> dict[str, list[str]]:
    """The gcloud (and sed) commands of deploy/beam/README.md, by their command words."""
    text = (DEPLOY / "beam" / "README.md").read_text()
    commands = {}
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line)
            if words[:1] == ["gcloud"]:
                key = " ".join(w for w in words[1:5] if not w.startswith("-"))
                assert key not in commands, key
                commands[key] = words
            elif words[:1] == ["sed"]:
                commands["sed"] = words
    return commands


def options(words: list[str]) -> dict[str, str]:
    found = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            name, sep, value = word.partition("=")
            found[name] = value if sep else (words[i + 1] if i + 1 < len(words) and
                                             not words[i + 1].startswith("--") else "")
    return found


def test_documented_scheduler_commands_launch_the_flex_template():
    commands = gcloud_commands()
    body = json.loads((DEPLOY / "beam" / "scheduler-launch.json").read_text())
    (build,) = [w for k, w in commands.items() if k.startswith("dataflow flex-template build")]
    template = build[build.index("build") + 1]
    # the launch body names the template the build command writes (placeholders filled in)
    assert re.sub(r"\$\{?([A-Z_]+)\}?", r"\1", template) == \
        body["launchParameter"]["containerSpecGcsPath"]
    assert (ROOT / options(build)["--metadata-file"]).is_file()
    (create,) = [w for k, w in commands.items() if k.startswith("scheduler jobs create http")]
    flags = options(create)
    assert len(flags["--schedule"].split()) == 5 and flags["--time-zone"]
    assert re.fullmatch(r"https://dataflow\.googleapis\.com/v1b3/projects/[^/]+/locations/"
                        r"[^/]+/flexTemplates:launch", flags["--uri"])
    assert flags["--http-method"] == "POST"
    assert flags["--headers"] == "Content-Type=application/json"
    assert flags["--oauth-service-account-email"]
    assert flags["--oauth-token-scope"] == "https://www.googleapis.com/auth/cloud-platform"
    # the body sent is the repository's launch body with the placeholders filled in
    assert commands["sed"][-3:] == ["deploy/beam/scheduler-launch.json", ">",
                                    flags["--message-body-from-file"]]


def test_documented_flex_template_runs_pass_real_flags():
    require("apache_beam", "beam")
    runs = [words for key, words in gcloud_commands().items()
            if key.startswith("dataflow flex-template run")]
    assert len(runs) >= 2
    incremental = 0
    for words in runs:
        parameters = {}
        for i, word in enumerate(words):
            if word == "--parameters":
                parameters.update(item.split("=", 1) for item in words[i + 1].split(","))
        parameters = {k: re.sub(r"\$\{?([A-Z_]+)\}?", r"\1", v) for k, v in parameters.items()}
        args, beam_args = flex_launch(parameters)
        options = check_beam_config(args, beam_args)  # sdk_container_image is Beam's
        incremental += bool(options.get("incremental"))
    assert incremental >= 1


def test_documented_cronjob_command_is_the_rayjobs(tmp_path):
    text = (DEPLOY / "ray" / "README.md").read_text()
    section = text[text.index("### Every day: a CronJob"):]
    documented = re.search(r"^(seqlab annotate .*)$", section, re.M).group(1)
    assert shlex.split(documented) == shlex.split(
        render(tmp_path, "2026-01-02")["spec"]["entrypoint"])


def test_documented_commands_of_the_schedules_parse():
    text = (DEPLOY / "README.md").read_text()
    commands = [line for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)
                for line in block.replace("\\\n", " ").splitlines() if line.startswith("seqlab ")]
    assert {shlex.split(c)[1] for c in commands} == {"annotate", "runs"}
    for command in commands:
        args = parse_seqlab(command)
        if args.command == "annotate":
            config = annotate_config(args)
            assert config.incremental and config.run_date and config.engine == "ray"


@pytest.mark.timeout(300)
def test_scheduled_launch_runs_the_entry_point_twice_without_duplicates(tmp_path, ner_model):
    """The launch body's parameters, as the template launcher passes them, through the flex
    template's entry point on Beam's in-process runner: launched twice the same day (a
    scheduler retry), the table holds each input row once."""
    require("apache_beam", "beam")
    import pyarrow.dataset as ds

    from tests.deploy import flex_template

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text("".join(
        json.dumps({"id": f"a{i}", "text": "mary smith of london"}) + "\n" for i in range(4)))
    table = tmp_path / "table"
    body = json.loads((DEPLOY / "beam" / "scheduler-launch.json").read_text())
    parameters = {**body["launchParameter"]["parameters"], "input": str(corpus),
                  "output": str(table), "model": str(ner_model), "id_column": "id"}
    argv = [f"--{name}={value}" for name, value in parameters.items()]
    entry = flex_template()
    for _ in range(2):
        assert entry.main(argv) == 0
    latest = json.loads((table / "_runs" / "latest.json").read_text())
    assert latest["complete"] and latest["run_date"] == \
        datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert (table / "_runs" / latest["run_id"] / "_SUCCESS").exists()
    documents = ds.dataset(table / "documents", format="parquet", partitioning="hive")
    ids = documents.to_table(columns=["doc_id"]).column("doc_id").to_pylist()
    assert sorted(ids) == [f"a{i}" for i in range(4)]
