"""Token authentication and loopback binding of a real `ray start --head` (RAY_AUTH_MODE=token, token as a
secret in RAY_AUTH_TOKEN, as cluster/*.yaml pass it), `ray job submit` to it, and the MLflow UI's loopback
default."""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.held_runs import tail
from tests.ray_head import ROOT, ray_head
from tuning.ui import server_command


def _get(url: str, token: str | None = None) -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def _wait_for_answer(url: str, *, head, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert head.poll() is None, f"ray start exited with {head.returncode}: {tail(log)}"
        try:
            _get(url)
            return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not come up: {tail(log)}"
            time.sleep(1)


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # UDP connect sends nothing; it only picks the outgoing interface
        address = s.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.fixture(scope="module")
def token_head(tmp_path_factory):
    """(head process, dashboard port, token, log, env) of one token-auth `ray start --head`, shared by the tests
    of this module: the token is a secret in RAY_AUTH_TOKEN, as cluster/*.yaml pass it."""
    token = secrets.token_hex(32)
    # As `make head` starts it: the project's venv first on PATH, and RESTORATION_STORAGE naming where jobs' runs go.
    storage = tmp_path_factory.mktemp("job_runs")
    env = os.environ | {"PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}", "RAY_AUTH_MODE": "token",
                        "RAY_AUTH_TOKEN": token, "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
                        "RESTORATION_STORAGE": str(storage)}
    env.pop("RAY_ADDRESS", None)
    log = tmp_path_factory.mktemp("head") / "ray_head.log"
    with ray_head(env, log=log) as (head, port):
        _wait_for_answer(f"http://127.0.0.1:{port}/api/jobs/", head=head, log=log)
        yield head, port, token, log, env


@pytest.mark.slow
def test_dashboard_listens_on_loopback_and_requires_the_token(token_head):
    _, port, token, _, _ = token_head
    url = f"http://127.0.0.1:{port}/api/jobs/"
    assert _get(url) == 401
    assert _get(url, token="not-the-token") in (401, 403)
    assert _get(url, token=token) == 200
    address = _non_loopback_address()
    if address is not None:  # nothing answers on the machine's network address
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=5).close()


@pytest.mark.slow
def test_ray_job_submit_runs_the_smoke_test_on_the_token_auth_cluster(token_head, tmp_path):
    head, port, _, head_log, env = token_head
    # Exactly the README's command (no --storage-path): the run must land in the head's RESTORATION_STORAGE,
    # not in Ray's temporary copy of the working dir.
    storage = Path(env["RESTORATION_STORAGE"])
    submit = ["ray", "job", "submit", "--address", f"http://127.0.0.1:{port}", "--working-dir", ".", "--",
              "python", "pipelines/train.py", "--smoke-test", "--name", "smoke"]
    deadline = time.monotonic() + 180  # the job agent comes up after the dashboard's HTTP server
    while time.monotonic() < deadline:
        assert head.poll() is None, f"ray start exited with {head.returncode}: {tail(head_log)}"
        done = subprocess.run(submit, check=False, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        not_up = ("Connection refused", "ConnectionError", "No available agent to submit job")
        if not any(marker in done.stdout + done.stderr for marker in not_up):
            break
        time.sleep(2)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + tail(head_log, 2000)
    assert "succeeded" in done.stdout + done.stderr
    assert f"checkpoints and MLflow store under {storage}" in done.stdout + done.stderr
    assert (storage / "smoke" / "checkpoint_00000008" / "state.pt").is_file()
    stored = json.loads((storage / "smoke" / "mlflow_run.json").read_text())
    assert stored["uri"] == f"sqlite:///{storage / 'mlflow.db'}"  # the store `make ui` serves
    assert MlflowClient(stored["uri"]).get_run(stored["run_id"]).info.status == "FINISHED"
    # --resume on the submitting machine finds the run through the same RESTORATION_STORAGE.
    resume = subprocess.run([sys.executable, "pipelines/train.py", "--resume", "smoke", "--print-config"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert resume.returncode == 0, resume.stdout + resume.stderr
    assert json.loads(resume.stdout)["storage_path"] == str(storage)


def test_mlflow_ui_binds_to_loopback_unless_asked(tmp_path):
    command = server_command(tmp_path)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    opted_in = server_command(tmp_path, host="0.0.0.0")
    assert opted_in[opted_in.index("--host") + 1] == "0.0.0.0"
