"""Image resizing for degradation synthesis: the three interpolation modes Real-ESRGAN draws from
(arXiv 2107.10833, Sec. 3.1) and MATLAB-style antialiased bicubic downsampling for classic SR.
Images are HxWxC float32.
"""

import math
from typing import Literal

import cv2
import numpy as np

ResizeMode = Literal["area", "bilinear", "bicubic"]
RESIZE_MODES: tuple[str, ...] = ("area", "bilinear", "bicubic")
_CV2_MODES = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def resize(img: np.ndarray, *, size_hw: tuple[int, int], mode: ResizeMode) -> np.ndarray:
    """Resize to size_hw like torch F.interpolate(align_corners=False, antialias=False).

    bilinear/bicubic (a = -0.75) use the same half-pixel mapping in cv2 and torch. torch's `area` is
    adaptive average pooling (output i averages inputs floor(i n/m) .. ceil((i+1) n/m) - 1), which cv2 has
    no mode for at fractional ratios: it is computed here from segment sums, one axis at a time.
    Bicubic may overshoot [0, 1]; the reference does not clamp after resizing, nor do we.
    """
    h, w = size_hw
    if (h, w) == img.shape[:2]:
        return img
    if mode == "area":
        return np.ascontiguousarray(_adaptive_average(_adaptive_average(img, h, axis=0), w, axis=1))
    return cv2.resize(img, (w, h), interpolation=_CV2_MODES[mode])


def _adaptive_average(img: np.ndarray, n_out: int, *, axis: int) -> np.ndarray:
    """torch's adaptive_avg_pool along one axis: box averages over [floor(i n/m), ceil((i+1) n/m))."""
    n_in = img.shape[axis]
    if n_in == n_out:
        return img
    i = np.arange(n_out)
    start, end = i * n_in // n_out, -(-(i + 1) * n_in // n_out)
    if n_out > n_in:  # enlarging: every window holds one or two pixels, so two gathers do it
        first, last = np.take(img, start, axis=axis), np.take(img, end - 1, axis=axis)
        return (first + last) * np.asarray(0.5, img.dtype)
    # Shrinking: window i is the segment [start_i, start_{i+1}) plus, at fractional ratios, one more pixel.
    x = np.moveaxis(img, axis, 0)
    sums = np.add.reduceat(x, start, axis=0)
    longer = end > np.append(start[1:], n_in)
    sums[longer] += x[end[longer] - 1]
    count = (end - start).astype(img.dtype).reshape(-1, *([1] * (img.ndim - 1)))
    return np.moveaxis(sums / count, 0, axis)


def _cubic(x: np.ndarray) -> np.ndarray:
    # Keys cubic with a = -0.5 (MATLAB imresize)
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


def _bicubic_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) resampling matrix of MATLAB imresize(..., 'bicubic') with antialiasing."""
    s = n_out / n_in
    width = 4.0 / s if s < 1 else 4.0
    u = (np.arange(1, n_out + 1) / s + 0.5 * (1 - 1 / s))[:, None]  # 1-based input coordinates
    left = np.floor(u - width / 2)
    idx = left + np.arange(math.ceil(width) + 2)[None, :]
    dist = u - idx
    wts = s * _cubic(s * dist) if s < 1 else _cubic(dist)
    wts /= wts.sum(axis=1, keepdims=True)
    # symmetric (half-sample) border extension, 0-based
    idx0 = idx.astype(np.int64) - 1
    period = 2 * n_in
    idx0 = np.mod(idx0, period)
    idx0 = np.where(idx0 >= n_in, period - 1 - idx0, idx0)
    mat = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(mat, (np.repeat(np.arange(n_out), idx0.shape[1]), idx0.ravel()), wts.ravel())
    return mat


def bicubic_antialias(img: np.ndarray, *, size_hw: tuple[int, int]) -> np.ndarray:
    """MATLAB-style antialiased bicubic resize (the DIV2K/Set5 'bicubic' LR convention), HxWxC float32."""
    h, w = size_hw
    rows = _bicubic_weights(img.shape[0], h).astype(np.float32)
    cols = _bicubic_weights(img.shape[1], w).astype(np.float32)
    tmp = (rows @ img.reshape(img.shape[0], -1)).reshape(h, img.shape[1], -1)  # (h, W, C)
    return np.matmul(cols, tmp)  # (w, W) @ (h, W, C) -> (h, w, C)
