"""LoRA placement of OSEDiff (arXiv 2406.08177) on the SD VAE encoder and UNet, and adapter files.

The target rule follows cswry/OSEDiff osediff.py: Linear/Conv2d modules whose names contain one of the
patterns, no norms; the UNet modules are split into three adapters by position. With the SD 2.1-base
shapes this gives 32 VAE modules and 94 / 148 / 16 UNet modules (tests/models/osediff/test_lora.py).
"""

import json
from pathlib import Path

from diffusers import AutoencoderKL, UNet2DConditionModel
from peft import LoraConfig
from safetensors.torch import load_file, save_file
from torch import nn

VAE_PATTERNS = ("conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out", "to_k", "to_q", "to_v", "to_out.0")
UNET_PATTERNS = (
    "to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_in", "conv_shortcut", "conv_out",
    "proj_out", "proj_in", "ff.net.2", "ff.net.0.proj",
)  # fmt: skip
VAE_ADAPTER = "default_encoder"
UNET_ADAPTERS = ("default_encoder", "default_decoder", "default_others")
ADAPTER_WEIGHTS = "adapters.safetensors"
ADAPTER_META = "adapters.json"


def _candidates(model: nn.Module) -> list[str]:
    """Names of the Linear and Conv2d modules that are not norms."""
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and "norm" not in n]


def vae_lora_targets(vae: AutoencoderKL) -> list[str]:
    """Encoder convs and attention projections plus quant_conv (not post_quant_conv); decoder untouched."""
    return [
        n
        for n in _candidates(vae)
        if ("encoder" in n and any(p in n for p in VAE_PATTERNS)) or n == "quant_conv"
    ]


def unet_lora_targets(unet: UNet2DConditionModel) -> dict[str, list[str]]:
    """UNet targets per adapter: down blocks + conv_in, up blocks + conv_out, and the rest (mid block).

    time_embedding and time_emb_proj match no pattern and stay without LoRA, as officially.
    """
    groups: dict[str, list[str]] = {name: [] for name in UNET_ADAPTERS}
    for n in _candidates(unet):
        if not any(p in n for p in UNET_PATTERNS):
            continue
        if "down_blocks" in n or "conv_in" in n:
            groups["default_encoder"].append(n)
        elif "up_blocks" in n or "conv_out" in n:
            groups["default_decoder"].append(n)
        else:
            groups["default_others"].append(n)
    return groups


def _lora_config(targets: list[str], *, rank: int, alpha: float) -> LoraConfig:
    # "gaussian" draws A ~ N(0, 1/r^2) and sets B = 0: every adapter starts as the identity.
    return LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=targets)


def add_vae_lora(vae: AutoencoderKL, *, rank: int, alpha: float) -> dict[str, list[str]]:
    """Add the encoder adapter in place (its LoRA weights trainable); returns {adapter: targets}."""
    targets = {VAE_ADAPTER: vae_lora_targets(vae)}
    vae.add_adapter(_lora_config(targets[VAE_ADAPTER], rank=rank, alpha=alpha), adapter_name=VAE_ADAPTER)
    return targets


def add_unet_lora(unet: UNet2DConditionModel, *, rank: int, alpha: float, only_last: bool = False
                  ) -> dict[str, list[str]]:
    """Add the three UNet adapters in place and activate all of them (only_last: only the last one added, as
    a plain sequence of add_adapter calls leaves it); returns {adapter: targets}. An inactive adapter is
    neither applied nor trained."""
    targets = unet_lora_targets(unet)
    for name, modules in targets.items():
        unet.add_adapter(_lora_config(modules, rank=rank, alpha=alpha), adapter_name=name)
    # add_adapter activates only the adapter just added; the OSEDiff generator trains all three together.
    unet.set_adapter(list(targets)[-1:] if only_last else list(targets))
    return targets


def export_adapters(net: nn.Module, folder: str | Path, *, meta: dict) -> Path:
    """Write the trainable tensors (LoRA + conv_in) as safetensors plus a JSON of how they were placed.

    `net.state_dict()` of an OSEDiffNet already holds only those tensors.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(folder / ADAPTER_WEIGHTS))
    (folder / ADAPTER_META).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return folder


def import_adapters(net: nn.Module, folder: str | Path, *, meta: dict) -> None:
    """Load adapters written by export_adapters into a net built with the same placement (`meta`)."""
    folder = Path(folder)
    saved = json.loads((folder / ADAPTER_META).read_text())
    if saved != meta:
        diff = sorted(k for k in saved.keys() | meta.keys() if saved.get(k) != meta.get(k))
        raise ValueError(f"adapters in {folder} were placed differently from this net; differing keys: {diff}")
    device = next(net.parameters()).device
    net.load_state_dict({k: v.to(device) for k, v in load_file(str(folder / ADAPTER_WEIGHTS)).items()})

