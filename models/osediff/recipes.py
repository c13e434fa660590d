"""OSEDiff (arXiv 2406.08177) method configs for pipelines/recipes.py: tiny random SD and SD 2.1-base."""

import dataclasses
import shutil
import tempfile
from pathlib import Path

from models.osediff.config import OSEDiffConfig

TINY_SD_DIR = Path(tempfile.gettempdir()) / "osediff_tiny_sd_v2_seed0"


def tiny_sd_folder() -> Path:
    """A tiny random SD (seed 0) in diffusers layout, written once into the temp dir and then reused."""
    if not TINY_SD_DIR.is_dir():
        partial = Path(tempfile.mkdtemp(prefix=TINY_SD_DIR.name + ".", dir=TINY_SD_DIR.parent))
        from models.osediff.random_sd import write_random_sd  # diffusers and transformers: only when writing

        write_random_sd(partial, "tiny", seed=0)
        try:
            partial.rename(TINY_SD_DIR)  # atomic: a reader never sees half a folder
        except OSError:  # another process renamed its identical copy first
            shutil.rmtree(partial)
    return TINY_SD_DIR


def osediff_sd21(sd_path: str = "stabilityai/stable-diffusion-2-1-base") -> OSEDiffConfig:
    """The official losses and LoRA: SD 2.1-base, r=4, MSE + 2 LPIPS + VSD at CFG 7.5, lr 5e-5. Its prompts are the
    warned fixed-prompt fallback until method.tagger_path (RAM) and test_tagger_path (DAPE) name local taggers."""
    return OSEDiffConfig(sd_path=sd_path)


def osediff_tiny() -> OSEDiffConfig:
    """osediff_sd21 on a tiny random SD (CPU tests, CI)."""
    return dataclasses.replace(osediff_sd21(), sd_path=str(tiny_sd_folder()))
