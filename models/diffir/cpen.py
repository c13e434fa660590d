"""CPEN, DiffIR's compact IR prior extraction network (arXiv 2303.09472, Sec. 3.1).

Convolutions and residual blocks, global average pooling, then a 2-layer MLP: an image in, one prior
vector z of size 4 * num_feats out. Stage 1 sees [lq, PixelUnshuffle_4(hq)]; stage 2 sees the lq only.

Legend: B batch, C channels, H height, W width, D = 4 * num_feats prior size.
"""

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True, kw_only=True, slots=True)
class CPENConfig:
    """num_feats is the paper's C' (64); the prior vector has 4 * num_feats entries."""

    num_feats: int = 64
    num_res_blocks: int = 9  # n_encoder_res: 9 for SR, 5 for deblurring

    def __post_init__(self) -> None:
        if self.num_feats < 1:
            raise ValueError(f"cpen.num_feats must be >= 1, got {self.num_feats}")
        if self.num_res_blocks < 0:
            raise ValueError(f"cpen.num_res_blocks must be >= 0, got {self.num_res_blocks}")

    @property
    def prior_dim(self) -> int:
        return 4 * self.num_feats


class ResBlock(nn.Module):
    """conv3x3, LeakyReLU(0.1), conv3x3, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(channels, channels, 3, padding=1)
        )

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return x_BCHW + self.body(x_BCHW)


class CPEN(nn.Module):
    """forward(x_BCHW) -> z_BD; in_channels depends on the stage and the task (see DiffIR.cpen_input)."""

    def __init__(self, in_channels: int, config: CPENConfig) -> None:
        super().__init__()
        n = config.num_feats
        self.head = nn.Sequential(nn.Conv2d(in_channels, n, 3, padding=1), nn.LeakyReLU(0.1))
        self.body = nn.Sequential(*[ResBlock(n) for _ in range(config.num_res_blocks)])
        self.tail = nn.Sequential(
            nn.Conv2d(n, 2 * n, 3, padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(2 * n, 2 * n, 3, padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(2 * n, 4 * n, 3, padding=1), nn.LeakyReLU(0.1),
            nn.AdaptiveAvgPool2d(1),
        )
        self.mlp = nn.Sequential(nn.Linear(4 * n, 4 * n), nn.LeakyReLU(0.1), nn.Linear(4 * n, 4 * n), nn.LeakyReLU(0.1))

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.tail(self.body(self.head(x_BCHW))).flatten(1))
