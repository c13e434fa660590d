"""DIRformer: DiffIR's Restormer-style U-net whose blocks are modulated by the prior z (arXiv 2303.09472).

Each TransformerBlock runs DMTA (transposed, channel-wise attention after a FiLM by z) and DGFN (gated
depth-wise feed-forward after its own FiLM), both pre-normalised. Restormer is Zamir et al. (arXiv 2111.09881).
scale 1 runs at full resolution and adds the input (deblurring); scale 2 or 4 runs at hq/4 and upsamples.
The inpainting net (in_channels 4: the masked image and its hole mask) runs at scale 1 and adds nothing: the
official inpainting DIRformer has its global residual commented out.

Legend: B batch, C channels, H height, W width, D prior size, N heads, L = H * W.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.nets.channel_stats import channel_var_mean

SCALES = (1, 2, 4)


@dataclass(frozen=True, kw_only=True, slots=True)
class DIRformerConfig:
    """Defaults are the RealSR x4 network (dim 64, blocks [13,1,1,1], 13 refinement blocks, ffn 2.2, BiasFree)."""

    dim: int = 64
    num_blocks: tuple[int, int, int, int] = (13, 1, 1, 1)
    num_refinement_blocks: int = 13
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    ffn_expansion: float = 2.2
    layer_norm_bias: bool = False  # False: BiasFree LayerNorm (SR); True: WithBias (deblurring)
    bias: bool = False  # conv biases, off in every DiffIR config

    def __post_init__(self) -> None:
        if len(self.num_blocks) != 4 or min(self.num_blocks) < 1:
            raise ValueError(f"dirformer.num_blocks must be 4 values >= 1, got {self.num_blocks}")
        if len(self.heads) != 4 or any(self.dim * 2**i % h for i, h in enumerate(self.heads)):
            raise ValueError(f"dirformer.heads must be 4 values dividing dim * 2^level, got {self.heads}")
        if self.dim < 1 or self.num_refinement_blocks < 0 or self.ffn_expansion <= 0:
            raise ValueError(f"dirformer: bad dim/num_refinement_blocks/ffn_expansion in {self}")


class ChannelLayerNorm(nn.Module):
    """LayerNorm over channels at each pixel; without bias it only rescales (Restormer's BiasFree variant)."""

    def __init__(self, channels: int, *, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        var, mean = channel_var_mean(x_BCHW)
        if self.bias is None:
            return x_BCHW / torch.sqrt(var + 1e-5) * self.weight[:, None, None]
        x = (x_BCHW - mean) / torch.sqrt(var + 1e-5)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def film(x_BCHW: torch.Tensor, z_BD: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """x * gamma + beta with [gamma, beta] = linear(z) (the prior modulation of DMTA and DGFN)."""
    gamma_BC, beta_BC = linear(z_BD).chunk(2, dim=1)
    return x_BCHW * gamma_BC[:, :, None, None] + beta_BC[:, :, None, None]


class DMTA(nn.Module):
    """Dynamic multi-head transposed attention: a C/N x C/N attention map per head, so cost is linear in L."""

    def __init__(self, channels: int, num_heads: int, prior_dim: int, *, bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.film = nn.Linear(prior_dim, 2 * channels, bias=False)
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=bias)
        self.qkv_dw = nn.Conv2d(3 * channels, 3 * channels, 3, padding=1, groups=3 * channels, bias=bias)
        self.proj = nn.Conv2d(channels, channels, 1, bias=bias)

    def forward(self, x_BCHW: torch.Tensor, z_BD: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x_BCHW.shape
        x = film(x_BCHW, z_BD, self.film)
        q, k, v = self.qkv_dw(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (y.reshape(B, self.num_heads, C // self.num_heads, H * W) for y in (q, k, v))
        # Cosine similarity between channels (q, k normalised over pixels), scaled by a learnt temperature.
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn_BNCC = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.proj((attn_BNCC @ v).reshape(B, C, H, W))


class DGFN(nn.Module):
    """Dynamic gated feed-forward: FiLM by z, 1x1 to 2 hidden, depth-wise 3x3, GELU(x1) * x2, 1x1 back."""

    def __init__(self, channels: int, expansion: float, prior_dim: int, *, bias: bool) -> None:
        super().__init__()
        hidden = int(channels * expansion)
        self.film = nn.Linear(prior_dim, 2 * channels, bias=False)
        self.project_in = nn.Conv2d(channels, 2 * hidden, 1, bias=bias)
        self.dw = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, channels, 1, bias=bias)

    def forward(self, x_BCHW: torch.Tensor, z_BD: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dw(self.project_in(film(x_BCHW, z_BD, self.film))).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    """x = x + DMTA(LN(x), z); x = x + DGFN(LN(x), z)."""

    def __init__(self, channels: int, num_heads: int, prior_dim: int, config: DIRformerConfig) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels, bias=config.layer_norm_bias)
        self.attn = DMTA(channels, num_heads, prior_dim, bias=config.bias)
        self.norm2 = ChannelLayerNorm(channels, bias=config.layer_norm_bias)
        self.ffn = DGFN(channels, config.ffn_expansion, prior_dim, bias=config.bias)

    def forward(self, x_BCHW: torch.Tensor, z_BD: torch.Tensor) -> torch.Tensor:
        x_BCHW = x_BCHW + self.attn(self.norm1(x_BCHW), z_BD)
        return x_BCHW + self.ffn(self.norm2(x_BCHW), z_BD)


class Stage(nn.ModuleList):
    """A run of TransformerBlocks sharing one width; forward threads z through every block."""

    def __init__(self, num: int, channels: int, num_heads: int, prior_dim: int, config: DIRformerConfig) -> None:
        super().__init__([TransformerBlock(channels, num_heads, prior_dim, config) for _ in range(num)])

    def forward(self, x_BCHW: torch.Tensor, z_BD: torch.Tensor) -> torch.Tensor:
        for block in self:
            x_BCHW = block(x_BCHW, z_BD)
        return x_BCHW


def downsample(channels: int, bias: bool) -> nn.Module:
    """c -> 2c at half resolution: conv3x3 to c/2, then PixelUnshuffle(2)."""
    return nn.Sequential(nn.Conv2d(channels, channels // 2, 3, padding=1, bias=bias), nn.PixelUnshuffle(2))


def upsample(channels: int, bias: bool) -> nn.Module:
    """c -> c/2 at double resolution: conv3x3 to 2c, then PixelShuffle(2)."""
    return nn.Sequential(nn.Conv2d(channels, 2 * channels, 3, padding=1, bias=bias), nn.PixelShuffle(2))


class DIRformer(nn.Module):
    """forward(lq_BCHW, z_BD) -> out_BCHW (3 channels) at lq size * scale; lq sides: multiples of 16 at scale 2,
    else 8. in_channels 4 (inpainting: masked image + hole mask) needs scale 1 and has no global residual."""

    def __init__(self, config: DIRformerConfig, *, scale: int, prior_dim: int, in_channels: int = 3) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale}")
        if in_channels not in (3, 4) or (in_channels == 4 and scale != 1):
            raise ValueError(f"in_channels must be 3, or 4 (inpainting) at scale 1; got {in_channels} at scale {scale}")
        self.scale, self.residual = scale, in_channels == 3
        c, n, h, b = config.dim, config.num_blocks, config.heads, config.bias
        # SR runs the U-net at hq/4: lq x4 as is, lq x2 pixel-unshuffled by 2 (12 channels).
        self.unshuffle = nn.PixelUnshuffle(2) if scale == 2 else nn.Identity()
        in_channels = 12 if scale == 2 else in_channels
        self.patch_embed = nn.Conv2d(in_channels, c, 3, padding=1, bias=b)
        self.enc1 = Stage(n[0], c, h[0], prior_dim, config)
        self.down1 = downsample(c, b)
        self.enc2 = Stage(n[1], 2 * c, h[1], prior_dim, config)
        self.down2 = downsample(2 * c, b)
        self.enc3 = Stage(n[2], 4 * c, h[2], prior_dim, config)
        self.down3 = downsample(4 * c, b)
        self.latent = Stage(n[3], 8 * c, h[3], prior_dim, config)
        self.up3 = upsample(8 * c, b)
        self.reduce3 = nn.Conv2d(8 * c, 4 * c, 1, bias=b)
        self.dec3 = Stage(n[2], 4 * c, h[2], prior_dim, config)
        self.up2 = upsample(4 * c, b)
        self.reduce2 = nn.Conv2d(4 * c, 2 * c, 1, bias=b)
        self.dec2 = Stage(n[1], 2 * c, h[1], prior_dim, config)
        self.up1 = upsample(2 * c, b)
        # Level 1 keeps the concatenated 2c channels (no 1x1 reduction), as in Restormer.
        self.dec1 = Stage(n[0], 2 * c, h[0], prior_dim, config)
        self.refinement = Stage(config.num_refinement_blocks, 2 * c, h[0], prior_dim, config)
        if scale == 1:
            self.tail = nn.Conv2d(2 * c, 3, 3, padding=1, bias=b)
        else:
            self.tail = nn.Sequential(
                nn.Conv2d(2 * c, 8 * c, 3, padding=1), nn.PixelShuffle(2),
                nn.Conv2d(2 * c, 8 * c, 3, padding=1), nn.PixelShuffle(2),
                nn.Conv2d(2 * c, 3, 3, padding=1),
            )

    def forward(self, lq_BCHW: torch.Tensor, z_BD: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(self.patch_embed(self.unshuffle(lq_BCHW)), z_BD)
        e2 = self.enc2(self.down1(e1), z_BD)
        e3 = self.enc3(self.down2(e2), z_BD)
        x = self.latent(self.down3(e3), z_BD)
        x = self.dec3(self.reduce3(torch.cat([self.up3(x), e3], dim=1)), z_BD)
        x = self.dec2(self.reduce2(torch.cat([self.up2(x), e2], dim=1)), z_BD)
        x = self.dec1(torch.cat([self.up1(x), e1], dim=1), z_BD)
        x = self.tail(self.refinement(x, z_BD))
        if not self.residual:
            return x
        if self.scale == 1:
            return x + lq_BCHW
        return x + F.interpolate(lq_BCHW, scale_factor=self.scale, mode="nearest")
