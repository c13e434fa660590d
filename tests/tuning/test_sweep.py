"""End-to-end sweeps on local Ray through the CLI: 2 debug trials, resume after an interrupt, ASHA."""

import signal
import subprocess
import time

import pytest

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


def test_resume_after_interrupt_reruns_only_the_unfinished_trial(tmp_path):
    # One trial at a time; interrupt (Ctrl-C) as soon as the first trial's run is FINISHED.
    command = sweep_command(tmp_path, "--budget", "6", "--num-reports", "2", "--max-concurrent-trials", "1")
    process = subprocess.Popen(command, cwd=ROOT, env=sweep_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            if (tmp_path / "mlflow.db").exists() and _num_finished(tmp_path) >= 1:
                break
            time.sleep(1)
        assert process.poll() is None, "the sweep ended before it could be interrupted"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) is not None
    finally:
        if process.poll() is None:
            process.kill()
    _, parent, children = study_runs(tmp_path)
    first = children[0]
    assert first.info.status == "FINISHED" and parent.info.status == "KILLED"
    assert all(c.info.status == "KILLED" and c.data.tags["sweep.stopped_by"] == "interrupt" for c in children[1:])

    run_sweep(tmp_path, "--resume")
    client, parent, children = study_runs(tmp_path)
    assert parent.info.status == "FINISHED"
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    assert "sweep.stopped_by" not in children[1].data.tags
    again = client.get_run(first.info.run_id)
    assert again.info.end_time == first.info.end_time  # the finished trial was not rerun
    steps = [m.step for m in client.get_metric_history(first.info.run_id, "train/loss")]
    assert len(steps) == len(set(steps))


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


def _num_finished(storage) -> int:
    try:
        _, _, children = study_runs(storage)
    except Exception:  # the store or the parent run does not exist yet
        return 0
    return sum(c.info.status == "FINISHED" for c in children)
