"""Camera-shake motion blur for deblurring tasks: a random-walk camera trajectory with momentum
(in the spirit of Boracchi & Foi, IEEE TIP 2012) rasterised with bilinear subpixel splatting into a
KxK kernel that sums to 1, then optional small Gaussian noise and 8-bit rounding. Scale 1.
"""

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from degradations import checks
from degradations.kernels import convolve
from degradations.noise import add_gaussian_noise
from degradations.quantize import quantize_8bit


@dataclass(frozen=True, kw_only=True, slots=True)
class MotionBlurConfig:
    """length_range: camera path length in pixels (arc length); noise_range: sigma on the 0-255 scale."""

    kernel_size: int = 31
    length_range: tuple[float, float] = (4.0, 28.0)
    num_steps: int = 48
    momentum: float = 0.85
    jerk_prob: float = 0.05
    noise_prob: float = 0.5
    noise_range: tuple[float, float] = (0.0, 2.0)

    def __post_init__(self) -> None:
        if self.kernel_size % 2 == 0 or not 3 <= self.kernel_size <= 63:
            raise ValueError(f"kernel_size={self.kernel_size!r}: must be odd in [3, 63]")
        checks.check_range("length_range", self.length_range, low=0.0, high=float(self.kernel_size - 3))
        if self.num_steps < 2:
            raise ValueError(f"num_steps={self.num_steps!r}: must be >= 2")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum={self.momentum!r}: must be in [0, 1)")
        checks.check_prob("jerk_prob", self.jerk_prob)
        checks.check_prob("noise_prob", self.noise_prob)
        checks.check_range("noise_range", self.noise_range, low=0.0, high=255.0)

    @property
    def scale(self) -> int:
        return 1

    @classmethod
    def from_dict(cls, d: dict) -> "MotionBlurConfig":
        """Inverse of dataclasses.asdict (JSON lists become tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True, kw_only=True, slots=True)
class MotionBlurParams:
    kind: Literal["motion_blur"] = "motion_blur"
    kernel: tuple[tuple[float, ...], ...]  # KxK point spread function, sums to 1
    length: float  # path length in pixels after fitting the kernel
    noise_sigma: float | None  # None: no noise
    noise_seed: int

    @classmethod
    def from_dict(cls, d: dict) -> "MotionBlurParams":
        return cls(**{**d, "kernel": tuple(tuple(float(v) for v in row) for row in d["kernel"])})


def random_trajectory(
    rng: np.random.Generator, *, num_steps: int, momentum: float, jerk_prob: float
) -> np.ndarray:
    """(num_steps + 1, 2) unit-speed path: velocity = momentum * velocity + (1 - momentum) * N(0, I),
    renormalised, with rare abrupt turns (jerks) of 45-135 degrees."""
    kicks = rng.standard_normal((num_steps, 2))
    turns = np.where(
        rng.uniform(size=num_steps) < jerk_prob,
        rng.uniform(math.pi / 4, 3 * math.pi / 4, size=num_steps) * rng.choice([-1.0, 1.0], size=num_steps),
        0.0,
    )
    heading = rng.uniform(-math.pi, math.pi)
    velocity = np.array([math.cos(heading), math.sin(heading)])
    steps = np.empty((num_steps, 2))
    for t in range(num_steps):  # num_steps ~ 50: a loop over path steps, not pixels
        if turns[t] != 0.0:
            c, s = math.cos(turns[t]), math.sin(turns[t])
            velocity = np.array([c * velocity[0] - s * velocity[1], s * velocity[0] + c * velocity[1]])
        velocity = momentum * velocity + (1.0 - momentum) * kicks[t]
        velocity /= max(np.linalg.norm(velocity), 1e-12)
        steps[t] = velocity
    return np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])


def resample(path: np.ndarray, *, spacing: float = 0.25) -> np.ndarray:
    """Points along a path (N, 2) at <= `spacing` px apart, uniform in time (the walk has unit speed)."""
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    num_samples = max(2, math.ceil(seg.sum() / spacing) + 1)
    t = np.linspace(0.0, len(path) - 1, num_samples)
    knots = np.arange(len(path))
    return np.stack([np.interp(t, knots, path[:, 0]), np.interp(t, knots, path[:, 1])], axis=1)


def rasterize(points: np.ndarray, *, size: int) -> np.ndarray:
    """Splat points (M, 2) of (x, y) offsets from the kernel centre bilinearly into a size x size kernel.

    Bilinear splatting keeps the centroid exact, so points centred at their mean do not shift the image.
    """
    x = points[:, 0] + (size - 1) / 2
    y = points[:, 1] + (size - 1) / 2
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    idx = np.concatenate([y0 * size + x0, y0 * size + x0 + 1, (y0 + 1) * size + x0, (y0 + 1) * size + x0 + 1])
    wts = np.concatenate([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    k = np.bincount(idx, weights=wts, minlength=size * size).reshape(size, size)
    return k / k.sum()


def sample_params(config: MotionBlurConfig, rng: np.random.Generator, hq_shape: tuple[int, ...]) -> MotionBlurParams:
    path = random_trajectory(rng, num_steps=config.num_steps, momentum=config.momentum, jerk_prob=config.jerk_prob)
    length = rng.uniform(*config.length_range)
    points = resample(path * (length / config.num_steps))  # unit steps -> requested arc length
    points -= points.mean(axis=0)
    # shrink paths whose extent does not fit; one pixel is kept free for the bilinear splat
    reach = np.abs(points).max()
    limit = (config.kernel_size - 1) / 2 - 1
    if reach > limit:
        points *= limit / reach
        length *= limit / reach
    kernel = rasterize(points, size=config.kernel_size)
    noisy = rng.uniform() < config.noise_prob
    sigma = float(rng.uniform(*config.noise_range))
    return MotionBlurParams(
        kernel=tuple(map(tuple, kernel.tolist())),
        length=float(length),
        noise_sigma=sigma if noisy else None,
        noise_seed=int(rng.integers(2**32)),
    )


def apply(hq: np.ndarray, params: MotionBlurParams) -> np.ndarray:
    """HxWx3 float32 RGB [0, 1] -> same shape, blurred (+ noise), on the 8-bit grid."""
    img = convolve(hq, kernel=np.array(params.kernel))
    if params.noise_sigma is not None:
        img = add_gaussian_noise(img, sigma=params.noise_sigma, gray=False, rng=np.random.default_rng(params.noise_seed))
    return quantize_8bit(img)
