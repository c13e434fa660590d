"""SD's epsilon-prediction forward process and its closed-form x0, as OSEDiff (arXiv 2406.08177) uses them.

Stateless math over a table alphas_cumprod (abar, shape (1000,)) read from the SD scheduler config.
OSEDiff's generator is one x0 estimate at t = 999; diffusers' scheduler.step cannot express that any more
(set_timesteps(1) then step(eps, 999, z) raises IndexError in diffusers 0.42), so it is written out here.

Legend: B batch; z_BCHW latents; t_B integer timesteps in {0..999}.
"""

import torch


def scaled_linear_alphas_cumprod(
    *, num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> torch.Tensor:
    """abar_t of SD's "scaled_linear" schedule (betas linear in sqrt), float32, shape (num_train_timesteps,)."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float()


def _abar(alphas_cumprod: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
    """abar_t as (B, 1, 1, 1) float32."""
    return alphas_cumprod.to(t_B.device)[t_B.long()].float().reshape(-1, 1, 1, 1)


def add_noise(z0: torch.Tensor, eps: torch.Tensor, t_B: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps (Eq. 4, Ho et al. 2020), in float32."""
    abar = _abar(alphas_cumprod, t_B)
    return abar.sqrt() * z0.float() + (1.0 - abar).sqrt() * eps.float()


def x0_from_eps(zt: torch.Tensor, eps: torch.Tensor, t_B: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """x0 = (z_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), the inverse of add_noise for a known eps, float32."""
    abar = _abar(alphas_cumprod, t_B)
    return (zt.float() - (1.0 - abar).sqrt() * eps.float()) / abar.sqrt()
