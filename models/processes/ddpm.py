"""The project's one Gaussian DDPM (Ho et al. 2020, arXiv 2006.11239) and DiffIR's short x0 chain over it.

`GaussianDDPM` is the forward process q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I) over any abar table,
its closed-form inverse and the posterior over a gap; three methods use it with their own schedule:
- DiffIR (arXiv 2303.09472): `DDPM`, T = 4, betas = linspace(sqrt(0.1), sqrt(0.99), T)^2, the network
  predicts x0 and the reverse step is the posterior mean only (no noise), as DiffIR's sampler;
- MSGD's icDPM (models/processes/icdpm.py): eps prediction, ancestral steps with posterior noise;
- OSEDiff: SD's 1000-step "scaled_linear" table, read from the SD scheduler (add_noise and x0_from_eps only).
Stateless math: the tables are float64, computed once in __init__ and never mutated.

Legend: B batch; x tensors have batch first and any trailing shape (DiffIR: (B, D) prior vectors, else BCHW);
t_B integer steps in {0..T-1}, with -1 meaning "done" (the clean end of the chain, abar_{-1} = 1).
"""

from typing import Literal

import torch

from models.rng import randint, randn_like

Prediction = Literal["eps", "x0"]


def sqrt_linear_betas(num_train_steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """betas linear in sqrt(beta), float64, shape (T,): latent diffusion's "linear" and SD's "scaled_linear"."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_steps, dtype=torch.float64) ** 2


class GaussianDDPM:
    """q(x_t | x0) for t in 0..T-1 over betas (or an abar table); `step` is one reverse step t -> t_prev.

    prediction: what the network outputs, "eps" or "x0". stochastic: a step adds the posterior noise
    (ancestral sampling; the noise is drawn at every step, the last included, so the RNG stream does not
    depend on where the chain ends) or stays on the posterior mean. clip_x0 clamps an x0 derived from eps
    to [-1, 1].
    """

    __slots__ = ("num_train_steps", "prediction", "stochastic", "clip_x0", "betas", "alphas_cumprod")

    def __init__(
        self, *, betas: torch.Tensor | None = None, alphas_cumprod: torch.Tensor | None = None,
        prediction: Prediction = "eps", stochastic: bool = True, clip_x0: bool = False,
    ) -> None:
        if (betas is None) == (alphas_cumprod is None):
            raise ValueError("pass exactly one of betas and alphas_cumprod")
        if prediction not in ("eps", "x0"):
            raise ValueError(f"prediction must be one of ('eps', 'x0'), got {prediction!r}")
        if betas is not None:
            betas = betas.detach().to("cpu", torch.float64)
            abar = torch.cumprod(1.0 - betas, 0)
        else:
            abar = alphas_cumprod.detach().to("cpu", torch.float64)
            betas = 1.0 - abar / torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        if abar.dim() != 1 or len(abar) < 1 or not bool(((abar > 0) & (abar < 1)).all()):
            raise ValueError(f"need a 1-D schedule with 0 < abar_t < 1 (every beta in (0, 1)), got shape "
                             f"{tuple(abar.shape)}, betas in [{betas.min().item():.4g}, {betas.max().item():.4g}]")
        self.num_train_steps, self.prediction, self.stochastic, self.clip_x0 = len(abar), prediction, stochastic, clip_x0
        self.betas, self.alphas_cumprod = betas, abar

    def _abar(self, t_B: torch.Tensor) -> torch.Tensor:
        """abar_t in float64, with abar_{-1} = 1 (the clean end), shape (B,)."""
        table = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod]).to(t_B.device)
        return table[t_B.long() + 1]

    @staticmethod
    def _like(values_B: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """(B,) float64 -> (B, 1, ...) broadcastable against like, in like's dtype."""
        return values_B.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)

    def timesteps(self, num_steps: int | None = None) -> torch.Tensor:
        """Descending steps T-1 .. 0 followed by -1, num_steps + 1 entries (all T steps by default), int64.

        Consecutive pairs (t, t_prev) are the reverse steps; fewer steps skip evenly and stay exact because
        step() uses the posterior over the whole gap.
        """
        n = self.num_train_steps if num_steps is None else num_steps
        if not 1 <= n <= self.num_train_steps:
            raise ValueError(f"num_steps must be in [1, {self.num_train_steps}], got {n}")
        return torch.linspace(self.num_train_steps - 1, -1, n + 1, dtype=torch.float64).round().long()

    def sample_t(self, batch: int, *, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
        """Training steps t ~ U{0..T-1}, shape (B,)."""
        return randint(0, self.num_train_steps, batch, generator, device=device)

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Eq. 4, Ho et al. 2020), in x0's dtype."""
        abar = self._abar(t_B)
        return self._like(abar.sqrt(), x0) * x0 + self._like((1 - abar).sqrt(), x0) * eps

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
        """What the network predicts: eps or x0 itself, by `prediction`."""
        return eps if self.prediction == "eps" else x0

    def loss_weight(self, t_B: torch.Tensor) -> torch.Tensor:
        """Per-sample weight of the simple loss (Ho et al. 2020): ones, shape (B,) float32."""
        return torch.ones(t_B.shape, dtype=torch.float32, device=t_B.device)

    def x0_from_eps(self, xt: torch.Tensor, eps_hat: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
        """x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), the inverse of add_noise; clipped if clip_x0."""
        abar = self._abar(t_B)
        x0 = (xt - self._like((1 - abar).sqrt(), xt) * eps_hat) / self._like(abar.sqrt(), xt)
        return x0.clamp(-1.0, 1.0) if self.clip_x0 else x0

    def posterior(self, t_B: torch.Tensor, t_prev_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_x0, c_xt, var) of q(x_s | x_t, x0) = N(c_x0 x0 + c_xt x_t, var) for s = t_prev, float64, (B,).

        Over the whole gap t -> s, alpha = abar_t / abar_s and beta = 1 - alpha (Eq. 7, Ho et al. 2020):
        c_x0 = sqrt(abar_s) beta / (1 - abar_t), c_xt = sqrt(alpha) (1 - abar_s) / (1 - abar_t),
        var = beta (1 - abar_s) / (1 - abar_t). At s = -1: c_x0 = 1, c_xt = 0, var = 0.
        """
        abar_t, abar_s = self._abar(t_B), self._abar(t_prev_B)
        alpha = abar_t / abar_s
        c_x0 = abar_s.sqrt() * (1 - alpha) / (1 - abar_t)
        c_xt = alpha.sqrt() * (1 - abar_s) / (1 - abar_t)
        return c_x0, c_xt, (1 - alpha) * (1 - abar_s) / (1 - abar_t)

    def step(
        self, out: torch.Tensor, t_B: torch.Tensor, t_prev_B: torch.Tensor, xt: torch.Tensor,
        *, generator: torch.Generator | None,
    ) -> torch.Tensor:
        """x_{t_prev} from the network output (eps or x0): the posterior mean, plus its noise when stochastic.

        A deterministic process draws nothing, so its generator may be None.
        """
        x0_hat = self.x0_from_eps(xt, out, t_B) if self.prediction == "eps" else out
        c_x0, c_xt, var = self.posterior(t_B, t_prev_B)
        mean = self._like(c_x0, x0_hat) * x0_hat + self._like(c_xt, xt) * xt
        if not self.stochastic:
            return mean
        return mean + self._like(var.sqrt(), xt) * randn_like(xt, generator)


class DDPM(GaussianDDPM):
    """DiffIR's prior chain: x0 prediction, deterministic posterior-mean steps, betas linear in sqrt(beta)."""

    __slots__ = ("beta_start", "beta_end")

    def __init__(self, *, num_train_steps: int = 4, beta_start: float = 0.1, beta_end: float = 0.99) -> None:
        if num_train_steps < 1:
            raise ValueError(f"num_train_steps must be >= 1, got {num_train_steps}")
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        super().__init__(betas=sqrt_linear_betas(num_train_steps, beta_start, beta_end), prediction="x0",
                         stochastic=False)
        self.beta_start, self.beta_end = beta_start, beta_end
