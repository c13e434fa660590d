"""All OSEDiff (arXiv 2406.08177) weights in one nn.Module, whose forward returns the training loss terms.

Generator: VAE encoder (LoRA) -> UNet (LoRA, conv_in trained) at t = 999 -> closed-form x0 -> frozen VAE
decoder. The VSD regulariser shares one UNet copy: adapters off it is the frozen real score, adapters on
it is the LoRA fake score. The whole step runs inside forward so that DDP all-reduces the gradients of
every trainable parameter, the fake-score LoRA included (the official code calls its regulariser through
`.module`, which skips that sync). state_dict() holds only the trainable tensors; the frozen SD weights are
always re-read from sd_path.

Legend: B batch; x_BCHW images in [-1, 1] at HQ size; z_BCHW latents (scaled by the VAE factor);
c_BLD prompt embeddings; t_B integer timesteps.
"""

import contextlib
import copy
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from torch import nn

from models.osediff.config import OSEDiffConfig
from models.osediff.lora import add_unet_lora, add_vae_lora
from models.osediff.losses import build_lpips_vgg, cfg_eps, vsd_loss
from models.osediff.process import add_noise, x0_from_eps
from models.osediff.prompts import Tagger
from models.osediff.weights import SDParts


def _randn_like(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """N(0, I) in float32 on x's device, drawn on the generator's device."""
    return torch.randn(x.shape, generator=generator, device=generator.device).to(x.device)


def _randint(low: int, high: int, num: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(low, high, (num,), generator=generator, device=generator.device).to(device)


@contextlib.contextmanager
def adapters_disabled(unet: UNet2DConditionModel) -> Iterator[None]:
    """Run the base (frozen SD) weights of a UNet that carries LoRA adapters."""
    unet.disable_adapters()
    try:
        yield
    finally:
        unet.enable_adapters()


def _keep_trainable(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """state_dict post-hook: drop everything but the trainable tensors (LoRA + conv_in)."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if key[len(prefix) :] not in module.trainable_names:
            del state_dict[key]


def _allow_missing_frozen(module: nn.Module, incompatible_keys) -> None:
    """load_state_dict post-hook: frozen SD weights are not in our checkpoints, so they may be missing."""
    frozen = module.frozen_names
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if k.removeprefix("module.") not in frozen]


class OSEDiffNet(nn.Module):
    """Generator, real/fake scores, text encoder, LPIPS and the optional taggers of OSEDiff."""

    def __init__(self, parts: SDParts, config: OSEDiffConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = parts.tokenizer
        self.text_encoder = parts.text_encoder.eval().requires_grad_(False)
        self.vae = parts.vae.requires_grad_(False)
        self.unet = parts.unet.requires_grad_(False)
        self.score_unet = copy.deepcopy(self.unet)
        lora = {"rank": config.lora_rank, "alpha": config.lora_alpha}
        self.lora_targets = {
            "vae": add_vae_lora(self.vae, **lora),
            "unet": add_unet_lora(self.unet, **lora),
            "score_unet": add_unet_lora(self.score_unet, **lora,
                                        only_last=config.fake_score_adapters == "official"),
        }
        self.unet.conv_in.requires_grad_(True)  # fully fine-tuned, LoRA included
        self.lpips = build_lpips_vgg()
        # Frozen taggers: of the GT in training (RAM officially) and of the LQ at test time (DAPE officially).
        self.tagger = None if config.tagger_path is None else Tagger(config.tagger_path, threshold=config.tagger_threshold)
        self.test_tagger = (None if config.test_tagger_path in (None, config.tagger_path)
                            else Tagger(config.test_tagger_path, threshold=config.tagger_threshold))
        self.register_buffer("alphas_cumprod", parts.alphas_cumprod.float(), persistent=False)
        self.trainable_names = frozenset(n for n, p in self.named_parameters() if p.requires_grad)
        self.frozen_names = frozenset(self.state_dict(keep_vars=True)) - self.trainable_names
        self.register_state_dict_post_hook(_keep_trainable)
        self.register_load_state_dict_post_hook(_allow_missing_frozen)

    def train(self, mode: bool = True) -> "OSEDiffNet":
        """Frozen helpers stay in eval mode (LPIPS has dropout) whatever the loop asks for."""
        super().train(mode)
        for frozen in (self.text_encoder, self.lpips, self.tagger, self.test_tagger):
            if frozen is not None:
                frozen.eval()
        return self

    def generator_parameters(self) -> list[nn.Parameter]:
        """VAE-encoder LoRA, UNet LoRA and conv_in."""
        return [p for m in (self.vae, self.unet) for p in m.parameters() if p.requires_grad]

    def fake_score_parameters(self) -> list[nn.Parameter]:
        """The LoRA of the fake-score UNet."""
        return [p for p in self.score_unet.parameters() if p.requires_grad]

    def generate(
        self, lq_BCHW: torch.Tensor, c_BLD: torch.Tensor, *, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step from the upsampled LQ: (x_hat in [-1, 1], z_hat float32 latent)."""
        scaling = self.vae.config.scaling_factor
        # A posterior sample, not the mode, in training and at test time, as officially.
        z_lq = self.vae.encode(lq_BCHW).latent_dist.sample(generator=generator) * scaling
        t_B = torch.full((lq_BCHW.shape[0],), self.config.t_gen, device=lq_BCHW.device, dtype=torch.long)
        eps = self.unet(z_lq, t_B, encoder_hidden_states=c_BLD).sample
        z_hat = x0_from_eps(z_lq, eps, t_B, self.alphas_cumprod)
        x_hat = self.vae.decode(z_hat / scaling).sample.clamp(-1.0, 1.0)
        return x_hat, z_hat

    def forward(
        self,
        lq_BCHW: torch.Tensor,
        hq_BCHW: torch.Tensor,
        c_BLD: torch.Tensor,
        c_neg_BLD: torch.Tensor,
        *,
        generator: torch.Generator,
    ) -> dict[str, torch.Tensor]:
        """Unweighted training terms: l2, lpips, vsd (gradient to the generator only) and fake (to the fake LoRA)."""
        x_hat, z_hat = self.generate(lq_BCHW, c_BLD, generator=generator)
        return {
            "l2": F.mse_loss(x_hat.float(), hq_BCHW.float()),
            "lpips": self.lpips(x_hat.float(), hq_BCHW.float()).mean(),
            "vsd": self._vsd(z_hat, c_BLD, c_neg_BLD, generator=generator),
            "fake": self._fake_score_loss(z_hat.detach(), c_BLD, generator=generator),
        }

    def _vsd(
        self, z_BCHW: torch.Tensor, c_BLD: torch.Tensor, c_neg_BLD: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        acp, cfg = self.alphas_cumprod, self.config
        t_B = _randint(cfg.vsd_t_min, cfg.vsd_t_max, z_BCHW.shape[0], generator, z_BCHW.device)
        zt = add_noise(z_BCHW.detach(), _randn_like(z_BCHW, generator), t_B, acp)
        with torch.no_grad():
            # Fake score: conditional branch only, no CFG.
            x0_fake = x0_from_eps(zt, self.score_unet(zt, t_B, encoder_hidden_states=c_BLD).sample, t_B, acp)
            with adapters_disabled(self.score_unet):
                eps_2B = self.score_unet(
                    torch.cat([zt, zt]), torch.cat([t_B, t_B]), encoder_hidden_states=torch.cat([c_neg_BLD, c_BLD])
                ).sample
            eps_real = cfg_eps(*eps_2B.float().chunk(2), cfg.cfg_vsd)
            x0_real = x0_from_eps(zt, eps_real, t_B, acp)
        return vsd_loss(z_BCHW, x0_fake, x0_real)

    def _fake_score_loss(
        self, z_BCHW: torch.Tensor, c_BLD: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        """Diffusion (epsilon-MSE) loss of the fake score on the detached generator latent, t ~ U{0..999}."""
        t_B = _randint(0, self.alphas_cumprod.shape[0], z_BCHW.shape[0], generator, z_BCHW.device)
        eps = _randn_like(z_BCHW, generator)
        zt = add_noise(z_BCHW, eps, t_B, self.alphas_cumprod)
        return F.mse_loss(self.score_unet(zt, t_B, encoder_hidden_states=c_BLD).sample.float(), eps)
