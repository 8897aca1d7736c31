"""deploy/ray: every manifest parses, its seqlab command lines parse, and the layouts fit."""

from __future__ import annotations

import re

import pytest
import yaml

from seqlab.cli.main import build_parser
from tests.deploy import DEPLOY as ALL
from tests.deploy import parse_seqlab, pinned

DEPLOY = ALL / "ray"
pytestmark = pytest.mark.timeout(60)


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def test_rayjob_runs_a_valid_annotate_on_a_gpu_group():
    job = load("rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    args = parse_seqlab(spec["entrypoint"])
    assert (args.command, args.engine) == ("annotate", "ray")
    assert args.input.startswith("s3://") and args.output.startswith("s3://")
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["backoffLimit"], int) and spec["backoffLimit"] >= 1
    assert spec["activeDeadlineSeconds"] > 0
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == pinned("ray")
    assert cluster["authOptions"]["mode"] == "token"
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (gpu,) = cluster["workerGroupSpecs"]
    container = gpu["template"]["spec"]["containers"][0]
    gpus_per_pod = int(container["resources"]["limits"]["nvidia.com/gpu"])
    cpus_per_pod = int(container["resources"]["limits"]["cpu"])
    # the entrypoint's actor layout fits the group: one actor per GPU, CPUs left to tokenize
    assert args.tag_actors * args.gpus_per_actor <= gpu["replicas"] * gpus_per_pod
    assert args.tag_actors * args.cpus_per_actor + args.tokenize_cpus \
        <= gpu["replicas"] * cpus_per_pod
    images = {c["image"] for group in [cluster["headGroupSpec"], gpu]
              for c in group["template"]["spec"]["containers"]}
    assert len(images) == 1  # one image, so one Ray version, on every node


def test_cluster_launcher_has_a_head_and_gpu_workers():
    config = load("cluster.yaml")
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    assert any(w["resources"].get("GPU", 0) >= 1 and w["max_workers"] >= 1 for w in workers)
    assert max(w["max_workers"] for w in workers) <= config["max_workers"]
    start = " ".join(config["head_start_ray_commands"])
    assert "--head" in start and "--num-cpus=0" in start  # matches the head's resources
    assert all("RAY_AUTH_MODE=token" in " ".join(config[k])
               for k in ("head_start_ray_commands", "worker_start_ray_commands"))
    assert "/home/ray/.ray/auth_token" in config["file_mounts"]


def test_documented_commands_parse():
    """The seqlab command lines shown in the configs' comments and the README parse."""
    texts = [(DEPLOY / n).read_text() for n in ("cluster.yaml", "README.md")]
    commands = []
    for text in texts:
        joined = re.sub(r"\\\n\s*#?\s*", " ", text)  # shell continuations, in comments too
        commands += re.findall(r"^[#\s]*(seqlab (?:submit|annotate) .*)$", joined, re.M)
    assert len(commands) >= 3
    for command in commands:
        args = parse_seqlab(command)
        if args.command == "submit":
            inner = build_parser().parse_args(args.rest)
            assert (inner.command, inner.engine) == ("annotate", "ray")


def test_container_recipe_pins_torch_and_installs_the_ray_extra():
    recipe = (DEPLOY / "Dockerfile").read_text()
    base = re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}", recipe, re.M)
    assert base and f"ARG RAY_VERSION={pinned('ray')}" in recipe
    assert "torch==2.13.0" in recipe
    assert '".[ray,cloud,iceberg,lineage,metrics]"' in recipe and "-c constraints.txt" in recipe
    for path in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$", recipe, re.M):
        for name in path.split():
            assert (DEPLOY.parents[1] / name).exists(), name
