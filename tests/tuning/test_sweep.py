"""End-to-end sweeps on local Ray through the CLI: a 2-trial ASHA study, interrupted, resumed, with its report
(the study: tests/tuning/conftest.py::two_trial_study), and a trial of two Train workers, one of them killed."""

import re
import subprocess

import pytest

from pipelines.checkpoints import load_state
from tests.tuning.conftest import ROOT, study_runs, sweep_command, sweep_env

pytestmark = pytest.mark.slow


def test_a_trial_whose_process_dies_is_restarted_by_tune_from_its_checkpoint(two_trial_study):
    log = (two_trial_study.storage / "sweep.log").read_text()  # the whole output of the interrupted sweep
    assert (two_trial_study.storage / "crashed").exists(), log[-5000:]
    assert "errored after 1 iterations" in log and "resumed at step 2 " in log, log[-5000:]


def test_ctrl_c_closes_the_held_trial_as_interrupted_and_leaves_the_other_to_run(two_trial_study):
    assert two_trial_study.interrupted == {"10": "KILLED", "70": ""}, two_trial_study.interrupted_log
    assert two_trial_study.interrupted_tags["10"]["sweep.stopped_by"] == "interrupt"


def test_resumed_trial_goes_on_from_its_checkpoint_and_asha_stops_the_worse_one(two_trial_study):
    client, parent, children = study_runs(two_trial_study.storage)
    assert parent.info.status == "FINISHED"
    assert "unfinished trials" not in two_trial_study.resumed_log
    by_sigma = {c.data.tags["sweep.method.max_sigma"]: c for c in children}
    assert sorted(by_sigma) == ["10", "70"]
    for child in children:
        assert child.data.tags["sweep.parent_run_id"] == parent.info.run_id
        assert "mlflow.parentRunId" not in child.data.tags  # top-level: the UI charts it without expanding
        assert float(child.data.params["method.max_sigma"]) == float(child.data.tags["sweep.method.max_sigma"])
        assert child.data.metrics["train/loss"] > 0 and "val/psnr" in child.data.metrics  # 70 reported before ASHA
    assert by_sigma["10"].info.status == "FINISHED" and "sweep.stopped_by" not in by_sigma["10"].data.tags
    assert by_sigma["70"].info.status == "KILLED" and by_sigma["70"].data.tags["sweep.stopped_by"] == "asha"
    # Every logged step once (log_every=2): the restarted trial went on from checkpoint 2, the resumed one from
    # checkpoint 4, never from the start.
    steps = [m.step for m in client.get_metric_history(by_sigma["10"].info.run_id, "train/loss")]
    assert sorted(steps) == [2, 4, 6], steps


def test_finished_study_writes_a_report_and_a_second_resume_reruns_nothing(two_trial_study):
    client, parent, children = study_runs(two_trial_study.storage)
    report = two_trial_study.storage / "sweeps" / "sigma" / "report"
    assert {"table.md", "table.csv", "metric_vs_setting.png", "learning_curves.png"} <= {
        p.name for p in report.iterdir()}
    table = (report / "table.md").read_text()
    assert "| 10 |" in table and "| 70 |" in table and "KILLED (asha)" in table
    assert "report/table.md" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert parent.info.status == "FINISHED" and "unfinished trials" not in two_trial_study.again_log
    # The second --resume ran no trial and started no Ray: the finished and the ASHA-stopped trial runs were not
    # reopened.
    assert "study sigma is finished: nothing to resume" in two_trial_study.again_log, two_trial_study.again_log
    assert "Started a local Ray instance" in two_trial_study.resumed_log  # what the line below looks for
    assert "Started a local Ray instance" not in two_trial_study.again_log
    assert {c.data.tags["sweep.method.max_sigma"]: c.info.end_time for c in children} == two_trial_study.end_times


def test_a_trial_of_two_train_workers_learns_recovers_from_a_killed_worker_and_reports_to_tune(tmp_path):
    """One trial of 2 Train workers on CPU (DDP over gloo): not trained in the trial's own process but by a
    TorchTrainer, whose FailureConfig restarts the group after rank 1 dies once and whose reports reach Tune through
    TuneReportCallback (a trial Tune heard nothing from "completed after 0 iterations")."""
    crashed = tmp_path / "crashed"
    # 2 accumulated micro-batches of 2 per rank (DDP's no_sync on the first): the debug recipe's global batch of 8,
    # and the restarted group skips 2 batches per consumed step. Checkpoints at 15 and 30; rank 1 exits after 20.
    command = sweep_command(tmp_path, "--num-workers", "2", "--cpus-per-trial", "2", "--budget", "30",
                            "--num-reports", "2", "--set", "train.max_failures=1", "--set", "train.log_every=1",
                            "--set", "train.batch_size=2", "--set", "train.grad_accum=2",
                            space="method.max_sigma: {grid: [50]}\n")  # the debug recipe's own sigma
    env = sweep_env() | {"RESTORATION_TEST_CRASH": f"1:20:{crashed}"}  # pipelines/loop.py::_test_only_crash
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    log = done.stdout + done.stderr
    assert done.returncode == 0 and crashed.exists(), log[-5000:]
    assert "world_size=2" in log and re.search(r"completed after [1-9]\d* iterations", log), log[-5000:]
    client, parent, children = study_runs(tmp_path)
    assert parent.info.status == "FINISHED" and [c.info.status for c in children] == ["FINISHED"]
    run = children[0]
    assert run.data.params["scaling.num_workers"] == "2"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    steps = [m.step for m in history]
    # Steps 16..20 ran twice: once before the crash, once after restoring the step-15 checkpoint; nothing lost.
    assert sorted(set(steps)) == list(range(1, 31))
    # Rank 0 logs steps 16-19 before rank 1 can finish step 20 (each all-reduce waits for both); step 20's own
    # line may or may not precede the teardown.
    assert [steps.count(s) for s in range(14, 20)] == [1, 1, 2, 2, 2, 2] and steps.count(21) == 1
    by_step = {m.step: m.value for m in history}
    first, last = [by_step[s] for s in range(1, 6)], [by_step[s] for s in range(26, 31)]
    assert sum(last) < 0.8 * sum(first)
    (checkpoint,) = (tmp_path / "sweeps" / "sigma" / "train").glob("*/checkpoint_00000030")
    assert load_state(checkpoint)["step"] == 30
    assert "images" in [a.path for a in client.list_artifacts(run.info.run_id)]
