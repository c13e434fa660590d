"""cluster/k8s/*.yaml: every key is a KubeRay v1 (or core/v1) field, and the cluster shape is the intended one."""

import copy
import re
import shlex
from pathlib import Path

import pytest
import ray
import yaml

from tests.cluster.k8s_core import core_problems
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


# --- the MLflow tracking store: PostgreSQL on its own volume, basic-auth, secrets from Secrets ---

DB_MANIFEST = "cluster/k8s/mlflow-db.yaml"
CORE_MODELS = {"Service": "V1Service", "StatefulSet": "V1StatefulSet"}


def _db_docs() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all((ROOT / DB_MANIFEST).read_text()) if d}


def test_the_database_is_a_core_statefulset_with_its_own_volume_and_a_headless_service():
    docs = _db_docs()
    assert set(docs) == set(CORE_MODELS)
    for kind, doc in docs.items():
        assert core_problems(doc, CORE_MODELS[kind]) == [], kind
    service, statefulset = docs["Service"], docs["StatefulSet"]
    spec = statefulset["spec"]
    assert spec["serviceName"] == service["metadata"]["name"] and service["spec"]["clusterIP"] == "None"
    assert spec["selector"]["matchLabels"] == service["spec"]["selector"] == spec["template"]["metadata"]["labels"]
    (claim,) = spec["volumeClaimTemplates"]  # the data outlives the pod, and the Ray head
    (container,) = spec["template"]["spec"]["containers"]
    assert [m["name"] for m in container["volumeMounts"]] == [claim["metadata"]["name"]]
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_core_check_catches_a_typo():
    doc = copy.deepcopy(_db_docs()["StatefulSet"])
    doc["spec"]["template"]["spec"]["containers"][0]["envs"] = []
    doc["spec"]["replica"] = 1
    assert sorted(core_problems(doc, "V1StatefulSet")) == [
        ".spec.replica: no such field of V1StatefulSetSpec",
        ".spec.template.spec.containers[0].envs: no such field of V1Container"]


def _containers(name: str) -> dict[str, list[dict]]:
    """'head' / 'workers' -> the Ray containers of a KubeRay manifest."""
    spec = _cluster_spec(name)
    return {"head": [_ray_container(spec["headGroupSpec"]["template"])],
            "workers": [_ray_container(g["template"]) for g in spec["workerGroupSpecs"]]}


def _secret_env(container: dict) -> dict[str, tuple[str, str]]:
    return {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}


def _secret_refs(obj) -> list[tuple[str, str]]:
    if isinstance(obj, dict):
        if set(obj) >= {"name", "key"} and len(obj) <= 3:
            return [(obj["name"], obj["key"])]
        return [r for value in obj.values() for r in _secret_refs(value)]
    return [r for value in obj for r in _secret_refs(value)] if isinstance(obj, list) else []


@pytest.mark.parametrize("name", [*MANIFESTS, DB_MANIFEST])
def test_every_secret_reference_is_a_secret_and_key_that_the_readme_creates(name):
    docs = [d for d in yaml.safe_load_all((ROOT / name).read_text()) if d]
    refs = set(_secret_refs(docs))
    assert refs, name
    readme = re.sub(r"\\\n\s*", " ", (ROOT / "cluster/README.md").read_text())
    for secret, key in refs:
        commands = re.findall(rf"kubectl create secret generic {secret} [^\n`]*", readme)
        assert any(f"--from-literal={key}=" in c for c in commands), (secret, key)
    text = (ROOT / name).read_text()
    assert not re.search(r"(?i)password=\w|PASSWORD\n\s+value:", text), "a password written in the file"


@pytest.mark.parametrize("name", MANIFESTS)
def test_tracking_runs_on_postgres_behind_basic_auth_and_every_trainer_has_the_account(name):
    from tuning.tracking_server import parse_args

    (head,) = _containers(name)["head"]
    args = head["args"][0]
    start = args.index("python -m tuning.tracking_server")
    command = shlex.split(args[start:args.index(">", start)].replace("$MLFLOW_DB_HOST", "db").replace("$POD_IP", "ip"))
    server = parse_args(command[3:])
    assert server.backend_store_uri == "postgresql://mlflow@db:5432/mlflow"
    assert server.auth_database_uri == "postgresql://mlflow@db:5432/mlflow_auth"
    assert "sqlite" not in args and server.host == "ip"
    # Artifacts on the runs volume, beside the checkpoints (--storage-path /mnt/runs).
    assert server.artifacts_destination.startswith("/mnt/runs/")
    assert {"name": "runs", "mountPath": "/mnt/runs"} in head["volumeMounts"]
    account = {"MLFLOW_TRACKING_USERNAME": ("restoration-mlflow-auth", "username"),
               "MLFLOW_TRACKING_PASSWORD": ("restoration-mlflow-auth", "password")}
    assert _secret_env(head) == account | {"MLFLOW_DB_HOST": ("restoration-mlflow-db", "host"),
                                           "PGPASSWORD": ("restoration-mlflow-db", "password")}
    assert {e["name"]: e["value"] for e in head["env"] if "value" in e}["MLFLOW_TRACKING_URI"] == "http://$(POD_IP):5000"
    for worker in _containers(name)["workers"]:  # rank 0 and Tune trials log from here; no database password
        assert _secret_env(worker) == account
