"""Study report from MLflow: best validation PSNR/SSIM/LPIPS per setting (Markdown + CSV) and PNG plots.

    python tuning/report.py noise [--storage-path runs]

Files go to <storage>/sweeps/<study>/report/ and are logged to the study's parent MLflow run under report/.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import csv
import json
import logging
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from mlflow.tracking import MlflowClient

from pipelines import cli

logger = logging.getLogger(__name__)

# Metric key in MLflow -> (column name, better is higher). Validation runs on rank 0 with the EMA net.
# LPIPS with the random test backbone (no AlexNet weights) is logged as val/lpips_random, never as val/lpips.
VAL_METRICS = {"val/psnr": ("psnr", True), "val/ssim": ("ssim", True), "val/lpips": ("lpips", False),
               "val/lpips_random": ("lpips_random", False)}
# The held-out input's own scores (bicubic-upsampled lq), the baseline every trial must beat.
INPUT_METRICS = {"val/lq_psnr": "input_psnr", "val/lq_ssim": "input_ssim"}
LOSS_METRIC = "train/loss"


@dataclass(frozen=True, kw_only=True, slots=True)
class TrialCurves:
    """One trial's MLflow run: its setting label, final status and metric histories as (step, value)."""

    run_name: str
    setting: str
    status: str
    stopped_by: str
    curves: dict[str, list[tuple[int, float]]]

    def best(self, key: str) -> float | None:
        values = [v for _, v in self.curves.get(key, [])]
        if not values:
            return None
        return max(values) if VAL_METRICS[key][1] else min(values)

    @property
    def last_step(self) -> int:
        return max((s for points in self.curves.values() for s, _ in points), default=0)


def load_trials(client: MlflowClient, *, experiment_id: str, parent_run_id: str) -> list[TrialCurves]:
    """Every trial run of the study's parent run with its metric histories, in setting order."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`sweep.parent_run_id` = '{parent_run_id}'",
                              max_results=10_000)
    trials = []
    for run in runs:
        curves = {}
        for key in (*VAL_METRICS, *INPUT_METRICS, LOSS_METRIC):
            history = client.get_metric_history(run.info.run_id, key)
            curves[key] = sorted((m.step, m.value) for m in history)
        trials.append(TrialCurves(run_name=run.info.run_name, setting=run.data.tags.get("sweep.setting", "?"),
                                  status=run.info.status, stopped_by=run.data.tags.get("sweep.stopped_by", ""),
                                  curves=curves))
    return sorted(trials, key=lambda t: _setting_order(t.setting))


def logged_metrics(trials: list[TrialCurves]) -> dict[str, tuple[str, bool]]:
    """The VAL_METRICS that some trial logged (psnr and ssim always: their columns stay even when empty)."""
    return {k: v for k, v in VAL_METRICS.items() if k in ("val/psnr", "val/ssim") or any(t.curves.get(k) for t in trials)}


def table_rows(trials: list[TrialCurves]) -> list[dict[str, str]]:
    """One row per trial: setting, status (with who stopped it), steps reached, the held-out input's scores, the
    best validation scores and the PSNR gain of the best over the input."""
    rows = []
    for trial in trials:
        row = {"setting": trial.setting, "run": trial.run_name,
               "status": trial.status + (f" ({trial.stopped_by})" if trial.stopped_by else ""),
               "steps": str(trial.last_step)}
        for key, column in INPUT_METRICS.items():
            points = trial.curves.get(key, [])
            row[column] = f"{points[-1][1]:.4f}" if points else ""
        for key, (column, higher) in logged_metrics(trials).items():
            best = trial.best(key)
            row[f"best_{column}"] = "" if best is None else f"{best:.4f}"
        gain = (trial.best("val/psnr") - trial.curves["val/lq_psnr"][-1][1]
                if trial.best("val/psnr") is not None and trial.curves.get("val/lq_psnr") else None)
        row["psnr_gain"] = "" if gain is None else f"{gain:+.2f}"
        rows.append(row)
    return rows


def write_table(rows: list[dict[str, str]], out_dir: Path, *, title: str) -> tuple[Path, Path]:
    columns = list(rows[0]) if rows else ["setting", "run", "status", "steps"]
    csv_path = out_dir / "table.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in rows]
    md_path = out_dir / "table.md"
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, csv_path


def plot_metric_vs_setting(trials: list[TrialCurves], path: Path, *, xlabel: str) -> Path:
    """Best PSNR / SSIM / LPIPS of each setting (one panel per metric)."""
    metrics = logged_metrics(trials)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    labels = [t.setting for t in trials]
    for ax, (key, (column, higher)) in zip(axes[0], metrics.items()):
        values = [t.best(key) for t in trials]
        xs = [i for i, v in enumerate(values) if v is not None]
        ax.plot(xs, [values[i] for i in xs], "o-")
        ax.set_xticks(range(len(labels)), labels, rotation=20)
        ax.set_xlabel(xlabel)
        ax.set_title(f"best {column} ({'higher' if higher else 'lower'} is better)")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_learning_curves(trials: list[TrialCurves], path: Path) -> Path:
    """Training loss and validation PSNR against step, one line per trial."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for trial in trials:
        label = trial.setting + (f" ({trial.stopped_by})" if trial.stopped_by else "")
        for ax, key in zip(axes, (LOSS_METRIC, "val/psnr")):
            points = trial.curves.get(key, [])
            if points:
                ax.plot([s for s, _ in points], [v for _, v in points], marker="." if key != LOSS_METRIC else None,
                        label=label)
    for ax, key in zip(axes, (LOSS_METRIC, "val/psnr")):
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(study_dir: Path) -> Path:
    """Write report/ for the study in `study_dir` (which holds sweep.json) and log it to the parent run."""
    saved = json.loads((study_dir / "sweep.json").read_text())
    context = saved["context"]
    client = MlflowClient(context["tracking_uri"])
    trials = load_trials(client, experiment_id=context["experiment_id"], parent_run_id=context["parent_run_id"])
    out_dir = study_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"Study {saved['study']}: {saved['question']} (recipe {saved['recipe']})"
    write_table(table_rows(trials), out_dir, title=title)
    plot_metric_vs_setting(trials, out_dir / "metric_vs_setting.png", xlabel=", ".join(saved["swept"]))
    plot_learning_curves(trials, out_dir / "learning_curves.png")
    client.log_artifacts(context["parent_run_id"], str(out_dir), "report")
    logger.info("report of %d trials in %s", len(trials), out_dir)
    return out_dir


def _setting_order(label: str) -> tuple:
    """Numeric settings sort by value, others alphabetically."""
    try:
        return (0, tuple(float(part) for part in label.split(",")), label)
    except ValueError:
        return (1, (), label)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = cli.Parser(prog="tuning/report.py", description=__doc__.split("\n")[0])
    parser.add_argument("study", type=cli.name, help="study name (folder under <storage>/sweeps/)")
    parser.add_argument("--storage-path", default="runs")
    args = parser.parse_args(argv)
    study_dir = Path(args.storage_path).expanduser().resolve() / "sweeps" / args.study
    if not (study_dir / "sweep.json").exists():
        raise cli.UserError(f"no study at {study_dir} (run tuning/sweep_refusion.py --study {args.study} first)")
    out_dir = write_report(study_dir)
    print((out_dir / "table.md").read_text() + f"\nreport: {out_dir}", flush=True)


if __name__ == "__main__":
    cli.run(main, prog="tuning/report.py")
