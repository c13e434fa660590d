"""Time-conditioned NAFNet denoiser of Refusion (arXiv 2304.08291), built on NAFNet (arXiv 2204.04676).

forward(xt, t, lq) -> predicted noise. Input is [xt - lq, lq]; blocks are FiLM-modulated by a time MLP.
Legend: B batch, C channels, H height, W width, D time-embedding width, t_B raw integer steps.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.nets.channel_stats import channel_var_mean
from models.nets.embeddings import sinusoidal_embedding


@dataclass(frozen=True, kw_only=True, slots=True)
class NAFNetConfig:
    """Widths and depths; img_channels is the channel count of xt, lq and the output."""

    img_channels: int = 3
    width: int = 64
    enc_blocks: tuple[int, ...] = (1, 1, 1, 28)
    middle_blocks: int = 1
    dec_blocks: tuple[int, ...] = (1, 1, 1, 1)
    global_skip: bool = False  # latent-dehazing variant: ending(x + intro features)
    zero_one_inputs: bool = False  # map xt, lq from [-1, 1] to [0, 1] first: the official weights' range

    def __post_init__(self) -> None:
        object.__setattr__(self, "enc_blocks", tuple(self.enc_blocks))
        object.__setattr__(self, "dec_blocks", tuple(self.dec_blocks))
        if len(self.enc_blocks) != len(self.dec_blocks):
            raise ValueError(f"enc_blocks and dec_blocks need equal length, got {self.enc_blocks}, {self.dec_blocks}")
        if self.width < 4 or self.width % 2 != 0:
            raise ValueError(f"width must be even and >= 4, got {self.width}")
        if self.img_channels < 1 or self.middle_blocks < 0 or min(self.enc_blocks + self.dec_blocks, default=0) < 0:
            raise ValueError(f"bad channel/block counts in {self}")


REFUSION_NAFNET = NAFNetConfig()  # 76,608,387 parameters
TINY_NAFNET = NAFNetConfig(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1))


class LayerNorm(nn.Module):
    """Channel-wise LayerNorm with a gain and no bias (the IR-SDE code's variant, not NAFNet's LayerNorm2d)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        eps = 1e-5 if x_BCHW.dtype == torch.float32 else 1e-3
        var, mean = channel_var_mean(x_BCHW)
        return (x_BCHW - mean) * (var + eps).rsqrt() * self.g


class SimpleGate(nn.Module):
    """x1 * x2 over the two channel halves (NAFNet's only nonlinearity)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return x1 * x2


class NAFBlock(nn.Module):
    """NAFBlock with FiLM from the time embedding; identity at init (beta = gamma = 0)."""

    def __init__(self, c: int, time_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(SimpleGate(), nn.Linear(time_dim // 2, 4 * c))
        self.norm1, self.norm2 = LayerNorm(c), LayerNorm(c)
        self.conv1 = nn.Conv2d(c, 2 * c, 1)
        self.conv2 = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)  # depthwise
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1))  # simplified channel attention
        self.conv3 = nn.Conv2d(c, c, 1)
        self.conv4 = nn.Conv2d(c, 2 * c, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        self.gate = SimpleGate()
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp_BCHW: torch.Tensor, temb_BD: torch.Tensor) -> torch.Tensor:
        film_B4C = self.mlp(temb_BD)[:, :, None, None]
        shift_att, scale_att, shift_ffn, scale_ffn = film_B4C.chunk(4, dim=1)
        x = self.norm1(inp_BCHW) * (1 + scale_att) + shift_att
        x = self.gate(self.conv2(self.conv1(x)))
        x = x * self.sca(x)
        y = inp_BCHW + self.beta * self.conv3(x)
        x = self.norm2(y) * (1 + scale_ffn) + shift_ffn
        x = self.conv5(self.gate(self.conv4(x)))
        return y + self.gamma * x


class ConditionalNAFNet(nn.Module):
    """U-Net of NAFBlocks predicting the noise of an IR-SDE state; sizes are padded to 2^levels and cropped."""

    def __init__(self, config: NAFNetConfig) -> None:
        super().__init__()
        self.config = config
        w, c_img = config.width, config.img_channels
        time_dim = 4 * w
        self.time_mlp = nn.Sequential(nn.Linear(w, 2 * time_dim), SimpleGate(), nn.Linear(time_dim, time_dim))
        self.intro = nn.Conv2d(2 * c_img, w, 3, padding=1)
        self.ending = nn.Conv2d(w, c_img, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        ch = w
        for n in config.enc_blocks:
            self.encoders.append(nn.ModuleList(NAFBlock(ch, time_dim) for _ in range(n)))
            self.downs.append(nn.Conv2d(ch, 2 * ch, 2, stride=2))
            ch *= 2
        self.middle = nn.ModuleList(NAFBlock(ch, time_dim) for _ in range(config.middle_blocks))
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        for n in config.dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(ch, 2 * ch, 1, bias=False), nn.PixelShuffle(2)))
            ch //= 2
            self.decoders.append(nn.ModuleList(NAFBlock(ch, time_dim) for _ in range(n)))
        self.multiple = 2 ** len(config.enc_blocks)

    def forward(self, xt_BCHW: torch.Tensor, t_B: torch.Tensor, lq_BCHW: torch.Tensor) -> torch.Tensor:
        """Predicted noise eps_hat, same shape as xt; t_B holds raw steps in {1..T}."""
        H, W = xt_BCHW.shape[-2:]
        if self.config.zero_one_inputs:  # imported official weights; eps is range-free (lambda scales with the range)
            xt_BCHW, lq_BCHW = (xt_BCHW + 1) / 2, (lq_BCHW + 1) / 2
        pad = (0, -W % self.multiple, 0, -H % self.multiple)  # zero-pad bottom/right
        x = F.pad(torch.cat([xt_BCHW - lq_BCHW, lq_BCHW], dim=1), pad)
        temb_BD = self.time_mlp(sinusoidal_embedding(t_B, self.config.width).to(x.dtype))
        x = intro = self.intro(x)
        skips = []
        for blocks, down in zip(self.encoders, self.downs):
            for block in blocks:
                x = block(x, temb_BD)
            skips.append(x)
            x = down(x)
        for block in self.middle:
            x = block(x, temb_BD)
        for up, blocks, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = up(x) + skip  # additive skip
            for block in blocks:
                x = block(x, temb_BD)
        if self.config.global_skip:
            x = x + intro
        return self.ending(x)[..., :H, :W]
