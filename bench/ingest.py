"""Ingest benchmark: samples/s the Ray Data pipeline delivers vs samples/s the trainer consumes, and the
data-wait fraction of a training loop fed by the pipeline (goal: below 5% of step time).

    .venv/bin/python -m bench.ingest --recipe debug --recipe refusion_deblurring --steps 20

Paper recipes are run on the embedded sample photos with a synthetic degradation of the same kind,
since their datasets are not shipped. One process, one worker: the numbers are per trainer.
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray
import ray.data
import torch

from degradations import MotionBlurConfig
from pipelines.batching import to_model
from pipelines.checkpoints import build_method
from pipelines.data import build_train_dataset
from pipelines.optim import build_optimizer, build_scheduler
from pipelines.recipes import RECIPES, ExperimentConfig
from pipelines.samples import SampleImages


def bench_config(name: str, *, num_cpu_workers: int) -> ExperimentConfig:
    """The recipe with sample photos as data (motion blur stands in for paired deblurring/deshadow data)."""
    config = RECIPES[name]()
    data = config.data
    if not isinstance(data.source, SampleImages):
        degradation = data.degradation if data.degradation is not None else MotionBlurConfig()
        data = dataclasses.replace(data, source=SampleImages(), degradation=degradation, crop_margin=0)
    return dataclasses.replace(config, data=dataclasses.replace(data, num_cpu_workers=num_cpu_workers))


def delivered(config: ExperimentConfig, num_batches: int) -> float:
    """Samples/s out of iter_torch_batches with no training (first batch excluded: pipeline start-up)."""
    batch_size = config.train.batch_size
    ds = build_train_dataset(config.data, num_samples=(num_batches + 1) * batch_size)
    batches = iter(ds.iter_torch_batches(batch_size=batch_size, drop_last=True, prefetch_batches=2))
    next(batches)
    t0 = time.perf_counter()
    for _ in range(num_batches):
        next(batches)
    return num_batches * batch_size / (time.perf_counter() - t0)


def train_step_fn(config: ExperimentConfig, device: torch.device):
    method = build_method(config.method)
    net = method.build().to(device)
    optimizer = build_optimizer(config.optim, method.param_groups(net))
    scheduler = build_scheduler(config.optim, optimizer, num_steps=config.train.num_steps)
    generator = torch.Generator(device=device).manual_seed(0)

    def step(hq_BHWC: torch.Tensor, lq_BHWC: torch.Tensor, i: int) -> None:
        hq, lq = to_model(hq_BHWC.to(device)), to_model(lq_BHWC.to(device))
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, _ = method.loss(net, hq, lq, step=i, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def consumed(config: ExperimentConfig, num_steps: int, device: torch.device) -> float:
    """Samples/s of training steps on one in-memory batch (no data loading at all)."""
    p, q = config.data.patch_size, config.data.patch_size // config.data.scale
    hq = torch.randint(0, 256, (config.train.batch_size, p, p, 3), dtype=torch.uint8)
    lq = torch.randint(0, 256, (config.train.batch_size, q, q, 3), dtype=torch.uint8)
    step = train_step_fn(config, device)
    step(hq, lq, 0)  # warm-up
    t0 = time.perf_counter()
    for i in range(num_steps):
        step(hq, lq, i + 1)
    return num_steps * config.train.batch_size / (time.perf_counter() - t0)


def fed(config: ExperimentConfig, num_steps: int, device: torch.device) -> tuple[float, float]:
    """(samples/s, data-wait fraction) of training steps fed by the Ray Data pipeline, after one warm-up step."""
    batch_size = config.train.batch_size
    ds = build_train_dataset(config.data, num_samples=(num_steps + 1) * batch_size)
    batches = iter(ds.iter_torch_batches(batch_size=batch_size, drop_last=True,
                                         prefetch_batches=config.train.prefetch_batches))
    step = train_step_fn(config, device)
    batch = next(batches)
    step(batch["hq"], batch["lq"], 0)
    wait = 0.0
    t0 = time.perf_counter()
    for i in range(num_steps):
        t_wait = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - t_wait
        step(batch["hq"], batch["lq"], i + 1)
    total = time.perf_counter() - t0
    return num_steps * batch_size / total, wait / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", action="append", help="recipes to measure (default: debug, refusion_deblurring)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--data-workers", type=int, default=1, help="Ray Data actors making pairs")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of the trainer")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ray.init(address="local", num_cpus=max(4, args.data_workers + 2), include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    results = []
    try:
        for name in args.recipe or ["debug", "refusion_deblurring"]:
            config = bench_config(name, num_cpu_workers=args.data_workers)
            row = {"recipe": name, "device": str(device), "batch": config.train.batch_size,
                   "patch": config.data.patch_size, "data_workers": args.data_workers,
                   "delivered_samples_per_s": delivered(config, args.steps),
                   "consumed_samples_per_s": consumed(config, args.steps, device)}
            row["fed_samples_per_s"], row["data_wait_frac"] = fed(config, args.steps, device)
            results.append(row)
            print(json.dumps(row), flush=True)
    finally:
        ray.shutdown()
    print(f"{'recipe':<22}{'delivered/s':>13}{'consumed/s':>12}{'fed/s':>9}{'data wait':>11}")
    for r in results:
        print(f"{r['recipe']:<22}{r['delivered_samples_per_s']:>13.1f}{r['consumed_samples_per_s']:>12.1f}"
              f"{r['fed_samples_per_s']:>9.1f}{100 * r['data_wait_frac']:>10.1f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
