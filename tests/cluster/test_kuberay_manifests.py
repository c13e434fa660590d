"""cluster/k8s/*.yaml: every key is a KubeRay v1 (or core/v1) field, and the cluster shape is the intended one."""

import copy
import re
import shlex
from pathlib import Path

import pytest
import ray
import yaml

from tests.cluster.kuberay_fields import check

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = {"cluster/k8s/raycluster.yaml": "RayCluster", "cluster/k8s/rayjob.yaml": "RayJob"}
SECRET = "restoration-ray-token"


def _load(name: str) -> dict:
    docs = [d for d in yaml.safe_load_all((ROOT / name).read_text()) if d]
    assert len(docs) == 1, name
    return docs[0]


def _cluster_spec(name: str) -> dict:
    doc = _load(name)
    return doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]


def _groups(name: str) -> dict[str, dict]:
    return {g["labels"]["ray-subcluster"]: g for g in _cluster_spec(name)["workerGroupSpecs"]}


def _ray_container(pod_template: dict) -> dict:
    return pod_template["spec"]["containers"][0]


@pytest.mark.parametrize("name,kind", MANIFESTS.items())
def test_every_key_is_a_kuberay_v1_field(name, kind):
    doc = _load(name)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == kind
    assert check(doc, kind) == []


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (lambda d: d["spec"].update(authOption={"mode": "token"}), ".spec.authOption: no such field"),
        (lambda d: d["spec"]["workerGroupSpecs"][0].update(minReplica=1), "minReplica: no such field"),
        (lambda d: d["spec"]["authOptions"].update(mode="tokens"), "is not one of"),
        (lambda d: d["spec"]["workerGroupSpecs"][0].pop("groupName"), "groupName: required field missing"),
        (lambda d: d["spec"]["workerGroupSpecs"][0].update(maxReplicas="4"), "expected int"),
        (lambda d: _ray_container(d["spec"]["headGroupSpec"]["template"]).update(envs=[]), "envs: no such field"),
    ],
)
def test_field_check_catches_typos_and_wrong_types(mutate, expected):
    doc = copy.deepcopy(_load("cluster/k8s/raycluster.yaml"))
    mutate(doc)
    problems = check(doc, "RayCluster")
    assert len(problems) == 1 and expected in problems[0], problems


@pytest.mark.parametrize("name", MANIFESTS)
def test_token_auth_uses_a_secret_that_the_readme_creates(name):
    spec = _cluster_spec(name)
    assert spec["authOptions"] == {"mode": "token", "secretName": SECRET}
    text = (ROOT / name).read_text()
    assert "auth_token:" not in text and not re.search(r"\b[0-9a-f]{32,}\b", text)
    readme = (ROOT / "cluster/README.md").read_text()
    assert f"kubectl create secret generic {SECRET} --from-literal=auth_token=" in readme


@pytest.mark.parametrize("name", MANIFESTS)
def test_head_has_no_cpus_and_workers_split_into_data_and_gpu_groups(name):
    spec = _cluster_spec(name)
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["enableInTreeAutoscaling"] is True and spec["autoscalerOptions"]["version"] == "v2"
    groups = _groups(name)
    assert set(groups) == {"data", "train"}
    data_limits = _ray_container(groups["data"]["template"])["resources"]["limits"]
    train_limits = _ray_container(groups["train"]["template"])["resources"]["limits"]
    assert "nvidia.com/gpu" not in data_limits and train_limits["nvidia.com/gpu"] >= 1
    for group in groups.values():
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert groups["data"]["minReplicas"] >= 1 and groups["train"]["minReplicas"] == 0


@pytest.mark.parametrize("name", MANIFESTS)
def test_images_and_ray_version_match_the_installed_ray(name):
    spec = _cluster_spec(name)
    assert spec["rayVersion"] == ray.__version__
    templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    for template in templates:
        assert _ray_container(template)["image"].startswith(f"rayproject/ray:{ray.__version__}-py311-")


@pytest.mark.parametrize("name", MANIFESTS)
def test_every_pod_installs_the_project_before_ray_starts(name):
    doc = _load(name)
    assert doc["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
    spec = _cluster_spec(name)
    for template in [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]:
        args = _ray_container(template)["args"][0]
        assert args.index('pip install --quiet "$RESTORATION_PIP_SPEC"') < args.index("$KUBERAY_GEN_RAY_START_CMD")


def test_interactive_cluster_dashboard_is_loopback_only():
    params = _cluster_spec("cluster/k8s/raycluster.yaml")["headGroupSpec"]["rayStartParams"]
    assert params["dashboard-host"] == "127.0.0.1"


def test_rayjob_exposes_the_dashboard_only_inside_the_cluster():
    head = _cluster_spec("cluster/k8s/rayjob.yaml")["headGroupSpec"]
    # The submitter Job reaches the job API through the head Service: ClusterIP (the default), token-guarded.
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert head.get("serviceType", "ClusterIP") == "ClusterIP" and not head.get("enableIngress", False)


def test_rayjob_runs_the_training_entrypoint_and_cleans_up():
    spec = _load("cluster/k8s/rayjob.yaml")["spec"]
    assert spec["entrypoint"].startswith("python pipelines/train.py ")
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"].endswith(".zip")
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0


def _train_commands(text: str) -> list[list[str]]:
    """Arguments of every `python pipelines/train.py ...` command in a text (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*#?\s*", " ", text)
    return [shlex.split(m) for m in re.findall(r"python pipelines/train\.py([^\n`]*)", joined)]


@pytest.mark.parametrize("name", ["cluster/k8s/rayjob.yaml", "cluster/README.md", "cluster/aws.yaml", "cluster/gcp.yaml"])
def test_documented_training_commands_parse_with_the_real_cli(name):
    from pipelines.launch import parse_args

    text = (ROOT / name).read_text()
    if name.endswith("rayjob.yaml"):
        text = "python pipelines/train.py " + _load(name)["spec"]["entrypoint"].split("train.py", 1)[1]
    commands = _train_commands(text)
    assert commands, name
    for argv in commands:
        args = parse_args(argv)
        assert args.storage_path and args.num_workers >= 1 and args.use_gpu, argv
