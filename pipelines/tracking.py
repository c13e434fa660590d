"""MLflow tracking: the only module in pipelines/ that imports mlflow, and only when a call needs it.

The driver creates (or reopens) one MLflow run per training run and ends it FINISHED, FAILED or KILLED;
rank 0 logs metrics and images into that run by id. The embedded default is a SQLite store plus an artifact
folder inside the run directory; an experiment is created with an explicit artifact location because a
relative `./mlruns` would land in the Ray worker's scratch directory. mlflow is imported inside the calls
(about 2 s) so that a Ray worker which unpickles the train loop but never logs does not pay for it.
"""

import base64
import logging
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines import cli

logger = logging.getLogger(__name__)

# The MLflow 3 UI opens an experiment without this tag in GenAI mode, on an empty Traces page; with it, on the
# model-training view (runs table, charts, compare).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
# The UI's own mode switch (GenAI is its default, kept in the browser): links we print open the model-training view.
UI_QUERY = "?workflowType=machine_learning"

# Basic-auth credentials of a tracking server (tuning/tracking_server.py); the MLflow client reads them itself.
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")

# Fail fast instead of retrying for minutes when a server is down; training must not wait on tracking.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


@dataclass(frozen=True, kw_only=True, slots=True)
class TrackingTarget:
    """Where rank 0 logs: a tracking URI and a run id (run_id None = tracking off)."""

    uri: str
    run_id: str | None


def embedded_store(run_root: str | Path) -> tuple[str, str]:
    """(tracking URI, artifact root) of the embedded store: run_root/mlflow.db and run_root/mlartifacts."""
    root = Path(run_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}", (root / "mlartifacts").as_uri()


def flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    """Nested config dict -> {"optim.lr": "4e-05", ...} for MLflow params."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def start_run(
    *,
    uri: str,
    experiment: str,
    artifact_root: str | None,
    run_name: str,
    config: dict,
    tags: dict[str, str],
    resume_run_id: str | None = None,
) -> TrackingTarget:
    """Create (or reopen, for --resume) the run and log the flattened config; tracking off if unreachable."""
    if uri.startswith(("http://", "https://")):
        if not _reachable(uri):
            logger.warning("MLflow server %s is unreachable: training continues without tracking", uri)
            return TrackingTarget(uri=uri, run_id=None)
        check_access(uri)
    client = _client(uri)
    try:
        if resume_run_id is not None:
            client.update_run(resume_run_id, status="RUNNING")
            return TrackingTarget(uri=uri, run_id=resume_run_id)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            location = None if artifact_root is None else f"{artifact_root}/{experiment}"
            experiment_id = client.create_experiment(experiment, artifact_location=location,
                                                     tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})
        else:
            experiment_id = found.experiment_id
            if EXPERIMENT_KIND_TAG not in found.tags:  # an experiment made by an older version, or by hand
                client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        from mlflow.entities import Param

        params = [Param(k, v[:6000]) for k, v in flatten(config).items()]
        client.log_batch(run.info.run_id, params=params)
        client.log_dict(run.info.run_id, config, "config.json")
    except Exception as err:  # a broken store must not stop training
        logger.warning("MLflow at %s failed (%s): training continues without tracking", uri, err)
        return TrackingTarget(uri=uri, run_id=None)
    return TrackingTarget(uri=uri, run_id=run.info.run_id)


def end_run(target: TrackingTarget, status: str) -> None:
    """Mark the run FINISHED, FAILED or KILLED so that no run stays RUNNING."""
    if target.run_id is None:
        return
    assert status in ("FINISHED", "FAILED", "KILLED"), status
    try:
        _client(target.uri).set_terminated(target.run_id, status=status)
    except Exception as err:
        logger.warning("could not mark MLflow run %s as %s: %s", target.run_id, status, err)


def log_artifacts(target: TrackingTarget, local_dir: str | Path, artifact_path: str) -> None:
    """Copy a local directory (e.g. the final checkpoint) into the run's artifacts."""
    if target.run_id is None:
        return
    try:
        _client(target.uri).log_artifacts(target.run_id, str(local_dir), artifact_path)
    except Exception as err:
        logger.warning("could not log %s to MLflow: %s", local_dir, err)


class Tracker:
    """Rank-0 logger into an existing run; the first failure disables it with one warning."""

    def __init__(self, target: TrackingTarget) -> None:
        self.run_id = target.run_id
        self.client = _client(target.uri) if target.run_id is not None else None

    def log_metrics(self, metrics: dict[str, float], *, step: int) -> None:
        from mlflow.entities import Metric

        timestamp = _now_ms()
        self._call(
            lambda: self.client.log_batch(
                self.run_id, metrics=[Metric(k, float(v), timestamp, step) for k, v in metrics.items()]
            )
        )

    def log_image(self, image_HWC: np.ndarray, *, key: str, step: int) -> None:
        """uint8 HWC image, shown in the MLflow UI with a step slider."""
        self._call(lambda: self.client.log_image(self.run_id, image_HWC, key=key, step=step))

    def _call(self, fn) -> None:
        if self.client is None:
            return
        try:
            fn()
        except Exception as err:
            logger.warning("MLflow logging failed (%s): training continues without tracking", err)
            self.client = None


@contextmanager
def run_status(target: TrackingTarget) -> Iterator[None]:
    """End the run FINISHED on success, KILLED on SIGINT/SIGTERM, FAILED on any other exception."""
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        end_run(target, status)


def run_url(target: TrackingTarget) -> str | None:
    """A human pointer to the run (the UI command for a local store)."""
    if target.run_id is None:
        return None
    if target.uri.startswith(("http://", "https://")):
        run = _client(target.uri).get_run(target.run_id)
        return f"{target.uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{target.run_id}{UI_QUERY}"
    return f"run {target.run_id} (view: mlflow ui --backend-store-uri {target.uri})"


def check_access(uri: str) -> None:
    """Raise a UserError when a tracking server refuses this process's credentials (basic-auth, HTTP 401/403).

    A server that asks for a password refuses the run, rather than letting it train untracked: the credentials
    are configuration, and a wrong one does not fix itself. The MLflow client reads them from the environment.
    """
    request = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    username, password = (os.environ.get(name, "") for name in CREDENTIALS)
    if username or password:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10):
            return
    except urllib.error.HTTPError as error:
        if error.code not in (401, 403):
            return  # not an access problem: the MLflow client reports it where it happens
        given = "the credentials in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD were refused" if (
            username or password) else "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        raise cli.UserError(f"MLflow server {uri} answered HTTP {error.code}: {given}") from None


def worker_env() -> dict[str, str]:
    """The MLflow credentials of this process, as runtime_env env_vars for the Ray workers that log (rank 0, Tune
    trials); empty inside a submitted job, whose workers get them from the job or the cluster's nodes."""
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:  # a job's runtime_env: ray.init may not set the same keys
        return {}
    return {name: os.environ[name] for name in CREDENTIALS if name in os.environ}


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _reachable(uri: str) -> bool:
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=3):
            return True
    except OSError:
        return False


def _now_ms() -> int:
    return int(time.time() * 1000)


def metric_history(target: TrackingTarget, key: str) -> list[tuple[int, float]]:
    """(step, value) of every logged value of metric `key` in the target's run, by step."""
    client = _client(target.uri)
    return sorted((m.step, m.value) for m in client.get_metric_history(target.run_id, key))
