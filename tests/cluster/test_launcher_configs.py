"""cluster/aws.yaml and cluster/gcp.yaml: valid for `ray up` (Ray's own schema and checks), and safe."""

import copy
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ["cluster/aws.yaml", "cluster/gcp.yaml"]
RAY_SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def _node_types(config: dict) -> dict[str, dict]:
    return config["available_node_types"]


@pytest.mark.parametrize("name", CONFIGS)
def test_launcher_config_validates_against_rays_schema(name):
    config = _load(name)
    jsonschema.validate(config, RAY_SCHEMA)
    # What `ray up` does before it talks to the cloud: merge the provider defaults, then validate.
    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["available_node_types"]["data_cpu"].update(min_worker=1),  # misspelled key
        lambda c: c["available_node_types"]["data_cpu"].update(labels={"ray-subcluster": 1}),  # label not a string
        lambda c: c.update(max_workers="12"),
    ],
)
def test_rays_schema_rejects_a_broken_config(mutate):
    config = _load("cluster/aws.yaml")
    mutate(config)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, RAY_SCHEMA)


def test_ray_checks_min_workers_against_the_global_bound():
    config = prepare_config(_load("cluster/aws.yaml"))
    config["max_workers"] = 0
    with pytest.raises(ValueError, match="max_workers"):
        validate_config(config)


@pytest.mark.parametrize("name", CONFIGS)
def test_head_is_cpu_only_with_zero_logical_cpus(name):
    config = _load(name)
    head = _node_types(config)[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    assert any("--head" in cmd and "--num-cpus=0" in cmd for cmd in config["head_start_ray_commands"])


@pytest.mark.parametrize("name", CONFIGS)
def test_workers_split_into_labelled_cpu_data_and_gpu_train_groups(name):
    config = _load(name)
    workers = {k: v for k, v in _node_types(config).items() if k != config["head_node_type"]}
    by_label = {v["labels"]["ray-subcluster"]: v for v in workers.values()}
    assert set(by_label) == {"data", "train"}
    assert "GPU" not in by_label["data"]["resources"] and by_label["data"]["resources"]["CPU"] >= 8
    assert by_label["train"]["resources"]["GPU"] >= 1
    for node_type in workers.values():
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= config["max_workers"]
    # The data stage can never scale to zero (the trainers would starve), the GPU group can.
    assert by_label["data"]["min_workers"] >= 1 and by_label["train"]["min_workers"] == 0


@pytest.mark.parametrize("name", CONFIGS)
def test_images_match_the_installed_ray_version(name):
    config = _load(name)
    images = [config["docker"]["head_image"], config["docker"]["worker_image"]]
    images += [t["docker"]["worker_image"] for t in _node_types(config).values() if "docker" in t]
    for image in images:
        assert image.startswith(f"rayproject/ray:{ray.__version__}-py311-"), image


@pytest.mark.parametrize("name", CONFIGS)
def test_every_node_starts_ray_with_token_auth(name):
    config = _load(name)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [cmd for cmd in config[key] if "ray start" in cmd]
        assert start and all("export RAY_AUTH_MODE=token" in cmd for cmd in start), key


@pytest.mark.parametrize("name", CONFIGS)
def test_token_comes_from_a_cloud_secret_not_from_the_file(name):
    text = (ROOT / name).read_text()
    config = yaml.safe_load(text)
    fetch = [cmd for cmd in config["setup_commands"] if "auth_token" in cmd]
    assert len(fetch) == 1
    assert "umask 077" in fetch[0] and "> ~/.ray/auth_token" in fetch[0]
    assert re.search(r"secretsmanager|secretmanager", fetch[0])
    assert not re.search(r"RAY_AUTH_TOKEN=(?!\$\()", text), "RAY_AUTH_TOKEN set to a literal"
    assert not re.search(r"\b[0-9a-f]{32,}\b", text), "something that looks like a literal token"


@pytest.mark.parametrize("name", CONFIGS)
def test_dashboard_binds_to_loopback_and_nothing_binds_to_all_interfaces(name):
    config = _load(name)
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in (ROOT / name).read_text()
    mlflow = [cmd for cmd in config["head_start_ray_commands"] if "tuning.tracking_server" in cmd]
    assert len(mlflow) == 1 and "--host $(hostname -I" in mlflow[0]  # the private VPC address


@pytest.mark.parametrize("name", CONFIGS)
def test_setup_installs_this_checkout_on_every_node(name):
    config = _load(name)
    assert config["file_mounts"] == {"/home/ray/restoration": "."}
    assert config["rsync_filter"] == [".gitignore"]  # keeps .venv and runs/ out of the upload
    assert any("pip install" in cmd and "-e /home/ray/restoration" in cmd for cmd in config["setup_commands"])


ACCOUNT = "export MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=$(cat ~/.restoration/mlflow_password)"


@pytest.mark.parametrize("name", CONFIGS)
def test_tracking_is_postgres_outside_the_cluster_behind_basic_auth(name):
    from tuning.tracking_server import parse_args

    config = _load(name)
    (command,) = [cmd for cmd in config["head_start_ray_commands"] if "tuning.tracking_server" in cmd]
    start = command.index("python -m tuning.tracking_server")
    server = parse_args(shlex.split(command[start:command.index(">", start)].replace("$(hostname -I | awk '{print $1}')", "ip"))[3:])
    host = "YOUR-RDS-ENDPOINT" if "aws" in name else "YOUR-CLOUD-SQL-PRIVATE-IP"  # a managed database: `ray down` keeps it
    assert server.backend_store_uri == f"postgresql://mlflow@{host}:5432/mlflow"
    assert server.auth_database_uri == f"postgresql://mlflow@{host}:5432/mlflow_auth"
    assert server.artifacts_destination.startswith(("s3://YOUR-BUCKET/", "gs://YOUR-BUCKET/"))  # beside the runs
    assert "sqlite" not in (ROOT / name).read_text()
    assert command.startswith(f"mkdir -p ~/mlflow && {ACCOUNT} PGPASSWORD=$(cat ~/.restoration/db_password) &&")


@pytest.mark.parametrize("name", CONFIGS)
def test_mlflow_passwords_come_from_cloud_secrets_and_every_node_has_the_account(name):
    config = _load(name)
    fetches = {"setup_commands": "~/.restoration/mlflow_password", "head_setup_commands": "~/.restoration/db_password"}
    for key, path in fetches.items():
        (fetch,) = [cmd for cmd in config[key] if path in cmd]
        assert "umask 077" in fetch and f"> {path}" in fetch and re.search(r"secretsmanager|secretmanager", fetch)
    assert not any("db_password" in cmd for cmd in config["setup_commands"] + config["worker_start_ray_commands"])
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):  # Ray's workers inherit it: rank 0 logs
        (start,) = [cmd for cmd in config[key] if "ray start" in cmd]
        assert ACCOUNT in start, key
    head = next(cmd for cmd in config["head_start_ray_commands"] if "ray start" in cmd)
    assert "export MLFLOW_TRACKING_URI=http://$(hostname -I | awk '{print $1}'):5000" in head  # the jobs' default
    assert not re.search(r"(?i)PASSWORD=(?!\$\(cat )", (ROOT / name).read_text()), "a literal password"
