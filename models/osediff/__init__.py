"""OSEDiff (arXiv 2406.08177): one-step Real-ISR on Stable Diffusion 2.1-base with LoRA and a VSD regulariser."""

from models.osediff.config import OSEDiffConfig
from models.osediff.method import OSEDiff
from models.osediff.recipes import osediff_sd21, osediff_tiny

__all__ = ["OSEDiff", "OSEDiffConfig", "osediff_sd21", "osediff_tiny"]
