"""Pretraining of the Latent Refusion compressor (arXiv 2304.08291, Sec. 3.3) as a RestorationMethod.

loss = L1(dec(z_lq, skips_lq), lq) + L1(dec(z_hq, skips_lq), hq) + w * latent-statistics term.
Legend: B batch, C channels, H, W sizes, Z latent channels.
"""

import torch
import torch.nn.functional as F
from torch import nn

from models.method import MethodDefaults
from models.nets.latent_unet import LatentUNet
from models.refusion.config import LatentAutoencoderConfig
from models.refusion.method import upsample_lq
from models.rng import uniform


def latent_pretraining_loss(
    autoencoder: LatentUNet, hq: torch.Tensor, lq: torch.Tensor, *, reg_weight: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction + latent-replacing + reg_weight * |mean(z_lq) - mean(lq)| + |std(z_lq) - std(lq) / 2|."""
    z_lq, skips_lq = autoencoder.encode(lq)
    z_hq, _ = autoencoder.encode(hq)
    rec = F.l1_loss(autoencoder.decode(z_lq, skips_lq), lq)
    # Latent replacing: the hq latent with the lq skips must give the hq image, as at inference.
    rep = F.l1_loss(autoencoder.decode(z_hq, skips_lq), hq)
    reg = (z_lq.mean() - lq.mean()).abs() + (z_lq.std() - 0.5 * lq.std()).abs()
    loss = rec + rep + reg_weight * reg
    return loss, {"loss": loss.item(), "rec": rec.item(), "replace": rep.item(), "latent_reg": reg.item()}


class LatentAutoencoder(MethodDefaults):
    """RestorationMethod whose net is the LatentUNet alone; restore() is decode(encode(lq))."""

    def __init__(self, config: LatentAutoencoderConfig) -> None:
        self.config = config

    def build(self) -> LatentUNet:
        return LatentUNet(self.config.net)

    def param_groups(self, net: nn.Module) -> list[dict]:
        return [{"params": [p for p in net.parameters() if p.requires_grad]}]

    def loss(
        self, net: nn.Module, hq: torch.Tensor, lq: torch.Tensor, *, step: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        lq = upsample_lq(lq, self.config.scale, self.config.upsample)
        # Swap lq and hq for the whole batch with probability swap_prob (official use_swap, issue #137).
        if uniform(generator) < self.config.swap_prob:
            hq, lq = lq, hq
        return latent_pretraining_loss(net, hq, lq, reg_weight=self.config.reg_weight)

    @torch.no_grad()
    def restore(self, net: nn.Module, lq: torch.Tensor, *, generator: torch.Generator | None,
                progress: bool = False) -> torch.Tensor:
        """decode(encode(lq)): one network pass, `progress` has nothing to show."""
        lq = upsample_lq(lq, self.config.scale, self.config.upsample)
        return net(lq).clamp(-1.0, 1.0)
