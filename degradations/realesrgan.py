"""Real-ESRGAN's second-order degradation model (arXiv 2107.10833, Sec. 3): blur -> resize -> noise
-> JPEG twice, then {resize to H/scale + sinc, JPEG} in random order and 8-bit rounding. Every
random choice is drawn per sample by `sample_params`; `apply` is deterministic given the params.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from degradations import checks
from degradations.jpeg import jpeg_compress
from degradations.kernels import (
    KERNEL_SIZES,
    MIXED_FAMILIES,
    PAD_SIZE,
    Kernel,
    blur,
    sample_blur_kernel,
    sample_final_sinc,
)
from degradations.noise import add_gaussian_noise, add_poisson_noise
from degradations.quantize import quantize_8bit
from degradations.resize import RESIZE_MODES, resize
from degradations.sharpen import usm_sharpen

SCALES = (1, 2, 4)
RESIZE_DIRECTIONS = ("up", "down", "keep")
FINAL_ORDERS = ("resize_sinc_jpeg", "jpeg_resize_sinc")


@dataclass(frozen=True, kw_only=True, slots=True)
class StageConfig:
    """One degradation stage: blur -> resize -> noise -> JPEG. Defaults are stage 1 of x4plus.

    The stage-2 `jpeg_range` is the quality range of the final JPEG. `resize_probs` are the
    probabilities of up/down/keep, with s ~ U(1, hi), U(lo, 1) or 1 for `resize_range` = (lo, hi).
    """

    blur_prob: float = 1.0
    kernel_sizes: tuple[int, ...] = KERNEL_SIZES
    kernel_families: tuple[str, ...] = MIXED_FAMILIES
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    resize_modes: tuple[str, ...] = RESIZE_MODES
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)

    def __post_init__(self) -> None:
        for name in ("blur_prob", "sinc_prob", "gaussian_noise_prob", "gray_noise_prob"):
            checks.check_prob(name, getattr(self, name))
        checks.check_subset("kernel_sizes", self.kernel_sizes, tuple(range(1, PAD_SIZE + 1, 2)))
        checks.check_subset("kernel_families", self.kernel_families, MIXED_FAMILIES)
        checks.check_weights("kernel_probs", self.kernel_probs, len(self.kernel_families))
        checks.check_range("blur_sigma", self.blur_sigma, low=1e-3, high=math.inf)
        checks.check_range("betag_range", self.betag_range, low=1e-3, high=math.inf)
        checks.check_range("betap_range", self.betap_range, low=1e-3, high=math.inf)
        if not self.betag_range[0] <= 1.0 <= self.betag_range[1]:
            raise ValueError(f"betag_range={self.betag_range!r}: must contain 1 (beta is split at 1)")
        if not self.betap_range[0] <= 1.0 <= self.betap_range[1]:
            raise ValueError(f"betap_range={self.betap_range!r}: must contain 1 (beta is split at 1)")
        checks.check_weights("resize_probs", self.resize_probs, 3)
        checks.check_range("resize_range", self.resize_range, low=1e-3, high=math.inf)
        if not self.resize_range[0] <= 1.0 <= self.resize_range[1]:
            raise ValueError(f"resize_range={self.resize_range!r}: must be (lo, hi) with lo <= 1 <= hi")
        checks.check_subset("resize_modes", self.resize_modes, RESIZE_MODES)
        checks.check_range("noise_range", self.noise_range, low=0.0, high=255.0)
        checks.check_range("poisson_scale_range", self.poisson_scale_range, low=0.0, high=math.inf)
        checks.check_range("jpeg_range", self.jpeg_range, low=1.0, high=100.0)


# Stage 2 of train_realesrgan_x4plus.yml
_X4PLUS_STAGE2 = StageConfig(
    blur_prob=0.8, blur_sigma=(0.2, 1.5), resize_probs=(0.3, 0.4, 0.3), resize_range=(0.3, 1.2),
    noise_range=(1.0, 25.0), poisson_scale_range=(0.05, 2.5),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class RealESRGANConfig:
    """Real-ESRGAN degradation; defaults are the x4plus training values (usm_gt as RealESRNet's gt_usm).

    usm_gt: the LQ is synthesised from the USM-sharpened HQ; the pipeline then also uses
    `sharpen.usm_sharpen(hq)` as the training target.
    """

    scale: int = 4
    usm_gt: bool = True
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=lambda: _X4PLUS_STAGE2)
    final_sinc_prob: float = 0.8
    final_kernel_sizes: tuple[int, ...] = KERNEL_SIZES
    final_resize_modes: tuple[str, ...] = RESIZE_MODES

    def __post_init__(self) -> None:
        checks.check_choice("scale", self.scale, SCALES)
        checks.check_prob("final_sinc_prob", self.final_sinc_prob)
        checks.check_subset("final_kernel_sizes", self.final_kernel_sizes, tuple(range(1, PAD_SIZE + 1, 2)))
        checks.check_subset("final_resize_modes", self.final_resize_modes, RESIZE_MODES)

    @classmethod
    def preset(cls, name: Literal["x4plus", "mild"], *, scale: int = 4) -> "RealESRGANConfig":
        """"x4plus": the defaults. "mild": neosr's community-tuned values (no USM, light noise, 5b)."""
        checks.check_choice("name", name, ("x4plus", "mild"))
        if name == "x4plus":
            return cls(scale=scale)
        stage1 = StageConfig(
            resize_probs=(0.3, 0.4, 0.3), resize_range=(0.5, 1.5), gaussian_noise_prob=0.2,
            noise_range=(0.0, 2.0), poisson_scale_range=(0.05, 0.25), gray_noise_prob=0.1, jpeg_range=(40.0, 95.0),
        )
        stage2 = StageConfig(
            blur_prob=0.4, blur_sigma=(0.2, 1.5), resize_probs=(0.3, 0.4, 0.3), resize_range=(0.3, 1.5),
            gaussian_noise_prob=0.2, noise_range=(0.0, 2.0), poisson_scale_range=(0.05, 0.1),
            gray_noise_prob=0.1, jpeg_range=(35.0, 95.0),
        )
        return cls(scale=scale, usm_gt=False, stage1=stage1, stage2=stage2)

    @classmethod
    def from_dict(cls, d: dict) -> "RealESRGANConfig":
        """Inverse of dataclasses.asdict (JSON lists become tuples)."""
        def tuples(x: dict) -> dict:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in x.items()}

        stages = {k: StageConfig(**tuples(d[k])) for k in ("stage1", "stage2") if k in d}
        return cls(**{**tuples(d), **stages})


@dataclass(frozen=True, kw_only=True, slots=True)
class StageParams:
    """The draws of one stage. noise_level is sigma on the 0-255 scale (gaussian) or the Poisson scale."""

    kernel: Kernel | None  # None: blur skipped (stage 2, p = 1 - blur_prob)
    resize: Literal["up", "down", "keep"]
    resize_scale: float
    resize_mode: str
    size_hw: tuple[int, int]  # image size after this stage's resize
    noise: Literal["gaussian", "poisson"]
    noise_level: float
    noise_gray: bool
    noise_seed: int

    @classmethod
    def from_dict(cls, d: dict) -> "StageParams":
        kernel = None if d["kernel"] is None else Kernel.from_dict(d["kernel"])
        return cls(**{**d, "kernel": kernel, "size_hw": tuple(d["size_hw"])})


@dataclass(frozen=True, kw_only=True, slots=True)
class RealESRGANParams:
    kind: Literal["realesrgan"] = "realesrgan"
    scale: int
    hq_size: tuple[int, int]
    usm_gt: bool
    stage1: StageParams
    jpeg1_quality: float
    stage2: StageParams
    final_order: Literal["resize_sinc_jpeg", "jpeg_resize_sinc"]
    final_mode: str
    final_sinc: Kernel  # family "sinc" or "pulse"
    final_jpeg_quality: float

    @classmethod
    def from_dict(cls, d: dict) -> "RealESRGANParams":
        return cls(**{
            **d,
            "hq_size": tuple(d["hq_size"]),
            "stage1": StageParams.from_dict(d["stage1"]),
            "stage2": StageParams.from_dict(d["stage2"]),
            "final_sinc": Kernel.from_dict(d["final_sinc"]),
        })


def _sample_stage(
    config: StageConfig, rng: np.random.Generator, size_of: Callable[[float], tuple[int, int]]
) -> StageParams:
    kernel = None
    if rng.uniform() < config.blur_prob:
        kernel = sample_blur_kernel(
            rng, sizes=config.kernel_sizes, sinc_prob=config.sinc_prob, families=config.kernel_families,
            probs=config.kernel_probs, sigma_range=config.blur_sigma, betag_range=config.betag_range,
            betap_range=config.betap_range,
        )
    direction = RESIZE_DIRECTIONS[int(rng.choice(3, p=config.resize_probs))]
    lo, hi = config.resize_range
    if direction == "up":
        scale = rng.uniform(1.0, hi)
    elif direction == "down":
        scale = rng.uniform(lo, 1.0)
    else:
        scale = 1.0
    mode = config.resize_modes[int(rng.integers(len(config.resize_modes)))]
    gaussian = bool(rng.uniform() < config.gaussian_noise_prob)
    level_range = config.noise_range if gaussian else config.poisson_scale_range
    return StageParams(
        kernel=kernel, resize=direction, resize_scale=float(scale), resize_mode=mode, size_hw=size_of(float(scale)),
        noise="gaussian" if gaussian else "poisson", noise_level=float(rng.uniform(*level_range)),
        noise_gray=bool(rng.uniform() < config.gray_noise_prob), noise_seed=int(rng.integers(2**32)),
    )


def sample_params(config: RealESRGANConfig, rng: np.random.Generator, hq_shape: tuple[int, ...]) -> RealESRGANParams:
    """Draw every random choice of one sample; hq_shape is (H, W[, C])."""
    h, w = hq_shape[:2]
    # stage 1 resizes the current (HQ) size: floor(H s); stage 2 targets int(H / scale * s2), i.e.
    # it is relative to the final LQ size and not to the stage-1 output (as in the reference)
    stage1 = _sample_stage(config.stage1, rng, lambda s: (max(1, math.floor(h * s)), max(1, math.floor(w * s))))
    jpeg1 = float(rng.uniform(*config.stage1.jpeg_range))
    stage2 = _sample_stage(
        config.stage2, rng, lambda s: (max(1, int(h / config.scale * s)), max(1, int(w / config.scale * s)))
    )
    return RealESRGANParams(
        scale=config.scale, hq_size=(h, w), usm_gt=config.usm_gt, stage1=stage1, jpeg1_quality=jpeg1, stage2=stage2,
        final_order=FINAL_ORDERS[int(rng.integers(2))],
        final_mode=config.final_resize_modes[int(rng.integers(len(config.final_resize_modes)))],
        final_sinc=sample_final_sinc(rng, sizes=config.final_kernel_sizes, prob=config.final_sinc_prob),
        final_jpeg_quality=float(rng.uniform(*config.stage2.jpeg_range)),
    )


def _apply_stage(img: np.ndarray, params: StageParams) -> np.ndarray:
    """blur -> resize -> noise (clipped to [0, 1]); the stage's noise comes from its own seed."""
    if params.kernel is not None:
        img = blur(img, kernel=params.kernel)
    img = resize(img, size_hw=params.size_hw, mode=params.resize_mode)
    rng = np.random.default_rng(params.noise_seed)
    if params.noise == "gaussian":
        return add_gaussian_noise(img, sigma=params.noise_level, gray=params.noise_gray, rng=rng)
    return add_poisson_noise(img, scale=params.noise_level, gray=params.noise_gray, rng=rng)


def _resize_and_sinc(img: np.ndarray, params: RealESRGANParams) -> np.ndarray:
    size_hw = (params.hq_size[0] // params.scale, params.hq_size[1] // params.scale)
    img = resize(img, size_hw=size_hw, mode=params.final_mode)
    return blur(img, kernel=params.final_sinc)  # a pulse (the reference's 21x21 delta) is the identity


def apply(hq: np.ndarray, params: RealESRGANParams) -> np.ndarray:
    """HxWx3 float32 RGB [0, 1] -> (H//scale)x(W//scale)x3 float32 on the 8-bit grid."""
    if hq.shape[:2] != params.hq_size:
        raise ValueError(f"hq shape {hq.shape[:2]} does not match params.hq_size={params.hq_size}")
    img = usm_sharpen(hq) if params.usm_gt else hq
    img = _apply_stage(img, params.stage1)
    img = jpeg_compress(img, quality=params.jpeg1_quality)
    img = _apply_stage(img, params.stage2)
    # "other combinations (sinc + JPEG + resize) introduce twisted lines" (reference comment)
    if params.final_order == "resize_sinc_jpeg":
        img = jpeg_compress(_resize_and_sinc(img, params), quality=params.final_jpeg_quality)
    else:
        img = _resize_and_sinc(jpeg_compress(img, quality=params.final_jpeg_quality), params)
    return quantize_8bit(img)
