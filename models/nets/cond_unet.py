"""Time-conditioned U-Net denoiser of IR-SDE (Luo et al., arXiv 2301.11699): the official `ConditionalUNet`.

forward(xt, t, lq) -> predicted noise. Input is [xt - lq, lq]; each level has two time-modulated ResBlocks
and a residual linear attention; the decoder concatenates both skips of its level. IR-SDE's yml: width 64,
depth 4 (widths 64 -> 1024, 137 M parameters). Sides are reflect-padded to a multiple of 2^depth.
Legend: B batch, C channels, H height, W width, D time-embedding width (4 x width), t_B raw integer steps.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.nets.embeddings import sinusoidal_embedding
from models.nets.nafnet import LayerNorm


@dataclass(frozen=True, kw_only=True, slots=True)
class CondUNetConfig:
    """Width and depth of the U-Net; img_channels is the channel count of xt, lq and the output."""

    img_channels: int = 3
    width: int = 64
    depth: int = 4
    attn_heads: int = 4
    attn_head_dim: int = 32
    zero_one_inputs: bool = False  # map xt, lq from [-1, 1] to [0, 1] first: the official weights' range

    def __post_init__(self) -> None:
        if self.width < 4 or self.width % 2 or self.depth < 1 or self.img_channels < 1:
            raise ValueError(f"need an even width >= 4, depth >= 1 and img_channels >= 1, got {self}")
        if self.attn_heads < 1 or self.attn_head_dim < 1:
            raise ValueError(f"attention needs heads and head_dim >= 1, got {self.attn_heads}, {self.attn_head_dim}")


IRSDE_UNET = CondUNetConfig()
TINY_UNET_DENOISER = CondUNetConfig(width=8, depth=2, attn_heads=2, attn_head_dim=4)


class ResBlock(nn.Module):
    """x + ... : conv -> FiLM(t) -> SiLU -> conv -> SiLU, plus a 1x1 skip when the width changes (no conv biases)."""

    def __init__(self, c_in: int, c_out: int, time_dim: int) -> None:
        super().__init__()
        self.time_proj = nn.Linear(time_dim, 2 * c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()

    def forward(self, x_BCHW: torch.Tensor, temb_BD: torch.Tensor) -> torch.Tensor:
        scale, shift = self.time_proj(F.silu(temb_BD))[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.conv1(x_BCHW) * (scale + 1) + shift)
        return F.silu(self.conv2(h)) + self.skip(x_BCHW)


class LinearAttention(nn.Module):
    """x + attn(norm(x)), attention linear in H*W: softmax over channels for q, over positions for k."""

    def __init__(self, channels: int, *, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, head_dim**-0.5
        self.norm = LayerNorm(channels)
        self.to_qkv = nn.Conv2d(channels, 3 * heads * head_dim, 1, bias=False)
        self.to_out = nn.Conv2d(heads * head_dim, channels, 1)
        self.out_norm = LayerNorm(channels)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x_BCHW.shape
        q, k, v = (t.reshape(B, self.heads, -1, H * W) for t in self.to_qkv(self.norm(x_BCHW)).chunk(3, dim=1))
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v / (H * W))
        out = torch.einsum("bhde,bhdn->bhen", context, q).reshape(B, -1, H, W)
        return x_BCHW + self.out_norm(self.to_out(out))


class DownLevel(nn.Module):
    """Two ResBlocks (a skip after each), attention, then a stride-2 4x4 conv (the last level: a 3x3 conv)."""

    def __init__(self, c: int, c_next: int, time_dim: int, config: CondUNetConfig, *, last: bool) -> None:
        super().__init__()
        self.res1, self.res2 = ResBlock(c, c, time_dim), ResBlock(c, c, time_dim)
        self.attn = LinearAttention(c, heads=config.attn_heads, head_dim=config.attn_head_dim)
        self.down = nn.Conv2d(c, c_next, 3, padding=1, bias=False) if last else nn.Conv2d(c, c_next, 4, 2, 1)


class UpLevel(nn.Module):
    """Two ResBlocks over [x, skip], attention, then nearest x2 + 3x3 conv (the outermost level: a 3x3 conv)."""

    def __init__(self, c: int, c_next: int, time_dim: int, config: CondUNetConfig, *, outermost: bool) -> None:
        super().__init__()
        skip = c_next  # the skips of this level have the encoder's width, which this level maps back to
        self.res1, self.res2 = ResBlock(c + skip, c, time_dim), ResBlock(c + skip, c, time_dim)
        self.attn = LinearAttention(c, heads=config.attn_heads, head_dim=config.attn_head_dim)
        self.upsample = not outermost
        self.up = nn.Conv2d(c, c_next, 3, padding=1, bias=not outermost)


class ConditionalUNet(nn.Module):
    """IR-SDE's noise predictor; the same forward(xt, t, lq) as ConditionalNAFNet."""

    def __init__(self, config: CondUNetConfig) -> None:
        super().__init__()
        self.config = config
        w, n, time_dim = config.width, config.depth, 4 * config.width
        self.multiple = 2**n
        self.intro = nn.Conv2d(2 * config.img_channels, w, 7, padding=3, bias=False)
        self.time_mlp = nn.Sequential(nn.Linear(w, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim))
        widths = [w * 2**i for i in range(n + 1)]
        self.downs = nn.ModuleList(
            DownLevel(widths[i], widths[i + 1], time_dim, config, last=i == n - 1) for i in range(n))
        self.ups = nn.ModuleList(
            UpLevel(widths[i + 1], widths[i], time_dim, config, outermost=i == 0) for i in reversed(range(n)))
        mid = widths[n]
        self.mid1 = ResBlock(mid, mid, time_dim)
        self.mid_attn = LinearAttention(mid, heads=config.attn_heads, head_dim=config.attn_head_dim)
        self.mid2 = ResBlock(mid, mid, time_dim)
        self.final_res = ResBlock(2 * w, w, time_dim)
        self.ending = nn.Conv2d(w, config.img_channels, 3, padding=1)

    def forward(self, xt_BCHW: torch.Tensor, t_B: torch.Tensor, lq_BCHW: torch.Tensor) -> torch.Tensor:
        """Predicted noise eps_hat, same shape as xt; t_B holds raw steps in {1..T}."""
        H, W = xt_BCHW.shape[-2:]
        if self.config.zero_one_inputs:  # imported official weights; eps is range-free (lambda scales with the range)
            xt_BCHW, lq_BCHW = (xt_BCHW + 1) / 2, (lq_BCHW + 1) / 2
        x = torch.cat([xt_BCHW - lq_BCHW, lq_BCHW], dim=1)
        x = F.pad(x, (0, -W % self.multiple, 0, -H % self.multiple), mode="reflect")
        x = intro = self.intro(x)
        temb_BD = self.time_mlp(sinusoidal_embedding(t_B, self.config.width).to(x.dtype))
        skips = []
        for level in self.downs:
            x = level.res1(x, temb_BD)
            skips.append(x)
            x = level.attn(level.res2(x, temb_BD))
            skips.append(x)
            x = level.down(x)
        x = self.mid2(self.mid_attn(self.mid1(x, temb_BD)), temb_BD)
        for level in self.ups:
            x = level.res1(torch.cat([x, skips.pop()], dim=1), temb_BD)
            x = level.attn(level.res2(torch.cat([x, skips.pop()], dim=1), temb_BD))
            x = level.up(F.interpolate(x, scale_factor=2.0, mode="nearest") if level.upsample else x)
        x = self.final_res(torch.cat([x, intro], dim=1), temb_BD)
        return self.ending(x)[..., :H, :W]
