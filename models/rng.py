"""Random draws made on the generator's device and moved to where they are used.

A run draws the same numbers whatever device its tensors live on: the training loop seeds one generator per
(seed, rank, step) on the worker's device, tests seed a CPU one, and restoring without a generator draws on the
tensors' device.
"""

import torch


def randn(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None, *, device: torch.device | str,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, I) of `shape`, drawn on the generator's device (on `device` without one), then on `device` in `dtype`."""
    source = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=source).to(device, dtype)


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, I) of x's shape, device and dtype."""
    return randn(x.shape, generator, device=x.device, dtype=x.dtype)


def randint(low: int, high: int, num: int, generator: torch.Generator, *, device: torch.device | str) -> torch.Tensor:
    """`num` integers uniform in [low, high), int64 on `device`."""
    return torch.randint(low, high, (num,), generator=generator, device=generator.device).to(device)


def uniform(generator: torch.Generator) -> float:
    """One U[0, 1) draw."""
    return torch.rand((), generator=generator, device=generator.device).item()
