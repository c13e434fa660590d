"""Token authentication and loopback binding of a real `ray start --head` (RAY_AUTH_MODE=token, token as a
secret in RAY_AUTH_TOKEN, as cluster/*.yaml pass it), and the MLflow UI's loopback default."""

import os
import secrets
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

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


@pytest.mark.slow
def test_dashboard_listens_on_loopback_and_requires_the_token(tmp_path):
    token = secrets.token_hex(32)
    env = os.environ | {"PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}", "RAY_AUTH_MODE": "token",
                        "RAY_AUTH_TOKEN": token}
    env.pop("RAY_ADDRESS", None)
    with ray_head(env, num_cpus=1, log=tmp_path / "ray_head.log") as (head, port):
        url = f"http://127.0.0.1:{port}/api/jobs/"
        _wait_for_answer(url, head=head, log=tmp_path / "ray_head.log")
        assert _get(url) == 401
        assert _get(url, token="not-the-token") in (401, 403)
        assert _get(url, token=token) == 200
        address = _non_loopback_address()
        if address is not None:  # nothing answers on the machine's network address
            with pytest.raises(OSError):
                socket.create_connection((address, port), timeout=5).close()


def test_mlflow_ui_binds_to_loopback_unless_asked(tmp_path):
    command = server_command(tmp_path)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    opted_in = server_command(tmp_path, host="0.0.0.0")
    assert opted_in[opted_in.index("--host") + 1] == "0.0.0.0"
