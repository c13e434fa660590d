"""Degradation synthesis for image restoration: Real-ESRGAN's second-order model (arXiv 2107.10833)
and simpler task degradations, each split into per-sample `sample_params` and deterministic `apply`.
Public entry: `degrade(hq, config, rng) -> (lq, params)` and `replay(hq, params) -> lq`.
"""

import numpy as np

from degradations import mask, motion, realesrgan, simple
from degradations.mask import MaskConfig, MaskParams
from degradations.motion import MotionBlurConfig, MotionBlurParams
from degradations.realesrgan import RealESRGANConfig, RealESRGANParams, StageConfig
from degradations.simple import (
    BicubicConfig,
    BicubicParams,
    GaussianNoiseConfig,
    GaussianNoiseParams,
)

Config = RealESRGANConfig | MotionBlurConfig | GaussianNoiseConfig | BicubicConfig | MaskConfig
Params = RealESRGANParams | MotionBlurParams | GaussianNoiseParams | BicubicParams | MaskParams

__all__ = [
    "BicubicConfig", "BicubicParams", "Config", "GaussianNoiseConfig", "GaussianNoiseParams", "MaskConfig",
    "MaskParams", "MotionBlurConfig", "MotionBlurParams", "Params", "RealESRGANConfig", "RealESRGANParams", "StageConfig", "degrade",
    "params_from_dict", "replay", "sample_params",
]


def sample_params(config: Config, rng: np.random.Generator, hq_shape: tuple[int, ...]) -> Params:
    """Draw all random choices of one sample for `config` (dispatch on the config class)."""
    match config:
        case RealESRGANConfig():
            return realesrgan.sample_params(config, rng, hq_shape)
        case MotionBlurConfig():
            return motion.sample_params(config, rng, hq_shape)
        case GaussianNoiseConfig():
            return simple.sample_noise_params(config, rng, hq_shape)
        case BicubicConfig():
            return simple.sample_bicubic_params(config, rng, hq_shape)
        case MaskConfig():
            return mask.sample_params(config, rng, hq_shape)
    raise TypeError(f"not a degradation config: {type(config).__name__}")


def replay(hq: np.ndarray, params: Params) -> np.ndarray:
    """Apply sampled params to hq (HxWx3 float32 RGB [0, 1]); byte-identical to degrade's lq."""
    match params:
        case RealESRGANParams():
            return realesrgan.apply(hq, params)
        case MotionBlurParams():
            return motion.apply(hq, params)
        case GaussianNoiseParams():
            return simple.apply_noise(hq, params)
        case BicubicParams():
            return simple.apply_bicubic(hq, params)
        case MaskParams():
            return mask.apply(hq, params)
    raise TypeError(f"not degradation params: {type(params).__name__}")


def degrade(hq: np.ndarray, config: Config, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    """hq HxWx3 float32 RGB [0, 1] -> (lq (H//scale)x(W//scale)x3 float32 on the 8-bit grid, params); a mask with
    hole_channel gives HxWx4 (the hole mask appended)."""
    params = sample_params(config, rng, hq.shape)
    return replay(hq, params), params


def params_from_dict(d: dict) -> Params:
    """Rebuild params from `dataclasses.asdict(params)` (e.g. after a JSON round trip); keyed by d["kind"]."""
    match d["kind"]:
        case "realesrgan":
            return RealESRGANParams.from_dict(d)
        case "motion_blur":
            return MotionBlurParams.from_dict(d)
        case "gaussian_noise":
            return GaussianNoiseParams.from_dict(d)
        case "bicubic":
            return BicubicParams.from_dict(d)
        case "mask":
            return MaskParams.from_dict(d)
    raise ValueError(f"kind={d['kind']!r}: must be one of ('realesrgan', 'motion_blur', 'gaussian_noise', 'bicubic', "
                     "'mask')")
