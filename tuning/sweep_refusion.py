"""Ray Tune sweeps reproducing the Refusion ablations (arXiv 2304.08291, Sec. 3), one MLflow parent run per study.

    python tuning/sweep_refusion.py --study noise --recipe debug          # 4 trials on a laptop
    python tuning/sweep_refusion.py --study all --scale cpu               # the four studies, 3 seeds, ~70 min
    python tuning/sweep_refusion.py --study all --recipe refusion_deblurring --budget 20000 --gpus-per-trial 1 \
        --set data.source.lq_dir=/data/gopro/train/LQ --set data.source.gt_dir=/data/gopro/train/GT --asha
    python tuning/sweep_refusion.py --space my_space.yaml --search random --num-samples 8
    python tuning/sweep_refusion.py --study noise --resume                # continue an interrupted sweep

Each trial is a Tune function trainable that fits a TorchTrainer (tuning/trainable.py); a one-worker CPU trial trains
in the trial's own process (Train local mode), without the Train controller, worker and helper actors. A study lives in
<storage>/sweeps/<study>/: sweep.json, tune/ (Tune state), train/ (trial runs), report/.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import dataclasses
import json
import logging
import math
import os

import ray
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from pipelines import cli, tracking
from pipelines.data import READ_TASK_CPUS, check_data
from pipelines.recipes import RECIPES, ExperimentConfig, apply_overrides
from tuning import report
from tuning.protocols import PROTOCOLS
from tuning.spaces import SEED_KEY, STUDIES, Study, is_grid_only, load_space
from tuning.trainable import CloseTrialRuns, StudyProgress, SweepContext, close_interrupted_runs, train_trial

logger = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
# What a trial reports to Tune (train.save_and_report): what --metric may rank by.
REPORTED_METRICS = ("loss", *report.VAL_METRICS, *report.INPUT_METRICS, "val/psnr_gain")
DRIVER_CPUS = 0.25  # the trial's own process, besides the training it runs in local mode (its worker's CPUs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.Parser(prog="tuning/sweep_refusion.py", description=__doc__.split("\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", choices=[*STUDIES, "all"], help="a Refusion ablation (grid search)")
    which.add_argument("--space", help="YAML space of dotted keys (see tuning/spaces.py::load_space)")
    parser.add_argument("--name", type=cli.name, help="study folder / MLflow name for --space (default: the file's stem)")
    parser.add_argument("--scale", choices=sorted(PROTOCOLS),
                        help="a protocol (tuning/protocols.py) fixing each study's recipe, budget, overrides and "
                             "seeds: " + "; ".join(f"{p.name}: {p.expected}" for p in PROTOCOLS.values()))
    parser.add_argument("--recipe", help=f"base recipe, one of {sorted(RECIPES)} (default: the --scale's, else debug)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the recipe")
    parser.add_argument("--budget", type=cli.positive_int, help="training steps per trial (default: the recipe's)")
    parser.add_argument("--num-reports", type=cli.positive_int, help="validations/checkpoints/Tune reports per trial (default 4)")
    parser.add_argument("--seeds", type=cli.positive_int, help="seeds per setting, swept as `seed` 0..N-1 (default 1)")
    parser.add_argument("--search", choices=("grid", "random"), default="grid")
    parser.add_argument("--num-samples", type=cli.positive_int, default=1, help="samples of the space (--search random)")
    parser.add_argument("--asha", action="store_true", help="ASHA early stopping on --metric")
    parser.add_argument("--grace-period", type=cli.positive_int, default=1, help="ASHA: reports before a trial can stop")
    parser.add_argument("--reduction-factor", type=cli.positive_float, default=2.0, help="ASHA: keep 1/rf per rung")
    parser.add_argument("--metric", default="loss", choices=REPORTED_METRICS, help="reported metric ASHA ranks trials by")
    parser.add_argument("--mode", choices=("min", "max"), default="min")
    parser.add_argument("--max-concurrent-trials", type=cli.positive_int, help="default: as many as the cluster fits")
    parser.add_argument("--num-workers", type=cli.positive_int,
                        help="Train workers per trial (default: the recipe's); a CPU trial of one trains in its own "
                             "process (Train local mode)")
    parser.add_argument("--cpus-per-trial", type=cli.positive_float, help="CPUs of a trial's Train workers, split among them")
    parser.add_argument("--gpus-per-trial", type=cli.non_negative_int, help="GPUs per trial: one Train worker per GPU (default 0)")
    parser.add_argument("--resume", action="store_true", help="continue the study with Tuner.restore")
    parser.add_argument("--storage-path", default="runs", help="local folder holding sweeps/ and the MLflow store")
    parser.add_argument("--mlflow-uri", default=os.environ.get("MLFLOW_TRACKING_URI") or None,
                        help="tracking server (default $MLFLOW_TRACKING_URI, else the embedded SQLite store)")
    parser.add_argument("--experiment", default="refusion-sweeps", type=cli.name, help="MLflow experiment")
    parser.add_argument("--ray-address", help="Ray cluster to join; 'local' starts a new one (default: ray.init())")
    parser.add_argument("--num-cpus", type=cli.positive_int, help="logical CPUs of a newly started local Ray")
    parser.add_argument("--no-report", action="store_true", help="skip tuning/report.py at the end")
    args = parser.parse_args(argv)
    if args.scale and args.space:
        parser.error("--scale runs the paper studies: use it with --study, not --space")
    return args


def for_study(args: argparse.Namespace, study_name: str) -> argparse.Namespace:
    """The arguments one study runs with: the --scale protocol's plan for it, under the user's own flags."""
    protocol = PROTOCOLS[args.scale] if args.scale else None
    plan = protocol.plan(study_name) if protocol else None
    return argparse.Namespace(**vars(args) | {
        "recipe": args.recipe or (protocol.recipe if protocol else "debug"),
        "budget": args.budget or (plan.budget if plan else None),
        "num_reports": args.num_reports or (plan.num_reports if plan else 4),
        "set": [*(plan.sets if plan else ()), *args.set],
        "seeds": args.seeds or (protocol.num_seeds if protocol else 1),
        "gpus_per_trial": args.gpus_per_trial if args.gpus_per_trial is not None else (
            protocol.gpus_per_trial if protocol else 0),
        "lr_scale": protocol.lr_scale if protocol else 1.0,
    })


def base_config(args: argparse.Namespace) -> ExperimentConfig:
    """The recipe with --set overrides, the step budget, the report cadence and per-trial resources."""
    if args.recipe not in RECIPES:
        raise cli.UserError(f"unknown recipe {args.recipe!r}; choose from {sorted(RECIPES)}")
    config = apply_overrides(RECIPES[args.recipe](), sets=args.set)
    num_steps = args.budget or config.train.num_steps
    every = max(1, math.ceil(num_steps / args.num_reports))
    train = dataclasses.replace(config.train, num_steps=num_steps, val_every=every, ckpt_every=every)
    if args.gpus_per_trial > 0:
        scaling = dataclasses.replace(config.scaling, num_workers=args.gpus_per_trial, use_gpu=True)
    else:  # one worker trains in the trial's process (local mode): no Train controller, worker or helper actors
        num_workers = args.num_workers or config.scaling.num_workers
        scaling = dataclasses.replace(config.scaling, num_workers=num_workers if num_workers > 1 else 0, use_gpu=False)
    if args.cpus_per_trial is not None:
        scaling = dataclasses.replace(scaling, cpus_per_worker=args.cpus_per_trial / scaling.num_processes)
    return dataclasses.replace(config, train=train, scaling=scaling)


def study_spec(args: argparse.Namespace, study_name: str, *, num_steps: int) -> tuple[dict, str]:
    """(Tune space, what it sweeps) of a paper study or of the user's --space file."""
    if args.space is None:
        study: Study = STUDIES[study_name](num_steps=num_steps, lr_scale=args.lr_scale)
        space, question = study.space(), study.question
    else:
        space = load_space(args.space)
        if args.search == "grid" and not is_grid_only(space):
            raise cli.UserError("--space has sampled domains (choice/uniform/...): use --search random --num-samples N")
        question = ", ".join(space)
    if args.seeds > 1:
        if SEED_KEY in space:
            raise cli.UserError(f"--seeds {args.seeds}: the space already sweeps {SEED_KEY!r}")
        space = space | {SEED_KEY: tune.grid_search(list(range(args.seeds)))}
    return space, question


def study_folder(args: argparse.Namespace, study_name: str) -> Path:
    """<storage>/sweeps/<study>: sweep.json, tune/, train/, report/."""
    return Path(args.storage_path).expanduser().resolve() / "sweeps" / study_name


def saved_context(study_dir: Path) -> SweepContext:
    """The SweepContext that the study's first run saved in its sweep.json."""
    return SweepContext(**json.loads((study_dir / SWEEP_FILE).read_text())["context"])


def check_inputs(args: argparse.Namespace, study_name: str) -> None:
    """Raise UserError for a bad recipe, override, space file, data source or missing study state (no Ray needed)."""
    if args.resume:
        with cli.user_input(f"--resume {study_name}"):
            saved_context(study_folder(args, study_name))
        return
    with cli.user_input(f"--space {args.space}" if args.space else None):
        config = base_config(args)
        study_spec(args, study_name, num_steps=config.train.num_steps)
    if args.asha and args.reduction_factor <= 1:
        raise cli.UserError(f"--reduction-factor {args.reduction_factor}: must be > 1")
    check_data(config.data)


def run_study(args: argparse.Namespace, study_name: str) -> Path:
    """Run (or resume) one study to the end; returns its folder."""
    study_dir = study_folder(args, study_name)
    if args.resume:
        context = saved_context(study_dir)
        if not tune.Tuner.can_restore(str(study_dir / "tune")):
            raise cli.UserError(f"--resume: no Tune state under {study_dir / 'tune'}")
        MlflowClient(context.tracking_uri).update_run(context.parent_run_id, status="RUNNING")
        tuner = tune.Tuner.restore(str(study_dir / "tune"), trainable=trainable(context), resume_unfinished=True,
                                   resume_errored=True)
    else:
        if (study_dir / SWEEP_FILE).exists():
            raise cli.UserError(f"{study_dir} exists: pass --resume to continue it, or remove it")
        config = fit_to_cluster(base_config(args), cluster_capacity(), explicit=explicit_resources(args))
        space, question = study_spec(args, study_name, num_steps=config.train.num_steps)
        context = new_context(args, study_name, config, space=space, question=question)
        study_dir.mkdir(parents=True, exist_ok=True)
        summary = {"study": study_name, "question": question, "recipe": args.recipe, "scale": args.scale,
                   "paper_study": args.space is None, "swept": list(space), "context": dataclasses.asdict(context)}
        (study_dir / SWEEP_FILE).write_text(json.dumps(summary, indent=2))
        tuner = tune.Tuner(
            trainable(context),
            param_space=space,
            tune_config=tune.TuneConfig(
                metric=args.metric, mode=args.mode, scheduler=scheduler(args),
                num_samples=args.num_samples if args.search == "random" else 1,
                max_concurrent_trials=args.max_concurrent_trials or default_concurrency(config),
            ),
            run_config=tune.RunConfig(
                name="tune", storage_path=str(study_dir), failure_config=trial_failures(config),
                callbacks=[CloseTrialRuns(context), StudyProgress(study_name, total=num_trials(args, space))]),
        )
    results = tuner.fit()
    num_closed = close_interrupted_runs(context)
    # After Ctrl-C Tune returns normally: trials without a closed MLflow run (never started or interrupted) remain.
    num_open = max(len(results) - num_closed, len(results) - results.num_terminated - results.num_errors)
    logger.info("study %s: %d trials, %d closed runs, %d still to run", study_name, len(results), num_closed, num_open)
    status = "KILLED" if num_open else ("FAILED" if results.num_errors else "FINISHED")
    tracking.end_run(tracking.TrackingTarget(uri=context.tracking_uri, run_id=context.parent_run_id), status)
    if num_open:
        print(f"study {study_name} interrupted with {num_open} unfinished trials: rerun with --resume", flush=True)
    elif not args.no_report:  # the table: each trial's best held-out scores beside the input's, and the gain
        print((report.write_report(study_dir) / "table.md").read_text(), flush=True)
    print(f"study {study_name}: {study_dir}", flush=True)
    return study_dir


def finished_study(args: argparse.Namespace, study_name: str) -> Path | None:
    """The folder of a study that --resume finds finished (its parent run FINISHED: every trial done, none
    failed), with its report written; None when it has trials to run. A finished study starts no Ray."""
    study_dir = study_folder(args, study_name)
    context = saved_context(study_dir)
    if MlflowClient(context.tracking_uri).get_run(context.parent_run_id).info.status != "FINISHED":
        return None
    if not args.no_report and not (study_dir / "report" / "table.md").is_file():
        report.write_report(study_dir)
    print(f"study {study_name} is finished: nothing to resume ({study_dir})", flush=True)
    return study_dir


def new_context(args: argparse.Namespace, study_name: str, config: ExperimentConfig, *, space: dict,
                question: str) -> SweepContext:
    """Create the study's parent MLflow run (swept space and base config as params)."""
    if args.mlflow_uri:
        uri, artifact_root = args.mlflow_uri, None
    else:
        uri, artifact_root = tracking.embedded_store(Path(args.storage_path).expanduser().resolve())
    parent = tracking.start_run(
        uri=uri, experiment=args.experiment, artifact_root=artifact_root, run_name=f"study-{study_name}",
        config={"study": study_name, "question": question, "recipe": args.recipe, "space": str(space),
                "search": args.search, "asha": args.asha, "metric": args.metric, "base": config.to_dict()},
        tags={"sweep.study": study_name, "sweep.role": "parent"},
    )
    if parent.run_id is None:
        raise cli.UserError(f"MLflow at {uri} is not usable; a sweep needs it (see the warning above)")
    experiment_id = MlflowClient(uri).get_run(parent.run_id).info.experiment_id
    return SweepContext(study=study_name, base=config.to_dict(),
                        train_storage=str(study_folder(args, study_name) / "train"), tracking_uri=uri,
                        experiment_id=experiment_id, parent_run_id=parent.run_id)


def trainable(context: SweepContext):
    resources = trial_resources(ExperimentConfig.from_dict(context.base))
    return tune.with_resources(tune.with_parameters(train_trial, context=context), resources)


def trial_resources(config: ExperimentConfig) -> dict[str, float]:
    """What the trial's own process books: DRIVER_CPUS, plus its one worker's CPUs when it trains (local mode)."""
    scaling = config.scaling
    return {"CPU": DRIVER_CPUS + (scaling.cpus_per_worker if scaling.local_mode else 0.0)}


def trial_failures(config: ExperimentConfig) -> tune.FailureConfig:
    """train.max_failures: Train restarts failed workers; a trial training in its own process is restarted by Tune
    (train_trial resumes it from its latest checkpoint)."""
    return tune.FailureConfig(max_failures=config.train.max_failures if config.scaling.local_mode else 0)


def num_trials(args: argparse.Namespace, space: dict) -> int:
    """Trials of the study: the grid's size, times --num-samples for a random search."""
    grid = math.prod(len(v["grid_search"]) for v in space.values() if isinstance(v, dict) and "grid_search" in v)
    return grid * (args.num_samples if args.search == "random" else 1)


def scheduler(args: argparse.Namespace) -> ASHAScheduler | None:
    """ASHA over Tune reports (one per validation); max_t = reports per trial."""
    if not args.asha:
        return None
    return ASHAScheduler(time_attr="training_iteration", max_t=args.num_reports, grace_period=args.grace_period,
                         reduction_factor=args.reduction_factor)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Capacity:
    """What the Ray cluster reports: total CPUs and GPUs, and the most CPUs of any one node."""

    cpus: float
    gpus: float
    node_cpus: float


def cluster_capacity() -> Capacity:
    total = ray.cluster_resources()
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    return Capacity(cpus=total.get("CPU", 0.0), gpus=total.get("GPU", 0.0),
                    node_cpus=max((n.get("CPU", 0.0) for n in nodes), default=total.get("CPU", 0.0)))


def trial_cpus(config: ExperimentConfig) -> float:
    """Logical CPUs one trial books: its own process, its Train workers, its Ray Data actors and read task."""
    return (DRIVER_CPUS + READ_TASK_CPUS + config.scaling.num_processes * config.scaling.cpus_per_worker
            + config.data.num_cpu_workers * config.data.cpus_per_worker)


def explicit_resources(args: argparse.Namespace) -> bool:
    """True when the user chose the CPUs of a trial's workers (then they are never resized)."""
    keys = ("data.cpus_per_worker", "scaling.cpus_per_worker")
    return args.cpus_per_trial is not None or any(item.split("=", 1)[0].strip() in keys for item in args.set)


def fit_to_cluster(config: ExperimentConfig, capacity: Capacity, *, explicit: bool) -> ExperimentConfig:
    """The trial's CPU requests, shrunk to fit the cluster when they are the recipe's defaults.

    A trial that cannot be placed would wait forever (a data actor stays `pending: 1 CPU`), so a request the
    cluster cannot hold is either sized down here (defaults) or refused with the flag to change (explicit).
    A shrunk CPU trial still computes with the recipe's torch threads, so the cluster's CPUs are shared among as
    many trials at once as it has cores for those threads: two 1-thread debug trials on 2 CPUs, not one.
    """
    scaling, data = config.scaling, config.data
    if scaling.use_gpu and capacity.gpus < scaling.num_workers:
        raise cli.UserError(f"a trial needs {scaling.num_workers} GPUs but the cluster has {capacity.gpus:g}: "
                            f"lower --gpus-per-trial")
    need = trial_cpus(config)
    largest = max(scaling.cpus_per_worker, data.cpus_per_worker)
    if need <= capacity.cpus and largest <= capacity.node_cpus:
        return config
    what = (f"{DRIVER_CPUS:g} trial + {READ_TASK_CPUS:g} read + {scaling.num_processes} x "
            f"{scaling.cpus_per_worker:g} Train + {data.num_cpu_workers} x {data.cpus_per_worker:g} data")
    fixed = DRIVER_CPUS + READ_TASK_CPUS
    at_once = 1 if scaling.use_gpu else max(1, int(capacity.cpus // (scaling.num_processes * scaling.threads)))
    share = capacity.cpus / at_once
    if explicit or share <= fixed + 0.1:
        raise cli.UserError(f"a trial needs {need:g} CPUs ({what}) but the cluster has {capacity.cpus:g} "
                            f"(at most {capacity.node_cpus:g} on one node): lower --cpus-per-trial or "
                            f"--set data.cpus_per_worker=X, or --set data.num_cpu_workers=N")
    factor = min((share - fixed) / (need - fixed), capacity.node_cpus / largest)

    def shrink(cpus: float) -> float:  # down to a hundredth, so rounding never tips the sum over
        return max(0.01, math.floor(cpus * factor * 100) / 100)

    fitted = dataclasses.replace(
        config, scaling=dataclasses.replace(scaling, cpus_per_worker=shrink(scaling.cpus_per_worker),
                                            torch_threads=scaling.threads),  # booked less, computes as before
        data=dataclasses.replace(data, cpus_per_worker=shrink(data.cpus_per_worker)))
    logger.info("a trial needs %g CPUs (%s); the cluster has %g: sized to %g CPU per Train worker and %g per data "
                "actor, %d trial%s at once (set --cpus-per-trial / data.cpus_per_worker to choose)", need, what,
                capacity.cpus, fitted.scaling.cpus_per_worker, fitted.data.cpus_per_worker, at_once,
                "s" if at_once > 1 else "")
    return fitted


def default_concurrency(config: ExperimentConfig) -> int:
    """Trials that fit the cluster at once: by GPUs for GPU trials, else by CPUs (Train + data workers)."""
    resources = ray.cluster_resources()
    if config.scaling.use_gpu:
        return max(1, int(resources.get("GPU", 0) // config.scaling.num_workers))
    return max(1, int(resources.get("CPU", 1) // trial_cpus(config)))


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    names = [args.name or Path(args.space).stem] if args.space else (list(STUDIES) if args.study == "all" else [args.study])
    for name in names:  # every input problem is found before Ray starts
        check_inputs(for_study(args, name), name)
    done = {name: finished_study(args, name) for name in names} if args.resume else {}
    todo, ran = [name for name in names if done.get(name) is None], {}
    if todo:
        init = {"address": args.ray_address} | ({"num_cpus": args.num_cpus} if args.num_cpus else {})
        if env := tracking.worker_env():  # the trials log to a tracking server with the driver's credentials
            init["runtime_env"] = {"env_vars": env}
        ray.init(**init)
        try:
            ran = {name: run_study(for_study(args, name), name) for name in todo}
        finally:
            ray.shutdown()
    study_dirs = [done.get(name) or ran[name] for name in names]
    if len(study_dirs) > 1 and not args.no_report and all((d / "report").is_dir() for d in study_dirs):
        results = study_dirs[0].parent / f"results_{args.scale or 'recipe'}.md"
        heading = f"Refusion sweeps at scale {args.scale}" if args.scale else "Refusion sweeps"
        print(f"all studies: {report.write_results(study_dirs, results, heading=heading)}", flush=True)


if __name__ == "__main__":
    cli.run(main, prog="tuning/sweep_refusion.py")
