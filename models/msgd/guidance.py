"""MSGD's multiscale structure guidance (Ren et al., arXiv 2212.01789, Sec. 3.2).

For each scale k: phi_k(y) = downsample_{2^k}(grayscale(y)) (+ small Gaussian noise in training), then
h_k = H(phi_k(y)) from a conv + ResBlocks network, and a regressor R(h_k) predicting the downsampled
grayscale sharp image. The h_k are what the UNet encoder's guided ResBlocks add into their features.
The paper gives the scales (k = 1, 2, 3) and the L2 guidance loss; its noise sigma, widths and sharing are
UNVERIFIED: every one is a config field.

Legend: B batch, C channels, H height, W width; k a scale exponent (features at H / 2^k).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# ITU-R BT.601 luma, the usual RGB -> grayscale map; linear, so it works on [-1, 1] data too.
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True, kw_only=True, slots=True)
class GuidanceConfig:
    """Defaults are our choices (methods.md section 3.4), none checked against the paper."""

    scales: tuple[int, ...] = (1, 2, 3)  # k: guidance at 1/2, 1/4, 1/8 (the paper's k = 1, 2, 3)
    channels: int = 64
    num_res_blocks: int = 2
    noise_std: float = 0.05  # on [0, 1] images, added to phi_k in training only (UNVERIFIED value)
    shared: bool = True  # one H and R for all scales (the paper's figure draws one); False: one per scale
    norm_groups: int = 32

    def __post_init__(self) -> None:
        if not self.scales or min(self.scales) < 1 or list(self.scales) != sorted(set(self.scales)):
            raise ValueError(f"guidance.scales must be increasing distinct values >= 1, got {self.scales}")
        if self.norm_groups < 1 or self.channels < 1 or self.channels % self.norm_groups:
            raise ValueError(f"guidance.channels must be a multiple of norm_groups, got {self.channels}")
        if self.num_res_blocks < 0 or self.noise_std < 0:
            raise ValueError(f"guidance: need num_res_blocks >= 0 and noise_std >= 0, got {self}")


def grayscale(x_BCHW: torch.Tensor) -> torch.Tensor:
    """RGB (B, 3, H, W) -> luma (B, 1, H, W)."""
    weights = torch.tensor(LUMA, dtype=x_BCHW.dtype, device=x_BCHW.device).reshape(1, 3, 1, 1)
    return (x_BCHW * weights).sum(dim=1, keepdim=True)


def structure(x_BCHW: torch.Tensor, k: int) -> torch.Tensor:
    """phi_k(x) without noise: grayscale, then 2^k x 2^k average pooling, (B, 1, H / 2^k, W / 2^k)."""
    return F.avg_pool2d(grayscale(x_BCHW), 2**k)


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv3x3, twice, plus the input."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return x_BCHW + self.body(x_BCHW)


class GuidanceBranch(nn.Module):
    """H and R for one scale (or all, when shared): phi (B, 1, h, w) -> (h_k (B, C, h, w), x_hat_k (B, 1, h, w))."""

    def __init__(self, config: GuidanceConfig) -> None:
        super().__init__()
        c = config.channels
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), *[ResBlock(c, config.norm_groups) for _ in range(config.num_res_blocks)]
        )
        self.regressor = nn.Sequential(nn.GroupNorm(config.norm_groups, c), nn.SiLU(), nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, phi_B1HW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The guidance feature is the output of the last residual block (the paper's Fig. 12 caption).
        h_BCHW = self.encoder(phi_B1HW)
        return h_BCHW, self.regressor(h_BCHW)


class GuidanceNet(nn.Module):
    """forward(y, noise) -> ({k: h_k}, {k: x_hat_k}); noise[i] ~ N(0, 1) shaped like phi_{scales[i]}, or None."""

    def __init__(self, config: GuidanceConfig) -> None:
        super().__init__()
        self.scales, self.noise_std = config.scales, config.noise_std
        self.branches = nn.ModuleList([GuidanceBranch(config) for _ in (config.scales[:1] if config.shared
                                                                       else config.scales)])

    @staticmethod
    def noise_shapes(y_BCHW: torch.Tensor, scales: tuple[int, ...]) -> list[tuple[int, ...]]:
        """Shapes of the per-scale training noise for an input like y."""
        B, _, H, W = y_BCHW.shape
        return [(B, 1, H // 2**k, W // 2**k) for k in scales]

    def forward(
        self, y_BCHW: torch.Tensor, noise: list[torch.Tensor] | None = None
    ) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        features, predictions = {}, {}
        for i, k in enumerate(self.scales):
            phi = structure(y_BCHW, k)
            if noise is not None:
                # noise_std is given on [0, 1] images; the data here span [-1, 1], twice the range.
                phi = phi + 2.0 * self.noise_std * noise[i]
            branch = self.branches[0 if len(self.branches) == 1 else i]
            features[k], predictions[k] = branch(phi)
        return features, predictions
