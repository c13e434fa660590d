"""MSGD method configs (arXiv 2212.01789): our GoPro-scale default, and a tiny one for CPU tests.

The guidance scales (k = 1, 2, 3) and the losses are the paper's (methods.md 3.3b); its widths and noise schedule
are UNVERIFIED (methods.md 3.3); see MSGDConfig.
"""

from models.msgd.guidance import GuidanceConfig
from models.msgd.method import MSGDConfig
from models.msgd.unet import UNetConfig


def deblur() -> MSGDConfig:
    """GoPro motion deblurring: base 64, mults (1, 2, 3, 4), guidance at 1/2, 1/4, 1/8, 60k warm start."""
    return MSGDConfig(scale=1, unet=UNetConfig(), guidance=GuidanceConfig())


def tiny(*, warmup_steps: int = 2, ramp_steps: int = 2) -> MSGDConfig:
    """A CPU-sized net with every part of the real one: base 8, three levels, guidance at 1/2 and 1/4."""
    return MSGDConfig(
        scale=1,
        unet=UNetConfig(base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1, norm_groups=4),
        guidance=GuidanceConfig(scales=(1, 2), channels=8, num_res_blocks=1, norm_groups=4),
        num_train_steps=100, warmup_steps=warmup_steps, ramp_steps=ramp_steps, num_sampling_steps=5,
    )
