"""End-to-end sweep on local Ray through the CLI: a 2-trial ASHA study, interrupted, resumed, with its report
(the study: tests/tuning/conftest.py::two_trial_study)."""

import pytest

from tests.tuning.conftest import run_sweep, study_runs

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



def test_a_trial_of_two_train_workers_reports_to_tune_through_its_torchtrainer(tmp_path):
    # One trial of 2 Train workers (DDP over gloo), not trained in the trial's own process: rank 0's report must
    # reach Tune through TuneReportCallback (a trial Tune heard nothing from "completed after 0 iterations").
    result = run_sweep(tmp_path, "--num-workers", "2", "--cpus-per-trial", "1", "--budget", "2", "--num-reports", "1",
                       "--set", "train.batch_size=2", "--set", "train.num_val_images=0",
                       space="method.max_sigma: {grid: [10]}\n")
    log = result.stdout + result.stderr
    assert "world_size=2" in log and "completed after 1 iterations" in log, log[-5000:]
    _, parent, children = study_runs(tmp_path)
    assert parent.info.status == "FINISHED" and [c.info.status for c in children] == ["FINISHED"]
    assert children[0].data.params["scaling.num_workers"] == "2" and children[0].data.metrics["train/loss"] > 0
