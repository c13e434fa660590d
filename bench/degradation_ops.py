"""Single-core throughput of the Real-ESRGAN degradation (arXiv 2107.10833) on 288x288 x4 crops
(256 + 32 margin), with a per-op breakdown. Usage: python -m bench.degradation_ops [--num 200]
Times are process CPU time (cv2 and BLAS pinned to one thread), so they read as per-core cost even
when other processes share the machine; wall time is printed too.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import time
from collections import defaultdict

import cv2
import numpy as np

from degradations import RealESRGANConfig, degrade, realesrgan
from degradations.jpeg import jpeg_compress
from degradations.kernels import blur
from degradations.noise import add_gaussian_noise, add_poisson_noise
from degradations.quantize import quantize_8bit
from degradations.resize import resize
from degradations.sharpen import usm_sharpen


def synthetic_photo(size: int, rng: np.random.Generator) -> np.ndarray:
    """A photo-like test image: multi-scale smooth noise plus hard-edged shapes, float32 RGB [0, 1]."""
    img = np.zeros((size, size, 3), np.float32)
    for cells in (4, 16, 64):
        field = rng.random((cells, cells, 3), dtype=np.float32)
        img += cv2.resize(field, (size, size), interpolation=cv2.INTER_CUBIC) / 3
    for _ in range(12):
        x, y, r = rng.integers(size, size=3)
        cv2.circle(img, (int(x), int(y)), int(r) // 4 + 2, rng.random(3).tolist(), -1)
    return np.clip(img, 0, 1)


def timed_apply(hq: np.ndarray, params: realesrgan.RealESRGANParams, times: dict[str, float]) -> np.ndarray:
    """realesrgan.apply written out step by step with a timer per op (same calls, same result)."""
    def tick(name: str, fn, *args, **kwargs):
        t = time.process_time()
        out = fn(*args, **kwargs)
        times[name] += time.process_time() - t
        return out

    img = tick("usm", usm_sharpen, hq) if params.usm_gt else hq
    for i, stage in enumerate((params.stage1, params.stage2), start=1):
        if stage.kernel is not None:
            img = tick(f"blur{i}", blur, img, kernel=stage.kernel)
        img = tick(f"resize{i}", resize, img, size_hw=stage.size_hw, mode=stage.resize_mode)
        rng = np.random.default_rng(stage.noise_seed)
        add = add_gaussian_noise if stage.noise == "gaussian" else add_poisson_noise
        kw = {"sigma": stage.noise_level} if stage.noise == "gaussian" else {"scale": stage.noise_level}
        img = tick(f"noise{i}_{stage.noise}", add, img, gray=stage.noise_gray, rng=rng, **kw)
        if i == 1:
            img = tick("jpeg1", jpeg_compress, img, quality=params.jpeg1_quality)
    size = (params.hq_size[0] // params.scale, params.hq_size[1] // params.scale)

    def resize_sinc(x):
        x = tick("final_resize", resize, x, size_hw=size, mode=params.final_mode)
        return tick("final_sinc", blur, x, kernel=params.final_sinc)

    if params.final_order == "resize_sinc_jpeg":
        img = tick("final_jpeg", jpeg_compress, resize_sinc(img), quality=params.final_jpeg_quality)
    else:
        img = resize_sinc(tick("final_jpeg", jpeg_compress, img, quality=params.final_jpeg_quality))
    return tick("quantize", quantize_8bit, img)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num", type=int, default=200)
    parser.add_argument("--size", type=int, default=288)
    parser.add_argument("--preset", default="x4plus", choices=("x4plus", "mild"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    config = RealESRGANConfig.preset(args.preset, scale=4)
    rng = np.random.default_rng(0)
    images = [synthetic_photo(args.size, rng) for _ in range(8)]

    for i in range(10):  # warm-up
        degrade(images[i % 8], config, np.random.default_rng([0, i]))
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(args.num):
        degrade(images[i % 8], config, np.random.default_rng([1, i]))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"degrade {args.size}x{args.size} x4 {args.preset}: {args.num / cpu:.1f} pairs/s/core "
          f"({1e3 * cpu / args.num:.2f} ms CPU/pair; wall {1e3 * wall / args.num:.2f} ms/pair)")

    times: dict[str, float] = defaultdict(float)
    t_sample = 0.0
    for i in range(args.num):
        t = time.process_time()
        params = realesrgan.sample_params(config, np.random.default_rng([1, i]), images[i % 8].shape)
        t_sample += time.process_time() - t
        timed_apply(images[i % 8], params, times)
    times["sample_params"] = t_sample
    print("per-op mean CPU ms/pair (averaged over all pairs, incl. ones that skip the op):")
    for name, t in sorted(times.items(), key=lambda kv: -kv[1]):
        print(f"  {name:22s} {1e3 * t / args.num:7.3f}")


if __name__ == "__main__":
    main()
