"""A tiny 2-trial sweep (debug recipe, noise sigma 10 vs 70) run through the CLI, interrupted and resumed, shared
by the slow tuning tests."""

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.held_runs import hold_env, tail, wait_for

ROOT = Path(__file__).resolve().parents[2]
SPACE = "method.max_sigma: {grid: [10, 70]}\n"
# Cheap trials on a 2-core box: 1 Train worker and 1 data worker at 0.5 logical CPU each, few steps, 1 val image.
TINY = ["--recipe", "debug", "--set", "data.cpus_per_worker=0.5", "--set", "train.num_val_images=1",
        "--set", "train.log_every=2", "--cpus-per-trial", "0.5", "--ray-address", "local", "--num-cpus", "4"]


def sweep_command(storage: Path, *extra: str, name: str = "sigma", space: str = SPACE) -> list[str]:
    space_file = storage / "space.yaml"
    space_file.parent.mkdir(parents=True, exist_ok=True)
    space_file.write_text(space)
    return [sys.executable, str(ROOT / "tuning" / "sweep_refusion.py"), "--space", str(space_file), "--name", name,
            "--storage-path", str(storage), *TINY, *extra]


def sweep_env() -> dict[str, str]:
    return os.environ | {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_DEDUP_LOGS": "0"}


def run_sweep(storage: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(sweep_command(storage, *extra), cwd=ROOT, env=sweep_env(), capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def study_runs(storage: Path) -> tuple[MlflowClient, object, list]:
    """(client, parent run, child runs oldest first) of the sweep in `storage`."""
    client = MlflowClient(f"sqlite:///{storage / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("refusion-sweeps")
    parents = client.search_runs([experiment.experiment_id], filter_string="tags.`sweep.role` = 'parent'")
    assert len(parents) == 1
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`sweep.parent_run_id` = '{parents[0].info.run_id}'",
        order_by=["attributes.start_time ASC"])
    return client, parents[0], children


@dataclasses.dataclass(frozen=True)
class Study:
    """The 2-trial ASHA study of the slow tuning tests, after each of its three sweep commands."""

    storage: Path
    interrupted: dict[str, str]  # sigma -> trial run status after the Ctrl-C ("" when the trial never started)
    interrupted_tags: dict[str, dict[str, str]]
    interrupted_log: str  # output of the interrupted sweep
    resumed_log: str  # output of the first --resume
    end_times: dict[str, int]  # sigma -> end time of each trial run after the first --resume
    again_log: str  # output of a second --resume, of the finished study


@pytest.fixture(scope="session")
def two_trial_study(tmp_path_factory) -> Study:
    """One sweep for every slow tuning test: sigma 10 then sigma 70, one at a time in grid order, ASHA on the
    loss, reports and checkpoints at steps 2, 4 and 6.

    1. Sigma 10 trains in its trial's own process (Train local mode). That process exits once, right after step
       3; Tune restarts the trial (train.max_failures=1), which goes on from checkpoint 2. It is held right after
       its checkpoint at step 4 and the sweep gets Ctrl-C there.
    2. `--resume`: sigma 10 goes on from checkpoint 4 and finishes; sigma 70 starts, and at the first rung its
       loss (about 7x sigma 10's) is below ASHA's cutoff, so it is stopped (its next step may still log before
       the stop reaches it). The report is written.
    3. `--resume` of the finished study: nothing runs again.
    """
    storage = tmp_path_factory.mktemp("sweep")
    held, log_path = storage / "held", storage / "sweep.log"
    command = sweep_command(storage, "--budget", "6", "--num-reports", "3", "--max-concurrent-trials", "1",
                            "--asha", "--metric", "loss", "--mode", "min", "--set", "train.max_failures=1")
    crash = {"RESTORATION_TEST_CRASH": f"0:3:{storage / 'crashed'}"}  # pipelines/loop.py::_test_only_crash
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=sweep_env() | hold_env(held, step=4) | crash, stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            wait_for(held.exists, proc=process, log=log_path)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=120) is not None
        finally:
            if process.poll() is None:
                process.kill()
    runs = _trial_runs(storage)
    interrupted = {sigma: runs[sigma].info.status if sigma in runs else "" for sigma in ("10", "70")}
    tags = {sigma: dict(run.data.tags) for sigma, run in runs.items()}
    resumed = run_sweep(storage, "--resume")
    end_times = {sigma: run.info.end_time for sigma, run in _trial_runs(storage).items()}
    again = run_sweep(storage, "--resume")
    return Study(storage=storage, interrupted=interrupted, interrupted_tags=tags, interrupted_log=tail(log_path),
                 resumed_log=resumed.stdout + resumed.stderr, end_times=end_times,
                 again_log=again.stdout + again.stderr)


def _trial_runs(storage: Path) -> dict[str, object]:
    """The study's trial runs by swept sigma; empty before the store, the parent run and a trial run exist."""
    if not (storage / "mlflow.db").exists():
        return {}
    try:
        children = study_runs(storage)[2]
    except (AssertionError, AttributeError):  # the parent run or the experiment is not created yet
        return {}
    return {c.data.tags["sweep.method.max_sigma"]: c for c in children}
