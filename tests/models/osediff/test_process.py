import torch
from diffusers import DDPMScheduler

from models.osediff.process import add_noise, scaled_linear_alphas_cumprod, x0_from_eps
from models.osediff.random_sd import sd_scheduler


def test_sd_schedule_matches_diffusers_and_reference_value_at_999():
    acp = scaled_linear_alphas_cumprod()
    assert torch.allclose(acp, sd_scheduler().alphas_cumprod.float(), atol=1e-7)
    assert abs(acp[999].item() - 0.004660) < 5e-6
    assert abs(acp[999].sqrt().item() - 0.06826) < 5e-5 and abs((1 - acp[999]).sqrt().item() - 0.99767) < 5e-5


def test_add_noise_matches_diffusers_scheduler():
    scheduler: DDPMScheduler = sd_scheduler()
    g = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([0, 500, 999])
    expected = scheduler.add_noise(z0, eps, t)
    assert torch.allclose(add_noise(z0, eps, t, scheduler.alphas_cumprod), expected, atol=1e-5)


def test_x0_from_eps_inverts_add_noise_at_every_t_including_999():
    acp = scaled_linear_alphas_cumprod()
    g = torch.Generator().manual_seed(1)
    z0, eps = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    t = torch.tensor([0, 20, 979, 999])
    assert torch.allclose(x0_from_eps(add_noise(z0, eps, t, acp), eps, t, acp), z0, atol=1e-4)
