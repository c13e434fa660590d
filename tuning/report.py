"""Study report from MLflow: per setting the held-out PSNR gain over the input and LPIPS, mean +- std over
seeds, the verdict on the paper's claim (tuning/verdicts.py), each trial's best scores, and PNG plots.

    python tuning/report.py noise [steps patch optimizer] [--storage-path runs] [--results results.md]

Files go to <storage>/sweeps/<study>/report/ and are logged to the study's parent MLflow run under report/;
--results also writes one Markdown page of every study's verdict, table and plots (plots beside it).
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import csv
import json
import logging
import shutil
from dataclasses import asdict, dataclass

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from mlflow.tracking import MlflowClient

from pipelines import cli
from tuning.verdicts import CLAIMS, SettingScores, Verdict, fmt, judge, mean_std

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
    seed: int | None  # the swept seed, None when the study ran one seed per setting
    run_dir: str  # the trial's Ray Train run folder (tag ray.run), holding its checkpoints
    status: str
    stopped_by: str
    curves: dict[str, list[tuple[int, float]]]

    def final(self, key: str) -> float | None:
        """The metric at the last validation (the model at the end of its budget)."""
        points = self.curves.get(key, [])
        return points[-1][1] if points else None

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
        seed = run.data.tags.get("sweep.seed")
        trials.append(TrialCurves(run_name=run.info.run_name, setting=run.data.tags.get("sweep.setting", "?"),
                                  seed=None if seed is None else int(seed),
                                  run_dir=run.data.tags.get("ray.run", ""), status=run.info.status,
                                  stopped_by=run.data.tags.get("sweep.stopped_by", ""), curves=curves))
    return sorted(trials, key=lambda t: (_setting_order(t.setting), t.seed or 0))


def logged_metrics(trials: list[TrialCurves]) -> dict[str, tuple[str, bool]]:
    """The VAL_METRICS that some trial logged (psnr and ssim always: their columns stay even when empty)."""
    return {k: v for k, v in VAL_METRICS.items() if k in ("val/psnr", "val/ssim") or any(t.curves.get(k) for t in trials)}


def table_rows(trials: list[TrialCurves]) -> list[dict[str, str]]:
    """One row per trial: setting, status (with who stopped it), steps reached, the held-out input's scores, the
    best validation scores and the PSNR gain of the best over the input."""
    rows = []
    for trial in trials:
        row = {"setting": trial.setting, "seed": "" if trial.seed is None else str(trial.seed), "run": trial.run_name,
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


def setting_scores(trials: list[TrialCurves]) -> list[SettingScores]:
    """Per setting, in setting order: the final held-out scores of each of its trials that validated."""
    lpips_key = "val/lpips" if any(t.curves.get("val/lpips") for t in trials) else "val/lpips_random"
    groups: dict[str, list[TrialCurves]] = {}
    for trial in trials:
        if trial.final("val/psnr") is not None and trial.final("val/lq_psnr") is not None:
            groups.setdefault(trial.setting, []).append(trial)
    return [SettingScores(setting=setting, seeds=tuple(t.seed or 0 for t in group),
                          input_psnr=tuple(t.final("val/lq_psnr") for t in group),
                          psnr=tuple(t.final("val/psnr") for t in group),
                          ssim=tuple(v for t in group if (v := t.final("val/ssim")) is not None),
                          lpips=tuple(v for t in group if (v := t.final(lpips_key)) is not None))
            for setting, group in groups.items()]


def summary_lines(scores: list[SettingScores]) -> list[str]:
    """Markdown table: per setting, the final held-out input and output scores, mean +- std over seeds."""
    lines = ["| setting | seeds | beat the input | input PSNR | output PSNR | PSNR gain (dB) | SSIM | LPIPS |",
             "|---|---|---|---|---|---|---|---|"]
    for s in scores:
        lines.append(f"| {s.setting} | {len(s.seeds)} | {s.num_beating_input}/{len(s.seeds)} | {fmt(s.input_psnr)} | "
                     f"{fmt(s.psnr)} | {fmt(s.gains, signed=True)} | {fmt(s.ssim, digits=3)} | "
                     f"{fmt(s.lpips, digits=4)} |")
    return lines


def write_table(rows: list[dict[str, str]], out_dir: Path, *, title: str, summary: list[str],
                verdict: Verdict | None) -> tuple[Path, Path]:
    columns = list(rows[0]) if rows else ["setting", "seed", "run", "status", "steps"]
    csv_path = out_dir / "table.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# {title}", ""]
    if verdict is not None:
        lines += [f"**{verdict.verdict}**: {verdict.claim}. {verdict.detail}.", ""]
    lines += ["Final held-out validation, mean ± std over seeds:", "", *summary, "",
              "Each trial's best validation:", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in rows]
    md_path = out_dir / "table.md"
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, csv_path


def plot_metric_vs_setting(scores: list[SettingScores], path: Path, *, xlabel: str) -> Path | None:
    """Final PSNR gain over the input, SSIM and LPIPS per setting: each seed a dot, mean +- std a bar. None (no
    figure) when no trial validated, e.g. every trial failed before its first validation."""
    panels = [("PSNR gain over the input (dB)", lambda s: s.gains), ("SSIM", lambda s: s.ssim),
              ("LPIPS (lower is better)", lambda s: s.lpips)]
    panels = [(title, get) for title, get in panels if any(get(s) for s in scores)]
    if not panels:
        logger.warning("no trial has a held-out validation: %s not drawn", path.name)
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, get) in zip(axes[0], panels):
        for x, s in enumerate(scores):
            values = get(s)
            if values:
                mean, std = mean_std(values)
                ax.errorbar([x], [mean], yerr=[std], fmt="s", color="C0", capsize=4)
                ax.plot([x] * len(values), values, ".", color="C1", alpha=0.7)
        if title.startswith("PSNR gain"):
            ax.axhline(0.0, color="grey", lw=0.8, ls="--")  # the input
        ax.set_xticks(range(len(scores)), [s.setting for s in scores], rotation=20)
        ax.set_xlabel(xlabel)
        ax.set_title(title)
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
        label = trial.setting + ("" if trial.seed is None else f" s{trial.seed}")
        label += f" ({trial.stopped_by})" if trial.stopped_by else ""
        for ax, key in zip(axes, (LOSS_METRIC, "val/psnr")):
            points = trial.curves.get(key, [])
            if points:
                ax.plot([s for s, _ in points], [v for _, v in points], marker="." if key != LOSS_METRIC else None,
                        label=label)
    for ax, key in zip(axes, (LOSS_METRIC, "val/psnr")):
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7, ncol=2)
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
    scores = setting_scores(trials)
    claim = CLAIMS.get(saved["study"]) if saved.get("paper_study", True) else None
    verdict = judge(claim, scores) if claim else None
    write_table(table_rows(trials), out_dir, title=title, summary=summary_lines(scores), verdict=verdict)
    (out_dir / "verdict.json").write_text(json.dumps({
        "study": saved["study"], "title": title, "verdict": None if verdict is None else asdict(verdict),
        "scores": [asdict(s) | {"gains": s.gains} for s in scores]}, indent=2))
    swept = [key for key in saved["swept"] if key != "seed"]
    plot_metric_vs_setting(scores, out_dir / "metric_vs_setting.png", xlabel=", ".join(swept))
    plot_learning_curves(trials, out_dir / "learning_curves.png")
    copy_best_validation(trials, out_dir / "best_validation.png")
    client.log_artifacts(context["parent_run_id"], str(out_dir), "report")
    logger.info("report of %d trials in %s", len(trials), out_dir)
    return out_dir


def _setting_order(label: str) -> tuple:
    """Numeric settings sort by value, others alphabetically."""
    try:
        return (0, tuple(float(part) for part in label.split(",")), label)
    except ValueError:
        return (1, (), label)


def copy_best_validation(trials: list[TrialCurves], path: Path) -> Path | None:
    """The held-out LQ | output | GT image of the trial with the largest final PSNR gain, from its last checkpoint."""
    ranked = sorted((t for t in trials if t.final("val/psnr") is not None and t.final("val/lq_psnr") is not None),
                    key=lambda t: t.final("val/psnr") - t.final("val/lq_psnr"), reverse=True)
    for trial in ranked:
        images = sorted(Path(trial.run_dir).glob("checkpoint_*/validation.png")) if trial.run_dir else []
        if images:
            shutil.copyfile(images[-1], path)
            return path
    path.unlink(missing_ok=True)
    return None


def write_results(study_dirs: list[Path], path: Path, *, heading: str) -> Path:
    """One Markdown page: each study's verdict with its numbers, its per-setting table and its plots (copied to
    a folder beside `path`). Reads the report/ that write_report left in each study folder."""
    figures = path.with_suffix("")
    figures.mkdir(parents=True, exist_ok=True)
    verdict_rows, sections = [], []
    for study_dir in study_dirs:
        saved = json.loads((study_dir / "report" / "verdict.json").read_text())
        verdict, study = saved["verdict"], saved["study"]
        if verdict is not None:
            verdict_rows.append(f"| {verdict['claim']} | **{verdict['verdict']}** | {verdict['detail']} |")
        names = [n for n in ("metric_vs_setting.png", "learning_curves.png", "best_validation.png")
                 if (study_dir / "report" / n).exists()]
        for name in names:
            shutil.copyfile(study_dir / "report" / name, figures / f"{study}_{name}")
        table = (study_dir / "report" / "table.md").read_text().split("\n", 2)[2]  # without its title line
        captions = {"metric_vs_setting.png": "final scores per setting (dots: seeds; squares: mean ± std)",
                    "learning_curves.png": "learning curves",
                    "best_validation.png": "held-out input | output | ground truth of the best trial"}
        sections += [f"## {saved['title']}", "", table.strip(), ""]
        sections += [line for n in names for line in (f"![{study}: {captions[n]}]({figures.name}/{study}_{n})", "")]
    lines = [f"# {heading}", "", "| claim | verdict | numbers |", "|---|---|---|", *verdict_rows, "", *sections]
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = cli.Parser(prog="tuning/report.py", description=__doc__.split("\n")[0])
    parser.add_argument("studies", nargs="+", type=cli.name, help="study names (folders under <storage>/sweeps/)")
    parser.add_argument("--storage-path", default="runs")
    parser.add_argument("--results", type=Path, help="also write one Markdown page of all the studies here")
    args = parser.parse_args(argv)
    study_dirs = [Path(args.storage_path).expanduser().resolve() / "sweeps" / study for study in args.studies]
    for study, study_dir in zip(args.studies, study_dirs):
        if not (study_dir / "sweep.json").exists():
            raise cli.UserError(f"no study at {study_dir} (run tuning/sweep_refusion.py --study {study} first)")
    for study_dir in study_dirs:
        out_dir = write_report(study_dir)
        print((out_dir / "table.md").read_text() + f"\nreport: {out_dir}", flush=True)
    if args.results:
        print(f"results: {write_results(study_dirs, args.results, heading='Refusion sweeps')}", flush=True)


if __name__ == "__main__":
    cli.run(main, prog="tuning/report.py")
