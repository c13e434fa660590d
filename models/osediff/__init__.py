"""OSEDiff (arXiv 2406.08177): one-step Real-ISR on Stable Diffusion 2.1-base with LoRA and a VSD regulariser."""

from models.osediff.config import OSEDiffConfig
from models.osediff.recipes import osediff_sd21, osediff_tiny

__all__ = ["OSEDiff", "OSEDiffConfig", "osediff_sd21", "osediff_tiny"]


def __getattr__(name: str):
    """`OSEDiff` on first use: it imports diffusers, peft and transformers (~5 s), which a process that only
    reads configs (every Ray worker of another method's run) should not pay for."""
    if name == "OSEDiff":
        from models.osediff.method import OSEDiff

        return OSEDiff
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
