"""Blur kernels of Real-ESRGAN's second-order degradation model (arXiv 2107.10833, Sec. 3.1):
Gaussian, generalized Gaussian and plateau (iso/aniso), the circular low-pass (sinc) kernel, and the
per-sample mixed-family sampler. Kernels are float64 KxK arrays (K odd) that sum to 1.
"""

import functools
import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

Family = Literal[
    "iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso", "sinc", "pulse"
]
MIXED_FAMILIES: tuple[str, ...] = (
    "iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"
)
KERNEL_SIZES: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
PAD_SIZE = 21  # Real-ESRGAN zero-pads every kernel to 21x21 (hard-coded in its dataset)


@dataclass(frozen=True, kw_only=True, slots=True)
class Kernel:
    """A sampled kernel: its description (for logs) and its exact weights (for replay).

    `weights` is the unpadded KxK kernel as nested tuples, so `dataclasses.asdict` is JSON-able; the
    21x21 zero padding of the reference changes nothing under filtering and is available as `padded()`.
    Fields that a family does not use are None.
    """

    family: Family
    size: int
    sigma_x: float | None = None
    sigma_y: float | None = None
    theta: float | None = None
    beta: float | None = None
    omega: float | None = None
    weights: tuple[tuple[float, ...], ...]

    def array(self) -> np.ndarray:
        return np.array(self.weights, dtype=np.float64)

    def padded(self, size: int = PAD_SIZE) -> np.ndarray:
        return pad_kernel(self.array(), size=size)

    @classmethod
    def from_dict(cls, d: dict) -> "Kernel":
        return cls(**{**d, "weights": tuple(tuple(float(v) for v in row) for row in d["weights"])})


def _as_tuples(k: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(map(tuple, k.tolist()))


def pad_kernel(k: np.ndarray, *, size: int) -> np.ndarray:
    """Zero-pad an odd KxK kernel to size x size, keeping it centred."""
    pad = (size - k.shape[0]) // 2
    assert pad >= 0 and k.shape[0] % 2 == 1
    return np.pad(k, pad)


def convolve(img: np.ndarray, *, kernel: np.ndarray) -> np.ndarray:
    """2-D convolution of an HxWxC float32 image with reflect-101 borders (torch 'reflect' pad).

    cv2.filter2D correlates, so the kernel is flipped: a no-op for the point-symmetric Real-ESRGAN
    kernels, and what makes an asymmetric motion kernel act as the point spread function.
    """
    k = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32)
    return cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT_101)


def blur(img: np.ndarray, *, kernel: Kernel) -> np.ndarray:
    """convolve() with a sampled kernel, taking the cheap exact route where the family allows it.

    An isotropic Gaussian is separable, k = g g^T with g = k[c] / sqrt(k[c, c]), so it runs as two
    1-D passes (equal to the 2-D filter up to float32 rounding); the pulse is the identity.
    """
    if kernel.family == "pulse":
        return img
    k = kernel.array()
    if kernel.family == "iso":
        c = kernel.size // 2
        g = (k[c] / math.sqrt(k[c, c])).astype(np.float32)
        return cv2.sepFilter2D(img, -1, g, g, borderType=cv2.BORDER_REFLECT_101)
    return convolve(img, kernel=k)


@functools.cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only (xx, yy): x varies along columns, y along rows; centre at (K-1)/2."""
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2
    xx, yy = np.meshgrid(ax, ax)
    xx.setflags(write=False)
    yy.setflags(write=False)
    return xx, yy


@functools.cache
def _radii(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only distinct radii r of the KxK grid (r[0] = 0) and the index of each cell into them."""
    xx, yy = _grid(size)
    r2, inverse = np.unique(xx * xx + yy * yy, return_inverse=True)
    r, inverse = np.sqrt(r2), inverse.reshape(size, size)
    r.setflags(write=False)
    inverse.setflags(write=False)
    return r, inverse


def mahalanobis_sq(size: int, *, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """q = v^T Sigma^-1 v on the KxK grid, Sigma = R(theta) diag(sx^2, sy^2) R(theta)^T."""
    # Sigma^-1 = R diag(1/sx^2, 1/sy^2) R^T
    c, s = math.cos(theta), math.sin(theta)
    ix, iy = 1.0 / sigma_x**2, 1.0 / sigma_y**2
    a, b, d = c * c * ix + s * s * iy, c * s * (ix - iy), s * s * ix + c * c * iy
    xx, yy = _grid(size)
    return a * xx * xx + 2 * b * xx * yy + d * yy * yy


def gaussian(size: int, *, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    k = np.exp(-0.5 * mahalanobis_sq(size, sigma_x=sigma_x, sigma_y=sigma_y, theta=theta))
    return k / k.sum()


def generalized_gaussian(size: int, *, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """exp(-q^beta / 2): heavier tails for beta < 1, flatter top for beta > 1; beta = 1 is Gaussian."""
    k = np.exp(-0.5 * mahalanobis_sq(size, sigma_x=sigma_x, sigma_y=sigma_y, theta=theta) ** beta)
    return k / k.sum()


def plateau(size: int, *, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """1 / (1 + q^beta): flat top, heavy tails; Cauchy-like (not Gaussian) at beta = 1."""
    k = 1.0 / (1.0 + mahalanobis_sq(size, sigma_x=sigma_x, sigma_y=sigma_y, theta=theta) ** beta)
    return k / k.sum()


def bessel_j1(x: np.ndarray, num_nodes: int = 128) -> np.ndarray:
    """Bessel J1 from Bessel's integral J1(x) = 1/(2 pi) int_0^{2 pi} cos(t - x sin t) dt.

    The trapezoidal rule is spectrally accurate for this periodic integrand: the error is of the order
    of J_{num_nodes-1}(x), far below float64 eps for |x| < 60 (our kernels need |x| <= pi * 15).
    """
    t = np.arange(num_nodes, dtype=np.float64) * (2 * math.pi / num_nodes)
    x = np.asarray(x, dtype=np.float64)
    return np.cos(t - x[..., None] * np.sin(t)).mean(axis=-1)


def circular_lowpass(size: int, *, omega: float) -> np.ndarray:
    """Sampled ideal circular low-pass (sinc) kernel with cutoff omega rad/pixel; has negative lobes.

    k(r) = omega J1(omega r) / (2 pi r), centre value omega^2 / (4 pi) (the r -> 0 limit), sum 1.
    """
    r, inverse = _radii(size)  # J1 once per distinct radius
    r = np.where(r == 0, 1.0, r)  # the centre: placeholder, set to the r -> 0 limit below
    k_r = omega * bessel_j1(omega * r) / (2 * math.pi * r)
    k_r[0] = omega**2 / (4 * math.pi)
    k = k_r[inverse]
    return k / k.sum()


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _split_beta(rng: np.random.Generator, beta_range: tuple[float, float]) -> float:
    # BasicSR: with p 0.5 beta ~ U(lo, 1), else U(1, hi); for betap = [1, 2] half the draws are exactly 1
    if rng.uniform() < 0.5:
        return _uniform(rng, (beta_range[0], 1.0))
    return _uniform(rng, (1.0, beta_range[1]))


def sample_mixed_kernel(
    rng: np.random.Generator,
    *,
    size: int,
    families: tuple[str, ...],
    probs: tuple[float, ...],
    sigma_range: tuple[float, float],
    betag_range: tuple[float, float],
    betap_range: tuple[float, float],
) -> Kernel:
    """One kernel of a family drawn with `probs`; sigma_x, sigma_y ~ U(sigma_range), theta ~ U(-pi, pi)."""
    family = families[int(rng.choice(len(families), p=np.asarray(probs) / np.sum(probs)))]
    sigma_x = _uniform(rng, sigma_range)
    if family in ("iso", "generalized_iso", "plateau_iso"):
        sigma_y, theta = sigma_x, 0.0
    else:
        sigma_y, theta = _uniform(rng, sigma_range), _uniform(rng, (-math.pi, math.pi))
    beta = None
    if family in ("iso", "aniso"):
        k = gaussian(size, sigma_x=sigma_x, sigma_y=sigma_y, theta=theta)
    elif family.startswith("generalized"):
        beta = _split_beta(rng, betag_range)
        k = generalized_gaussian(size, sigma_x=sigma_x, sigma_y=sigma_y, theta=theta, beta=beta)
    else:
        beta = _split_beta(rng, betap_range)
        k = plateau(size, sigma_x=sigma_x, sigma_y=sigma_y, theta=theta, beta=beta)
    return Kernel(
        family=family, size=size, sigma_x=sigma_x, sigma_y=sigma_y, theta=theta, beta=beta, weights=_as_tuples(k)
    )


def sinc_kernel(size: int, *, omega: float) -> Kernel:
    return Kernel(family="sinc", size=size, omega=omega, weights=_as_tuples(circular_lowpass(size, omega=omega)))


def pulse_kernel() -> Kernel:
    """The identity kernel (the reference's 21x21 delta), stored as 1x1."""
    return Kernel(family="pulse", size=1, weights=((1.0,),))


def sample_blur_kernel(
    rng: np.random.Generator,
    *,
    sizes: tuple[int, ...],
    sinc_prob: float,
    families: tuple[str, ...],
    probs: tuple[float, ...],
    sigma_range: tuple[float, float],
    betag_range: tuple[float, float],
    betap_range: tuple[float, float],
) -> Kernel:
    """Blur 1/2 of Real-ESRGAN: size ~ U(sizes); a sinc with p sinc_prob, else a mixed-family kernel.

    The sinc cutoff follows the size rule of the reference: omega ~ U(pi/3, pi) for K < 13, else U(pi/5, pi).
    """
    size = int(sizes[int(rng.integers(len(sizes)))])
    if rng.uniform() < sinc_prob:
        low = math.pi / 3 if size < 13 else math.pi / 5
        return sinc_kernel(size, omega=_uniform(rng, (low, math.pi)))
    return sample_mixed_kernel(
        rng, size=size, families=families, probs=probs, sigma_range=sigma_range,
        betag_range=betag_range, betap_range=betap_range,
    )


def sample_final_sinc(rng: np.random.Generator, *, sizes: tuple[int, ...], prob: float) -> Kernel:
    """Final sinc with omega ~ U(pi/3, pi) with probability prob, else the pulse (identity)."""
    if rng.uniform() < prob:
        size = int(sizes[int(rng.integers(len(sizes)))])
        return sinc_kernel(size, omega=_uniform(rng, (math.pi / 3, math.pi)))
    return pulse_kernel()
