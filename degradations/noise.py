"""Additive Gaussian and Poisson (shot) noise, colour or gray, as in Real-ESRGAN (arXiv 2107.10833,
Sec. 3.1). Pure functions over HxWx3 float32 RGB in [0, 1]; outputs are clipped to [0, 1].
"""

import math

import numpy as np

# torchvision rgb_to_grayscale weights, used by the reference for gray Poisson noise
_GRAY = np.array([0.2989, 0.587, 0.114], dtype=np.float32)


def add_gaussian_noise(img: np.ndarray, *, sigma: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """img + sigma/255 * N(0, 1), one field shared by R, G, B when gray; clipped to [0, 1].

    Unlike the batched reference, each gray sample gets its own noise field.
    """
    shape = img.shape[:2] + ((1,) if gray else (img.shape[2],))
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise *= np.float32(sigma / 255.0)
    return np.clip(img + noise, 0.0, 1.0)


def poisson_noise(img: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean shot noise Poisson(x_q v)/v - x_q for x_q = img on the 8-bit grid; float32.

    v = 2^ceil(log2(number of distinct 8-bit values)), i.e. 256 for most natural images.
    """
    levels = np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    num_values = int(np.count_nonzero(np.bincount(levels.ravel(), minlength=256)))
    vals = 2.0 ** math.ceil(math.log2(max(num_values, 1)))
    x_q = np.arange(256, dtype=np.float64) / 255.0  # level -> value lookup tables
    counts = rng.poisson((x_q * vals)[levels])
    # counts / v is exact in float32 (v is a power of two)
    return counts.astype(np.float32) * np.float32(1.0 / vals) - x_q.astype(np.float32)[levels]


def add_poisson_noise(img: np.ndarray, *, scale: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """img + scale * shot noise, computed on the luma and shared by R, G, B when gray; clipped to [0, 1]."""
    if gray:
        luma = (img @ _GRAY)[..., None]
        noise = poisson_noise(luma, rng=rng)
    else:
        noise = poisson_noise(img, rng=rng)
    noise *= np.float32(scale)
    return np.clip(img + noise, 0.0, 1.0)
