"""LoRA placement on the real SD 2.1-base shapes (built on the meta device: no memory, no weights)."""

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from models.osediff.lora import add_unet_lora, add_vae_lora, unet_lora_targets
from models.osediff.random_sd import UNET, VAE


def _sd21() -> tuple[UNet2DConditionModel, AutoencoderKL]:
    n = len(VAE["sd21"]["block_out_channels"])
    with torch.device("meta"):
        unet = UNet2DConditionModel(in_channels=4, out_channels=4, **UNET["sd21"])
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n, **VAE["sd21"]
        )
    return unet, vae


def test_sd21_lora_targets_match_the_official_counts():
    unet, vae = _sd21()
    assert abs(sum(p.numel() for p in unet.parameters()) / 1e6 - 865.9) < 0.1
    counts = {name: len(mods) for name, mods in unet_lora_targets(unet).items()}
    assert counts == {"default_encoder": 94, "default_decoder": 148, "default_others": 16}
    with torch.device("meta"):
        vae_targets = add_vae_lora(vae.requires_grad_(False), rank=4, alpha=8)["default_encoder"]
        add_unet_lora(unet.requires_grad_(False), rank=4, alpha=8)
    assert len(vae_targets) == 32 and "quant_conv" in vae_targets and "post_quant_conv" not in vae_targets
    assert not any("decoder" in n for n in vae_targets)
    lora_unet = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    lora_vae = sum(p.numel() for p in vae.parameters() if p.requires_grad)
    assert abs(lora_unet / 1e6 - 4.056) < 0.001 and abs(lora_vae / 1e6 - 0.369) < 0.001


def test_time_embedding_and_norms_get_no_lora():
    unet, _ = _sd21()
    targets = [n for mods in unet_lora_targets(unet).values() for n in mods]
    assert not any("time_emb" in n or "norm" in n for n in targets)
    assert "conv_in" in targets and "conv_out" in targets
