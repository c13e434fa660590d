"""The one conversion between stored images (BHWC uint8) and model tensors (BCHW float32 in [-1, 1])."""

import numpy as np
import torch


def to_model(x_BHWC: torch.Tensor) -> torch.Tensor:
    """uint8 BHWC in [0, 255] -> float32 BCHW in [-1, 1], on the input's device."""
    if x_BHWC.dtype != torch.uint8 or x_BHWC.ndim != 4:
        raise ValueError(f"to_model expects a BHWC uint8 tensor, got {x_BHWC.dtype} of shape {tuple(x_BHWC.shape)}")
    x_BCHW = x_BHWC.permute(0, 3, 1, 2).float()
    return x_BCHW.div_(127.5).sub_(1.0).contiguous()


def to_image(x_BCHW: torch.Tensor) -> np.ndarray:
    """float BCHW in [-1, 1] -> uint8 BHWC numpy on the CPU (values outside [-1, 1] are clipped)."""
    if x_BCHW.ndim != 4:
        raise ValueError(f"to_image expects a BCHW tensor, got shape {tuple(x_BCHW.shape)}")
    x_BHWC = x_BCHW.detach().float().permute(0, 2, 3, 1)
    # Round to the nearest level so to_image(to_model(x)) == x exactly.
    x_BHWC = ((x_BHWC + 1.0) * 127.5).clamp_(0.0, 255.0).round_()
    return x_BHWC.to(device="cpu", dtype=torch.uint8).numpy()
