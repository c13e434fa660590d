"""A real `ray start --head` on 127.0.0.1 for the tests that need one (the job API, dashboard token auth),
and `free_port` for every test that starts a server."""

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AGENT_PORT_FLAGS = ("port", "ray-client-server-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                    "runtime-env-agent-port", "metrics-export-port")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ray_head(env: dict[str, str], *, log: Path, num_cpus: int = 4) -> Iterator[tuple[subprocess.Popen, int]]:
    """(the `ray start --block` process, dashboard port); every port is a free one. Its output goes to `log`, for
    the assertion messages (tests.held_runs.tail).

    Another test's local Ray may still hold Ray's default ports: a dashboard agent that cannot bind 52365
    leaves the job API answering "No available agent to submit job" for good, so no default is used.
    """
    dashboard = free_port()
    ports = [f"--{flag}={free_port()}" for flag in AGENT_PORT_FLAGS]
    with open(log, "w") as out:
        head = subprocess.Popen(
            ["ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--dashboard-port={dashboard}",
             f"--num-cpus={num_cpus}", "--include-dashboard=true", *ports],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            yield head, dashboard
        finally:
            # `ray start --block` stops the processes of this cluster only; it waits up to half a minute for a
            # finished job's driver and the dashboard to exit, so its session is killed after a few seconds.
            head.terminate()
            try:
                head.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=60)
