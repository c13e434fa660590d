"""Loading the Stable Diffusion 2.1-base parts that OSEDiff (arXiv 2406.08177) builds on.

`sd_path` is a local folder in diffusers layout or a hub id. A local folder is checked before anything is
read, so a missing part is reported by name instead of as a hub download error.
"""

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

log = logging.getLogger(__name__)

HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Each subfolder needs its config and one of its weight files (a tokenizer needs one of its vocab files).
REQUIRED = {
    "unet": (("config.json",), ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")),
    "vae": (("config.json",), ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")),
    "text_encoder": (("config.json",), ("model.safetensors", "pytorch_model.bin")),
    "tokenizer": ((), ("tokenizer.json", "vocab.json")),
    "scheduler": (("scheduler_config.json",), ()),
}


@dataclass(kw_only=True)
class SDParts:
    """The SD components in float32 on the CPU; alphas_cumprod is the scheduler's abar table, shape (T,)."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    alphas_cumprod: torch.Tensor


def is_hub_id(sd_path: str) -> bool:
    """True for "owner/name" strings that are not an existing local path."""
    return HUB_ID_RE.match(sd_path) is not None and not Path(sd_path).exists()


def check_sd_folder(folder: Path) -> None:
    """Raise FileNotFoundError naming every missing subfolder or file of a diffusers-layout SD folder."""
    layout = "unet/ vae/ text_encoder/ tokenizer/ scheduler/ (diffusers layout of SD 2.1-base)"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"SD weights folder {folder} does not exist: supply a local folder with {layout}, "
            "or a hub id such as stabilityai/stable-diffusion-2-1-base on a machine with internet"
        )
    missing = []
    for sub, (needed, one_of) in REQUIRED.items():
        if not (folder / sub).is_dir():
            missing.append(f"{folder / sub}/")
            continue
        missing += [str(folder / sub / name) for name in needed if not (folder / sub / name).is_file()]
        if one_of and not any((folder / sub / name).is_file() for name in one_of):
            missing.append(f"{folder / sub}/{' or '.join(one_of)}")
    if missing:
        raise FileNotFoundError(f"SD weights folder {folder} is incomplete; supply: " + ", ".join(missing))


def load_sd(sd_path: str) -> SDParts:
    """Read UNet, VAE, text encoder, tokenizer and abar table from a local folder or a hub id."""
    if not is_hub_id(sd_path):
        check_sd_folder(Path(sd_path).expanduser())
        sd_path = str(Path(sd_path).expanduser())
    log.info("loading SD weights from %s", sd_path)
    try:
        scheduler = DDPMScheduler.from_pretrained(sd_path, subfolder="scheduler")
    except OSError as error:  # "owner/name" is also what a mistyped relative folder looks like
        raise FileNotFoundError(
            f"sd_path {sd_path!r}: no local folder of that name, and the hub id could not be loaded ({error}); "
            "supply a local SD 2.1-base folder in diffusers layout"
        ) from error
    if scheduler.config.prediction_type != "epsilon":
        raise ValueError(
            f"OSEDiff needs an epsilon-prediction SD (2.1-base), but {sd_path} predicts "
            f"{scheduler.config.prediction_type!r} (SD 2.1 768-v is v-prediction)"
        )
    return SDParts(
        unet=UNet2DConditionModel.from_pretrained(sd_path, subfolder="unet"),
        vae=AutoencoderKL.from_pretrained(sd_path, subfolder="vae"),
        text_encoder=CLIPTextModel.from_pretrained(sd_path, subfolder="text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(sd_path, subfolder="tokenizer"),
        alphas_cumprod=scheduler.alphas_cumprod.float().clone(),
    )
