"""IR-SDE: the mean-reverting SDE of Luo et al. 2023 (arXiv 2301.11699), used by Refusion (arXiv 2304.08291).

dx = theta_t (mu - x) dt + sigma_t dw with sigma_t^2 = 2 lambda^2 theta_t and mu = lq. Stateless math only:
the tables are computed once in __init__ and never mutated; every function takes mu (the lq) explicitly.

Legend: B batch, C channels, H height, W width; t_B integer steps in {0..T}; x_BCHW states in data units.
"""

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from models.rng import randint, randn_like

Schedule = Literal["cosine", "linear", "constant"]
SCHEDULES: tuple[str, ...] = ("cosine", "linear", "constant")
Mode = Literal["sde", "posterior", "ode"]
MODES: tuple[str, ...] = ("sde", "posterior", "ode")


def theta_schedule(schedule: Schedule, T: int) -> torch.Tensor:
    """theta_t for t = 0..T (float64, shape (T+1,)), as the official IR-SDE code defines it."""
    if schedule == "cosine":
        # One minus the cumulative DDPM alpha-bar of Nichol & Dhariwal (arXiv 2102.09672), s = 0.008.
        s = 0.008
        n = T + 2
        x = torch.linspace(0, n, n + 1, dtype=torch.float64)
        alphas_cumprod = torch.cos(((x / n) + s) / (1 + s) * math.pi * 0.5) ** 2
        alphas_cumprod = alphas_cumprod / alphas_cumprod[0]
        return 1.0 - alphas_cumprod[1:-1]
    if schedule == "linear":
        scale = 1000.0 / (T + 1)
        return torch.linspace(1e-4 * scale, 0.02 * scale, T + 1, dtype=torch.float64)
    if schedule == "constant":
        return torch.ones(T + 1, dtype=torch.float64)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


class IRSDE:
    """Mean-reverting OU process towards the lq; all tables indexed by the integer step t in {0..T}.

    max_sigma is on the 0-255 scale of [0, 1] images (values < 1 are taken as already relative);
    data_range rescales it for data that span another range (2.0 for [-1, 1]).
    """

    __slots__ = ("max_sigma", "T", "schedule", "eps", "data_range", "lam", "dt", "thetas", "thetas_cumsum",
                 "sigmas", "thetabar", "sigmabar")

    def __init__(
        self, *, max_sigma: float = 50.0, T: int = 100, schedule: Schedule = "cosine", eps: float = 0.005,
        data_range: float = 1.0,
    ) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        if not 0.0 < eps < 1.0:
            raise ValueError(f"eps must be in (0, 1), got {eps}")
        if max_sigma <= 0 or data_range <= 0:
            raise ValueError(f"max_sigma and data_range must be > 0, got {max_sigma}, {data_range}")
        self.max_sigma, self.T, self.schedule, self.eps, self.data_range = max_sigma, T, schedule, eps, data_range
        self.lam = (max_sigma / 255.0 if max_sigma >= 1 else max_sigma) * data_range
        self.thetas = theta_schedule(schedule, T)
        self.thetas_cumsum = torch.cumsum(self.thetas, 0) - self.thetas[0]
        # Global time step chosen so that exp(-thetabar_T) = eps exactly (not 1/T).
        self.dt = -math.log(eps) / float(self.thetas_cumsum[-1])
        self.sigmas = torch.sqrt(2 * self.lam**2 * self.thetas)
        self.thetabar = self.thetas_cumsum * self.dt
        self.sigmabar = self.lam * torch.sqrt(1 - torch.exp(-2 * self.thetabar))

    @staticmethod
    def _at(table: torch.Tensor, t_B: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """table[t] as (B, 1, 1, 1) in like's dtype and device (math stays float64 until here)."""
        values_B = table.to(t_B.device)[t_B.long()]
        return values_B.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)

    def timesteps(self, num_steps: int | None = None) -> torch.Tensor:
        """Descending integer steps from T to 0 with num_steps intervals (all T by default), int64."""
        n = self.T if num_steps is None else num_steps
        if not 1 <= n <= self.T:
            raise ValueError(f"num_steps must be in [1, {self.T}], got {n}")
        return torch.linspace(self.T, 0, n + 1, dtype=torch.float64).round().long()

    def sample_t(self, batch: int, *, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
        """Training steps t ~ U{1..T}, one per sample, shape (B,)."""
        return randint(1, self.T + 1, batch, generator, device=device)

    def mean(self, x0: torch.Tensor, mu: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
        """E[x_t | x0] = mu + (x0 - mu) e^{-thetabar_t}."""
        return mu + (x0 - mu) * self._at(torch.exp(-self.thetabar), t_B, x0)

    def std(self, t_B: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """sigmabar_t = lambda sqrt(1 - e^{-2 thetabar_t}), shape (B, 1, 1, 1)."""
        return self._at(self.sigmabar, t_B, like)

    def add_noise(self, x0: torch.Tensor, mu: torch.Tensor, noise: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
        """x_t = mu + (x0 - mu) e^{-thetabar_t} + sigmabar_t * noise (noise ~ N(0, I))."""
        return self.mean(x0, mu, t_B) + self.std(t_B, x0) * noise

    def prior(self, mu: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sampling start x_T = mu + lambda * noise (the official approximation of the terminal marginal)."""
        return mu + self.lam * noise

    def score(self, eps_hat: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
        """Score from predicted noise: -eps_hat / sigmabar_t."""
        return -eps_hat / self.std(t_B, eps_hat)

    def x0_from_noise(self, xt: torch.Tensor, eps_hat: torch.Tensor, mu: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
        """x0_hat = (x_t - mu - sigmabar_t eps_hat) e^{thetabar_t} + mu."""
        return (xt - mu - self.std(t_B, xt) * eps_hat) * self._at(torch.exp(self.thetabar), t_B, xt) + mu

    def _drift(self, xt: torch.Tensor, eps_hat: torch.Tensor, mu: torch.Tensor, t_B: torch.Tensor, ode: bool):
        """theta_t (mu - x) - c sigma_t^2 score, with c = 1 (SDE) or 1/2 (probability-flow ODE)."""
        c = 0.5 if ode else 1.0
        theta = self._at(self.thetas, t_B, xt)
        sigma2 = self._at(self.sigmas**2, t_B, xt)
        return theta * (mu - xt) - c * sigma2 * self.score(eps_hat, t_B)

    def _elapsed(self, t_B: torch.Tensor, t_prev_B: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Time between steps, (t - t_prev) * dt."""
        return ((t_B - t_prev_B).to(torch.float64) * self.dt).reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)

    def reverse_sde_mean(self, xt: torch.Tensor, eps_hat: torch.Tensor, mu: torch.Tensor, t_B: torch.Tensor,
                         t_prev_B: torch.Tensor | None = None) -> torch.Tensor:
        """Euler-Maruyama reverse mean: x_t - [theta_t (mu - x_t) - sigma_t^2 score] dt."""
        t_prev_B = t_B - 1 if t_prev_B is None else t_prev_B
        return xt - self._drift(xt, eps_hat, mu, t_B, ode=False) * self._elapsed(t_B, t_prev_B, xt)

    def reverse_sde_step(self, xt: torch.Tensor, eps_hat: torch.Tensor, mu: torch.Tensor, t_B: torch.Tensor,
                         noise: torch.Tensor, t_prev_B: torch.Tensor | None = None) -> torch.Tensor:
        """One reverse Euler-Maruyama step, noise ~ N(0, I) scaled by sigma_t sqrt(dt)."""
        t_prev_B = t_B - 1 if t_prev_B is None else t_prev_B
        mean = self.reverse_sde_mean(xt, eps_hat, mu, t_B, t_prev_B)
        return mean - self._at(self.sigmas, t_B, xt) * self._elapsed(t_B, t_prev_B, xt).sqrt() * noise

    def reverse_ode_step(self, xt: torch.Tensor, eps_hat: torch.Tensor, mu: torch.Tensor, t_B: torch.Tensor,
                         t_prev_B: torch.Tensor | None = None) -> torch.Tensor:
        """One Euler step of the probability-flow ODE: x_t - [theta_t (mu - x_t) - sigma_t^2 score / 2] dt."""
        t_prev_B = t_B - 1 if t_prev_B is None else t_prev_B
        return xt - self._drift(xt, eps_hat, mu, t_B, ode=True) * self._elapsed(t_B, t_prev_B, xt)

    def _posterior_terms(self, t_B: torch.Tensor, t_prev_B: torch.Tensor, like: torch.Tensor):
        """A = e^{-(thetabar_t - thetabar_s)}, B = e^{-thetabar_t}, C = e^{-thetabar_s} for s = t_prev, float64."""
        tb = self.thetabar.to(t_B.device)
        thetabar_t, thetabar_s = tb[t_B.long()], tb[t_prev_B.long()]
        shape = (-1, *([1] * (like.dim() - 1)))
        return (torch.exp(-(thetabar_t - thetabar_s)).reshape(shape), torch.exp(-thetabar_t).reshape(shape),
                torch.exp(-thetabar_s).reshape(shape))

    def posterior_coefficients(self, t_B: torch.Tensor, t_prev_B: torch.Tensor | None = None,
                               like: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) with E[x_s | x_t, x0] = a (x_t - mu) + b (x0 - mu) + mu; OU-bridge posterior, float64."""
        t_prev_B = t_B - 1 if t_prev_B is None else t_prev_B
        A, B, C = self._posterior_terms(t_B, t_prev_B, t_B if like is None else like)
        return A * (1 - C**2) / (1 - B**2), C * (1 - A**2) / (1 - B**2)

    def optimal_reverse_step(self, xt: torch.Tensor, x0: torch.Tensor, mu: torch.Tensor, t_B: torch.Tensor,
                             t_prev_B: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior mean x*_{t_prev} given x_t and x0 (the training target; equals x0 at t_prev = 0)."""
        a, b = self.posterior_coefficients(t_B, t_prev_B, xt)
        return a.to(xt.dtype) * (xt - mu) + b.to(xt.dtype) * (x0 - mu) + mu

    def posterior_std(self, t_B: torch.Tensor, t_prev_B: torch.Tensor | None = None,
                      like: torch.Tensor | None = None) -> torch.Tensor:
        """lambda sqrt((1 - A^2)(1 - C^2) / (1 - B^2)), variance clamped >= 1e-20 dt as the official code."""
        t_prev_B = t_B - 1 if t_prev_B is None else t_prev_B
        A, B, C = self._posterior_terms(t_B, t_prev_B, t_B if like is None else like)
        var = self.lam**2 * (1 - A**2) * (1 - C**2) / (1 - B**2)
        std = torch.sqrt(var.clamp(min=1e-20 * self.dt))
        return std if like is None else std.to(like.dtype)

    def posterior_step(self, xt: torch.Tensor, eps_hat: torch.Tensor, mu: torch.Tensor, t_B: torch.Tensor,
                       noise: torch.Tensor, t_prev_B: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior sampling (DA-CLIP, arXiv 2404.09732): optimal step from x0_hat plus posterior noise."""
        x0_hat = self.x0_from_noise(xt, eps_hat, mu, t_B)
        mean = self.optimal_reverse_step(xt, x0_hat, mu, t_B, t_prev_B)
        return mean + self.posterior_std(t_B, t_prev_B, xt) * noise

    def loss(self, eps_hat: torch.Tensor, xt: torch.Tensor, x0: torch.Tensor, mu: torch.Tensor,
             t_B: torch.Tensor) -> torch.Tensor:
        """Matching L1 between the EM reverse mean (from eps_hat) and the optimal x*_{t-1}; scalar."""
        pred = self.reverse_sde_mean(xt, eps_hat, mu, t_B)
        target = self.optimal_reverse_step(xt, x0, mu, t_B)
        return F.l1_loss(pred.float(), target.float())

    def step(self, eps_hat: torch.Tensor, t_B: torch.Tensor, t_prev_B: torch.Tensor, xt: torch.Tensor, *,
             mu: torch.Tensor, mode: str, noise: torch.Tensor | None) -> torch.Tensor:
        """One reverse step t -> t_prev by `mode` ('sde', 'posterior' or 'ode'); noise None means zero."""
        noise = torch.zeros_like(xt) if noise is None else noise
        if mode == "sde":
            return self.reverse_sde_step(xt, eps_hat, mu, t_B, noise, t_prev_B)
        if mode == "posterior":
            return self.posterior_step(xt, eps_hat, mu, t_B, noise, t_prev_B)
        if mode == "ode":
            return self.reverse_ode_step(xt, eps_hat, mu, t_B, t_prev_B)
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

    def given(self, mu: torch.Tensor, *, mode: Mode = "sde", temperature: float = 1.0) -> "ConditionedIRSDE":
        """The process given mu = lq, with the signatures every process has (add_noise, target, timesteps, step)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        return ConditionedIRSDE(sde=self, mu=mu, mode=mode, temperature=temperature)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionedIRSDE:
    """IRSDE bound to one mu, a sampler mode and a temperature, with the project's process signatures:
    add_noise(x0, eps, t_B), target(x0, eps, t_B), timesteps(n), step(out, t_B, t_prev_B, xt, *, generator),
    as GaussianDDPM (models/processes/ddpm.py); plus start(generator), the prior sample the reverse chain starts at.

    temperature scales every injected noise, the start included; 0 draws nothing (a deterministic path, the
    mean path with mode 'posterior' or 'ode'). Each step draws its noise after the network call, so a seeded
    run replays exactly.
    """

    sde: IRSDE
    mu: torch.Tensor
    mode: Mode
    temperature: float

    def _noise(self, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor | None:
        return None if self.temperature == 0 else self.temperature * randn_like(like, generator)

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
        """x_t = mu + (x0 - mu) e^{-thetabar_t} + sigmabar_t eps."""
        return self.sde.add_noise(x0, self.mu, eps, t_B)

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
        """What the network predicts: the noise eps (Refusion trains it through the matching loss, IRSDE.loss)."""
        return eps

    def timesteps(self, num_steps: int | None = None) -> torch.Tensor:
        return self.sde.timesteps(num_steps)

    def start(self, generator: torch.Generator | None) -> torch.Tensor:
        """x_T = mu + lambda * noise (just mu at temperature 0)."""
        noise = self._noise(self.mu, generator)
        return self.mu if noise is None else self.sde.prior(self.mu, noise)

    def step(self, out: torch.Tensor, t_B: torch.Tensor, t_prev_B: torch.Tensor, xt: torch.Tensor, *,
             generator: torch.Generator | None) -> torch.Tensor:
        """One reverse step t -> t_prev from the predicted noise (out); the ODE draws no noise."""
        noise = None if self.mode == "ode" else self._noise(xt, generator)
        return self.sde.step(out, t_B, t_prev_B, xt, mu=self.mu, mode=self.mode, noise=noise)
