"""The final 8-bit quantisation of every synthesised LQ (Real-ESRGAN, arXiv 2107.10833: round(x*255)/255)."""

import numpy as np


def quantize_8bit(img: np.ndarray) -> np.ndarray:
    """clip(round(255 x), 0, 255) / 255 as float32 (round half to even, like torch.round)."""
    return (np.rint(np.clip(img, 0.0, 1.0) * np.float32(255.0)) / np.float32(255.0)).astype(np.float32)
