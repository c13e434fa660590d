"""Multiscale Structure Guided Diffusion for deblurring (Ren et al., arXiv 2212.01789) as a RestorationMethod.

An icDPM UNet (eps prediction, blurry input concatenated) whose encoder receives multiscale structure guidance
from a regression network. Training: the regression loss alone for warmup_steps (warm start), then the
denoising loss ramped in over ramp_steps. Restoring: ancestral sampling, optionally the mean of several samples.
Values marked UNVERIFIED could not be checked against the paper (methods.md section 3.3).

Legend: B batch, C channels, H height, W width; k a guidance scale exponent.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.method import MethodDefaults, Pretrained
from models.msgd.guidance import GuidanceConfig, GuidanceNet, structure
from models.msgd.unet import GuidedUNet, UNetConfig
from models.processes.icdpm import ICDPM, SCHEDULES
from models.rng import randn, randn_like
from models.sampling import reverse
from models.tiling import pad_to_multiple


@dataclass(frozen=True, kw_only=True, slots=True)
class MSGDConfig:
    """The icDPM, its UNet, the guidance network, the loss schedule and the sampler."""

    kind: Literal["msgd"] = "msgd"
    scale: int = 1  # lq is hq / scale; MSGD is a deblurring method, so 1
    unet: UNetConfig = field(default_factory=UNetConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    num_train_steps: int = 1000  # icDPM schedule length (our choice, DDPM default)
    schedule: Literal["linear", "cosine"] = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    # The paper (methods.md 3.3b): an L1 denoising loss on eps, an L2 guidance loss per scale, summed over k.
    diffusion_loss: Literal["l1", "l2"] = "l1"
    guidance_loss: Literal["l1", "l2"] = "l2"  # l2: mean squared error (the paper writes the L2 norm)
    reg_weight: float = 1.0  # lambda on the guidance loss (the paper's total is L_guidance + L_DPM: 1)
    warmup_steps: int = 60_000  # regression-only warm start, the paper's first 60k iterations
    ramp_steps: int = 10_000  # the denoising loss weight goes 0 -> 1 linearly over these (our choice)
    num_sampling_steps: int = 100  # ancestral steps at restore time (UNVERIFIED; DvSR-style models use hundreds)
    num_samples_averaged: int = 1  # > 1 is "sample averaging" (Ours-SA): the mean of that many samples

    def __post_init__(self) -> None:
        if self.kind != "msgd":
            raise ValueError(f"kind must be 'msgd', got {self.kind!r}")
        if self.scale not in (1, 2, 4):
            raise ValueError(f"msgd.scale must be one of (1, 2, 4), got {self.scale}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"msgd.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("diffusion_loss", "guidance_loss"):
            if getattr(self, name) not in ("l1", "l2"):
                raise ValueError(f"msgd.{name} must be one of ('l1', 'l2'), got {getattr(self, name)!r}")
        if max(self.guidance.scales) >= len(self.unet.channel_mults):
            raise ValueError(f"msgd.guidance.scales {self.guidance.scales} need UNet levels up to "
                             f"{max(self.guidance.scales)}; unet.channel_mults has {len(self.unet.channel_mults)}")
        if self.warmup_steps < 0 or self.ramp_steps < 0 or self.reg_weight < 0:
            raise ValueError(f"msgd: warmup_steps, ramp_steps and reg_weight must be >= 0, got {self}")
        if not 1 <= self.num_sampling_steps <= self.num_train_steps or self.num_samples_averaged < 1:
            raise ValueError("msgd: need 1 <= num_sampling_steps <= num_train_steps and num_samples_averaged >= 1")

    def pretrained_paths(self) -> dict[str, str]:
        return {}

    def build_method(self, *, saved_state: bool = False, pretrained: Mapping[str, Pretrained] | None = None
                     ) -> "MSGD":
        """The method of this config (it starts from no checkpoint, so `saved_state` changes nothing)."""
        return MSGD(self)

    @property
    def pad_multiple(self) -> int:
        """hq sides must be multiples of this (UNet downsamplings and the coarsest guidance scale)."""
        return max(self.unet.downsample_factor, 2 ** max(self.guidance.scales))

    def process(self) -> ICDPM:
        return ICDPM(num_train_steps=self.num_train_steps, schedule=self.schedule, beta_start=self.beta_start,
                     beta_end=self.beta_end)


class MSGDNet(nn.Module):
    """The guidance network and the guided UNet (MSGD's loss and sampler call both)."""

    def __init__(self, config: MSGDConfig) -> None:
        super().__init__()
        self.scale = config.scale
        self.guidance = GuidanceNet(config.guidance)
        self.unet = GuidedUNet(config.unet, guided_levels=config.guidance.scales,
                               guidance_channels=config.guidance.channels)

    def condition(self, lq_BCHW: torch.Tensor) -> torch.Tensor:
        """The blurry input at hq size (bicubic upsampling only when scale > 1)."""
        if self.scale == 1:
            return lq_BCHW
        return F.interpolate(lq_BCHW, scale_factor=self.scale, mode="bicubic", align_corners=False)


class MSGD(MethodDefaults):
    """RestorationMethod (see models/method.py)."""

    has_unused_parameters = True  # the warm start leaves some parameters without gradients

    def __init__(self, config: MSGDConfig) -> None:
        self.config = config
        self.process = config.process()

    def build(self) -> MSGDNet:
        return MSGDNet(self.config)

    def param_groups(self, net: nn.Module) -> list[dict]:
        return [{"params": [p for p in net.parameters() if p.requires_grad]}]

    def diffusion_weight(self, step: int) -> float:
        """0 during the warm start, then a linear ramp to 1 over ramp_steps."""
        c = self.config
        if step < c.warmup_steps:
            return 0.0
        return min(1.0, (step - c.warmup_steps + 1) / c.ramp_steps) if c.ramp_steps else 1.0

    def loss(
        self, net: MSGDNet, hq: torch.Tensor, lq: torch.Tensor, *, step: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """reg_weight * sum_k L(x_hat_k, phi_k(hq)) + w(step) * ||eps_hat - eps|| (the UNet is skipped while w = 0)."""
        c = self.config
        guidance_noise = [randn(shape, generator, device=hq.device, dtype=hq.dtype)
                          for shape in GuidanceNet.noise_shapes(hq, c.guidance.scales)]
        weight = self.diffusion_weight(step)
        xt, t_B, eps = None, None, None
        if weight > 0:
            t_B = self.process.sample_t(hq.shape[0], generator=generator, device=hq.device)
            eps = randn_like(hq, generator)
            xt = self.process.add_noise(hq, eps, t_B)
        cond = net.condition(lq)
        features, predictions = net.guidance(cond, guidance_noise)  # {k: predicted downsampled grayscale sharp}
        guidance_loss = F.mse_loss if c.guidance_loss == "l2" else F.l1_loss
        loss_reg = sum(guidance_loss(predictions[k], structure(hq, k)) for k in c.guidance.scales)
        logs = {"guidance": loss_reg.item(), "diffusion_weight": weight}
        loss = c.reg_weight * loss_reg
        if weight > 0:
            eps_hat = net.unet(xt, t_B, cond, features)
            target = self.process.target(hq, eps, t_B)
            diff = F.mse_loss(eps_hat, target) if c.diffusion_loss == "l2" else F.l1_loss(eps_hat, target)
            logs["diffusion"] = diff.item()
            loss = loss + weight * diff
        return loss, logs | {"loss": loss.item()}

    @torch.no_grad()
    def sample(self, net: MSGDNet, lq: torch.Tensor, *, generator: torch.Generator, progress: bool = False) -> torch.Tensor:
        """One ancestral sample at hq size from lq (hq sides multiples of pad_multiple); guidance computed once."""
        cond = net.condition(lq)
        features, _ = net.guidance(cond)
        return reverse(lambda x, t_B: net.unet(x, t_B, cond, features), self.process, randn_like(cond, generator),
                       num_steps=self.config.num_sampling_steps, generator=generator, progress=progress,
                       desc="icDPM sampling")

    @torch.no_grad()
    def restore(self, net: nn.Module, lq: torch.Tensor, *, generator: torch.Generator, progress: bool = False
                ) -> torch.Tensor:
        """Mean of num_samples_averaged samples (1: a plain sample); lq is reflect-padded and the output cropped."""
        H, W = lq.shape[-2:]
        m = max(1, self.config.pad_multiple // self.config.scale)
        lq_padded = pad_to_multiple(lq, m)
        total = sum(self.sample(net, lq_padded, generator=generator, progress=progress)
                    for _ in range(self.config.num_samples_averaged))
        s = self.config.scale
        return (total / self.config.num_samples_averaged)[..., : H * s, : W * s]
