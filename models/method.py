"""The interface every restoration method offers to the training loop and to restore.py.

`RestorationMethod` is what the pipelines call; `MethodDefaults` holds the optional capabilities' defaults,
which every method class inherits and overrides where it has the capability. The pipelines read these
attributes directly: no method is probed with getattr/hasattr/isinstance.
"""

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import nn


@dataclass(frozen=True, slots=True)
class Pretrained:
    """One of our checkpoints that a method starts from (Latent Refusion's autoencoder, DiffIR's stage 1).

    The pipelines read it (pipelines/checkpoints.py::build_method); a method only sees these tensors and dicts.
    """

    where: str  # the checkpoint's path or URI, for messages
    state: dict[str, Any]  # state.pt: "net", "ema" (None without EMA), "step", ...
    config: dict[str, Any]  # config.json: the run config that trained it, as a dict

    def weights(self, which: Literal["ema", "net"]) -> dict[str, torch.Tensor]:
        """The EMA or the raw net's weights; ValueError naming the checkpoint when it saved no EMA."""
        if self.state.get(which) is None:
            raise ValueError(f"{self.where} holds no {which!r} weights (a run without EMA saves 'net' only)")
        return self.state[which]


class RestorationMethod(Protocol):
    """A method: its networks, its loss and its sampler. Tensors are BCHW float in [-1, 1]."""

    # loss and restore take keys=[...], one image key per batch row (pipelines.sources.Sample.key).
    needs_keys: bool
    # Some training phase leaves trainable parameters without gradients (the data-parallel wrapper must look for them).
    has_unused_parameters: bool
    # The restore() options that restore.py's --steps / --sampler set ("num_steps", "mode").
    sampler_flags: frozenset[str]
    # Names (prefixes) of weights the EMA copies instead of averaging: parts that train but never restore.
    unaveraged_prefixes: tuple[str, ...]

    def build(self) -> nn.Module:
        """All weights of the method; frozen parts carry requires_grad=False."""
        ...

    def param_groups(self, net: nn.Module) -> list[dict]:
        """Trainable parameter groups for the optimiser (`{"params": [...], "lr": ...}`)."""
        ...

    def loss(
        self, net: nn.Module, hq: torch.Tensor, lq: torch.Tensor, *, step: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar training loss for one batch; hq is P x P, lq is P/scale x P/scale."""
        ...

    @torch.no_grad()
    def restore(self, net: nn.Module, lq: torch.Tensor, *, generator: torch.Generator, progress: bool = False
                ) -> torch.Tensor:
        """Restored image at HQ size."""
        ...

    def process_settings(self) -> dict[str, Any]:
        """The diffusion-process settings a checkpoint fixes (restore.py's --max-sigma, --T, ...)."""
        ...

    def tile_options(self, net: nn.Module, lq: torch.Tensor, options: dict[str, Any]) -> dict[str, Any]:
        """The restore() options of every tile of `lq`, from the options of the whole image."""
        ...

    def after_tiles(self, out: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """What runs once on the blended tiles of `lq`."""
        ...


class MethodDefaults:
    """The optional capabilities of a RestorationMethod, absent: a method class overrides what it has."""

    needs_keys: bool = False
    has_unused_parameters: bool = False
    sampler_flags: frozenset[str] = frozenset()
    unaveraged_prefixes: tuple[str, ...] = ()

    def process_settings(self) -> dict[str, Any]:
        return {}

    def tile_options(self, net: nn.Module, lq: torch.Tensor, options: dict[str, Any]) -> dict[str, Any]:
        return options

    def after_tiles(self, out: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        return out


def hole_mask(lq_BCHW: torch.Tensor) -> torch.Tensor:
    """B1HW, 1 in the holes: an inpainting lq's 4th channel, -1 (known) or 1 (hole) in model space."""
    return ((lq_BCHW[:, 3:4] + 1) / 2).round()
