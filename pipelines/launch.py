"""The CLI of pipelines/train.py: pick a recipe and overrides, build the Ray Data pipeline, run a TorchTrainer.

The driver owns the MLflow run (created here, ended FINISHED/FAILED/KILLED here) and passes its id to rank 0.
It also decides where the data stream starts: for --resume it reads the latest checkpoint's step first.
"""

import argparse
import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pipelines import cli, tracking
from pipelines.checkpoints import (
    VALIDATION_IMAGE,
    CheckpointError,
    find_latest_checkpoint,
    list_checkpoints,
    load_latest_checkpoint,
    run_uri,
)
from pipelines.data import check_data
from pipelines.recipes import METHOD_KINDS, RECIPES, ExperimentConfig, apply_overrides
from pipelines.sources import FolderSource

if TYPE_CHECKING:
    from ray.train.torch import TorchTrainer

logger = logging.getLogger(__name__)

TRACKING_FILE = "mlflow_run.json"  # in the run dir: lets --resume continue the same MLflow run
# Data actors start in seconds (minutes on a loaded 2-core machine); longer means they cannot be placed.
DATA_ACTOR_START_TIMEOUT_S = 300


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.Parser(
        prog="pipelines/train.py",
        description="Train a restoration method on Ray Train. With no arguments: the demo recipe, local Ray, "
        "local MLflow store under runs/.",
    )
    parser.add_argument("--method", choices=sorted(METHOD_KINDS), help="method family; --recipe X means <method>_X")
    parser.add_argument("--recipe", help=f"one of {sorted(RECIPES)} (default demo: Refusion "
                        "denoising the bundled photos, about 2 minutes on a CPU)")
    parser.add_argument("--config", action="append", default=[], help="YAML/JSON file merged into the recipe")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set optim.lr=1e-4 --set train.num_steps=1000")
    parser.add_argument("--data", action="append", help="train on HQ images in this folder/glob (synthetic LQ)")
    parser.add_argument("--sd-path", help="OSEDiff: local SD 2.1-base folder (diffusers layout) or hub id "
                        "(same as --set method.sd_path=...)")
    parser.add_argument("--name", type=cli.name, help="run name (default: <recipe>-<UTC timestamp>)")
    parser.add_argument("--resume", metavar="NAME", type=cli.name, help="continue run NAME from its latest checkpoint")
    parser.add_argument("--storage-path", help="where runs live (local dir or s3://...); default $RESTORATION_STORAGE, "
                        "else runs/ (~/restoration/runs for a `ray job submit` driver)")
    parser.add_argument("--num-workers", type=cli.non_negative_int, help="Ray Train workers; 0 = local mode (one process)")
    parser.add_argument("--use-gpu", action="store_true", default=None, help="one GPU per worker, NCCL, bf16 AMP")
    parser.add_argument("--mlflow-uri", default=os.environ.get("MLFLOW_TRACKING_URI") or None,
                        help="tracking server, e.g. http://head:5000 (default $MLFLOW_TRACKING_URI, as the clusters "
                             "set it; else the embedded SQLite store)")
    parser.add_argument("--experiment", default="restoration", type=cli.name, help="MLflow experiment name")
    parser.add_argument("--smoke-test", action="store_true", help="a short run through every stage (about a minute)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> tuple[ExperimentConfig, tuple[str, int] | None]:
    """The run's config and, for --resume, (checkpoint uri, step) of the checkpoint it continues from."""
    sets = list(args.set)
    for flag, key in ((args.num_workers, "scaling.num_workers"), (args.use_gpu, "scaling.use_gpu"),
                      (args.storage_path, "storage_path"), (args.sd_path, "method.sd_path")):
        if flag is not None:
            sets.append(f"{key}={json.dumps(flag)}")
    if args.resume:
        storage_path = args.storage_path or cli.default_storage_path()
        candidates = list_checkpoints(_absolute(storage_path), args.resume)
        if not candidates:
            raise cli.UserError(f"--resume: no checkpoint under {run_uri(storage_path, args.resume)}")
        try:  # newest first; one that does not load (a cut-short copy) is skipped with a warning
            uri, step, _, saved_config = load_latest_checkpoint(candidates)
        except CheckpointError as error:
            raise cli.UserError(f"--resume {args.resume}: {error}") from error
        base = ExperimentConfig.from_dict(saved_config)
        check_resume_flags(args, base, sets=sets)
        return apply_overrides(base, files=args.config, sets=sets), (uri, step)
    config = apply_overrides(recipe_config(args), files=args.config, sets=sets)
    name = args.name or f"{config.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    storage_path = config.storage_path
    # No flag, --set or --config chose it:
    if storage_path == ExperimentConfig.__dataclass_fields__["storage_path"].default:
        storage_path = cli.default_storage_path()
    return dataclasses.replace(config, name=name, storage_path=storage_path), None


def recipe_config(args: argparse.Namespace) -> ExperimentConfig:
    """The config that --method/--recipe/--smoke-test/--data pick, before --config and --set."""
    recipe = args.recipe or "demo"
    if args.method is not None and not recipe.startswith(args.method) and f"{args.method}_{recipe}" in RECIPES:
        recipe = f"{args.method}_{recipe}"
    if recipe not in RECIPES:
        raise cli.UserError(f"unknown recipe {recipe!r}; choose from {sorted(RECIPES)}")
    config = RECIPES[recipe]()
    if args.method is not None and config.method.kind != args.method:
        raise cli.UserError(f"recipe {recipe!r} trains {config.method.kind!r}, not {args.method!r}")
    if args.smoke_test:
        config = smoke(config)
    if args.data:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, source=FolderSource(paths=tuple(args.data))))
    return config


def check_resume_flags(args: argparse.Namespace, stored: ExperimentConfig, *, sets: list[str]) -> None:
    """--resume continues the stored config (changed only by --set/--config). Flags that pick a config
    (--method, --recipe, --smoke-test, --data) may be repeated from the original command, but must give the
    stored config (with the same --set/--config); --name must be the run's. Anything else is refused."""
    wrong = []
    if args.method is not None and args.method != stored.method.kind:
        wrong.append(f"--method {args.method} but the run trains {stored.method.kind}")
    elif args.data and args.recipe is None and not args.smoke_test:
        if stored.data.source != FolderSource(paths=tuple(args.data)):
            wrong.append(f"--data {' '.join(args.data)} but the run trains on {stored.data.source}")
    elif args.recipe is not None or args.smoke_test or args.data:
        picked = tracking.flatten(apply_overrides(recipe_config(args), files=args.config, sets=sets).to_dict())
        kept = tracking.flatten(apply_overrides(stored, files=args.config, sets=sets).to_dict())
        differ = [k for k, v in picked.items() if k not in ("name", "storage_path") and kept.get(k) != v]
        if differ:
            flags = " ".join(f for f, given in (("--recipe " + str(args.recipe), args.recipe), ("--smoke-test", args.smoke_test),
                                                ("--data ...", args.data)) if given)
            wrong.append(f"{flags} gives another config than the run's ({', '.join(differ[:4])}"
                         f"{' ...' if len(differ) > 4 else ''} differ; change fields with --set)")
    if args.name is not None and args.name != args.resume:
        wrong.append(f"--name {args.name} but --resume names the run {args.resume}")
    if wrong:
        raise cli.UserError(f"--resume {args.resume} continues the stored run: " + "; ".join(wrong))


def smoke(config: ExperimentConfig) -> ExperimentConfig:
    """The same recipe, shortened: a few steps, one validation image, two checkpoints, CPU unless a GPU exists."""
    train = dataclasses.replace(config.train, num_steps=8, batch_size=2, val_every=4, ckpt_every=4, log_every=2,
                                num_val_images=1)
    use_gpu = config.scaling.use_gpu and torch.cuda.is_available()
    scaling = dataclasses.replace(config.scaling, use_gpu=use_gpu, num_workers=min(config.scaling.num_workers, 1))
    return dataclasses.replace(config, train=train, scaling=scaling, name=f"{config.name}_smoke")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    with cli.user_input():
        config, resume = resolve_config(args)
    if args.print_config:
        print(config.to_json())
        return
    run_training(config, resume=resume, mlflow_uri=args.mlflow_uri, experiment=args.experiment)


@dataclasses.dataclass(frozen=True, slots=True)
class TrainingResult:
    """What a finished run left: its newest checkpoint (uri, step), the metrics of its last report, its MLflow run."""

    checkpoint: tuple[str, int] | None
    metrics: dict
    target: tracking.TrackingTarget


def run_training(config: ExperimentConfig, *, resume: tuple[str, int] | None = None, mlflow_uri: str | None = None,
                 experiment: str = "restoration") -> TrainingResult:
    """Train `config` on Ray Train (joining RAY_ADDRESS, an initialised Ray, or a local one it starts), tracked
    in MLflow; prints the end-of-run summary. `resume` is (checkpoint uri, step), as `resolve_config` returns."""
    import ray  # Ray, Ray Data and Ray Train load here, so that --help and --print-config start quickly
    import ray.data

    storage_path = _absolute(config.storage_path)
    run = run_uri(storage_path, config.name)
    logger.info("run %s: checkpoints and MLflow store under %s", config.name, storage_path)
    logger.log(*global_batch_line(config))
    if resume is None and find_latest_checkpoint(storage_path, config.name) is not None:
        raise cli.UserError(f"{run} already has checkpoints: use --resume {config.name} or another --name")
    start_step = 0 if resume is None else resume[1]
    if start_step >= config.train.num_steps:
        raise cli.UserError(f"checkpoint is at step {start_step} >= train.num_steps {config.train.num_steps}; "
                         f"raise it with --set train.num_steps=N")

    check_data(config.data)  # before Ray and MLflow: a data problem leaves no FAILED run behind
    target = start_tracking(config, mlflow_uri=mlflow_uri, experiment=experiment, resuming=resume is not None,
                            storage_path=storage_path, run=run)
    started = time.perf_counter()
    owns_ray = not ray.is_initialized()
    try:
        with tracking.run_status(target):  # FINISHED, FAILED, or KILLED on Ctrl-C / SIGTERM (ray job stop)
            if owns_ray:
                init_ray(config)
            result = build_trainer(config, target=target, resume=resume, storage_path=storage_path, run=run).fit()
            final = find_latest_checkpoint(storage_path, config.name)
            if final is not None and "://" not in final[0]:
                tracking.log_artifacts(target, final[0], "checkpoint")
    finally:
        if owns_ray:
            ray.shutdown()
    metrics = dict(result.metrics or {})
    summary(config, run=run, final=final, target=target, seconds=time.perf_counter() - started, metrics=metrics)
    return TrainingResult(checkpoint=final, metrics=metrics, target=target)


def init_ray(config: ExperimentConfig) -> None:
    """Join RAY_ADDRESS (set by `ray job submit`) or start a local Ray with enough logical CPUs for the run.

    Logical CPUs may exceed the cores: a trainer that books every CPU would starve the Ray Data actors.
    """
    import ray

    runtime_env = {"env_vars": env} if (env := tracking.worker_env()) else None  # rank 0 logs with them
    if "RAY_ADDRESS" in os.environ:
        ray.init(runtime_env=runtime_env)
        return
    needed = (config.scaling.num_workers * config.scaling.cpus_per_worker
              + config.data.num_cpu_workers * config.data.cpus_per_worker + 1)
    # address="local": never join another cluster that happens to run on this machine.
    ray.init(address="local", num_cpus=max(os.cpu_count() or 1, math.ceil(needed)), runtime_env=runtime_env)


def build_trainer(config: ExperimentConfig, *, target: tracking.TrackingTarget, resume: tuple[str, int] | None,
                  storage_path: str, run: str, in_tune: bool = False) -> "TorchTrainer":
    """TorchTrainer over the Ray Data stream; the stream covers exactly the steps still to run.

    `in_tune`: fit inside a Tune trial, which then sees rank 0's reports. With workers, TuneReportCallback
    forwards them. In local mode the loop runs in the trial's own process, where Ray refuses the ray.train
    session calls (ray-project/ray#49454): it reports to Tune itself (`in_tune_trial`).
    """
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    from pipelines.data import build_train_dataset
    from pipelines.data import execution_options as data_execution_options
    from pipelines.loop import train_loop_per_worker

    start_step = 0 if resume is None else resume[1]
    # The dataset keeps a copy of the context it was made under: these hold in every process that streams it.
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the training log line says enough; in a sweep, bars flood the output
    # A data actor that cannot be placed (its CPUs booked by the Train workers) fails the run instead of waiting.
    context.wait_for_min_actors_s = DATA_ACTOR_START_TIMEOUT_S
    dataset = build_train_dataset(
        config.data,
        num_samples=(config.train.num_steps - start_step) * config.global_batch_size,
        start_index=start_step * config.global_batch_size,
    )
    resources = {"CPU": config.scaling.cpus_per_worker} | ({"GPU": 1} if config.scaling.use_gpu else {})
    local_mode = config.scaling.local_mode
    callbacks = None
    if in_tune and not local_mode:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks = [TuneReportCallback()]
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "run": config.to_dict(),
            "tracking": {"uri": target.uri, "run_id": target.run_id},
            "resume_from": None if resume is None else resume[0],
            "data_start_step": start_step,
            "local_mode": local_mode,
            "in_tune_trial": in_tune and local_mode,
            "run_uri": run,
        },
        scaling_config=ray.train.ScalingConfig(num_workers=config.scaling.num_workers,
                                               use_gpu=config.scaling.use_gpu, resources_per_worker=resources,
                                               label_selector=config.scaling.label_selector),
        run_config=ray.train.RunConfig(
            name=config.name,
            storage_path=storage_path,
            failure_config=ray.train.FailureConfig(max_failures=config.train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.train.keep_last),
            callbacks=callbacks,
        ),
        datasets={"train": dataset},
        # Train replaces the dataset's execution options; keep preserve_order so the stream is reproducible. One
        # worker reads the whole stream itself: no split, so no coordinator actor to start (a process, ~3 s).
        dataset_config=ray.train.DataConfig(execution_options=data_execution_options(),
                                            datasets_to_split="all" if config.scaling.num_workers > 1 else []),
    )


def global_batch_line(config: ExperimentConfig) -> tuple[int, str]:
    """(log level, line) stating the global batch, a warning when it is not the official run's."""
    workers = config.scaling.num_processes
    accum = config.grad_accum_steps
    line = (f"global batch {config.global_batch_size} (train.batch_size {config.train.batch_size} x {workers} "
            f"worker{'s' if workers > 1 else ''}"
            + (f" x {accum} accumulated micro-batches" if accum > 1 else "") + ")")
    official = config.train.official_global_batch
    if official is None or official == config.global_batch_size:
        return logging.INFO, line + ("" if official is None else ", as the official run")
    return logging.WARNING, (f"{line} differs from the official run's {official}: results may differ; "
                             "match it with --num-workers, --set train.batch_size=N or --set train.grad_accum=N")


def start_tracking(config: ExperimentConfig, *, mlflow_uri: str | None, experiment: str, resuming: bool,
                   storage_path: str, run: str) -> tracking.TrackingTarget:
    """Create (or, for --resume, reopen) the MLflow run; its id is stored in the run dir."""
    import pyarrow.fs
    import ray

    if mlflow_uri:
        uri, artifact_root = mlflow_uri, None
    else:
        local_root = storage_path if "://" not in storage_path else str(Path("runs").resolve())
        uri, artifact_root = tracking.embedded_store(local_root)
    fs, run_path = pyarrow.fs.FileSystem.from_uri(run)
    saved = fs.get_file_info(f"{run_path}/{TRACKING_FILE}")
    resume_run_id = None
    if resuming and saved.type == pyarrow.fs.FileType.File:
        with fs.open_input_stream(saved.path) as f:
            stored = json.loads(f.read().decode())
        resume_run_id = stored["run_id"] if stored["uri"] == uri else None
    tags = {"ray.run": run, "method": config.method.kind, "ray.version": ray.__version__}
    target = tracking.start_run(uri=uri, experiment=experiment, artifact_root=artifact_root,
                                run_name=config.name, config=config.to_dict(), tags=tags,
                                resume_run_id=resume_run_id)
    if target.run_id is not None:
        fs.create_dir(run_path, recursive=True)
        with fs.open_output_stream(f"{run_path}/{TRACKING_FILE}") as f:
            f.write(json.dumps({"uri": target.uri, "run_id": target.run_id}).encode())
    return target


def summary(config: ExperimentConfig, *, run: str, final: tuple[str, int] | None, target: tracking.TrackingTarget,
            seconds: float, metrics: dict) -> None:
    """The end-of-run lines: checkpoint, held-out scores of the input beside the output's, grid image, MLflow."""
    from pipelines.evaluate import format_scores

    lines = [
        f"run {config.name} finished in {seconds:.0f} s",
        f"  checkpoint: {final[0] if final else 'none'}" + (f" (step {final[1]})" if final else ""),
    ]
    if "val/psnr" in metrics:
        scores = {k.removeprefix("val/"): v for k, v in metrics.items() if k.startswith("val/")}
        lines.append(f"  held-out:   {format_scores(scores)}")
    if final is not None and "://" not in final[0] and (Path(final[0]) / VALIDATION_IMAGE).is_file():
        lines.append(f"  images:     {Path(final[0]) / VALIDATION_IMAGE} (held-out LQ | output | GT)")
    lines += [
        f"  mlflow:     {tracking.run_url(target) or 'tracking was off'}",
        (f"  resume:     python pipelines/train.py --resume {config.name} "
         f"--storage-path {_absolute(config.storage_path)} --set train.num_steps=N"),
    ]
    print("\n".join(lines), flush=True)


def _absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).expanduser().resolve())
