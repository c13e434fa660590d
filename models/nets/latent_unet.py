"""U-Net compressor of Latent Refusion (arXiv 2304.08291, Sec. 3.3): image -> (latent, skips) -> image.

The decoder takes the skip features of the *lq* image, so the latent only has to carry what the
restoration changes. Legend: B batch, C channels, H height, W width, Z latent channels, N heads, E head dim.
"""

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.nets.nafnet import LayerNorm
from models.tiling import pad_to_multiple


@dataclass(frozen=True, kw_only=True, slots=True)
class LatentUNetConfig:
    """Downscale factor is 2^(len(ch_mult) - 1); embed_dim latent channels."""

    in_channels: int = 3
    ch: int = 8
    ch_mult: tuple[int, ...] = (4, 8, 8, 16)
    embed_dim: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "ch_mult", tuple(self.ch_mult))
        if len(self.ch_mult) < 1 or min(self.ch_mult) < 1 or min(self.ch, self.embed_dim, self.in_channels) < 1:
            raise ValueError(f"ch, ch_mult and embed_dim must be positive and ch_mult non-empty, got {self}")

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


DEHAZE_UNET = LatentUNetConfig()  # 8x down, 8 latent channels, 2,007,859 parameters
BOKEH_UNET = LatentUNetConfig(ch=64, ch_mult=(1, 2, 4), embed_dim=4)  # 4x down, 6,155,139 parameters
TINY_UNET = LatentUNetConfig(ch=4, ch_mult=(2, 2, 4, 4), embed_dim=8)


class Skips(NamedTuple):
    """Encoder features reused by the decoder, plus the unpadded image size to crop back to."""

    features: list[torch.Tensor]  # [intro, (block1, block2) per level], 1 + 2 * levels tensors
    size: tuple[int, int]


def conv(c_in: int, c_out: int, k: int = 3, *, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=bias)


class ResBlock(nn.Module):
    """Two conv3x3 + SiLU with a 1x1 projection on the residual when the widths differ."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = conv(c_in, c_out), conv(c_out, c_out)
        self.res = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.conv1(x_BCHW))
        return F.silu(self.conv2(h)) + self.res(x_BCHW)


class LinearAttention(nn.Module):
    """Pre-normed residual linear attention (softmax over head dim for q, over positions for k)."""

    def __init__(self, c: int, heads: int = 4, head_dim: int = 32) -> None:
        super().__init__()
        self.heads, self.scale = heads, head_dim**-0.5
        self.prenorm = LayerNorm(c)
        self.to_qkv = conv(c, 3 * heads * head_dim, 1)
        self.to_out = nn.Sequential(conv(heads * head_dim, c, 1, bias=True), LayerNorm(c))

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x_BCHW.shape
        qkv = self.to_qkv(self.prenorm(x_BCHW)).reshape(B, 3, self.heads, -1, H * W)
        q_BNEL, k_BNEL, v_BNEL = qkv.unbind(1)
        q_BNEL = q_BNEL.softmax(dim=-2) * self.scale
        k_BNEL = k_BNEL.softmax(dim=-1)
        context_BNEE = torch.einsum("bnel,bnfl->bnef", k_BNEL, v_BNEL)
        out_BNEL = torch.einsum("bnef,bnel->bnfl", context_BNEE, q_BNEL)
        return x_BCHW + self.to_out(out_BNEL.reshape(B, -1, H, W))


class LatentUNet(nn.Module):
    """encode(x) -> (z, skips); decode(z, skips) -> x. Inputs are reflect-padded to 2^levels."""

    def __init__(self, config: LatentUNetConfig) -> None:
        super().__init__()
        self.config = config
        ch, levels = config.ch, len(config.ch_mult)
        dims = [ch * m for m in (1, *config.ch_mult)]
        self.init_conv = conv(config.in_channels, ch)
        self.encoder, self.decoder = nn.ModuleList(), nn.ModuleList()
        for i in range(levels):
            d_in, d_out, last = dims[i], dims[i + 1], i == levels - 1
            self.encoder.append(nn.ModuleList([
                ResBlock(d_in, d_in), ResBlock(d_in, d_in),
                LinearAttention(d_in) if last else nn.Identity(),
                conv(d_in, d_out) if last else nn.Conv2d(d_in, d_out, 4, stride=2, padding=1),
            ]))
            up = (nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv(d_out, d_in, bias=True))
                  if i > 0 else conv(d_out, d_in))
            self.decoder.insert(0, nn.ModuleList([
                ResBlock(d_out + d_in, d_out), ResBlock(d_out + d_in, d_out),
                LinearAttention(d_out) if last else nn.Identity(), up,
            ]))
        self.latent_conv = conv(dims[-1], config.embed_dim, 1)
        self.post_latent_conv = conv(config.embed_dim, dims[-1], 1)
        self.final_conv = nn.Conv2d(ch, config.in_channels, 3, padding=1)
        self.multiple = 2**levels

    def encode(self, x_BCHW: torch.Tensor) -> tuple[torch.Tensor, Skips]:
        """Latent z (B, Z, H'/f, W'/f) with H', W' padded to 2^levels, and the skips for decode."""
        H, W = x_BCHW.shape[-2:]
        x = pad_to_multiple(x_BCHW, self.multiple)
        x = self.init_conv(x)
        features = [x]
        for block1, block2, attn, down in self.encoder:
            x = block1(x)
            features.append(x)
            x = attn(block2(x))
            features.append(x)
            x = down(x)
        return self.latent_conv(x), Skips(features, (H, W))

    def decode(self, z_BZhw: torch.Tensor, skips: Skips) -> torch.Tensor:
        """Image (B, C, H, W) from a latent and (usually the lq's) skips; deepest skips are used first."""
        x = self.post_latent_conv(z_BZhw)
        features = skips.features
        for i, (block1, block2, attn, up) in enumerate(self.decoder):
            x = block1(torch.cat([x, features[-(2 * i + 1)]], dim=1))
            x = block2(torch.cat([x, features[-(2 * i + 2)]], dim=1))
            x = up(attn(x))
        H, W = skips.size
        return self.final_conv(x + features[0])[..., :H, :W]

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        """Plain reconstruction decode(encode(x))."""
        z, skips = self.encode(x_BCHW)
        return self.decode(z, skips)
