"""Single-operation task degradations with the same sample/apply split as Real-ESRGAN
(arXiv 2107.10833): additive Gaussian noise (denoising, scale 1) and bicubic downsampling
(classic SR, scale 2/4, or 1 for no degradation).
"""

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from degradations import checks
from degradations.noise import add_gaussian_noise
from degradations.quantize import quantize_8bit
from degradations.resize import bicubic_antialias


@dataclass(frozen=True, kw_only=True, slots=True)
class GaussianNoiseConfig:
    """sigma ~ U(sigma_range) on the 0-255 scale; gray (same noise on R, G, B) with gray_prob."""

    sigma_range: tuple[float, float] = (0.0, 50.0)
    gray_prob: float = 0.0

    def __post_init__(self) -> None:
        checks.check_range("sigma_range", self.sigma_range, low=0.0, high=255.0)
        checks.check_prob("gray_prob", self.gray_prob)

    @property
    def scale(self) -> int:
        return 1

    @classmethod
    def from_dict(cls, d: dict) -> "GaussianNoiseConfig":
        """Inverse of dataclasses.asdict (JSON lists become tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True, kw_only=True, slots=True)
class GaussianNoiseParams:
    kind: Literal["gaussian_noise"] = "gaussian_noise"
    sigma: float
    gray: bool
    noise_seed: int

    @classmethod
    def from_dict(cls, d: dict) -> "GaussianNoiseParams":
        return cls(**d)


def sample_noise_params(
    config: GaussianNoiseConfig, rng: np.random.Generator, hq_shape: tuple[int, ...]
) -> GaussianNoiseParams:
    return GaussianNoiseParams(
        sigma=float(rng.uniform(*config.sigma_range)),
        gray=bool(rng.uniform() < config.gray_prob),
        noise_seed=int(rng.integers(2**32)),
    )


def apply_noise(hq: np.ndarray, params: GaussianNoiseParams) -> np.ndarray:
    """HxWx3 float32 [0, 1] -> same shape, noisy, clipped and on the 8-bit grid."""
    rng = np.random.default_rng(params.noise_seed)
    return quantize_8bit(add_gaussian_noise(hq, sigma=params.sigma, gray=params.gray, rng=rng))


@dataclass(frozen=True, kw_only=True, slots=True)
class BicubicConfig:
    """Deterministic bicubic downsampling by `scale` (1: no degradation, only 8-bit rounding).

    antialias=True is MATLAB imresize (the DIV2K bicubic LR convention); False is cv2 INTER_CUBIC.
    """

    scale: int = 4
    antialias: bool = True

    def __post_init__(self) -> None:
        checks.check_choice("scale", self.scale, (1, 2, 4))

    @classmethod
    def from_dict(cls, d: dict) -> "BicubicConfig":
        return cls(**d)


@dataclass(frozen=True, kw_only=True, slots=True)
class BicubicParams:
    kind: Literal["bicubic"] = "bicubic"
    scale: int
    antialias: bool

    @classmethod
    def from_dict(cls, d: dict) -> "BicubicParams":
        return cls(**d)


def sample_bicubic_params(config: BicubicConfig, rng: np.random.Generator, hq_shape: tuple[int, ...]) -> BicubicParams:
    """Nothing is random; the rng is not touched."""
    return BicubicParams(scale=config.scale, antialias=config.antialias)


def apply_bicubic(hq: np.ndarray, params: BicubicParams) -> np.ndarray:
    """HxWx3 float32 [0, 1] -> (H//scale)x(W//scale)x3 float32 on the 8-bit grid."""
    size = (hq.shape[0] // params.scale, hq.shape[1] // params.scale)
    if params.scale == 1:
        return quantize_8bit(hq)
    if params.antialias:
        return quantize_8bit(bicubic_antialias(hq, size_hw=size))
    return quantize_8bit(cv2.resize(hq, size[::-1], interpolation=cv2.INTER_CUBIC))
