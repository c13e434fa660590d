"""tuning/report.py over a real (temporary) MLflow store holding a parent run and its trial runs."""

import csv
import json

from mlflow.tracking import MlflowClient

from pipelines.tracking import embedded_store
from tuning.report import write_report, write_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _study(tmp_path, *, name="noise", curves=None, seeds=(None,)):
    """A study whose trials logged `curves[setting]` as val/psnr (plus seed offsets) against an input of 22.5."""
    uri, artifact_root = embedded_store(tmp_path)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("sweeps")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        "sweeps", artifact_location=f"{artifact_root}/sweeps")
    parent = client.create_run(experiment_id, run_name=f"study-{name}").info.run_id
    curves = curves or {"10": [20.0, 24.0, 23.0], "70": [18.0, 19.5, 21.0]}
    for setting, psnr in curves.items():
        for seed in seeds:
            tags = {"sweep.parent_run_id": parent, "sweep.setting": setting}
            if seed is not None:
                tags["sweep.seed"] = str(seed)
            if setting == "70":
                tags["sweep.stopped_by"] = "asha"
            suffix = "" if seed is None else f"-seed{seed}"
            run_dir = tmp_path / "train" / f"{name}-{setting}{suffix}"
            (run_dir / "checkpoint_00000030").mkdir(parents=True)  # what validation writes: LQ | output | GT
            (run_dir / "checkpoint_00000030" / "validation.png").write_bytes(PNG_MAGIC + run_dir.name.encode())
            tags["ray.run"] = str(run_dir)
            run = client.create_run(experiment_id, run_name=f"{name}-{setting}{suffix}", tags=tags).info.run_id
            for i, value in enumerate(psnr):
                step, value = 10 * (i + 1), value + 0.1 * (seed or 0)
                client.log_metric(run, "val/psnr", value, step=step)
                client.log_metric(run, "val/ssim", value / 30, step=step)
                client.log_metric(run, "val/lpips", 1 / value, step=step)
                client.log_metric(run, "val/lq_psnr", 22.5, step=step)  # the held-out input's own score
                client.log_metric(run, "val/lq_ssim", 0.6, step=step)
                client.log_metric(run, "train/loss", 1 / step, step=step)
            client.set_terminated(run, status="KILLED" if setting == "70" else "FINISHED")
    study_dir = tmp_path / "sweeps" / name
    study_dir.mkdir(parents=True)
    context = {"study": name, "base": {}, "train_storage": "", "tracking_uri": uri,
               "experiment_id": experiment_id, "parent_run_id": parent}
    swept = ["method.max_sigma"] + (["seed"] if seeds != (None,) else [])
    (study_dir / "sweep.json").write_text(json.dumps(
        {"study": name, "question": "noise level", "recipe": "debug", "swept": swept, "context": context}))
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
    assert "| 10 |  | noise-10 | FINISHED | 30 | 22.5000 | 0.6000 | 24.0000 |" in markdown
    assert rows[0]["psnr_gain"] == "+1.50" and rows[1]["psnr_gain"] == "-1.50"  # best minus the input
    # One seed per setting: no spread, so the claim cannot be judged.
    assert markdown.splitlines()[2].startswith("**inconclusive**: (a) max_sigma = 50")
    for name in ("metric_vs_setting.png", "learning_curves.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert {"report/table.md", "report/table.csv", "report/metric_vs_setting.png",
            "report/learning_curves.png", "report/verdict.json"} <= logged


def test_a_study_whose_trials_never_validated_still_gets_its_table(tmp_path):
    study_dir, _, _ = _study(tmp_path, curves={"10": [], "70": []})  # e.g. every trial failed at its first step
    out = write_report(study_dir)
    assert [r["setting"] for r in csv.DictReader((out / "table.csv").open())] == ["10", "70"]
    assert not (out / "metric_vs_setting.png").exists() and (out / "learning_curves.png").exists()


def test_seeds_are_summarised_per_setting_at_the_final_validation_with_the_verdict(tmp_path):
    # Final PSNRs: 50 -> 25.0/25.1/25.2 (gain +2.6 +- 0.1), 10 -> 23.0/23.1/23.2 (gain +0.6 +- 0.1).
    curves = {"10": [20.0, 24.0, 23.0], "50": [21.0, 24.5, 25.0]}
    study_dir, _, _ = _study(tmp_path, curves=curves, seeds=(0, 1, 2))
    out = write_report(study_dir)

    markdown = (out / "table.md").read_text()
    assert "| 50 | 3 | 3/3 | 22.50 ± 0.00 | 25.10 ± 0.10 | +2.60 ± 0.10 | 0.837 ± 0.003 |" in markdown
    assert "| 10 | 3 | 3/3 | 22.50 ± 0.00 | 23.10 ± 0.10 | +0.60 ± 0.10 |" in markdown
    verdict = json.loads((out / "verdict.json").read_text())["verdict"]
    assert verdict["verdict"] == "reproduced"
    assert "50: +2.60 ± 0.10 dB vs 10: +0.60 ± 0.10 dB" in verdict["detail"]
    rows = list(csv.DictReader((out / "table.csv").open()))
    best = (out / "best_validation.png").read_bytes()
    assert best == PNG_MAGIC + b"noise-50-seed2"  # the largest final gain
    assert [(r["setting"], r["seed"]) for r in rows] == [("10", "0"), ("10", "1"), ("10", "2"),
                                                         ("50", "0"), ("50", "1"), ("50", "2")]


def test_results_page_holds_every_verdict_and_links_plots_that_exist(tmp_path):
    noise, _, _ = _study(tmp_path, curves={"30": [23.0, 24.0], "50": [23.0, 23.95]}, seeds=(0, 1, 2))
    patch, _, _ = _study(tmp_path, name="patch", curves={"128": [23.0, 24.0], "256": [23.0, 26.0]}, seeds=(0, 1, 2))
    for study_dir in (noise, patch):
        write_report(study_dir)
    page = write_results([noise, patch], tmp_path / "docs" / "results.md", heading="Sweeps")

    text = page.read_text()
    assert "| (a) max_sigma = 50 is stable: best or tied among 10, 30, 50, 70 | **reproduced** |" in text  # tied
    assert "| (c) training patches of 256^2 beat 128^2 | **reproduced** |" in text
    for link in ("results/noise_metric_vs_setting.png", "results/patch_learning_curves.png",
                 "results/patch_best_validation.png"):
        assert f"]({link})" in text
        assert (page.parent / link).read_bytes()[:8] == PNG_MAGIC
