"""tuning/tracking_server.py on a real PostgreSQL: basic-auth refuses a client without credentials, and the
README's sweep's runs, metrics, tags and artifacts survive a restart of the server (as on a cluster whose head
pod restarts).

PostgreSQL comes from tests/postgres.py (skipped, with the reason, when it cannot be installed or started).
"""

import base64
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from mlflow.tracking import MlflowClient

from pipelines import cli, tracking
from tests.held_runs import tail
from tests.postgres import Database, postgres_cluster
from tests.ray_head import free_port
from tests.tuning.conftest import ROOT, sweep_env
from tuning import tracking_server
from tuning.ui import wait_until_up

ADMIN = "admin"


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    with postgres_cluster(databases=("mlflow",)) as db:  # the server creates mlflow_auth itself
        yield db


class Server:
    """The project's tracking server over `database`; `restart()` stops it and starts a new one on the same port."""

    def __init__(self, database: Database, folder: Path) -> None:
        self.database, self.folder = database, folder
        self.port, self.password = free_port(), secrets.token_hex(12)
        self.url = f"http://127.0.0.1:{self.port}"
        self.credentials = {"MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": self.password}
        self.process: subprocess.Popen | None = None
        self.num_starts = 0

    def start(self) -> None:
        self.num_starts += 1
        self.log = self.folder / f"server_{self.num_starts}.log"
        command = [sys.executable, "-m", "tuning.tracking_server", "--port", str(self.port), "--workers", "1",
                   "--backend-store-uri", self.database.uri("mlflow"),
                   "--auth-database-uri", self.database.uri("mlflow_auth"),
                   "--artifacts-destination", str(self.folder / "artifacts")]
        env = os.environ | {"PGPASSWORD": self.database.password} | self.credentials
        with self.log.open("w") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        try:
            wait_until_up(self.url, timeout_s=120, process=self.process)
        except (RuntimeError, TimeoutError) as error:
            raise AssertionError(f"{error}:\n{tail(self.log)}") from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the server and its workers
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def server(database, tmp_path_factory) -> Iterator[Server]:
    running = Server(database, tmp_path_factory.mktemp("tracking_server"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def readme_sweep_command() -> list[str]:
    """The README's quick sweep (the --scale cpu line next to it is the 70-minute reproduction, run by hand)."""
    lines = [line for line in (ROOT / "README.md").read_text().splitlines()
             if line.startswith(".venv/bin/python tuning/sweep_refusion.py --study") and "--scale" not in line]
    assert len(lines) == 1, lines
    return shlex.split(lines[0].split("#")[0])


def _status(url: str, *, user: str | None = None, password: str | None = None) -> int:
    request = urllib.request.Request(url)
    if user is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # one scrypt check each: slow on a busy box
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_server_needs_an_admin_account_from_the_environment():
    with pytest.raises(cli.UserError, match="set MLFLOW_TRACKING_PASSWORD"):
        tracking_server.server_env({"MLFLOW_TRACKING_USERNAME": ADMIN}, auth_database_uri="sqlite://",
                                   default_permission="READ")
    env = {"MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": "pw"}
    first, second = (tracking_server.server_env(env, auth_database_uri="sqlite://", default_permission="READ")
                     for _ in range(2))
    # The same CSRF key on every start and worker, and not the password itself.
    assert first["MLFLOW_FLASK_SERVER_SECRET_KEY"] == second["MLFLOW_FLASK_SERVER_SECRET_KEY"] != "pw"
    assert "pw" not in Path(first["MLFLOW_AUTH_CONFIG_PATH"]).read_text()


@pytest.mark.parametrize("seconds", [0, 60])
def test_mlflow_reads_the_password_cache_lifetime_from_the_servers_auth_config(seconds, monkeypatch):
    from mlflow.server.auth.config import read_auth_config

    env = tracking_server.server_env({"MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": "pw"},
                                     auth_database_uri="sqlite://", default_permission="READ", auth_cache_s=seconds)
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", env["MLFLOW_AUTH_CONFIG_PATH"])
    config = read_auth_config()
    assert config.auth_cache_ttl_seconds == seconds and config.database_uri == "sqlite://"
    assert tracking_server.parse_args(["--backend-store-uri", "x", "--auth-database-uri", "y",
                                       "--artifacts-destination", "z"]).auth_cache_s == 60


def test_a_client_without_credentials_is_refused_and_one_with_them_is_served(server, monkeypatch):
    search = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _status(search) == 401
    assert _status(search, user=ADMIN, password="wrong") == 401
    assert _status(search, user=ADMIN, password=server.password) == 200
    assert _status(search, user=ADMIN, password="wrong") == 401  # a cached good password lets no other one in
    assert _status(f"{server.url}/health") == 200  # what probes and `tracking._reachable` use
    for name in tracking.CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(cli.UserError, match="HTTP 401: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"):
        tracking.check_access(server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
    with pytest.raises(cli.UserError, match="were refused"):
        tracking.check_access(server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.password)
    tracking.check_access(server.url)


@pytest.mark.slow
def test_training_without_credentials_is_refused_in_one_line(server, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in tracking.CREDENTIALS}
    done = subprocess.run([sys.executable, "pipelines/train.py", "--smoke-test", "--storage-path", str(tmp_path),
                           "--mlflow-uri", server.url], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"pipelines/train.py: error: MLflow server {server.url} answered HTTP 401: "
        "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"), done.stderr[-3000:]
    assert not list(tmp_path.rglob("checkpoint_*"))


def _snapshot(server: Server) -> dict:
    """Every run of every experiment: name, status, params, tags, latest metrics, history lengths, artifacts.

    Histories come from the bulk endpoint the UI's charts use, one request per metric key: with basic-auth
    every request pays a password-hash check, and one request per run and key took 10-17 s here.
    """
    with mock.patch.dict(os.environ, server.credentials):
        client = MlflowClient(server.url)
        runs = {}
        for experiment in client.search_experiments():
            for run in client.search_runs([experiment.experiment_id]):
                artifacts = sorted(a.path for a in client.list_artifacts(run.info.run_id))
                runs[run.info.run_id] = dict(experiment=experiment.name, name=run.info.run_name,
                                             status=run.info.status, params=run.data.params, tags=run.data.tags,
                                             metrics=run.data.metrics, history={}, artifacts=artifacts,
                                             times=(run.info.start_time, run.info.end_time))
    for key in sorted({key for run in runs.values() for key in run["metrics"]}):
        ids = [run_id for run_id, run in runs.items() if key in run["metrics"]]
        query = urllib.parse.urlencode([("metric_key", key), *(("run_id", run_id) for run_id in ids)])
        request = urllib.request.Request(f"{server.url}/ajax-api/2.0/mlflow/metrics/get-history-bulk?{query}")
        token = base64.b64encode(f"{ADMIN}:{server.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            for point in json.load(response).get("metrics", []):
                history = runs[point["run_id"]]["history"]
                history[key] = history.get(key, 0) + 1
    return runs


@pytest.mark.slow
def test_the_readme_sweep_finishes_on_two_cpus_and_its_runs_survive_a_tracking_server_restart(server, tmp_path):
    """The README's sweep command exactly, on a local Ray with 2 CPUs (this CI machine's size), logging through
    the basic-auth server; then the server restarts, as a cluster's head pod would, and every run is still there.

    It used to hang forever: the recipe's Train worker, data actor and the data read task booked more CPUs than
    the cluster had, and the data actor waited as `pending: 1 CPU`. Now the requests are sized to the cluster.
    """
    command = readme_sweep_command()
    study = command[command.index("--study") + 1]
    log = tmp_path / "sweep.log"
    with log.open("w") as out:
        done = subprocess.run([*command, "--storage-path", str(tmp_path), "--ray-address", "local", "--num-cpus", "2",
                               "--mlflow-uri", server.url], cwd=ROOT, env=sweep_env() | server.credentials,
                              stdout=out, stderr=subprocess.STDOUT, timeout=600)
    output = log.read_text()
    assert done.returncode == 0, tail(log)
    assert "the cluster has 2: sized to" in output, tail(log)
    progress = re.findall(rf"^study {study}: (\d+)/(\d+) trials done", output, flags=re.M)
    total = int(progress[-1][1])
    assert [int(done) for done, _ in progress] == list(range(1, total + 1)), progress
    assert total >= 2 and (tmp_path / "sweeps" / study / "report" / "table.md").is_file()
    assert not re.search(r"row/s|it/s\]|Running Dataset", output), "a Ray Data progress bar in the sweep's output"

    before = _snapshot(server)
    sweep = {run_id: run for run_id, run in before.items() if run["experiment"] == "refusion-sweeps"}
    roles = sorted(run["tags"].get("sweep.role", "trial") for run in sweep.values())
    assert roles == ["parent", *["trial"] * total], tail(log)
    trials = [run for run in sweep.values() if "sweep.parent_run_id" in run["tags"]]
    assert sorted(float(run["params"]["method.max_sigma"]) for run in trials) == [10.0, 30.0, 50.0, 70.0]
    for run in trials:
        assert run["status"] == "FINISHED" and run["metrics"]["train/loss"] > 0 and "val/psnr" in run["metrics"]
        assert run["history"]["train/loss"] >= 1 and set(run["history"]) == set(run["metrics"])
    parent = next(run for run in sweep.values() if run["tags"].get("sweep.role") == "parent")
    assert parent["status"] == "FINISHED" and "report" in parent["artifacts"]  # uploaded through the server

    server.restart()
    assert _snapshot(server) == before, tail(server.log)
