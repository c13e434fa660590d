"""Sinusoidal time embeddings shared by the denoisers (Vaswani et al. 2017, arXiv 1706.03762).

Legend: B batch, D embedding width.
"""

import math

import torch


def sinusoidal_embedding(t_B: torch.Tensor, dim: int, *, max_period: float = 10000.0) -> torch.Tensor:
    """[sin | cos] features of raw (unnormalised) timesteps, shape (B, dim), float32.

    Frequencies are exp(-ln(max_period) * k / (half - 1)), k = 0..half-1, as in the IR-SDE code.
    """
    if dim % 2 != 0 or dim < 4:
        raise ValueError(f"dim must be even and >= 4, got {dim}")
    half = dim // 2
    k = torch.arange(half, device=t_B.device, dtype=torch.float32)
    freqs = torch.exp(-math.log(max_period) * k / (half - 1))
    args = t_B.float().reshape(-1, 1) * freqs.reshape(1, -1)
    return torch.cat([args.sin(), args.cos()], dim=-1)
