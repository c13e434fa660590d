"""MSGD's icDPM UNet (arXiv 2212.01789): a fully convolutional ResBlock UNet with guided encoder blocks.

The input is concat(x_t, y) (the blurry image y as the condition, as in DvSR, arXiv 2112.02475); the time
enters every ResBlock through a scale/shift, and the encoder ResBlocks at resolution H / 2^k add a 1x1
projection of the structure guidance h_k into their features. The output is the predicted noise.

Legend: B batch, C channels, H height, W width, E time-embedding width, G guidance channels.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.nets.embeddings import sinusoidal_embedding


@dataclass(frozen=True, kw_only=True, slots=True)
class UNetConfig:
    """Defaults: base 64, mults (1, 2, 3, 4), 2 ResBlocks per level, no attention (methods.md 3.4, our choice)."""

    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 2
    norm_groups: int = 32
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.base_channels < 1 or self.norm_groups < 1 or min(self.channel_mults, default=0) < 1:
            raise ValueError(f"unet: base_channels, norm_groups and channel_mults must be >= 1, got {self}")
        if not self.channel_mults or any(self.base_channels * m % self.norm_groups for m in self.channel_mults):
            raise ValueError(f"unet: base_channels * each of {self.channel_mults} must be a multiple of "
                             f"norm_groups={self.norm_groups}, base_channels={self.base_channels}")
        if self.num_res_blocks < 1 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"unet: need num_res_blocks >= 1 and dropout in [0, 1), got {self}")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_mults) - 1)


class ResBlock(nn.Module):
    """conv(SiLU(GN(x))), time scale/shift, optional + conv1x1(guidance), conv(SiLU(GN(h))), plus a skip."""

    def __init__(
        self, in_channels: int, out_channels: int, time_dim: int, config: UNetConfig, *, guidance_channels: int = 0
    ) -> None:
        super().__init__()
        g = config.norm_groups
        self.norm1, self.conv1 = nn.GroupNorm(g, in_channels), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(time_dim, 2 * out_channels)
        self.guide = nn.Conv2d(guidance_channels, out_channels, 1) if guidance_channels else None
        self.norm2, self.conv2 = nn.GroupNorm(g, out_channels), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.dropout = nn.Dropout(config.dropout)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x_BCHW: torch.Tensor, temb_BE: torch.Tensor, guide_BGHW: torch.Tensor | None = None):
        h = self.conv1(F.silu(self.norm1(x_BCHW)))
        scale_BC, shift_BC = self.time(F.silu(temb_BE)).chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale_BC[:, :, None, None]) + shift_BC[:, :, None, None]
        if self.guide is not None:
            # "Added into the feature maps": the guided residual block of MSGD.
            h = h + self.guide(guide_BGHW)
        return self.skip(x_BCHW) + self.conv2(self.dropout(F.silu(h)))


class GuidedUNet(nn.Module):
    """forward(xt, t_B, cond, guidance) -> eps_hat; guidance maps level k to features at H / 2^k.

    Levels listed in guided_levels use guided ResBlocks in the encoder; the decoder is a plain UNet decoder.
    """

    def __init__(
        self, config: UNetConfig, *, in_channels: int = 6, out_channels: int = 3,
        guided_levels: tuple[int, ...] = (), guidance_channels: int = 0,
    ) -> None:
        super().__init__()
        if guided_levels and max(guided_levels) >= len(config.channel_mults):
            raise ValueError(f"guided levels {guided_levels} need more than {len(config.channel_mults)} UNet levels")
        c0 = config.base_channels
        self.base_channels, time_dim = c0, 4 * c0
        self.time_mlp = nn.Sequential(nn.Linear(c0, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.conv_in = nn.Conv2d(in_channels, c0, 3, padding=1)
        self.down_blocks, self.downsamples = nn.ModuleList(), nn.ModuleList()
        skips, ch = [c0], c0
        for i, mult in enumerate(config.channel_mults):
            g = guidance_channels if i in guided_levels else 0
            level = nn.ModuleList()
            for _ in range(config.num_res_blocks):
                level.append(ResBlock(ch, c0 * mult, time_dim, config, guidance_channels=g))
                ch = c0 * mult
                skips.append(ch)
            self.down_blocks.append(level)
            last = i == len(config.channel_mults) - 1
            self.downsamples.append(nn.Identity() if last else nn.Conv2d(ch, ch, 3, stride=2, padding=1))
            if not last:
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, time_dim, config), ResBlock(ch, ch, time_dim, config)])
        self.up_blocks, self.upsamples = nn.ModuleList(), nn.ModuleList()
        for i, mult in reversed(list(enumerate(config.channel_mults))):
            level = nn.ModuleList()
            for _ in range(config.num_res_blocks + 1):
                level.append(ResBlock(ch + skips.pop(), c0 * mult, time_dim, config))
                ch = c0 * mult
            self.up_blocks.append(level)
            self.upsamples.append(nn.Conv2d(ch, ch, 3, padding=1) if i > 0 else nn.Identity())
        self.out = nn.Sequential(nn.GroupNorm(config.norm_groups, ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))

    def forward(
        self, xt_BCHW: torch.Tensor, t_B: torch.Tensor, cond_BCHW: torch.Tensor, guidance: dict[int, torch.Tensor]
    ) -> torch.Tensor:
        temb_BE = self.time_mlp(sinusoidal_embedding(t_B, self.base_channels).to(xt_BCHW.dtype))
        h = self.conv_in(torch.cat([xt_BCHW, cond_BCHW], dim=1))
        hs = [h]
        for i, (level, down) in enumerate(zip(self.down_blocks, self.downsamples)):
            for block in level:
                h = block(h, temb_BE, guidance.get(i))
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        for block in self.mid:
            h = block(h, temb_BE)
        for level, up in zip(self.up_blocks, self.upsamples):
            for block in level:
                h = block(torch.cat([h, hs.pop()], dim=1), temb_BE)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h)
