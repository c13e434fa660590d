"""The short x0-parameterised DDPM that DiffIR (arXiv 2303.09472) runs over its compact prior vector.

Ho et al. 2020 (arXiv 2006.11239) forward process with DiffIR's schedule: T = 4 and
betas = linspace(sqrt(0.1), sqrt(0.99), T)^2. The reverse step is the posterior mean only (no noise),
as in DiffIR's sampler. Stateless math: the tables are computed once in __init__ and never mutated.

Legend: B batch; x tensors have batch first and any trailing shape (DiffIR: (B, D) prior vectors);
t_B integer steps in {0..T-1}, with -1 meaning "done" (the clean end of the chain).
"""

import torch


class DDPM:
    """q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I) for t in 0..T-1; the network predicts x0."""

    __slots__ = ("num_train_steps", "beta_start", "beta_end", "betas", "alphas_cumprod")

    def __init__(self, *, num_train_steps: int = 4, beta_start: float = 0.1, beta_end: float = 0.99) -> None:
        if num_train_steps < 1:
            raise ValueError(f"num_train_steps must be >= 1, got {num_train_steps}")
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        self.num_train_steps, self.beta_start, self.beta_end = num_train_steps, beta_start, beta_end
        # The "linear" schedule of the latent-diffusion code DiffIR builds on is linear in sqrt(beta).
        self.betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_steps, dtype=torch.float64) ** 2
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, 0)

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

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Eq. 4, Ho et al. 2020)."""
        abar = self._abar(t_B)
        return self._like(abar.sqrt(), x0) * x0 + self._like((1 - abar).sqrt(), x0) * eps

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
        """What the network predicts: x0 itself (DiffIR's parameterisation)."""
        return x0

    def loss_weight(self, t_B: torch.Tensor) -> torch.Tensor:
        """Per-sample loss weight, all ones, shape (B,) float32."""
        return torch.ones(t_B.shape, dtype=torch.float32, device=t_B.device)

    def posterior_coefficients(self, t_B: torch.Tensor, t_prev_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_x0, c_xt) with E[x_{t_prev} | x_t, x0] = c_x0 x0 + c_xt x_t, float64, shape (B,).

        For a gap from t to s = t_prev, alpha = abar_t / abar_s and beta = 1 - alpha (Eq. 7, Ho et al. 2020):
        c_x0 = sqrt(abar_s) beta / (1 - abar_t), c_xt = sqrt(alpha) (1 - abar_s) / (1 - abar_t).
        """
        abar_t, abar_s = self._abar(t_B), self._abar(t_prev_B)
        alpha = abar_t / abar_s
        c_x0 = abar_s.sqrt() * (1 - alpha) / (1 - abar_t)
        c_xt = alpha.sqrt() * (1 - abar_s) / (1 - abar_t)
        return c_x0, c_xt

    def step(
        self, out: torch.Tensor, t_B: torch.Tensor, t_prev_B: torch.Tensor, xt: torch.Tensor,
        *, generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """x_{t_prev} = posterior mean given the predicted x0 (out); returns out itself when t_prev = -1.

        Deterministic, as DiffIR's sampler: it draws no noise, so generator is unused.
        """
        c_x0, c_xt = self.posterior_coefficients(t_B, t_prev_B)
        return self._like(c_x0, out) * out + self._like(c_xt, xt) * xt
