"""Failures during training, each run through the real CLI (`python pipelines/train.py`) in a subprocess.

Every test checks that nothing was lost: the run reaches train.num_steps, the resumed part starts right
after a checkpoint (step counts continue), and the MLflow loss history has no gap wider than one
checkpoint interval. The debug recipe runs with validation off (no LPIPS weights) and log_every=1.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from pipelines.checkpoints import STATE_FILE, checkpoint_name

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
def test_killed_training_worker_restarts_from_last_checkpoint(tmp_path):
    marker = tmp_path / "crashed"
    env = ENV | {"RESTORATION_TEST_CRASH": f"0:{CKPT_EVERY * 2 + 3}:{marker}"}  # rank 0 dies at step 9, before checkpoint 9 is written
    output = _run(_cli(tmp_path, "--name", "worker", "--num-workers", "1", "--set", "train.max_failures=1"), env=env)
    assert marker.exists()
    resumed_at = _resumed_step(output)
    assert resumed_at == CKPT_EVERY * 2
    assert_nothing_lost(tmp_path, "worker", resumed_at=resumed_at)


@pytest.mark.slow
def test_killed_driver_resumes_with_resume_flag(tmp_path):
    # A local-mode step takes ~25 ms here, so 12 steps finish between two polls: run long enough to be caught.
    num_steps = NUM_STEPS * 25
    cmd = _cli(tmp_path, "--name", "driver", "--num-workers", "0", "--set", f"train.num_steps={num_steps}")
    # A new session: SIGKILL to the group takes the driver and the local Ray it started, as a lost machine would.
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _wait_for(lambda: len(_checkpoint_steps(tmp_path, "driver")) >= 2, timeout=240, proc=proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _checkpoint_steps(tmp_path, "driver")
    assert before[-1] < num_steps, "the run finished before it could be killed"

    output = _run(_cli(tmp_path, "--resume", "driver", "--set", f"train.num_steps={num_steps}"))
    assert _resumed_step(output) == before[-1]
    assert_nothing_lost(tmp_path, "driver", resumed_at=before[-1], num_steps=num_steps)


@pytest.mark.slow
def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    _run(_cli(tmp_path, "--name", "corrupt", "--num-workers", "0", "--set", f"train.num_steps={CKPT_EVERY * 2}"))
    newest = tmp_path / "corrupt" / checkpoint_name(CKPT_EVERY * 2)
    state = newest / STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # a half-written file

    output = _run(_cli(tmp_path, "--resume", "corrupt"))
    assert "WARNING" in output and newest.name in output
    assert _resumed_step(output) == CKPT_EVERY
    assert_nothing_lost(tmp_path, "corrupt", resumed_at=CKPT_EVERY)


@pytest.mark.slow
def test_killed_data_node_does_not_stop_the_run(tmp_path, monkeypatch):
    # Token auth on both sides, as on a real cluster: an earlier in-process ray.init() leaves RAY_AUTH_MODE=token
    # in this process's environment, so the cluster below would otherwise disagree with the driver's.
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    # head: the driver and Train's controller (pinned to the driver's node); a train node for the Train worker
    # and a data node for the pair makers, each held to its group by a label selector as on a real cluster.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    cluster.add_node(num_cpus=2, labels={"ray-subcluster": "train"})
    victim = cluster.add_node(num_cpus=2, labels={"ray-subcluster": "data"})
    cluster.wait_for_nodes()
    num_steps = NUM_STEPS * 4
    cmd = _cli(tmp_path, "--name", "datanode", "--num-workers", "1", "--set", "train.max_failures=2",
               "--set", f"train.num_steps={num_steps}", "--set", "data.num_cpu_workers=2",
               "--set", 'data.label_selector={"ray-subcluster": "data"}',
               "--set", 'scaling.label_selector={"ray-subcluster": "train"}')
    log = (tmp_path / "driver.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV | {"RAY_ADDRESS": cluster.address, "RAY_AUTH_MODE": "token"}, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: len(_checkpoint_steps(tmp_path, "datanode")) >= 1, timeout=240, proc=proc)
        # The only node the pair makers may use goes away with the blocks in its object store; the
        # autoscaler's replacement (a new data node) arrives after it.
        cluster.remove_node(victim, allow_graceful=False)
        killed_at = _checkpoint_steps(tmp_path, "datanode")[-1]
        cluster.add_node(num_cpus=2, labels={"ray-subcluster": "data"})
        assert proc.wait(timeout=400) == 0, (tmp_path / "driver.log").read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
        cluster.shutdown()
    assert killed_at < num_steps, "the run finished before the data node was killed"
    # Either Ray rebuilt the lost blocks and actors on the new node (no restart), or Train restarted from a checkpoint.
    output = (tmp_path / "driver.log").read_text()
    resumed_at = _resumed_step(output) if "resumed at step " in output else None
    assert_nothing_lost(tmp_path, "datanode", resumed_at=resumed_at, num_steps=num_steps)


def _wait_for(condition, *, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"training exited early with {proc.returncode}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
def test_interrupted_sweep_resumes_and_finishes_every_trial(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("method.max_sigma: {grid: [10.0, 30.0]}\n")
    common = [sys.executable, str(ROOT / "tuning/sweep_refusion.py"), "--space", str(space), "--name", "s",
              "--storage-path", str(tmp_path), "--ray-address", "local", "--num-cpus", "4", "--no-report"]
    budget = CKPT_EVERY * 2
    first = common + [
        "--budget", str(budget), "--num-reports", "2", "--num-workers", "1", "--cpus-per-trial", "0.5",
        "--max-concurrent-trials", "1", "--set", "train.num_val_images=0", "--set", "train.log_every=1",
        "--set", "train.batch_size=2", "--set", "data.patch_size=32", "--set", "data.cpus_per_worker=0.5",
    ]
    train_dir = tmp_path / "sweeps" / "s" / "train"
    proc = subprocess.Popen(first, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Interrupt (Ctrl-C) once the first trial has its first checkpoint and before it has its last.
        _wait_for(lambda: any(train_dir.glob(f"*/{checkpoint_name(CKPT_EVERY)}")), timeout=240, proc=proc)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    done_before = sorted(p.parent.name for p in train_dir.glob(f"*/{checkpoint_name(budget)}"))
    assert len(done_before) < 2, "the sweep finished before it could be interrupted"

    output = _run(common + ["--resume"], timeout=400)
    assert "unfinished trials" not in output
    trials = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    assert len(trials) == 2
    for trial in trials:
        assert _checkpoint_steps(train_dir, trial)[-1] == budget
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string="tags.`sweep.study` = 's'")
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3  # parent + two trials
    for run in runs:
        if "sweep.trial_id" not in run.data.tags:
            continue
        steps = sorted({m.step for m in client.get_metric_history(run.info.run_id, "train/loss")})
        assert steps[-1] == budget and max(b - a for a, b in zip([0] + steps, steps)) <= CKPT_EVERY
