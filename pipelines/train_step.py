"""The module the training loop calls, and wraps in DDP when it runs data-parallel.

Wrapping the method's whole loss rather than its net keeps data parallelism out of the models: a loss may call
several sub-networks, or one several times (OSEDiff's generator and fake score, DiffIR's reverse chain), and DDP
still sees every trainable parameter that the call reaches.
"""

import contextlib

import torch
from torch import nn


class TrainStep(nn.Module):
    """One training forward, `method.loss(net, ...)`, as a module: the loop wraps this in DDP, not the net."""

    def __init__(self, method, net: nn.Module) -> None:
        super().__init__()
        self.method = method  # a plain object: its configs and processes hold no parameters
        self.net = net

    def forward(self, hq: torch.Tensor, lq: torch.Tensor, *, step: int, generator: torch.Generator,
                **keys) -> tuple[torch.Tensor, dict[str, float]]:
        return self.method.loss(self.net, hq, lq, step=step, generator=generator, **keys)


def no_sync(train_step: nn.Module, *, enabled: bool):
    """DDP's no_sync (gradients stay local) when `enabled` and the step is DDP-wrapped; else a no-op context."""
    if enabled and isinstance(train_step, nn.parallel.DistributedDataParallel):
        return train_step.no_sync()
    return contextlib.nullcontext()
