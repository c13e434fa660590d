"""tuning/report.py over a real (temporary) MLflow store holding a parent run and two trial runs."""

import csv
import json

from mlflow.tracking import MlflowClient

from pipelines.tracking import embedded_store
from tuning.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _study(tmp_path):
    uri, artifact_root = embedded_store(tmp_path)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("sweeps", artifact_location=f"{artifact_root}/sweeps")
    parent = client.create_run(experiment_id, run_name="study-noise").info.run_id
    curves = {"10": [20.0, 24.0, 23.0], "70": [18.0, 19.5, 21.0]}
    for setting, psnr in curves.items():
        tags = {"sweep.parent_run_id": parent, "sweep.setting": setting}
        if setting == "70":
            tags["sweep.stopped_by"] = "asha"
        run = client.create_run(experiment_id, run_name=f"noise-{setting}", tags=tags).info.run_id
        for i, value in enumerate(psnr):
            step = 10 * (i + 1)
            client.log_metric(run, "val/psnr", value, step=step)
            client.log_metric(run, "val/ssim", value / 30, step=step)
            client.log_metric(run, "val/lpips", 1 / value, step=step)
            client.log_metric(run, "val/lq_psnr", 22.5, step=step)  # the held-out input's own score
            client.log_metric(run, "val/lq_ssim", 0.6, step=step)
            client.log_metric(run, "train/loss", 1 / step, step=step)
        client.set_terminated(run, status="KILLED" if setting == "70" else "FINISHED")
    study_dir = tmp_path / "sweeps" / "noise"
    study_dir.mkdir(parents=True)
    context = {"study": "noise", "base": {}, "train_storage": "", "tracking_uri": uri,
               "experiment_id": experiment_id, "parent_run_id": parent}
    (study_dir / "sweep.json").write_text(json.dumps(
        {"study": "noise", "question": "noise level", "recipe": "debug", "swept": ["method.max_sigma"],
         "context": context}))
    return study_dir, client, parent


def test_report_writes_best_scores_per_setting_and_plots(tmp_path):
    study_dir, client, parent = _study(tmp_path)
    out = write_report(study_dir)

    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [r["setting"] for r in rows] == ["10", "70"]
    assert rows[0]["best_psnr"] == "24.0000" and rows[1]["best_psnr"] == "21.0000"
    assert rows[0]["best_lpips"] == f"{1 / 24:.4f}"  # LPIPS: lower is better
    assert "best_lpips_random" not in rows[0]  # a column only for a metric some trial logged
    assert rows[1]["status"] == "KILLED (asha)" and rows[1]["steps"] == "30"
    markdown = (out / "table.md").read_text()
    assert "| 10 | noise-10 | FINISHED | 30 | 22.5000 | 0.6000 | 24.0000 |" in markdown
    assert rows[0]["psnr_gain"] == "+1.50" and rows[1]["psnr_gain"] == "-1.50"  # best minus the input
    for name in ("metric_vs_setting.png", "learning_curves.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert {"report/table.md", "report/table.csv", "report/metric_vs_setting.png",
            "report/learning_curves.png"} <= logged
