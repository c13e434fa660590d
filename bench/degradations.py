"""Benchmark: Real-ESRGAN x4 training pairs per second per CPU core at P=256 (a (256 + margin)^2 crop is
degraded), in one process with one OpenCV thread and through the Ray Data graph with 2 workers.

    .venv/bin/python -m bench.degradations [--num-pairs 200] [--workers 2]

(Run it as a module: as a script, this file would shadow the `degradations` package.)

Rates are per wall-clock second; the single-process rate is also given per CPU second (robust to a
busy machine). Images are the embedded sample photographs.
"""

import argparse
import os
import time

import cv2
import numpy as np

from degradations import RealESRGANConfig, degrade
from degradations.crop import random_crop
from pipelines.data import DataConfig, build_train_dataset, make_pair
from pipelines.decode import DecodeCache, decode_image
from pipelines.samples import SampleImages

FULL = "full pair, decode cache (as the workers)"


def _timed(fn, num: int) -> tuple[float, float]:
    """(pairs per wall second, pairs per CPU second of this process) for num calls of fn(i)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(num):
        fn(i)
    return num / (time.perf_counter() - wall), num / (time.process_time() - cpu)


def bench_single(config: DataConfig, num_pairs: int) -> dict[str, tuple[float, float]]:
    cv2.setNumThreads(1)
    samples = config.source.manifest().samples
    images = [decode_image(s.hq, max_pixels=config.max_image_pixels) for s in samples]
    size = config.patch_size + config.crop_margin

    def degrade_only(i: int) -> None:
        rng = np.random.default_rng([config.seed, 0, i])
        crop = random_crop(images[i % len(images)], size, rng, multiple_of=config.scale)
        degrade(crop, config.degradation, rng)

    cache = DecodeCache(config.decode_cache_mb * 2**20)  # as in each Ray worker

    def full_pair(i: int, cache: DecodeCache | None = None) -> None:
        make_pair(samples[i % len(samples)], epoch=i // len(samples), config=config, cache=cache)

    _timed(degrade_only, 3)  # warm-up (imports)
    return {"degrade only (in-memory crop)": _timed(degrade_only, num_pairs),
            "full pair, decoding every time": _timed(full_pair, num_pairs),
            FULL: _timed(lambda i: full_pair(i, cache), num_pairs)}


def bench_ray(config: DataConfig, num_pairs: int) -> tuple[float, float]:
    """(steady pairs/s, pairs/s including start-up) through build_train_dataset."""
    import ray
    import ray.data

    # One CPU more than the actor pool books: the read tasks feeding it need some too (READ_TASK_CPUS; with
    # none spare the pipeline starves and hangs).
    ray.init(address="local", num_cpus=config.num_cpu_workers + 1, include_dashboard=False, log_to_driver=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        start = time.perf_counter()
        ds = build_train_dataset(config, num_samples=num_pairs)
        stamps = [(0, start)]  # (rows so far, time)
        for batch in ds.iter_batches(batch_size=config.rows_per_task, batch_format="numpy"):
            stamps.append((stamps[-1][0] + len(batch["index"]), time.perf_counter()))
    finally:
        ray.shutdown()
    # Steady rate over the last three quarters: the workers run ahead of the consumer at first, so
    # counting from the first row would flatter them.
    rows, t = stamps[-1]
    rows_q, t_q = next(s for s in stamps if s[0] >= rows // 4)
    return (rows - rows_q) / (t - t_q), rows / (t - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-pairs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--margin", type=int, default=32)
    args = parser.parse_args()
    config = DataConfig(source=SampleImages(), degradation=RealESRGANConfig(scale=4), patch_size=256,
                        crop_margin=args.margin, num_cpu_workers=args.workers, cpus_per_worker=1.0, rows_per_task=8)
    print(f"P=256, x4 Real-ESRGAN (x4plus defaults, usm_gt), {256 + args.margin}^2 crops degraded, "
          f"{args.num_pairs} pairs; load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    single = bench_single(config, args.num_pairs)
    for name, (wall, cpu) in single.items():
        print(f"single process, {name:43s} {wall:6.1f} pairs/s wall, {cpu:6.1f} pairs per CPU-second")
    steady, overall = bench_ray(config, args.num_pairs)
    per_core = steady / args.workers
    print(f"Ray Data, {args.workers} workers (full pair): {steady:6.1f} pairs/s steady ({per_core:.1f} per core), "
          f"{overall:.1f} pairs/s including start-up")
    # Against the CPU-second rate: the wall rate of one process suffers most from other load.
    print(f"ratio Ray per core / single process ({FULL}, per CPU-second): {per_core / single[FULL][1]:.2f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
