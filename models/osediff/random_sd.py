"""Random-weight SD-shaped parts for OSEDiff (arXiv 2406.08177) tests and benchmarks; nothing is downloaded.

"tiny" is a few-channel SD that runs a training step on a CPU in about a second; "sd21" has the exact
SD 2.1-base shapes (UNet 866 M, VAE 84 M, OpenCLIP-H text tower). Both use a byte-level CLIP tokenizer
whose vocabulary is built here (single bytes only, no merges), so prompts tokenize without a download.
"""

from pathlib import Path
from typing import Literal

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from models.osediff.weights import SDParts

Kind = Literal["tiny", "sd21"]
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

UNET = {
    "tiny": {
        "sample_size": 16, "layers_per_block": 1, "block_out_channels": (32, 64), "norm_num_groups": 8,
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"), "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
        "cross_attention_dim": 32, "attention_head_dim": 8, "use_linear_projection": True,
    },
    "sd21": {
        "sample_size": 64, "layers_per_block": 2, "block_out_channels": (320, 640, 1280, 1280), "norm_num_groups": 32,
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        "cross_attention_dim": 1024, "attention_head_dim": (5, 10, 20, 20), "use_linear_projection": True,
    },
}  # fmt: skip
VAE = {
    # Four blocks like SD, so latents are 1/8 of the image and 512^2 attention stays small.
    "tiny": {"block_out_channels": (8, 16, 16, 32), "layers_per_block": 1, "norm_num_groups": 8, "sample_size": 32},
    "sd21": {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 768},
}
TEXT = {
    "tiny": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "projection_dim": 32},
    "sd21": {
        "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23, "num_attention_heads": 16,
        "projection_dim": 512, "hidden_act": "gelu",
    },
}  # fmt: skip


def _byte_unicode() -> list[str]:
    """GPT-2/CLIP's printable stand-in character for each of the 256 byte values."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)]
    extra = [b for b in range(256) if b not in keep]
    codes = keep + [256 + i for i in range(len(extra))]
    return [chr(c) for c in codes]


def byte_tokenizer() -> CLIPTokenizer:
    """A CLIP BPE tokenizer over single bytes (514 tokens, 77 positions); BOS = 512, EOS = pad = 513."""
    chars = _byte_unicode()
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": len(chars) + i for i, c in enumerate(chars)}
    vocab |= {BOS: len(vocab), EOS: len(vocab) + 1}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def random_sd(kind: Kind, *, seed: int = 0) -> SDParts:
    """Randomly initialised SD parts of the given size, float32 on the CPU, identical for the same seed."""
    tokenizer = byte_tokenizer()
    # Module constructors draw from torch's global RNG; fork it so the caller's RNG state is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(in_channels=4, out_channels=4, **UNET[kind])
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * len(VAE[kind]["block_out_channels"]),
            up_block_types=("UpDecoderBlock2D",) * len(VAE[kind]["block_out_channels"]),
            latent_channels=4,
            scaling_factor=0.18215,
            **VAE[kind],
        )
        text_config = CLIPTextConfig(
            vocab_size=len(tokenizer), max_position_embeddings=77, bos_token_id=512, eos_token_id=513,
            pad_token_id=513, **TEXT[kind],
        )  # fmt: skip
        text_encoder = CLIPTextModel(text_config)
    return SDParts(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, alphas_cumprod=sd_scheduler().alphas_cumprod
    )


def sd_scheduler() -> DDPMScheduler:
    """SD 2.1-base's training schedule: scaled_linear betas 0.00085 -> 0.012 over 1000 steps, epsilon."""
    return DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, prediction_type="epsilon",
    )  # fmt: skip


def write_random_sd(folder: str | Path, kind: Kind = "tiny", *, seed: int = 0) -> Path:
    """Save random SD parts in diffusers layout (unet/ vae/ text_encoder/ tokenizer/ scheduler/)."""
    folder = Path(folder)
    parts = random_sd(kind, seed=seed)
    parts.unet.save_pretrained(folder / "unet")
    parts.vae.save_pretrained(folder / "vae")
    parts.text_encoder.save_pretrained(folder / "text_encoder")
    parts.tokenizer.save_pretrained(folder / "tokenizer")
    sd_scheduler().save_pretrained(folder / "scheduler")
    return folder
