"""The authors' released OSEDiff weights (github.com/cswry/OSEDiff, `osediff.pkl`, arXiv 2406.08177) in our names.

The file is the dict that the official `save_model` writes (layout read from the official code, facts only):
the LoRA target modules of the VAE encoder and of the UNet's encoder / decoder / other blocks (lists, the VAE's
with repeats), `rank_unet`, `rank_vae`, `state_dict_unet` (LoRA tensors plus the fully fine-tuned `conv_in`) and
`state_dict_vae` (LoRA tensors). Tensor names are peft's (`<module>.lora_A.<adapter>.weight`), as ours, under
our `unet.` / `vae.`. No alpha is stored: the official LoraConfig leaves peft's default 8. The fake-score LoRA
is not saved (it only matters for training). The base is SD 2.1-base, in [-1, 1] as ours: no range change.
"""

from dataclasses import dataclass

import torch

# Official list key -> (our model, adapter name).
TARGET_LISTS = {
    "vae_lora_encoder_modules": ("vae", "default_encoder"),
    "unet_lora_encoder_modules": ("unet", "default_encoder"),
    "unet_lora_decoder_modules": ("unet", "default_decoder"),
    "unet_lora_others_modules": ("unet", "default_others"),
}
PEFT_DEFAULT_ALPHA = 8.0


@dataclass(frozen=True, kw_only=True)
class OfficialOSEDiff:
    """What an osediff.pkl holds: targets as sets per (model, adapter), the ranks and the generator tensors."""

    targets: dict[tuple[str, str], frozenset[str]]
    rank_unet: int
    rank_vae: int
    unet: dict[str, torch.Tensor]
    vae: dict[str, torch.Tensor]


def read_official(loaded: object) -> OfficialOSEDiff:
    """Check and unpack the loaded dict; raise ValueError naming what is missing or of the wrong type."""
    if not isinstance(loaded, dict) or "state_dict_unet" not in loaded:
        raise ValueError("no state_dict_unet: not an OSEDiff osediff.pkl (the dict of the official save_model)")
    missing = [k for k in (*TARGET_LISTS, "rank_unet", "rank_vae", "state_dict_vae") if k not in loaded]
    if missing:
        raise ValueError(f"missing {missing}: not a complete osediff.pkl")
    for key in TARGET_LISTS:
        if not isinstance(loaded[key], (list, tuple)) or not all(isinstance(m, str) for m in loaded[key]):
            raise ValueError(f"{key}: expected a list of module names")
    for key in ("state_dict_unet", "state_dict_vae"):
        if not isinstance(loaded[key], dict) or not all(isinstance(v, torch.Tensor) for v in loaded[key].values()):
            raise ValueError(f"{key}: expected a dict of tensors")
    return OfficialOSEDiff(
        targets={where: frozenset(loaded[key]) for key, where in TARGET_LISTS.items()},
        rank_unet=int(loaded["rank_unet"]), rank_vae=int(loaded["rank_vae"]),
        unet={k: v.float() for k, v in loaded["state_dict_unet"].items()},
        vae={k: v.float() for k, v in loaded["state_dict_vae"].items()})


def check_targets(official: OfficialOSEDiff, lora_targets: dict[str, dict[str, list[str]]]) -> None:
    """Our adapters must wrap the same modules as the file's (compared as sets: the official VAE list repeats)."""
    for (model, adapter), modules in official.targets.items():
        ours = frozenset(lora_targets[model][adapter])
        if ours != modules:
            raise ValueError(f"{model} adapter {adapter}: the file wraps {len(modules)} modules, ours {len(ours)} "
                             f"(only in the file: {sorted(modules - ours)[:3]}, only ours: {sorted(ours - modules)[:3]})"
                             ": is sd_path SD 2.1-base?")


def generator_weights(official: OfficialOSEDiff) -> dict[str, torch.Tensor]:
    """The file's tensors in our OSEDiffNet names."""
    return {f"unet.{k}": v for k, v in official.unet.items()} | {f"vae.{k}": v for k, v in official.vae.items()}
