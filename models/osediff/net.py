"""All OSEDiff (arXiv 2406.08177) weights in one nn.Module, and the one-step generator.

Generator: VAE encoder (LoRA) -> UNet (LoRA, conv_in trained) at t = 999 -> closed-form x0 -> frozen VAE
decoder. The VSD regulariser shares one UNet copy: adapters off it is the frozen real score, adapters on
it is the LoRA fake score. The losses are the method's (method.py). state_dict() holds only the trainable
tensors; the frozen SD weights are always re-read from sd_path.

Legend: B batch; x_BCHW images in [-1, 1] at HQ size; z_BCHW latents (scaled by the VAE factor);
c_BLD prompt embeddings; t_B integer timesteps.
"""

import copy

import torch
from torch import nn

from models.osediff.config import OSEDiffConfig
from models.osediff.lora import add_unet_lora, add_vae_lora
from models.osediff.losses import build_lpips_vgg
from models.osediff.prompts import Tagger
from models.osediff.weights import SDParts
from models.processes.ddpm import GaussianDDPM


def _keep_trainable(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """state_dict post-hook: drop everything but the trainable tensors (LoRA + conv_in)."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if key[len(prefix) :] not in module.trainable_names:
            del state_dict[key]


def _allow_missing_frozen(module: nn.Module, incompatible_keys) -> None:
    """load_state_dict post-hook: frozen SD weights are not in our checkpoints, so they may be missing."""
    frozen = module.frozen_names
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if k not in frozen]


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
        # SD's eps-prediction forward process over the scheduler's abar table (no tensors: nothing to train or save).
        # The generator is one closed-form x0 at t = 999, which diffusers' scheduler.step cannot express (after
        # set_timesteps(1), step(eps, 999, z) raises IndexError in diffusers 0.42).
        self.process = GaussianDDPM(alphas_cumprod=parts.alphas_cumprod, prediction="eps")
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
        z_hat = self.process.x0_from_eps(z_lq.float(), eps.float(), t_B)  # float32, as diffusers' scheduler
        x_hat = self.vae.decode(z_hat / scaling).sample.clamp(-1.0, 1.0)
        return x_hat, z_hat
