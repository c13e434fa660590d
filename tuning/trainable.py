"""One sweep trial = one training run: a Tune function trainable that fits a TorchTrainer. A one-worker CPU trial
trains in the trial's own process (Train local mode, num_workers 0); multi-worker and GPU trials get Train workers.

The trial's MLflow run points at the study's parent run with tag sweep.parent_run_id and carries the swept
values as tags; rank 0 of the Train workers logs into it. It is not nested (no mlflow.parentRunId): the MLflow
UI collapses nested runs under their parent and leaves them out of its charts until expanded, so trials are
top-level runs, grouped by tag sweep.study. `CloseTrialRuns` closes the runs of trials that Tune stopped (ASHA)
or that failed, since a stopped trial's process dies before its own code can. `StudyProgress` prints a line
per ended trial.
"""

import copy
import logging
import time
from dataclasses import dataclass
from typing import Any

import ray
from mlflow.tracking import MlflowClient
from ray import tune

from pipelines import tracking
from pipelines.checkpoints import find_latest_checkpoint, run_uri
from pipelines.config_dict import deep_merge, set_dotted
from pipelines.launch import build_trainer
from pipelines.recipes import ExperimentConfig, tie_data_seed
from tuning.spaces import SEED_KEY, flat_values, setting_label, trial_label

logger = logging.getLogger(__name__)

STOPPED_BY_TAG = "sweep.stopped_by"  # "asha" (early stopping) or "interrupt" (sweep interrupted)
PARENT_TAG = "sweep.parent_run_id"  # the study's parent run, on each trial run


@dataclass(frozen=True, kw_only=True, slots=True)
class SweepContext:
    """What all trials of one study share; saved with the study so that --resume rebuilds the same trials."""

    study: str
    base: dict  # ExperimentConfig.to_dict() of the recipe with the budget and CLI overrides applied
    train_storage: str  # absolute path (or URI) under which each trial's Ray Train run lives
    tracking_uri: str
    experiment_id: str
    parent_run_id: str


def trial_config(base: dict, values: dict[str, Any], *, name: str) -> ExperimentConfig:
    """The recipe with one trial's swept values applied; a mapping value overrides several sub-fields."""
    tree = copy.deepcopy(base) | {"name": name}
    for key, value in values.items():
        if isinstance(value, dict):
            node = tree
            for part in key.split("."):
                node = node[part]
            set_dotted(tree, key, deep_merge(node, value))
        else:
            set_dotted(tree, key, value)
    if SEED_KEY in values:
        tie_data_seed(tree)
    return ExperimentConfig.from_dict(tree)


def train_trial(values: dict[str, Any], *, context: SweepContext) -> None:
    """Tune function trainable: build this trial's config, open its child MLflow run and fit a TorchTrainer."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    trial_id = tune.get_context().get_trial_id()
    config = trial_config(context.base, values, name=f"{context.study}-{trial_id}")
    run = run_uri(context.train_storage, config.name)
    # After Tuner.restore an unfinished trial restarts here; it continues from its own latest checkpoint.
    resume = find_latest_checkpoint(context.train_storage, config.name)
    if resume is not None and resume[1] >= config.train.num_steps:
        # Trained to the end before an interrupt (Tune may not have recorded it): nothing to run, and a run that
        # is already FINISHED is left exactly as it was.
        close_trial_run(context, trial_id, "FINISHED", stopped_by=None)
        return
    target = open_trial_run(context, config, values, trial_id=trial_id, run=run)
    # Rank 0's reports reach Tune (ASHA ranks them); a 0-worker trial trains right here, in Train local mode.
    build_trainer(config, target=target, resume=resume, storage_path=context.train_storage, run=run,
                  in_tune=True).fit()
    # Failures and early stops are closed by CloseTrialRuns: this line never runs for them.
    tracking.end_run(target, "FINISHED")


def open_trial_run(context: SweepContext, config: ExperimentConfig, values: dict[str, Any], *, trial_id: str,
                   run: str) -> tracking.TrackingTarget:
    """Create the trial's child MLflow run, or reopen it when the trial restarts after --resume."""
    client = MlflowClient(context.tracking_uri)
    found = find_trial_run(client, context, trial_id)
    if found is not None:
        if STOPPED_BY_TAG in client.get_run(found).data.tags:
            client.delete_tag(found, STOPPED_BY_TAG)
        return tracking.start_run(uri=context.tracking_uri, experiment="", artifact_root=None, run_name=config.name,
                                  config={}, tags={}, resume_run_id=found)
    swept = flat_values(values)
    tags = {
        PARENT_TAG: context.parent_run_id,
        "sweep.study": context.study,
        "sweep.trial_id": trial_id,
        "sweep.setting": setting_label(values),
        "ray.run": run,
        "method": config.method.kind,
        "ray.version": ray.__version__,
    } | {f"sweep.{key}": value for key, value in swept.items()}
    experiment = client.get_experiment(context.experiment_id).name
    return tracking.start_run(uri=context.tracking_uri, experiment=experiment, artifact_root=None,
                              run_name=f"{context.study}-{trial_label(values)}", config=config.to_dict(),
                              tags=tags)


def find_trial_run(client: MlflowClient, context: SweepContext, trial_id: str) -> str | None:
    runs = client.search_runs(
        [context.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{context.parent_run_id}' and tags.`sweep.trial_id` = '{trial_id}'",
    )
    return runs[0].info.run_id if runs else None


def child_runs(client: MlflowClient, context: SweepContext) -> list:
    """All trial runs of the study (any status), oldest first."""
    return client.search_runs([context.experiment_id],
                              filter_string=f"tags.`{PARENT_TAG}` = '{context.parent_run_id}'",
                              order_by=["attributes.start_time ASC"], max_results=10_000)


class CloseTrialRuns(tune.Callback):
    """Ends each trial's MLflow run when Tune ends the trial, so no run of a stopped trial stays RUNNING.

    A trial whose last report reached the budget is FINISHED (ASHA also stops trials at max_t); one that
    Tune stopped earlier is KILLED with tag sweep.stopped_by=asha; an errored one is FAILED.
    """

    def __init__(self, context: SweepContext) -> None:
        self.context = context

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        num_steps = self.context.base["train"]["num_steps"]
        reached = (trial.last_result or {}).get("step", 0) >= num_steps
        close_trial_run(self.context, trial.trial_id, "FINISHED" if reached else "KILLED",
                        stopped_by=None if reached else "asha")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        close_trial_run(self.context, trial.trial_id, "FAILED", stopped_by=None)


class StudyProgress(tune.Callback):
    """One line per ended trial: trials done / total, the best held-out PSNR gain so far, and an ETA.

    Counts trials ended before a --resume too (Tune restores them as TERMINATED); the ETA is from this
    process's own pace.
    """

    def __init__(self, study: str, *, total: int) -> None:
        self.study, self.total = study, total
        self.setup()

    def setup(self, **info) -> None:  # Tune calls this at every start, --resume included (this object is restored)
        self.started = time.monotonic()
        self.ended_here = 0

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._report(trials, trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._report(trials, trial)

    def _report(self, trials: list, ending) -> None:
        self.ended_here += 1
        # The trial ending now may not have its final status yet.
        done = len({t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")} | {ending.trial_id})
        gains = [(t.last_result["val/psnr_gain"], t) for t in trials if "val/psnr_gain" in (t.last_result or {})]
        best = ""
        if gains:
            gain, trial = max(gains, key=lambda g: g[0])
            best = f", best so far {setting_label(trial.config)} ({gain:+.2f} dB over the input)"
        left = self.total - done
        pace = (time.monotonic() - self.started) / self.ended_here
        eta = f", ETA {left * pace / 60:.0f} min" if left else ""
        print(f"study {self.study}: {done}/{self.total} trials done{best}{eta}", flush=True)


def close_trial_run(context: SweepContext, trial_id: str, status: str, *, stopped_by: str | None) -> None:
    """Mark the trial's run `status` (tagged `stopped_by` when given) unless it is already FINISHED; a run that
    ends FINISHED drops a stale stopped_by tag (an interrupt that came after its last checkpoint)."""
    client = MlflowClient(context.tracking_uri)
    run_id = find_trial_run(client, context, trial_id)
    if run_id is None:
        return
    run = client.get_run(run_id)
    if run.info.status == "FINISHED":
        return
    if stopped_by is not None:
        client.set_tag(run_id, STOPPED_BY_TAG, stopped_by)
    elif status == "FINISHED" and STOPPED_BY_TAG in run.data.tags:
        client.delete_tag(run_id, STOPPED_BY_TAG)
    client.set_terminated(run_id, status=status)
    logger.info("trial %s: MLflow run %s marked %s", trial_id, run_id, status)


def close_interrupted_runs(context: SweepContext) -> int:
    """After the Tuner returns: KILLED + stopped_by=interrupt for trial runs still RUNNING (--resume reopens them).

    Returns the number of trial runs that ended for good (finished, failed or stopped by ASHA).
    """
    client = MlflowClient(context.tracking_uri)
    runs = child_runs(client, context)
    for r in runs:
        if r.info.status == "RUNNING":
            client.set_tag(r.info.run_id, STOPPED_BY_TAG, "interrupt")
            client.set_terminated(r.info.run_id, status="KILLED")
    return sum(r.info.status != "RUNNING" and r.data.tags.get(STOPPED_BY_TAG) != "interrupt" for r in runs)
