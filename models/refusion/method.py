"""Refusion (arXiv 2304.08291) as a RestorationMethod: IR-SDE + ConditionalNAFNet, in pixel or latent space.

Latent Refusion encodes hq and lq with a frozen, pretrained LatentUNet, diffuses between the latents and
decodes the result with the lq's skip features. Legend: B batch, C channels, H, W sizes, Z latent channels.
"""

import copy
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.method import MethodDefaults, Pretrained
from models.nets.cond_unet import ConditionalUNet, CondUNetConfig
from models.nets.latent_unet import LatentUNet, LatentUNetConfig
from models.nets.nafnet import ConditionalNAFNet, NAFNetConfig
from models.processes.irsde import IRSDE
from models.refusion.config import RefusionConfig
from models.rng import randn_like
from models.sampling import sample

logger = logging.getLogger(__name__)

DATA_RANGE = 2.0  # data are in [-1, 1]; max_sigma is relative to [0, 1]
# The noise predictor for each net config (Refusion's NAFNet, IR-SDE's U-Net): forward(xt, t, lq) -> eps.
DENOISERS = {NAFNetConfig: ConditionalNAFNet, CondUNetConfig: ConditionalUNet}


def upsample_lq(lq_BCHW: torch.Tensor, scale: int, mode: str) -> torch.Tensor:
    """lq at hq size (the IR-SDE mean must have the hq shape); identity for scale 1."""
    if scale == 1:
        return lq_BCHW
    if mode == "nearest":
        return F.interpolate(lq_BCHW, scale_factor=scale, mode="nearest")
    return F.interpolate(lq_BCHW, scale_factor=scale, mode="bicubic", align_corners=False)


def autoencoder_from(pretrained: Pretrained, expected: LatentUNetConfig) -> LatentUNet:
    """LatentUNet with the weights of a LatentAutoencoder checkpoint (EMA if saved), checked against `expected`."""
    stored = pretrained.config["method"]
    if stored.get("kind") != "latent_autoencoder":
        raise ValueError(f"{pretrained.where} holds a {stored.get('kind')!r} checkpoint, not a latent_autoencoder one")
    stored_net = LatentUNetConfig(**stored["net"])
    if stored_net != expected:
        raise ValueError(f"autoencoder at {pretrained.where} has config {stored_net}, but the Refusion config expects "
                         f"{expected}")
    autoencoder = LatentUNet(expected)
    autoencoder.load_state_dict(pretrained.weights("ema" if pretrained.state.get("ema") is not None else "net"))
    return autoencoder


class RefusionNet(nn.Module):
    """All weights of a Refusion run: the denoiser and, for Latent Refusion, the frozen autoencoder."""

    def __init__(self, denoiser: ConditionalNAFNet | ConditionalUNet, autoencoder: LatentUNet | None) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.autoencoder = autoencoder
        if autoencoder is not None:
            autoencoder.requires_grad_(False)

    def forward(self, xt: torch.Tensor, t_B: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """Predicted noise eps_hat(x_t, t, mu)."""
        return self.denoiser(xt, t_B, mu)


class Refusion(MethodDefaults):
    """RestorationMethod for (Latent) Refusion; Latent Refusion is given its frozen autoencoder (built by the config's
    build_method from the checkpoint at autoencoder_path, or blank when a saved state fills it)."""

    def __init__(self, config: RefusionConfig, *, autoencoder: LatentUNet | None = None) -> None:
        if config.latent is not None and autoencoder is None:
            raise ValueError("Latent Refusion needs a pretrained autoencoder: set autoencoder_path (a LatentAutoencoder "
                             "checkpoint) and build the method with pipelines.checkpoints.build_method")
        if config.latent is None and autoencoder is not None:
            raise ValueError("an autoencoder was given but config.latent is None (pixel-space Refusion)")
        self.config = config
        self.process = IRSDE(max_sigma=config.max_sigma, T=config.T, schedule=config.schedule, eps=config.eps,
                             data_range=DATA_RANGE)
        self._autoencoder = autoencoder

    sampler_flags = frozenset({"num_steps", "mode"})

    def process_settings(self) -> dict[str, Any]:
        return self.config.process_settings()

    def build(self) -> RefusionNet:
        autoencoder = None if self._autoencoder is None else copy.deepcopy(self._autoencoder)  # each net its own
        return RefusionNet(DENOISERS[type(self.config.net)](self.config.net), autoencoder)

    def param_groups(self, net: RefusionNet) -> list[dict]:
        return [{"params": [p for p in net.denoiser.parameters() if p.requires_grad]}]

    def _to_diffusion_space(self, net: RefusionNet, x_BCHW: torch.Tensor):
        """(x or its latent in float32, lq skips or None); the frozen encoder runs without grad.

        The latent is cast back to float32: under bf16 autocast the encoder returns bf16, and the IR-SDE
        math would then round x_t and the matching target to 2^-8, which swamps the L1 the loss measures.
        """
        if net.autoencoder is None:
            return x_BCHW, None
        with torch.no_grad():
            z, skips = net.autoencoder.encode(x_BCHW)
        return z.float(), skips

    def loss(
        self, net: RefusionNet, hq: torch.Tensor, lq: torch.Tensor, *, step: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Matching L1 of Sec. 1 of the reference: EM reverse mean vs the optimal x*_{t-1}."""
        mu, _ = self._to_diffusion_space(net, upsample_lq(lq, self.config.scale, self.config.upsample))
        x0, _ = self._to_diffusion_space(net, hq)
        t_B = self.process.sample_t(x0.shape[0], generator=generator, device=x0.device)
        noise = randn_like(x0, generator)
        xt = self.process.given(mu).add_noise(x0, noise, t_B)
        eps_hat = net(xt, t_B, mu).float()  # the process math stays float32 under autocast
        loss = self.process.loss(eps_hat, xt, x0, mu, t_B)
        with torch.no_grad():
            noise_l1 = (eps_hat.float() - noise.float()).abs().mean()
        return loss, {"loss": loss.item(), "noise_l1": noise_l1.item()}

    @torch.no_grad()
    def restore(
        self, net: RefusionNet, lq: torch.Tensor, *, generator: torch.Generator | None,
        num_steps: int | None = None, mode: str | None = None, temperature: float = 1.0, progress: bool = False,
    ) -> torch.Tensor:
        """Restored image (B, 3, H*scale, W*scale) in [-1, 1]; defaults to the config's sampler and steps."""
        mu, skips = self._to_diffusion_space(net, upsample_lq(lq, self.config.scale, self.config.upsample))
        x0 = sample(net, self.process, mu, num_steps=num_steps or self.config.num_steps,
                    mode=mode or self.config.sampler, generator=generator, temperature=temperature,
                    progress=progress)
        if net.autoencoder is not None:
            x0 = net.autoencoder.decode(x0, skips)
        return x0.clamp(-1.0, 1.0)
