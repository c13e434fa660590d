"""OSEDiff's forward process: the shared GaussianDDPM over SD's "scaled_linear" table, checked against diffusers."""

import torch
from diffusers import DDPMScheduler

from models.osediff.random_sd import sd_scheduler
from models.processes.ddpm import GaussianDDPM, sqrt_linear_betas


def test_sd_schedule_matches_diffusers_and_reference_value_at_999():
    acp = GaussianDDPM(betas=sqrt_linear_betas(1000, 0.00085, 0.012)).alphas_cumprod
    assert torch.allclose(acp.float(), sd_scheduler().alphas_cumprod.float(), atol=1e-7)
    assert abs(acp[999].item() - 0.004660) < 5e-6
    assert abs(acp[999].sqrt().item() - 0.06826) < 5e-5 and abs((1 - acp[999]).sqrt().item() - 0.99767) < 5e-5


def test_add_noise_matches_diffusers_scheduler():
    scheduler: DDPMScheduler = sd_scheduler()
    g = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([0, 500, 999])
    expected = scheduler.add_noise(z0, eps, t)
    process = GaussianDDPM(alphas_cumprod=scheduler.alphas_cumprod)
    assert process.num_train_steps == 1000 and process.add_noise(z0, eps, t).dtype == torch.float32
    assert torch.allclose(process.add_noise(z0, eps, t), expected, atol=1e-5)


def test_x0_from_eps_inverts_add_noise_at_every_t_including_999():
    process = GaussianDDPM(alphas_cumprod=sd_scheduler().alphas_cumprod)
    g = torch.Generator().manual_seed(1)
    z0, eps = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    t = torch.tensor([0, 20, 979, 999])
    assert torch.allclose(process.x0_from_eps(process.add_noise(z0, eps, t), eps, t), z0, atol=1e-4)
