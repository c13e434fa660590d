"""Frozen configs of Refusion (arXiv 2304.08291) and of its latent autoencoder pretraining.

`asdict(config)` is what a checkpoint stores (with `kind` naming the method); `from_dict` inverts it.
Each config builds its method (`build_method`): that is how the pipelines pick a method's class.
"""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from models.method import Pretrained
from models.nets.cond_unet import CondUNetConfig
from models.nets.latent_unet import DEHAZE_UNET, TINY_UNET, LatentUNet, LatentUNetConfig
from models.nets.nafnet import REFUSION_NAFNET, TINY_NAFNET, NAFNetConfig
from models.processes.irsde import SCHEDULES

if TYPE_CHECKING:  # the methods import their configs
    from models.refusion.autoencoder import LatentAutoencoder
    from models.refusion.method import Refusion

SAMPLERS: tuple[str, ...] = ("sde", "posterior", "ode")
UPSAMPLE_MODES: tuple[str, ...] = ("bicubic", "nearest")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class RefusionConfig:
    """Refusion = IR-SDE + ConditionalNAFNet (IR-SDE: + ConditionalUNet); set `latent` for Latent Refusion.

    The process settings live here so that a checkpoint carries them (a test-time mismatch is the
    most common user bug of the official code). `autoencoder_path` is a LatentAutoencoder checkpoint
    directory, read once by `Refusion.build`; its weights then travel inside the Refusion checkpoint.
    """

    kind: Literal["refusion"] = "refusion"
    net: NAFNetConfig | CondUNetConfig = REFUSION_NAFNET  # IR-SDE's official net is the U-Net (irsde_* recipes)
    max_sigma: float = 50.0  # 0-255 scale of [0, 1] images
    T: int = 100
    schedule: str = "cosine"
    eps: float = 0.005
    scale: int = 1  # lq is hq / scale; upsampled to hq size before diffusion
    upsample: str = "bicubic"  # "nearest" matches the released SISR weights (issue #31)
    sampler: str = "sde"
    num_steps: int | None = None  # sampling steps, None = all T
    latent: LatentUNetConfig | None = None
    autoencoder_path: str | None = None

    def __post_init__(self) -> None:
        if self.kind != "refusion":
            raise ValueError(f"kind must be 'refusion', got {self.kind!r}")
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("sampler", self.sampler, SAMPLERS)
        _check_choice("upsample", self.upsample, UPSAMPLE_MODES)
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        if self.T < 1 or not self.max_sigma > 0 or not 0 < self.eps < 1:
            raise ValueError(f"need T >= 1, max_sigma > 0 and eps in (0, 1), got {self.T}, {self.max_sigma}, {self.eps}")
        if self.num_steps is not None and not 1 <= self.num_steps <= self.T:
            raise ValueError(f"num_steps must be in [1, T={self.T}] or None, got {self.num_steps}")
        if self.latent is not None and self.latent.embed_dim != self.net.img_channels:
            raise ValueError(f"net.img_channels ({self.net.img_channels}) must equal latent.embed_dim "
                             f"({self.latent.embed_dim}) for Latent Refusion")
        if self.latent is None and self.net.img_channels != 3:
            raise ValueError(f"pixel-space Refusion needs net.img_channels == 3, got {self.net.img_channels}")

    def process_settings(self) -> dict[str, Any]:
        """The IR-SDE settings a restore must agree with."""
        return {"max_sigma": self.max_sigma, "T": self.T, "schedule": self.schedule, "eps": self.eps}

    def pretrained_paths(self) -> dict[str, str]:
        """The checkpoints the method starts from, by name: Latent Refusion's autoencoder."""
        return {"autoencoder": self.autoencoder_path} if self.latent is not None and self.autoencoder_path else {}

    def build_method(self, *, saved_state: bool = False, pretrained: Mapping[str, Pretrained] | None = None
                     ) -> "Refusion":
        """The method of this config, with the checkpoints of pretrained_paths() as read by the pipelines.

        With `saved_state` every weight comes from a saved state (resume, restore): a blank autoencoder, which
        the state dict fills, and nothing pretrained is needed.
        """
        from models.refusion.method import Refusion, autoencoder_from  # method.py imports this module

        if self.latent is None:
            return Refusion(self)
        if saved_state:
            return Refusion(self, autoencoder=LatentUNet(self.latent))
        if not pretrained or "autoencoder" not in pretrained:
            raise ValueError("Latent Refusion needs a pretrained autoencoder: set autoencoder_path to a "
                             "LatentAutoencoder checkpoint")
        return Refusion(self, autoencoder=autoencoder_from(pretrained["autoencoder"], self.latent))


@dataclass(frozen=True, kw_only=True, slots=True)
class LatentAutoencoderConfig:
    """Pretraining of the Latent Refusion compressor (losses of the official unet-latent code)."""

    kind: Literal["latent_autoencoder"] = "latent_autoencoder"
    net: LatentUNetConfig = DEHAZE_UNET
    swap_prob: float = 0.5  # swap lq and hq per batch so both directions are learned (issue #137)
    reg_weight: float = 0.001
    scale: int = 1
    upsample: str = "bicubic"

    def __post_init__(self) -> None:
        if self.kind != "latent_autoencoder":
            raise ValueError(f"kind must be 'latent_autoencoder', got {self.kind!r}")
        _check_choice("upsample", self.upsample, UPSAMPLE_MODES)
        if not 0.0 <= self.swap_prob <= 1.0:
            raise ValueError(f"swap_prob must be in [0, 1], got {self.swap_prob}")
        if self.scale < 1 or self.reg_weight < 0:
            raise ValueError(f"scale must be >= 1 and reg_weight >= 0, got {self.scale}, {self.reg_weight}")

    def pretrained_paths(self) -> dict[str, str]:
        return {}

    def build_method(self, *, saved_state: bool = False, pretrained: Mapping[str, Pretrained] | None = None
                     ) -> "LatentAutoencoder":
        """The method of this config (it starts from no checkpoint, so `saved_state` changes nothing)."""
        from models.refusion.autoencoder import LatentAutoencoder  # autoencoder.py imports this module

        return LatentAutoencoder(self)


def refusion_tiny() -> RefusionConfig:
    """Pixel-space Refusion small enough for CPU tests and the demo."""
    return RefusionConfig(net=TINY_NAFNET)


def latent_refusion_tiny(autoencoder_path: str | None = None) -> RefusionConfig:
    """Latent Refusion with the tiny NAFNet on the tiny 8x compressor."""
    net = dataclasses.replace(TINY_NAFNET, img_channels=TINY_UNET.embed_dim, global_skip=True)
    return RefusionConfig(net=net, latent=TINY_UNET, autoencoder_path=autoencoder_path)
