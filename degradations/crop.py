"""Random crops and paired augmentation for (hq, lq) training pairs: the crop taken before
degradation (with a margin, as traiNNer-redux's gt_size + 32), the aligned HQ/LQ patch crop after
it (BasicSR paired_random_crop, arXiv 2107.10833 pipeline) and flips/transposes applied to both.
"""

from typing import Literal

import cv2
import numpy as np


class ImageTooSmall(ValueError):
    """The image is smaller than the requested crop and the caller asked to skip such images."""


def random_crop(
    img: np.ndarray,
    size: int,
    rng: np.random.Generator,
    *,
    multiple_of: int = 1,
    small: Literal["pad", "skip"] = "pad",
) -> np.ndarray:
    """A size x size crop of an HxWxC image at a random position.

    Top/left are multiples of `multiple_of` (e.g. the SR scale, so the crop lies on the LQ grid).
    Images smaller than size are reflect-101 padded at the bottom/right like Real-ESRGAN's dataset
    (small="pad") or rejected with ImageTooSmall (small="skip").
    """
    if small not in ("pad", "skip"):
        raise ValueError(f"small={small!r}: must be one of ('pad', 'skip')")
    if size % multiple_of != 0:
        raise ValueError(f"size={size} must be a multiple of multiple_of={multiple_of}")
    img = pad_to_crop(img, size, small=small)
    h, w = img.shape[:2]
    top = int(rng.integers((h - size) // multiple_of + 1)) * multiple_of
    left = int(rng.integers((w - size) // multiple_of + 1)) * multiple_of
    return np.ascontiguousarray(img[top : top + size, left : left + size])


def paired_crop(
    hq: np.ndarray, lq: np.ndarray, patch: int, scale: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned crops: hq patch x patch at (scale*top, scale*left), lq (patch/scale)^2 at (top, left)."""
    if patch % scale != 0:
        raise ValueError(f"patch={patch} must be a multiple of scale={scale}")
    lq_patch = patch // scale
    lh, lw = lq.shape[:2]
    if (hq.shape[0] // scale, hq.shape[1] // scale) != (lh, lw):
        raise ValueError(f"lq {lh}x{lw} is not hq {hq.shape[0]}x{hq.shape[1]} // {scale}")
    if lh < lq_patch or lw < lq_patch:
        raise ImageTooSmall(f"lq {lh}x{lw} is smaller than the lq patch {lq_patch}")
    top = int(rng.integers(lh - lq_patch + 1))
    left = int(rng.integers(lw - lq_patch + 1))
    lq_crop = lq[top : top + lq_patch, left : left + lq_patch]
    hq_crop = hq[scale * top : scale * (top + lq_patch), scale * left : scale * (left + lq_patch)]
    return np.ascontiguousarray(hq_crop), np.ascontiguousarray(lq_crop)


def augment_pair(
    hq: np.ndarray, lq: np.ndarray, rng: np.random.Generator, *, hflip: bool = True, rot: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip, vertical flip and transpose, each with p 0.5 and identical for hq and lq.

    rot=True enables the vertical flip and transpose (together with hflip: all 8 dihedral transforms).
    Three uniforms are always drawn, so the rng advances the same way whatever the flags.
    """
    u = rng.uniform(size=3)
    for do, op in (
        (hflip and u[0] < 0.5, lambda x: x[:, ::-1]),
        (rot and u[1] < 0.5, lambda x: x[::-1, :]),
        (rot and u[2] < 0.5, lambda x: x.transpose(1, 0, *range(2, x.ndim))),
    ):
        if do:
            hq, lq = op(hq), op(lq)
    return np.ascontiguousarray(hq), np.ascontiguousarray(lq)


def pad_to_crop(img: np.ndarray, size: int, *, small: str) -> np.ndarray:
    """img reflect-101 padded at the bottom/right to at least size x size ("pad"), or ImageTooSmall ("skip")."""
    h, w = img.shape[:2]
    if h >= size and w >= size:
        return img
    if small == "skip":
        raise ImageTooSmall(f"image {h}x{w} is smaller than the crop size {size}")
    return cv2.copyMakeBorder(img, 0, max(0, size - h), 0, max(0, size - w), cv2.BORDER_REFLECT_101)
