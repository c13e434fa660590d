"""A tiny 2-trial sweep (debug recipe, noise sigma 10 vs 70) run through the CLI, shared by the slow tests."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
SPACE = "method.max_sigma: {grid: [10, 70]}\n"
# Cheap trials on a 2-core box: 1 Train worker and 1 data worker at 0.5 logical CPU each, few steps, 1 val image.
TINY = ["--recipe", "debug", "--set", "data.cpus_per_worker=0.5", "--set", "train.num_val_images=1",
        "--set", "train.log_every=2", "--cpus-per-trial", "0.5", "--ray-address", "local", "--num-cpus", "4"]


def sweep_command(storage: Path, *extra: str, name: str = "sigma") -> list[str]:
    space = storage / "space.yaml"
    space.parent.mkdir(parents=True, exist_ok=True)
    space.write_text(SPACE)
    return [sys.executable, str(ROOT / "tuning" / "sweep_refusion.py"), "--space", str(space), "--name", name,
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
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'",
        order_by=["attributes.start_time ASC"])
    return client, parents[0], children


@pytest.fixture(scope="session")
def two_trial_study(tmp_path_factory) -> Path:
    """Storage folder of a finished 2-trial ASHA sweep, report included: one trial at a time in grid order, so at
    the first rung sigma 70's loss (about 7x sigma 10's) is below ASHA's cutoff and that trial is stopped there."""
    storage = tmp_path_factory.mktemp("sweep")
    run_sweep(storage, "--budget", "6", "--num-reports", "3", "--max-concurrent-trials", "1", "--asha",
              "--metric", "loss", "--mode", "min")
    return storage
