"""OSEDiff (arXiv 2406.08177): one-step Real-ISR on Stable Diffusion 2.1-base with LoRA and a VSD regulariser."""

import logging

from models.osediff.config import OSEDiffConfig
from models.osediff.recipes import osediff_sd21, osediff_tiny

# diffusers imports bitsandbytes when it is installed (pyiqa requires it), and bitsandbytes then tries to fetch
# a 4-bit CPU kernel from the Hugging Face Hub and logs "Failed to load CPU gemm_4bit_forward" when it can't.
# OSEDiff never quantises, and nothing may reach the network at run time: that one logger is kept quiet.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

__all__ = ["OSEDiff", "OSEDiffConfig", "osediff_sd21", "osediff_tiny"]


def __getattr__(name: str):
    """`OSEDiff` on first use: it imports diffusers, peft and transformers (~5 s), which a process that only
    reads configs (every Ray worker of another method's run) should not pay for."""
    if name == "OSEDiff":
        from models.osediff.method import OSEDiff

        return OSEDiff
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
