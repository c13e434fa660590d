"""Shared test images for the degradation tests."""

import cv2
import numpy as np
import pytest


def photo_like(size: int, seed: int = 0) -> np.ndarray:
    """Smooth multi-scale texture plus hard-edged discs: float32 RGB [0, 1], size x size x 3."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.float32)
    for cells in (4, 16):
        field = rng.random((cells, cells, 3), dtype=np.float32)
        img += cv2.resize(field, (size, size), interpolation=cv2.INTER_CUBIC) / 2
    for _ in range(6):
        x, y, r = rng.integers(size, size=3)
        cv2.circle(img, (int(x), int(y)), int(r) // 4 + 2, rng.random(3).tolist(), -1)
    return np.clip(img, 0, 1)


@pytest.fixture
def hq64() -> np.ndarray:
    return photo_like(64)


@pytest.fixture
def hq96() -> np.ndarray:
    return photo_like(96, seed=1)
