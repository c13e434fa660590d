"""DiffIR's prior denoiser (arXiv 2303.09472, Sec. 3.2): an MLP over the prior vector.

Its reverse chain is models/sampling.reverse over the x0 DDPM (models/processes/ddpm.py).

The denoiser sees [condition from CPEN_S2, time feature, x_t] and predicts x0 (the stage-1 prior). The time
feature is the reference's scalar t / (10 T) by default (`time_encoding="scalar"`); "sinusoidal" swaps in the
shared sinusoidal embedding, which the official code does not have.

Legend: B batch, D prior size, E time-embedding width.
"""

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from models.nets.embeddings import sinusoidal_embedding


@dataclass(frozen=True, kw_only=True, slots=True)
class PriorDenoiserConfig:
    """num_layers is n_denoise_res (1 in every DiffIR config: two linear layers in all)."""

    num_layers: int = 1
    # "scalar": the reference's single input feature t / (10 T) (Linear(2D + 1 -> D)); "sinusoidal": a
    # time_dim-wide sinusoidal embedding instead (not in the official code).
    time_encoding: Literal["scalar", "sinusoidal"] = "scalar"
    time_dim: int = 16  # sinusoidal only

    def __post_init__(self) -> None:
        if self.num_layers < 0:
            raise ValueError(f"denoiser.num_layers must be >= 0, got {self.num_layers}")
        if self.time_encoding not in ("scalar", "sinusoidal"):
            raise ValueError(f"denoiser.time_encoding must be one of ('scalar', 'sinusoidal'), got {self.time_encoding!r}")
        if self.time_dim < 4 or self.time_dim % 2:
            raise ValueError(f"denoiser.time_dim must be even and >= 4, got {self.time_dim}")


class PriorDenoiser(nn.Module):
    """forward(xt_BD, t_B, cond_BD) -> x0_hat_BD; Linear + LeakyReLU(0.1) layers without skips (as the reference)."""

    def __init__(self, prior_dim: int, config: PriorDenoiserConfig, *, num_train_steps: int) -> None:
        super().__init__()
        self.time_encoding, self.time_dim, self.num_train_steps = config.time_encoding, config.time_dim, num_train_steps
        width = 1 if config.time_encoding == "scalar" else config.time_dim
        layers: list[nn.Module] = [nn.Linear(2 * prior_dim + width, prior_dim), nn.LeakyReLU(0.1)]
        for _ in range(config.num_layers):
            layers += [nn.Linear(prior_dim, prior_dim), nn.LeakyReLU(0.1)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, xt_BD: torch.Tensor, t_B: torch.Tensor, cond_BD: torch.Tensor) -> torch.Tensor:
        if self.time_encoding == "scalar":  # concat[c, t / (10 T), x_t] as the reference
            t_BE = (t_B.to(xt_BD.dtype) / (10 * self.num_train_steps))[:, None]
        else:
            t_BE = sinusoidal_embedding(t_B, self.time_dim).to(xt_BD.dtype)
        return self.mlp(torch.cat([cond_BD, t_BE, xt_BD], dim=1))

