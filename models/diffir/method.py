"""DiffIR (Xia et al., arXiv 2303.09472) as a RestorationMethod: CPEN + DIRformer + a 4-step prior diffusion.

Stage 1 trains CPEN_S1 (which sees the ground truth) and the DIRformer with L1. Stage 2 freezes a copy of
CPEN_S1 as the teacher, trains CPEN_S2 (lq only) and the prior denoiser to reproduce its prior through the
reverse chain (first alone, for prior_only_steps), then everything jointly with L1(image) + L1(prior).
The GAN stage (config.gan, real-world SR) continues a stage-2 net with perceptual and adversarial terms (gan.py).
Inpainting (in_channels 4, config.lama) feeds the masked image and its hole mask, and trains both stages with
LaMa's losses as the official DiffIR-inpainting trainer (lama.py): known-pixel L1, non-saturating GAN with R1,
discriminator feature matching and the ADE20k ResNet50 perceptual loss; restoring pastes the known pixels back.

Legend: B batch, C channels, H height, W width, D prior size (4 * cpen.num_feats).
"""

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.diffir.cpen import CPEN, CPENConfig
from models.diffir.dirformer import SCALES, DIRformer, DIRformerConfig
from models.diffir.gan import GANConfig, UNetDiscriminatorSN, VGG19Features, adversarial_losses, perceptual_loss
from models.diffir.lama import (
    LamaConfig,
    NLayerDiscriminator,
    ResNet50Dilated,
    lama_adversarial,
    masked_l1,
    resnet_pl_loss,
)
from models.diffir.prior import PriorDenoiser, PriorDenoiserConfig
from models.method import MethodDefaults, Pretrained, hole_mask
from models.processes.ddpm import DDPM
from models.rng import randn
from models.sampling import reverse
from models.tiling import pad_to_multiple

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class DiffIRConfig:
    """One training stage of DiffIR; `init_from` is the stage-1 checkpoint directory that stage 2 starts from."""

    kind: Literal["diffir"] = "diffir"
    stage: int = 1
    scale: int = 4
    dirformer: DIRformerConfig = field(default_factory=DIRformerConfig)
    cpen: CPENConfig = field(default_factory=CPENConfig)
    denoiser: PriorDenoiserConfig = field(default_factory=PriorDenoiserConfig)
    # The prior diffusion: T = 4, betas = linspace(sqrt(0.1), sqrt(0.99), 4)^2 in every DiffIR config.
    num_diffusion_steps: int = 4
    beta_start: float = 0.1
    beta_end: float = 0.99
    prior_only_steps: int = 100_000  # stage 2: steps that train only CPEN_S2 + denoiser (encoder_iter)
    # Stage 2 only: a checkpoint directory (state.pt + config.json) of a stage-1 run. Empty leaves the teacher
    # CPEN_S1 and the DIRformer random, which is only meaningful in tests or when a stage-2 state is loaded next.
    init_from: str = ""
    init_weights: Literal["ema", "net"] = "ema"  # which weights of the stage-1 checkpoint to start from
    # Imported official weights (pipelines/import_weights.py): the official nets see and return [0, 1] images.
    zero_one_inputs: bool = False
    # The S2-GAN stage: a stage-2 net (init_from is then a stage-2 checkpoint) plus a discriminator, trained with
    # L1 + prior L1 + VGG19 perceptual + GAN. It has no prior-only phase (prior_only_steps must be 0).
    gan: GANConfig | None = None
    # 4: the inpainting net, fed the masked image and its hole mask (an lq with a 4th, hole channel: 1 in holes).
    in_channels: int = 3
    # Inpainting's LaMa losses and discriminator (both stages, no prior-only phase); None trains with L1 alone.
    lama: LamaConfig | None = None

    def __post_init__(self) -> None:
        if self.kind != "diffir":
            raise ValueError(f"kind must be 'diffir', got {self.kind!r}")
        if self.stage not in (1, 2):
            raise ValueError(f"diffir.stage must be one of (1, 2), got {self.stage}")
        if self.scale not in SCALES:
            raise ValueError(f"diffir.scale must be one of {SCALES}, got {self.scale}")
        if self.init_weights not in ("ema", "net"):
            raise ValueError(f"diffir.init_weights must be one of ('ema', 'net'), got {self.init_weights!r}")
        if self.init_from and self.stage != 2:
            raise ValueError(f"diffir.init_from is for stage 2 only, got stage {self.stage}")
        if self.prior_only_steps < 0:
            raise ValueError(f"diffir.prior_only_steps must be >= 0, got {self.prior_only_steps}")
        if self.gan is not None and (self.stage != 2 or self.prior_only_steps):
            raise ValueError(f"diffir.gan continues a stage-2 net with no prior-only phase: it needs stage 2 and "
                             f"prior_only_steps 0, got stage {self.stage}, prior_only_steps {self.prior_only_steps}")
        if self.in_channels not in (3, 4) or (self.in_channels == 4 and self.scale != 1):
            raise ValueError(f"diffir.in_channels must be 3, or 4 (inpainting) at scale 1; got {self.in_channels} "
                             f"at scale {self.scale}")
        if self.lama is not None and (self.in_channels != 4 or self.gan is not None
                                      or (self.stage == 2 and self.prior_only_steps)):
            raise ValueError("diffir.lama is the inpainting trainer: it needs in_channels 4 (the hole mask), no gan, "
                             f"and in stage 2 prior_only_steps 0; got in_channels {self.in_channels}, "
                             f"gan {self.gan is not None}, prior_only_steps {self.prior_only_steps}")
        DDPM(num_train_steps=self.num_diffusion_steps, beta_start=self.beta_start, beta_end=self.beta_end)

    @property
    def init_stage(self) -> str:
        """What init_from holds: a stage-1 run, or for the GAN stage a stage-2 run."""
        return "stage1" if self.gan is None else "stage2"

    def pretrained_paths(self) -> dict[str, str]:
        """The checkpoints the method starts from, by name: stage 2's stage-1 run, the GAN stage's stage-2 run."""
        return {self.init_stage: self.init_from} if self.init_from else {}

    def build_method(self, *, saved_state: bool = False, pretrained: Mapping[str, Pretrained] | None = None
                     ) -> "DiffIR":
        """The method of this config, with the checkpoints of pretrained_paths() as read by the pipelines.

        With `saved_state` every weight comes from a saved state (resume, restore), so stage 2's stage-1
        checkpoint is not needed."""
        if saved_state or not self.init_from:
            return DiffIR(dataclasses.replace(self, init_from="") if saved_state else self)
        if not pretrained or self.init_stage not in pretrained:
            raise ValueError(f"diffir.init_from={self.init_from!r}: this stage starts from a "
                             f"{self.init_stage.replace('stage', 'stage-')} checkpoint, read by "
                             "pipelines.checkpoints.build_method")
        return DiffIR(self, init=pretrained[self.init_stage].weights(self.init_weights))

    @property
    def pad_multiple(self) -> int:
        """lq sides must be multiples of this (3 U-net downsamplings at hq/4, and PixelUnshuffle(4) of hq)."""
        return 16 if self.scale == 2 else 8


def lq_to_quarter(lq_BCHW: torch.Tensor, scale: int) -> torch.Tensor:
    """lq pixel-unshuffled to hq/4 resolution (3 * (4/scale)^2 channels); the CPENs see this."""
    return lq_BCHW if scale == 4 else F.pixel_unshuffle(lq_BCHW, 4 // scale)


class DiffIRNet(nn.Module):
    """All weights of one stage. Stage 2 holds the frozen teacher CPEN_S1 next to CPEN_S2 and the denoiser."""

    def __init__(self, config: DiffIRConfig) -> None:
        super().__init__()
        self.scale = config.scale
        lq_channels = config.in_channels * (4 // config.scale) ** 2
        prior_dim = config.cpen.prior_dim
        self.cpen_s1 = CPEN(lq_channels + 48, config.cpen)
        self.dirformer = DIRformer(config.dirformer, scale=config.scale, prior_dim=prior_dim,
                                   in_channels=config.in_channels)
        if config.stage == 2:
            self.cpen_s1.requires_grad_(False)
            self.cpen_s2 = CPEN(lq_channels, config.cpen)
            self.denoiser = PriorDenoiser(prior_dim, config.denoiser, num_train_steps=config.num_diffusion_steps)
        if config.gan is not None:
            self.discriminator = UNetDiscriminatorSN(3, config.gan.disc_num_feat)
        if config.lama is not None:
            self.discriminator = NLayerDiscriminator(3, config.lama.disc_ndf, config.lama.disc_layers)

    def teacher_prior(self, lq_BCHW: torch.Tensor, hq_BCHW: torch.Tensor) -> torch.Tensor:
        """z = CPEN_S1([lq, PixelUnshuffle_4(hq)]), shape (B, D)."""
        x = torch.cat([lq_to_quarter(lq_BCHW, self.scale), F.pixel_unshuffle(hq_BCHW, 4)], dim=1)
        return self.cpen_s1(x)

    def student_condition(self, lq_BCHW: torch.Tensor) -> torch.Tensor:
        """CPEN_S2(lq): the condition of the prior denoiser, shape (B, D)."""
        return self.cpen_s2(lq_to_quarter(lq_BCHW, self.scale))


STAGE1_PARTS = ("cpen_s1", "dirformer")
GENERATOR_PARTS = (*STAGE1_PARTS, "cpen_s2", "denoiser")  # a stage-2 net: what the GAN stage starts from


def copy_parts(net: DiffIRNet, weights: dict[str, torch.Tensor], parts: tuple[str, ...]) -> None:
    """Copy the named sub-networks of an earlier stage's state dict into `net` (strict on those keys)."""
    for name in parts:
        part = {k.removeprefix(name + "."): v for k, v in weights.items() if k.startswith(name + ".")}
        getattr(net, name).load_state_dict(part, strict=True)


class DiffIR(MethodDefaults):
    """RestorationMethod for one DiffIR stage (see models/method.py)."""

    has_unused_parameters = True  # the prior-only phase leaves some parameters without gradients

    def __init__(self, config: DiffIRConfig, *, init: dict[str, torch.Tensor] | None = None) -> None:
        """init: the earlier stage's weights this stage starts from (config.init_from, read by the pipelines)."""
        if config.init_from and init is None:
            raise ValueError(f"diffir.init_from={config.init_from!r}: pass the "
                             f"{config.init_stage.replace('stage', 'stage-')} weights (init=); "
                             "pipelines.checkpoints.build_method reads them")
        self.config, self.init = config, init
        # BasicSR keeps an EMA of the generator only: the discriminator's "EMA" is the live one.
        self.adversarial = config.gan is not None or config.lama is not None
        self.unaveraged_prefixes = ("discriminator.",) if self.adversarial else ()
        self.process = DDPM(num_train_steps=config.num_diffusion_steps, beta_start=config.beta_start,
                            beta_end=config.beta_end)
        self.vgg: VGG19Features | None = None  # the GAN stage's frozen perceptual net, outside the saved weights
        self.resnet_pl: ResNet50Dilated | None = None  # inpainting's, likewise

    def build(self) -> DiffIRNet:
        net = DiffIRNet(self.config)
        if self.init is not None:
            copy_parts(net, self.init, STAGE1_PARTS if self.config.gan is None else GENERATOR_PARTS)
            log.info("%s initialised from the %s %s (%s weights)", "GAN stage" if self.config.gan else "stage 2",
                     self.config.init_stage, self.config.init_from, self.config.init_weights)
        return net

    def param_groups(self, net: nn.Module) -> list[dict]:
        """One group; the GAN stage's discriminator is a second group with its own lr (the official optimizer_d)."""
        disc = {id(p) for p in net.discriminator.parameters()} if self.adversarial else set()
        groups = [{"params": [p for p in net.parameters() if p.requires_grad and id(p) not in disc]}]
        if self.adversarial:
            disc_lr = self.config.gan.disc_lr if self.config.gan is not None else self.config.lama.disc_lr
            groups.append({"params": list(net.discriminator.parameters()), "lr": disc_lr})
        return groups

    def _prior_noise(self, batch: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        return randn((batch, self.config.cpen.prior_dim), generator, device=device)

    def run(
        self, net: DiffIRNet, lq_BCHW: torch.Tensor, hq_BCHW: torch.Tensor | None = None, *,
        eps_BD: torch.Tensor | None = None, with_image: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """(out_BCHW or None, z_hat_BD, z_teacher_BD or None).

        Stage 1: z_hat is CPEN_S1's prior (hq required). Stage 2 with hq: the chain starts from
        q(x_{T-1} | z_teacher) with noise eps (training); without hq it starts from eps itself (restoring).
        """
        zero_one = self.config.zero_one_inputs  # images in [0, 1] inside; the prior vector has no range to map
        if zero_one:
            lq_BCHW = (lq_BCHW + 1) / 2
            hq_BCHW = None if hq_BCHW is None else (hq_BCHW + 1) / 2
        out_BCHW, z_hat_BD, z_teacher_BD = self._run(net, lq_BCHW, hq_BCHW, eps_BD=eps_BD, with_image=with_image)
        if zero_one and out_BCHW is not None:
            out_BCHW = out_BCHW * 2 - 1
        return out_BCHW, z_hat_BD, z_teacher_BD

    def _run(self, net: DiffIRNet, lq_BCHW: torch.Tensor, hq_BCHW: torch.Tensor | None, *,
             eps_BD: torch.Tensor | None, with_image: bool
             ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        if self.config.stage == 1:
            z_BD = net.teacher_prior(lq_BCHW, hq_BCHW)
            return net.dirformer(lq_BCHW, z_BD), z_BD, None
        z_teacher_BD = None
        xt_BD = eps_BD
        if hq_BCHW is not None:
            with torch.no_grad():
                z_teacher_BD = net.teacher_prior(lq_BCHW, hq_BCHW)
            t_B = torch.full((lq_BCHW.shape[0],), self.process.num_train_steps - 1, device=lq_BCHW.device)
            xt_BD = self.process.add_noise(z_teacher_BD, eps_BD, t_B)
        cond_BD = net.student_condition(lq_BCHW)
        # All T posterior-mean steps from x_{T-1}; differentiable, stage 2 trains through the chain.
        z_hat_BD = reverse(lambda x_BD, t_B: net.denoiser(x_BD, t_B, cond_BD), self.process, xt_BD, generator=None)
        out_BCHW = net.dirformer(lq_BCHW, z_hat_BD) if with_image else None
        return out_BCHW, z_hat_BD, z_teacher_BD

    def loss(
        self, net: nn.Module, hq: torch.Tensor, lq: torch.Tensor, *, step: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Stage 1: L1(out, hq). Stage 2: L1(z_hat, z) alone before prior_only_steps, then plus L1(out, hq).
        Inpainting (config.lama): LaMa's losses in both stages; the GAN stage: its own (both below)."""
        if self.config.lama is not None:
            return self._lama_loss(net, hq, lq, generator=generator)
        if self.config.stage == 1:
            out, _, _ = self.run(net, lq, hq)
            loss = F.l1_loss(out, hq)
            return loss, {"loss": loss.item(), "l1_image": loss.item()}
        if self.config.gan is not None:
            return self._gan_loss(net, hq, lq, generator=generator)
        prior_only = step < self.config.prior_only_steps
        eps_BD = self._prior_noise(lq.shape[0], generator, lq.device)
        out, z_hat, z_teacher = self.run(net, lq, hq, eps_BD=eps_BD, with_image=not prior_only)
        loss_prior = F.l1_loss(z_hat, z_teacher)
        if prior_only:
            return loss_prior, {"loss": loss_prior.item(), "l1_prior": loss_prior.item()}
        loss_image = F.l1_loss(out, hq)
        loss = loss_image + loss_prior
        return loss, {"loss": loss.item(), "l1_image": loss_image.item(), "l1_prior": loss_prior.item()}

    def _gan_loss(self, net: nn.Module, hq: torch.Tensor, lq: torch.Tensor, *, generator: torch.Generator
                  ) -> tuple[torch.Tensor, dict[str, float]]:
        """The generator's L1(out, hq) + L1(z_hat, z) + perceptual + GAN terms plus the discriminator's BCE on real
        and fake, as one scalar: each part's gradients reach only its own weights (gan.adversarial_losses)."""
        gan = self.config.gan
        out, z_hat, z_teacher = self.run(net, lq, hq, eps_BD=self._prior_noise(lq.shape[0], generator, lq.device))
        if self.vgg is None:  # built on first use: restoring a GAN-stage net needs no VGG19 file
            self.vgg = VGG19Features(gan.vgg19_file())
        self.vgg.to(hq.device)
        terms = {
            "l1_image": F.l1_loss(out, hq),
            "l1_prior": F.l1_loss(z_hat, z_teacher),
            "perceptual": perceptual_loss(self.vgg, out, hq, gan.layer_weights),
        }
        terms["gan_g"], terms["gan_d_real"], terms["gan_d_fake"] = adversarial_losses(net.discriminator, out, hq)
        loss = (gan.l1_weight * terms["l1_image"] + terms["l1_prior"] + gan.perceptual_weight * terms["perceptual"]
                + gan.gan_weight * terms["gan_g"] + terms["gan_d_real"] + terms["gan_d_fake"])
        return loss, {"loss": loss.item()} | {k: v.item() for k, v in terms.items()}

    def _lama_loss(self, net: nn.Module, hq: torch.Tensor, lq: torch.Tensor, *, generator: torch.Generator
                   ) -> tuple[torch.Tensor, dict[str, float]]:
        """The official inpainting trainer's generator loss (known-pixel L1 + GAN + feature matching + ResNet PL,
        stage 2 plus L1 of the prior) and its discriminator loss, as one scalar (lama.lama_adversarial)."""
        lama = self.config.lama
        eps_BD = self._prior_noise(lq.shape[0], generator, lq.device) if self.config.stage == 2 else None
        out, z_hat, z_teacher = self.run(net, lq, hq, eps_BD=eps_BD)
        hole = hole_mask(lq)
        terms = {"l1_known": masked_l1(out, hq, hole, weight_known=lama.weight_known,
                                       weight_missing=lama.weight_missing)}
        if lama.resnet_pl_weight > 0:  # a ResNet50 pass and its backward: half a tiny step on the CPU
            if self.resnet_pl is None:  # built on first use: restoring needs no ADE20k file
                self.resnet_pl = ResNet50Dilated(lama.resnet_pl_file())
            self.resnet_pl.to(hq.device)
            terms["resnet_pl"] = resnet_pl_loss(self.resnet_pl, out, hq)
        if z_teacher is not None:
            terms["l1_prior"] = F.l1_loss(z_hat, z_teacher)
        terms |= lama_adversarial(net.discriminator, out, hq, hole, gp_coef=lama.gp_coef)
        weights = {"resnet_pl": lama.resnet_pl_weight, "adv_g": lama.adversarial_weight,
                   "feature_matching": lama.feature_matching_weight}
        loss = sum(weights.get(k, 1.0) * v for k, v in terms.items())
        return loss, {"loss": loss.item()} | {k: v.item() for k, v in terms.items()}

    @torch.no_grad()
    def restore(self, net: nn.Module, lq: torch.Tensor, *, generator: torch.Generator, progress: bool = False
                ) -> torch.Tensor:
        """Stage-2 restoration from pure noise through the 4-step chain; lq is reflect-padded and the output cropped.

        One network pass (the chain runs over the compact prior vector): `progress` has nothing to show."""
        if self.config.stage != 2:
            raise ValueError("diffir.stage 1 needs the ground truth to form its prior: restore with a stage-2 net")
        H, W = lq.shape[-2:]
        m = self.config.pad_multiple
        lq_padded = pad_to_multiple(lq, m)
        out, _, _ = self.run(net, lq_padded, eps_BD=self._prior_noise(lq.shape[0], generator, lq.device))
        s = self.config.scale
        out = out[..., : H * s, : W * s]
        if self.config.in_channels == 4:  # inpainting: the output fills the holes, the known pixels stay (LaMa's)
            hole = hole_mask(lq)
            out = hole * out + (1 - hole) * lq[:, :3]
        return out

