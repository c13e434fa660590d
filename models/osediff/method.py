"""OSEDiff (arXiv 2406.08177) as a RestorationMethod: build, param_groups, loss and one-step restore.

Legend: B batch; hq_BCHW P x P and lq_BCHW P/scale x P/scale images in [-1, 1].
"""

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from torch import nn

from models.method import MethodDefaults
from models.osediff.config import OSEDiffConfig
from models.osediff.lora import export_adapters, import_adapters
from models.osediff.losses import cfg_eps, vsd_loss
from models.osediff.net import OSEDiffNet
from models.osediff.prompts import (
    encode_prompts,
    inference_prompt,
    prompts_from_file,
    read_prompt_file,
)
from models.osediff.weights import SDParts, load_sd
from models.rng import randint, randn
from models.tiling import pad_to_multiple

logger = logging.getLogger(__name__)

@contextlib.contextmanager
def adapters_disabled(unet: UNet2DConditionModel) -> Iterator[None]:
    """Run the base (frozen SD) weights of a UNet that carries LoRA adapters."""
    unet.disable_adapters()
    try:
        yield
    finally:
        unet.enable_adapters()


def to_8bit_grid(x_BCHW: torch.Tensor) -> torch.Tensor:
    """Clamp to [-1, 1] and round to the 256 levels of an 8-bit image, as a saved resized image would be."""
    return ((x_BCHW.clamp(-1.0, 1.0) + 1.0) * 127.5).round() / 127.5 - 1.0


def upsample_train(lq_BCHW: torch.Tensor, *, scale: int, modes: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """Resize each LQ back to HQ size with its own random mode (the official resize_bak), on the 8-bit grid."""
    picks = randint(0, len(modes), lq_BCHW.shape[0], generator, device="cpu").tolist()
    ups = [F.interpolate(lq_BCHW[i : i + 1], scale_factor=scale, mode=modes[k]) for i, k in enumerate(picks)]
    return to_8bit_grid(torch.cat(ups))


def upsample_test(lq_BCHW: torch.Tensor, *, scale: int) -> torch.Tensor:
    """Bicubic x scale with the PIL kernel (antialias=True uses a = -0.5 like PIL), on the 8-bit grid."""
    return to_8bit_grid(F.interpolate(lq_BCHW, scale_factor=scale, mode="bicubic", antialias=True))


def adain_color_fix(x_BCHW: torch.Tensor, ref_BCHW: torch.Tensor) -> torch.Tensor:
    """Match each channel's mean and std to the reference (the official default colour fix)."""
    mu_x, sd_x = x_BCHW.mean(dim=(2, 3), keepdim=True), x_BCHW.std(dim=(2, 3), keepdim=True)
    mu_r, sd_r = ref_BCHW.mean(dim=(2, 3), keepdim=True), ref_BCHW.std(dim=(2, 3), keepdim=True)
    return ((x_BCHW - mu_x) / (sd_x + 1e-5) * sd_r + mu_r).clamp(-1.0, 1.0)


class OSEDiff(MethodDefaults):
    """One-step SD restoration with LoRA, trained with MSE + LPIPS + VSD (see net.py for the weights)."""

    def __init__(self, config: OSEDiffConfig) -> None:
        self.config = config
        self.prompt_table = None if config.prompt_file is None else read_prompt_file(config.prompt_file)
        if config.prompt_source == "fixed":
            logger.warning("OSEDiff prompts: the fixed prompt %r for every image (fallback: set method.tagger_path "
                           "to a local tagger, officially RAM on the GT in training and DAPE on the LQ at test "
                           "time, or method.prompt_file)", config.prompt)

    def build(self) -> OSEDiffNet:
        """Read SD from config.sd_path and add the LoRA adapters (random LoRA A, zero LoRA B)."""
        return self.assemble(load_sd(self.config.sd_path))

    def assemble(self, parts: SDParts) -> OSEDiffNet:
        """The net from already loaded SD parts (benchmarks build random SD-shaped parts in memory)."""
        return OSEDiffNet(parts, self.config)

    def param_groups(self, net: OSEDiffNet) -> list[dict]:
        return [
            {"params": net.generator_parameters(), "lr": self.config.lr, "name": "generator"},
            {"params": net.fake_score_parameters(), "lr": self.config.lr, "name": "fake_score"},
        ]

    @property
    def needs_keys(self) -> bool:
        """True when prompts come from a keyed file: the loop and restore then pass keys= (image keys)."""
        return self.prompt_table is not None

    def prompts(self, net: OSEDiffNet, x_BCHW: torch.Tensor, keys: Sequence[str] | None, *,
                training: bool) -> list[str]:
        """One prompt per image: the tags of x (the GT in training, the upsampled LQ at test time), the file's
        entry for each key, or the fixed prompt (config.prompt_source)."""
        cfg = self.config
        if net.tagger is not None:
            if training:  # train_osediff.py: the GT's tags alone
                return net.tagger(x_BCHW)
            tagger = net.test_tagger if net.test_tagger is not None else net.tagger
            return [inference_prompt(tags, cfg.prompt) for tags in tagger(x_BCHW)]
        if self.prompt_table is not None:
            return prompts_from_file(self.prompt_table, keys, path=cfg.prompt_file)
        return [cfg.prompt] * x_BCHW.shape[0]

    def loss(
        self,
        net: OSEDiffNet,
        hq: torch.Tensor,
        lq: torch.Tensor,
        *,
        step: int,
        generator: torch.Generator,
        keys: Sequence[str] | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """lambda_l2 MSE + lambda_lpips LPIPS + lambda_vsd VSD + lambda_fake fake-score loss, as one scalar.

        The four terms reach disjoint parameters (fake on the fake LoRA, the rest on the generator), so one
        backward of the sum equals the official two optimiser steps. The loop's data-parallel wrapper is around
        this whole call, so the fake-score LoRA's gradients are all-reduced too (the official code calls its
        regulariser around its wrapper, which skips that sync).
        """
        cfg = self.config
        lq_up = upsample_train(lq, scale=cfg.scale, modes=cfg.train_resize_modes, generator=generator)
        # Prompts come from the GT in training, as in the official code (RAM on x_tgt).
        c = encode_prompts(net.text_encoder, net.tokenizer, self.prompts(net, hq, keys, training=True))
        c_neg = encode_prompts(net.text_encoder, net.tokenizer, [cfg.neg_prompt] * hq.shape[0])
        x_hat, z_hat = net.generate(lq_up, c, generator=generator)
        terms = {
            "l2": F.mse_loss(x_hat.float(), hq.float()),
            "lpips": net.lpips(x_hat.float(), hq.float()).mean(),
            "vsd": self._vsd(net, z_hat, c, c_neg, generator=generator),
            "fake": self._fake_score_loss(net, z_hat.detach(), c, generator=generator),
        }
        total = (
            cfg.lambda_l2 * terms["l2"]
            + cfg.lambda_lpips * terms["lpips"]
            + cfg.lambda_vsd * terms["vsd"]
            + cfg.lambda_fake * terms["fake"]
        )
        logs = {f"loss_{k}": v.item() for k, v in terms.items()}
        return total, logs | {"loss": total.item()}

    def _vsd(
        self, net: OSEDiffNet, z_BCHW: torch.Tensor, c_BLD: torch.Tensor, c_neg_BLD: torch.Tensor, *,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """VSD with gradient to the generator only: fake score (conditional, no CFG) vs CFG real score."""
        process, cfg = net.process, self.config
        t_B = randint(cfg.vsd_t_min, cfg.vsd_t_max, z_BCHW.shape[0], generator, device=z_BCHW.device)
        zt = process.add_noise(z_BCHW.detach().float(), randn(z_BCHW.shape, generator, device=z_BCHW.device), t_B)
        with torch.no_grad():
            x0_fake = process.x0_from_eps(zt, net.score_unet(zt, t_B, encoder_hidden_states=c_BLD).sample.float(), t_B)
            with adapters_disabled(net.score_unet):
                eps_2B = net.score_unet(
                    torch.cat([zt, zt]), torch.cat([t_B, t_B]), encoder_hidden_states=torch.cat([c_neg_BLD, c_BLD])
                ).sample
            eps_real = cfg_eps(*eps_2B.float().chunk(2), cfg.cfg_vsd)
            x0_real = process.x0_from_eps(zt, eps_real, t_B)
        return vsd_loss(z_BCHW, x0_fake, x0_real)

    def _fake_score_loss(
        self, net: OSEDiffNet, z_BCHW: torch.Tensor, c_BLD: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        """Diffusion (epsilon-MSE) loss of the fake score on the detached generator latent, t ~ U{0..999}."""
        t_B = net.process.sample_t(z_BCHW.shape[0], generator=generator, device=z_BCHW.device)
        eps = randn(z_BCHW.shape, generator, device=z_BCHW.device)
        zt = net.process.add_noise(z_BCHW.float(), eps, t_B)
        return F.mse_loss(net.score_unet(zt, t_B, encoder_hidden_states=c_BLD).sample.float(), eps)

    @torch.no_grad()
    def restore(
        self, net: nn.Module, lq: torch.Tensor, *, generator: torch.Generator, keys: Sequence[str] | None = None,
        fix_color: bool = True, prompts: list[str] | None = None, progress: bool = False,
    ) -> torch.Tensor:
        """x scale output in [-1, 1], float32: bicubic upsample, one generator step (bf16 autocast on CUDA).

        For tiles, restore.py passes `tile_options` (the whole image's prompts, no colour fix) and applies
        `after_tiles` once to the blended image. One network pass: `progress` has nothing to show.
        """
        cfg = self.config
        lq_up = upsample_test(lq, scale=cfg.scale)
        # The VAE needs sizes divisible by its downsampling factor; pad by reflection and crop back.
        factor = 2 ** (len(net.vae.config.block_out_channels) - 1)
        h, w = lq_up.shape[-2:]
        padded = pad_to_multiple(lq_up, factor)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if lq.device.type == "cuda" else contextlib.nullcontext()
        )
        with autocast:
            if prompts is None:
                prompts = self.prompts(net, lq_up, keys, training=False)
            c = encode_prompts(net.text_encoder, net.tokenizer, prompts)
            x_hat, _ = net.generate(padded, c, generator=generator)
        x_hat = x_hat[..., :h, :w].float()
        return self.fix_color(x_hat, lq) if fix_color else x_hat

    @torch.no_grad()
    def image_prompts(self, net: nn.Module, lq: torch.Tensor, keys: Sequence[str] | None = None) -> list[str]:
        """The prompts `restore` would use for this (whole) lq."""
        return self.prompts(net, upsample_test(lq, scale=self.config.scale), keys, training=False)

    def fix_color(self, x_hat: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """The configured colour correction of a restored image against its (whole) lq."""
        if self.config.color_fix != "adain":
            return x_hat
        return adain_color_fix(x_hat, upsample_test(lq, scale=self.config.scale))

    def tile_options(self, net: OSEDiffNet, lq: torch.Tensor, options: dict) -> dict:
        """Every tile gets the tags of the whole lq, and no colour fix: `after_tiles` fixes the blended image
        against the whole lq's colour statistics, not each tile against its own crop's."""
        tile = {name: value for name, value in options.items() if name != "keys"}
        return tile | {"prompts": self.image_prompts(net, lq, options.get("keys")), "fix_color": False}

    def after_tiles(self, out: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        return self.fix_color(out, lq)

    def adapter_meta(self, net: nn.Module) -> dict:
        """How the adapters are placed: what an adapter file must agree on to be loaded."""
        return {"lora_rank": self.config.lora_rank, "lora_alpha": self.config.lora_alpha, "targets": net.lora_targets}

    def export_adapters(self, net: nn.Module, folder: str | Path) -> Path:
        """Write only the trained tensors (LoRA + conv_in) and their placement to `folder`."""
        return export_adapters(net, folder, meta=self.adapter_meta(net))

    def import_adapters(self, net: nn.Module, folder: str | Path) -> None:
        """Load adapters written by export_adapters into a net built from the same sd_path and LoRA settings."""
        import_adapters(net, folder, meta=self.adapter_meta(net))
