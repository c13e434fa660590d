"""The one reverse-sampling loop of the project, and the IR-SDE sampler (arXiv 2301.11699) on top of it.

Every method restores by walking a process's timesteps with `reverse`: Refusion/IR-SDE (IRSDE.given),
MSGD's icDPM (ancestral) and DiffIR's prior chain (posterior mean, differentiable in stage-2 training).

Legend: B batch, C channels, H height, W width; t_B integer steps.
"""

import itertools
from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from models.processes.irsde import IRSDE, MODES, Mode
from models.progress import track

Denoiser = nn.Module | Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class ReverseProcess(Protocol):
    """What the loop needs from a process: a descending step grid and one step with an explicit generator."""

    def timesteps(self, num_steps: int | None = None) -> torch.Tensor: ...

    def step(self, out: torch.Tensor, t_B: torch.Tensor, t_prev_B: torch.Tensor, xt: torch.Tensor, *,
             generator: torch.Generator | None) -> torch.Tensor: ...


def reverse(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], process: ReverseProcess, x: torch.Tensor, *,
    num_steps: int | None = None, generator: torch.Generator | None, progress: bool = False,
    desc: str = "sampling", callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Walk x from the first timestep to the last: out = denoise(x, t_B), x = process.step(out, t, t_prev, x).

    Not under no_grad, so a chain can be trained through (DiffIR); samplers wrap it in torch.no_grad().
    The network output is cast to x's dtype (a bf16 output under autocast; the step math stays in x's).
    callback(t_prev, x) runs after each step.
    """
    timesteps = process.timesteps(num_steps).tolist()
    pairs = list(itertools.pairwise(timesteps))
    for t, t_prev in track(pairs, desc=desc, enabled=progress):
        t_B = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        out = denoise(x, t_B).to(x.dtype)
        x = process.step(out, t_B, torch.full_like(t_B, t_prev), x, generator=generator)
        if callback is not None:
            callback(t_prev, x)
    return x


@torch.no_grad()
def sample(
    net: Denoiser, process: IRSDE, lq: torch.Tensor, *, num_steps: int | None = None, mode: Mode = "sde",
    generator: torch.Generator | None, temperature: float = 1.0, progress: bool = False,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Restore x0 from mu = lq (B, C, H, W) by reverse IR-SDE sampling; `net(xt, t_B, lq)` predicts the noise.

    temperature scales every injected noise, the start included: 0 gives a deterministic path (with
    mode 'posterior' or 'ode' this is the mean path, used for tiling tests). callback(t, x) runs after each step.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    chain = process.given(lq, mode=mode, temperature=temperature)
    return reverse(lambda x, t_B: net(x, t_B, lq), chain, chain.start(generator), num_steps=num_steps,
                   generator=generator, progress=progress, desc=f"{mode} sampling", callback=callback)
