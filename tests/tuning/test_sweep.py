"""End-to-end sweeps on local Ray through the CLI: 2 debug trials, resume after an interrupt, ASHA."""

import signal
import subprocess

import pytest

from tests.held_runs import hold_env, tail, wait_for
from tests.tuning.conftest import ROOT, run_sweep, study_runs, sweep_command, sweep_env

pytestmark = pytest.mark.slow


def test_two_trial_study_finishes_with_nested_mlflow_runs_and_a_report(two_trial_study):
    client, parent, children = study_runs(two_trial_study)
    assert parent.info.status == "FINISHED"
    assert len(children) == 2
    assert sorted(c.data.tags["sweep.method.max_sigma"] for c in children) == ["10", "70"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert float(child.data.params["method.max_sigma"]) == float(child.data.tags["sweep.method.max_sigma"])
        assert child.data.metrics["train/loss"] > 0 and "val/psnr" in child.data.metrics
    report = two_trial_study / "sweeps" / "sigma" / "report"
    assert {"table.md", "table.csv", "metric_vs_setting.png", "learning_curves.png"} <= {
        p.name for p in report.iterdir()}
    table = (report / "table.md").read_text()
    assert "| 10 |" in table and "| 70 |" in table
    assert "report/table.md" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}


def test_interrupted_sweep_resumes_the_unfinished_trial_from_its_checkpoint_and_keeps_the_finished_one(tmp_path):
    # One trial at a time, checkpoints at steps 3 and 6: the second trial is held at its step-3 checkpoint (the
    # first one has finished by then), and the sweep gets Ctrl-C there.
    held, log_path = tmp_path / "held", tmp_path / "sweep.log"
    command = sweep_command(tmp_path, "--budget", "6", "--num-reports", "2", "--max-concurrent-trials", "1")
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=sweep_env() | hold_env(held, step=3, nth=2), stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            wait_for(held.exists, proc=process, log=log_path)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=120) is not None
        finally:
            if process.poll() is None:
                process.kill()
    _, parent, children = study_runs(tmp_path)
    first, second = children
    assert first.info.status == "FINISHED" and parent.info.status == "KILLED", tail(log_path)
    assert second.info.status == "KILLED" and second.data.tags["sweep.stopped_by"] == "interrupt"

    result = run_sweep(tmp_path, "--resume")
    assert "unfinished trials" not in result.stdout
    client, parent, children = study_runs(tmp_path)
    assert parent.info.status == "FINISHED"
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    assert "sweep.stopped_by" not in children[1].data.tags
    assert client.get_run(first.info.run_id).info.end_time == first.info.end_time  # the finished trial was not rerun
    for child in children:  # every logged step once (log_every=2): the second trial went on from checkpoint 3
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "train/loss")]
        assert sorted(steps) == [2, 4, 6], steps


def test_asha_stops_the_worse_trial_and_marks_its_run_killed(tmp_path):
    # Trials run in grid order; at the first rung sigma 70's loss (about 7x sigma 10's) is below ASHA's cutoff.
    run_sweep(tmp_path, "--budget", "6", "--num-reports", "3", "--max-concurrent-trials", "1", "--asha",
              "--metric", "loss", "--mode", "min")
    _, parent, children = study_runs(tmp_path)
    by_sigma = {c.data.tags["sweep.method.max_sigma"]: c for c in children}
    assert by_sigma["10"].info.status == "FINISHED" and "sweep.stopped_by" not in by_sigma["10"].data.tags
    stopped = by_sigma["70"]
    assert stopped.info.status == "KILLED" and stopped.data.tags["sweep.stopped_by"] == "asha"
    assert stopped.data.metrics.get("val/psnr") is not None  # it did report before ASHA stopped it
    assert parent.info.status == "FINISHED"
