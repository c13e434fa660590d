"""The image-conditioned DPM (icDPM) of MSGD (Ren et al., arXiv 2212.01789): an eps-prediction DDPM.

Forward process and ancestral reverse step of Ho et al. 2020 (arXiv 2006.11239); the condition (the
blurry image) goes to the network, never to the process. The 1000-step linear schedule is our choice
(methods.md section 3.4: UNVERIFIED against the MSGD paper). Cosine is Nichol & Dhariwal (arXiv 2102.09672).

Legend: B batch; x tensors BCHW in data units ([-1, 1]); t_B integer steps in {0..T-1}, -1 = clean end.
"""

import math
from typing import Literal

import torch

from models.rng import randint, randn_like

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


class ICDPM:
    """q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I); the network predicts eps."""

    __slots__ = ("num_train_steps", "schedule", "beta_start", "beta_end", "clip_x0", "betas", "alphas_cumprod")

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
        self.num_train_steps, self.schedule = num_train_steps, schedule
        self.beta_start, self.beta_end, self.clip_x0 = beta_start, beta_end, clip_x0
        self.betas = beta_schedule(schedule, num_train_steps, beta_start, beta_end)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, 0)

    def _abar(self, t_B: torch.Tensor) -> torch.Tensor:
        """abar_t in float64 with abar_{-1} = 1, shape (B,)."""
        table = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod]).to(t_B.device)
        return table[t_B.long() + 1]

    @staticmethod
    def _like(values_B: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values_B.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)

    def timesteps(self, num_steps: int | None = None) -> torch.Tensor:
        """Descending steps T-1 .. 0 then -1 (num_steps + 1 entries, evenly spaced), int64."""
        n = self.num_train_steps if num_steps is None else num_steps
        if not 1 <= n <= self.num_train_steps:
            raise ValueError(f"num_steps must be in [1, {self.num_train_steps}], got {n}")
        return torch.linspace(self.num_train_steps - 1, -1, n + 1, dtype=torch.float64).round().long()

    def sample_t(self, batch: int, *, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
        """Training steps t ~ U{0..T-1}, shape (B,)."""
        return randint(0, self.num_train_steps, batch, generator, device=device)

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Eq. 4, Ho et al. 2020)."""
        abar = self._abar(t_B)
        return self._like(abar.sqrt(), x0) * x0 + self._like((1 - abar).sqrt(), x0) * eps

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
        """What the network predicts: the noise eps."""
        return eps

    def loss_weight(self, t_B: torch.Tensor) -> torch.Tensor:
        """Per-sample weight of the simple loss (Ho et al. 2020): ones, shape (B,) float32."""
        return torch.ones(t_B.shape, dtype=torch.float32, device=t_B.device)

    def x0_from_eps(self, xt: torch.Tensor, eps_hat: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
        """x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), clipped to [-1, 1] when clip_x0."""
        abar = self._abar(t_B)
        x0 = (xt - self._like((1 - abar).sqrt(), xt) * eps_hat) / self._like(abar.sqrt(), xt)
        return x0.clamp(-1.0, 1.0) if self.clip_x0 else x0

    def posterior(self, t_B: torch.Tensor, t_prev_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_x0, c_xt, var) of q(x_{t_prev} | x_t, x0) over the whole gap t -> t_prev, float64, shape (B,).

        alpha = abar_t / abar_s, beta = 1 - alpha; var = beta (1 - abar_s) / (1 - abar_t) (Eq. 7, Ho et al.).
        """
        abar_t, abar_s = self._abar(t_B), self._abar(t_prev_B)
        alpha = abar_t / abar_s
        c_x0 = abar_s.sqrt() * (1 - alpha) / (1 - abar_t)
        c_xt = alpha.sqrt() * (1 - abar_s) / (1 - abar_t)
        return c_x0, c_xt, (1 - alpha) * (1 - abar_s) / (1 - abar_t)

    def step(
        self, out: torch.Tensor, t_B: torch.Tensor, t_prev_B: torch.Tensor, xt: torch.Tensor,
        *, generator: torch.Generator,
    ) -> torch.Tensor:
        """One ancestral step from the predicted eps (out): posterior mean plus posterior noise (none at the end)."""
        x0_hat = self.x0_from_eps(xt, out, t_B)
        c_x0, c_xt, var = self.posterior(t_B, t_prev_B)
        mean = self._like(c_x0, xt) * x0_hat + self._like(c_xt, xt) * xt
        noise = randn_like(xt, generator)
        return mean + self._like(var.sqrt(), xt) * noise
