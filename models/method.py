"""The interface every restoration method offers to the training loop and to restore.py."""

from typing import Protocol

import torch
from torch import nn


class RestorationMethod(Protocol):
    """A method: its networks, its loss and its sampler. Tensors are BCHW float in [-1, 1]."""

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
    def restore(self, net: nn.Module, lq: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """Restored image at HQ size."""
        ...

    # Optional: a method with `needs_keys = True` (OSEDiff with a prompt file) also takes `keys=[...]`, one
    # image key per batch row (pipelines.sources.Sample.key), in loss and restore.
