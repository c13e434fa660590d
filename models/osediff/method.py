"""OSEDiff (arXiv 2406.08177) as a RestorationMethod: build, param_groups, loss and one-step restore.

Legend: B batch; hq_BCHW P x P and lq_BCHW P/scale x P/scale images in [-1, 1].
"""

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from models.osediff.config import OSEDiffConfig
from models.osediff.lora import export_adapters, import_adapters
from models.osediff.net import OSEDiffNet
from models.osediff.prompts import (
    encode_prompts,
    prompts_from_file,
    read_prompt_file,
    inference_prompt,
)
from models.osediff.weights import SDParts, load_sd
from models.tiling import pad_to_multiple


logger = logging.getLogger(__name__)

def unwrap(net: nn.Module) -> OSEDiffNet:
    """The OSEDiffNet inside a DDP wrapper (or the net itself)."""
    return net.module if isinstance(net, DistributedDataParallel) else net


def to_8bit_grid(x_BCHW: torch.Tensor) -> torch.Tensor:
    """Clamp to [-1, 1] and round to the 256 levels of an 8-bit image, as a saved resized image would be."""
    return ((x_BCHW.clamp(-1.0, 1.0) + 1.0) * 127.5).round() / 127.5 - 1.0


def upsample_train(lq_BCHW: torch.Tensor, *, scale: int, modes: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """Resize each LQ back to HQ size with its own random mode (the official resize_bak), on the 8-bit grid."""
    picks = torch.randint(len(modes), (lq_BCHW.shape[0],), generator=generator, device=generator.device).tolist()
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


class OSEDiff:
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

    def param_groups(self, net: nn.Module) -> list[dict]:
        core = unwrap(net)
        return [
            {"params": core.generator_parameters(), "lr": self.config.lr, "name": "generator"},
            {"params": core.fake_score_parameters(), "lr": self.config.lr, "name": "fake_score"},
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
        net: nn.Module,
        hq: torch.Tensor,
        lq: torch.Tensor,
        *,
        step: int,
        generator: torch.Generator,
        keys: Sequence[str] | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """lambda_l2 MSE + lambda_lpips LPIPS + lambda_vsd VSD + lambda_fake fake-score loss, as one scalar.

        The four terms reach disjoint parameters (fake on the fake LoRA, the rest on the generator), so one
        backward of the sum equals the official two optimiser steps, and DDP syncs both parameter sets.
        """
        cfg, core = self.config, unwrap(net)
        lq_up = upsample_train(lq, scale=cfg.scale, modes=cfg.train_resize_modes, generator=generator)
        # Prompts come from the GT in training, as in the official code (RAM on x_tgt).
        c = encode_prompts(core.text_encoder, core.tokenizer, self.prompts(core, hq, keys, training=True))
        c_neg = encode_prompts(core.text_encoder, core.tokenizer, [cfg.neg_prompt] * hq.shape[0])
        terms = net(lq_up, hq, c, c_neg, generator=generator)
        total = (
            cfg.lambda_l2 * terms["l2"]
            + cfg.lambda_lpips * terms["lpips"]
            + cfg.lambda_vsd * terms["vsd"]
            + cfg.lambda_fake * terms["fake"]
        )
        logs = {f"loss_{k}": v.item() for k, v in terms.items()}
        return total, logs | {"loss": total.item()}

    @torch.no_grad()
    def restore(
        self, net: nn.Module, lq: torch.Tensor, *, generator: torch.Generator, keys: Sequence[str] | None = None,
        fix_color: bool = True, prompts: list[str] | None = None, progress: bool = False,
    ) -> torch.Tensor:
        """x scale output in [-1, 1], float32: bicubic upsample, one generator step (bf16 autocast on CUDA).

        For tiles, restore.py passes fix_color=False and the whole image's `prompts` (see `image_prompts`),
        then applies `fix_color` once to the blended image: every tile gets the tags and the colour
        statistics of the whole LQ, not of its own crop. One network pass: `progress` has nothing to show.
        """
        cfg, core = self.config, unwrap(net)
        lq_up = upsample_test(lq, scale=cfg.scale)
        # The VAE needs sizes divisible by its downsampling factor; pad by reflection and crop back.
        factor = 2 ** (len(core.vae.config.block_out_channels) - 1)
        h, w = lq_up.shape[-2:]
        padded = pad_to_multiple(lq_up, factor)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if lq.device.type == "cuda" else contextlib.nullcontext()
        )
        with autocast:
            if prompts is None:
                prompts = self.prompts(core, lq_up, keys, training=False)
            c = encode_prompts(core.text_encoder, core.tokenizer, prompts)
            x_hat, _ = core.generate(padded, c, generator=generator)
        x_hat = x_hat[..., :h, :w].float()
        return self.fix_color(x_hat, lq) if fix_color else x_hat

    @torch.no_grad()
    def image_prompts(self, net: nn.Module, lq: torch.Tensor, keys: Sequence[str] | None = None) -> list[str]:
        """The prompts `restore` would use for this (whole) lq."""
        return self.prompts(unwrap(net), upsample_test(lq, scale=self.config.scale), keys, training=False)

    def fix_color(self, x_hat: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """The configured colour correction of a restored image against its (whole) lq."""
        if self.config.color_fix != "adain":
            return x_hat
        return adain_color_fix(x_hat, upsample_test(lq, scale=self.config.scale))

    def adapter_meta(self, net: nn.Module) -> dict:
        """How the adapters are placed: what an adapter file must agree on to be loaded."""
        core = unwrap(net)
        return {"lora_rank": self.config.lora_rank, "lora_alpha": self.config.lora_alpha, "targets": core.lora_targets}

    def export_adapters(self, net: nn.Module, folder: str | Path) -> Path:
        """Write only the trained tensors (LoRA + conv_in) and their placement to `folder`."""
        return export_adapters(unwrap(net), folder, meta=self.adapter_meta(net))

    def import_adapters(self, net: nn.Module, folder: str | Path) -> None:
        """Load adapters written by export_adapters into a net built from the same sd_path and LoRA settings."""
        import_adapters(unwrap(net), folder, meta=self.adapter_meta(net))
