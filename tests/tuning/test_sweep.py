"""End-to-end sweeps on local Ray through the CLI: a 2-trial ASHA study with its report; an interrupted sweep
of 2 concurrent trials, resumed."""

import signal
import subprocess

import pytest

from tests.held_runs import hold_env, tail, wait_for
from tests.tuning.conftest import ROOT, run_sweep, study_runs, sweep_command, sweep_env

pytestmark = pytest.mark.slow


def test_asha_study_has_nested_mlflow_runs_stops_the_worse_trial_and_writes_a_report(two_trial_study):
    client, parent, children = study_runs(two_trial_study)
    assert parent.info.status == "FINISHED"
    by_sigma = {c.data.tags["sweep.method.max_sigma"]: c for c in children}
    assert sorted(by_sigma) == ["10", "70"]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert float(child.data.params["method.max_sigma"]) == float(child.data.tags["sweep.method.max_sigma"])
        assert child.data.metrics["train/loss"] > 0 and "val/psnr" in child.data.metrics  # 70 reported before ASHA
    assert by_sigma["10"].info.status == "FINISHED" and "sweep.stopped_by" not in by_sigma["10"].data.tags
    assert by_sigma["70"].info.status == "KILLED" and by_sigma["70"].data.tags["sweep.stopped_by"] == "asha"
    report = two_trial_study / "sweeps" / "sigma" / "report"
    assert {"table.md", "table.csv", "metric_vs_setting.png", "learning_curves.png"} <= {
        p.name for p in report.iterdir()}
    table = (report / "table.md").read_text()
    assert "| 10 |" in table and "| 70 |" in table and "KILLED (asha)" in table
    assert "report/table.md" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}


def test_interrupted_sweep_resumes_the_unfinished_trial_from_its_checkpoint_and_keeps_the_finished_one(tmp_path):
    # Both trials at once, checkpoints at steps 3 and 6. The second to checkpoint at step 3 is held there; once the
    # other has finished, the sweep gets Ctrl-C.
    held, log_path = tmp_path / "held", tmp_path / "sweep.log"
    command = sweep_command(tmp_path, "--budget", "6", "--num-reports", "2", "--max-concurrent-trials", "2")
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=sweep_env() | hold_env(held, step=3, nth=2), stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            wait_for(held.exists, proc=process, log=log_path)
            wait_for(lambda: _statuses(tmp_path).count("FINISHED") == 1, proc=process, log=log_path)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=120) is not None
        finally:
            if process.poll() is None:
                process.kill()
    _, parent, children = study_runs(tmp_path)
    assert parent.info.status == "KILLED" and sorted(c.info.status for c in children) == ["FINISHED", "KILLED"]
    finished = next(c for c in children if c.info.status == "FINISHED")
    interrupted = next(c for c in children if c.info.status == "KILLED")
    assert interrupted.data.tags["sweep.stopped_by"] == "interrupt", tail(log_path)

    result = run_sweep(tmp_path, "--resume")
    assert "unfinished trials" not in result.stdout
    client, parent, children = study_runs(tmp_path)
    assert parent.info.status == "FINISHED"
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    assert "sweep.stopped_by" not in client.get_run(interrupted.info.run_id).data.tags
    assert client.get_run(finished.info.run_id).info.end_time == finished.info.end_time  # not rerun
    for child in children:  # every logged step once (log_every=2): the held trial went on from checkpoint 3
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "train/loss")]
        assert sorted(steps) == [2, 4, 6], steps


def _statuses(storage) -> list[str]:
    """Statuses of the study's trial runs; none before the store and the parent run exist."""
    if not (storage / "mlflow.db").exists():
        return []
    try:
        return [c.info.status for c in study_runs(storage)[2]]
    except (AssertionError, AttributeError):  # the parent run or the experiment is not created yet
        return []
