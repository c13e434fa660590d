"""Reverse-time sampling loop of the IR-SDE (arXiv 2301.11699), written out: prior, then T..0 steps.

Legend: B batch, C channels, H height, W width; t_B integer steps.
"""

from collections.abc import Callable

import torch
from torch import nn

from models.processes.irsde import IRSDE
from models.progress import track
from models.rng import randn_like

Denoiser = nn.Module | Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def sample(
    net: Denoiser, process: IRSDE, lq: torch.Tensor, *, num_steps: int | None = None, mode: str = "sde",
    generator: torch.Generator | None, temperature: float = 1.0, progress: bool = False,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Restore x0 from mu = lq (B, C, H, W) by reverse sampling; `net(xt, t_B, lq)` predicts the noise.

    temperature scales every injected noise, the start included: 0 gives a deterministic path (with
    mode 'posterior' or 'ode' this is the mean path, used for tiling tests). callback(t, x) runs after each step.
    """
    if mode not in ("sde", "posterior", "ode"):
        raise ValueError(f"mode must be one of ('sde', 'posterior', 'ode'), got {mode!r}")
    timesteps = process.timesteps(num_steps).tolist()

    def noise_like(x: torch.Tensor) -> torch.Tensor | None:
        return None if temperature == 0 else temperature * randn_like(x, generator)

    start = noise_like(lq)
    x = lq if start is None else process.prior(lq, start)
    pairs = list(zip(timesteps[:-1], timesteps[1:]))
    for t, t_prev in track(pairs, desc=f"{mode} sampling", enabled=progress):
        t_B = torch.full((lq.shape[0],), t, device=lq.device, dtype=torch.long)
        t_prev_B = torch.full_like(t_B, t_prev)
        eps_hat = net(x, t_B, lq).to(x.dtype)  # a bf16 net output under autocast; the step math stays in x's dtype
        noise = None if mode == "ode" else noise_like(x)
        x = process.step(eps_hat, t_B, t_prev_B, x, mu=lq, mode=mode, noise=noise)
        if callback is not None:
            callback(t_prev, x)
    return x
