"""Failures during training, each run through the real CLI (`python pipelines/train.py`) in a subprocess. (A
Train worker killed mid-run: the two-worker sweep trial of tests/tuning/test_sweep.py; an interrupted sweep:
tests/tuning/test_sweep.py.)

Every test checks that nothing was lost: the run reaches train.num_steps, the resumed part starts right
after a checkpoint (step counts continue), and the MLflow loss history has no gap wider than one
checkpoint interval. The debug recipe runs with validation off (no LPIPS weights) and log_every=1.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from ray._private.authentication_test_utils import reset_auth_token_state
from ray.cluster_utils import Cluster

from pipelines.checkpoints import STATE_FILE, checkpoint_name
from tests.held_runs import hold_env, tail, wait_for

ROOT = Path(__file__).resolve().parents[1]
NUM_STEPS, CKPT_EVERY = 12, 3
# RAY_ADDRESS=local: each run starts its own Ray even when a `ray start` cluster is up on this machine.
ENV = os.environ | {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_DEDUP_LOGS": "0", "PYTHONUNBUFFERED": "1",
                    "RAY_ADDRESS": "local"}


def _cli(storage: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(ROOT / "pipelines/train.py"), "--recipe", "debug", "--storage-path", str(storage),
        "--set", f"train.num_steps={NUM_STEPS}", "--set", f"train.ckpt_every={CKPT_EVERY}",
        "--set", "train.log_every=1", "--set", "train.num_val_images=0", "--set", "train.keep_last=3",
        "--set", "train.batch_size=2", "--set", "data.patch_size=32",
        # Half a CPU each for the trainer and the pair maker leaves one for Ray Data's read tasks on 2 cores.
        "--set", "scaling.cpus_per_worker=0.5", "--set", "data.cpus_per_worker=0.5",
        *extra,
    ]


def _run(cmd: list[str], *, env: dict | None = None, timeout: float = 300) -> str:
    done = subprocess.run(cmd, cwd=ROOT, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def _checkpoint_steps(storage: Path, name: str) -> list[int]:
    return sorted(int(p.name.split("_")[1]) for p in (storage / name).glob("checkpoint_*") if p.name[-1].isdigit())


def _loss_steps(storage: Path, name: str) -> list[int]:
    """Steps of every train/loss point of the run's MLflow run, in logging order (repeats after a restart)."""
    stored = json.loads((storage / name / "mlflow_run.json").read_text())
    history = MlflowClient(stored["uri"]).get_metric_history(stored["run_id"], "train/loss")
    return [m.step for m in sorted(history, key=lambda m: (m.timestamp, m.step))]


def assert_nothing_lost(storage: Path, name: str, *, resumed_at: int | None, num_steps: int = NUM_STEPS) -> None:
    """Run completed, resumed (if at all) right after a checkpoint, no metric gap wider than a checkpoint interval."""
    assert _checkpoint_steps(storage, name)[-1] == num_steps
    steps = _loss_steps(storage, name)
    unique = sorted(set(steps))
    assert unique[0] <= CKPT_EVERY and unique[-1] == num_steps
    assert max(b - a for a, b in zip([0] + unique, unique)) <= CKPT_EVERY, unique
    if resumed_at is not None:
        assert resumed_at > 0 and resumed_at % CKPT_EVERY == 0
        # After the restart the history continues from the step right after the checkpoint, one by one.
        assert steps[resumed_at - num_steps:] == list(range(resumed_at + 1, num_steps + 1)), steps


def _resumed_step(output: str) -> int:
    marker = "resumed at step "
    assert marker in output, output[-3000:]
    return int(output.split(marker, 1)[1].split()[0])


@pytest.mark.slow
def test_killed_driver_resumes_from_the_last_readable_checkpoint_with_resume_flag(tmp_path):
    # One run for two failures: the driver is killed right after checkpoint 6, and that newest checkpoint is
    # then found half-written, so --resume warns, falls back to checkpoint 3 and loses nothing.
    held, log_path = tmp_path / "held", tmp_path / "driver.log"
    cmd = _cli(tmp_path, "--name", "driver", "--num-workers", "0")
    # A new session: SIGKILL to the group takes the driver and the local Ray it started, as a lost machine would.
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV | hold_env(held, step=CKPT_EVERY * 2), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(held.exists, proc=proc, log=log_path)  # held right after checkpoint 6 was written
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert _checkpoint_steps(tmp_path, "driver")[-2:] == [CKPT_EVERY, CKPT_EVERY * 2], tail(log_path)
    newest = tmp_path / "driver" / checkpoint_name(CKPT_EVERY * 2)
    state = newest / STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # a half-written file

    output = _run(_cli(tmp_path, "--resume", "driver"))
    assert "WARNING" in output and newest.name in output
    assert _resumed_step(output) == CKPT_EVERY
    assert_nothing_lost(tmp_path, "driver", resumed_at=CKPT_EVERY)


@pytest.fixture
def token_auth(monkeypatch):
    """RAY_AUTH_MODE=token in this process for one test, and its Ray config reloaded before and after.

    This process's Ray config read RAY_AUTH_MODE when it was first initialised (by an earlier in-process
    ray.init(), or at import when the test runs alone): it is reloaded now, and again once the variable is
    restored. Left in token mode, the next in-process driver of a cluster started without a token (on this
    pytest-xdist worker: tests/cluster/test_placement.py's) refuses the GCS's calls ("Missing authorization
    header"), and its TrainController is destroyed before it runs.
    """
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    reset_auth_token_state()
    yield
    monkeypatch.undo()
    reset_auth_token_state()


@pytest.mark.slow
def test_killed_data_node_does_not_stop_the_run(tmp_path, monkeypatch, token_auth):
    # Token auth on both sides, as on a real cluster (the token_auth fixture).
    # The cluster's raylets start the Train worker with this process's environment, not the driver's.
    held, log_path = tmp_path / "held", tmp_path / "driver.log"
    monkeypatch.setenv("RESTORATION_TEST_HOLD", hold_env(held, step=CKPT_EVERY)["RESTORATION_TEST_HOLD"])
    # head: the driver and Train's controller (pinned to the driver's node); a train node for the Train worker
    # and a data node for the pair makers, each held to its group by a label selector as on a real cluster.
    # The GCS marks the lost node dead after 3 missed 1 s health checks (Ray's default: 5 missed 3 s ones).
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}})
    cluster.add_node(num_cpus=2, labels={"ray-subcluster": "train"})
    victim = cluster.add_node(num_cpus=2, labels={"ray-subcluster": "data"})
    cluster.wait_for_nodes()
    num_steps = NUM_STEPS * 4
    cmd = _cli(tmp_path, "--name", "datanode", "--num-workers", "1", "--set", "train.max_failures=2",
               "--set", f"train.num_steps={num_steps}", "--set", "data.num_cpu_workers=2",
               "--set", 'data.label_selector={"ray-subcluster": "data"}',
               "--set", 'scaling.label_selector={"ray-subcluster": "train"}')
    env = ENV | {"RAY_ADDRESS": cluster.address, "RAY_AUTH_MODE": "token"}
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(held.exists, proc=proc, log=log_path)
            # While the Train worker is held after checkpoint 3, the only node the pair makers may use goes
            # away with the blocks in its object store; the autoscaler's replacement (a new data node) arrives
            # after it, and the worker goes on.
            cluster.remove_node(victim, allow_graceful=False)
            cluster.add_node(num_cpus=2, labels={"ray-subcluster": "data"})
            held.unlink()
            assert proc.wait(timeout=400) == 0, tail(log_path)
        finally:
            if proc.poll() is None:
                proc.kill()
            cluster.shutdown()
    # Either Ray rebuilt the lost blocks and actors on the new node (no restart), or Train restarted from a checkpoint.
    output = log_path.read_text()
    resumed_at = _resumed_step(output) if "resumed at step " in output else None
    assert_nothing_lost(tmp_path, "datanode", resumed_at=resumed_at, num_steps=num_steps)
