"""The image-conditioned DPM (icDPM) of MSGD (Ren et al., arXiv 2212.01789): an eps-prediction DDPM.

The shared GaussianDDPM (models/processes/ddpm.py) with ancestral steps and x0 clipping; the condition (the
blurry image) goes to the network, never to the process. The 1000-step linear schedule is our choice
(methods.md section 3.4: UNVERIFIED against the MSGD paper). Cosine is Nichol & Dhariwal (arXiv 2102.09672).

Legend: B batch; x tensors BCHW in data units ([-1, 1]); t_B integer steps in {0..T-1}, -1 = clean end.
"""

import math
from typing import Literal

import torch

from models.processes.ddpm import GaussianDDPM

Schedule = Literal["linear", "cosine"]
SCHEDULES: tuple[str, ...] = ("linear", "cosine")


def beta_schedule(schedule: Schedule, num_train_steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """betas for t = 0..T-1, float64, shape (T,)."""
    if schedule == "linear":
        # Ho et al. 2020 (1e-4 .. 0.02 at T = 1000), rescaled so other T keep the same total noise.
        scale = 1000.0 / num_train_steps
        return torch.linspace(beta_start * scale, beta_end * scale, num_train_steps, dtype=torch.float64)
    if schedule == "cosine":
        s = 0.008
        x = torch.linspace(0, num_train_steps, num_train_steps + 1, dtype=torch.float64)
        abar = torch.cos((x / num_train_steps + s) / (1 + s) * math.pi * 0.5) ** 2
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


class ICDPM(GaussianDDPM):
    """q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I); the network predicts eps; ancestral reverse steps."""

    __slots__ = ("schedule", "beta_start", "beta_end")

    def __init__(
        self, *, num_train_steps: int = 1000, schedule: Schedule = "linear", beta_start: float = 1e-4,
        beta_end: float = 0.02, clip_x0: bool = True,
    ) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if num_train_steps < 2:
            raise ValueError(f"num_train_steps must be >= 2, got {num_train_steps}")
        if not 0.0 < beta_start < beta_end < 1.0:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}")
        super().__init__(betas=beta_schedule(schedule, num_train_steps, beta_start, beta_end), prediction="eps",
                         stochastic=True, clip_x0=clip_x0)
        self.schedule, self.beta_start, self.beta_end = schedule, beta_start, beta_end
