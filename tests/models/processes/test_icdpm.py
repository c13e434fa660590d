"""icDPM (eps-prediction DDPM) of MSGD: schedules, inversion, posterior identities, the ancestral step."""

import pytest
import torch

from models.processes.icdpm import ICDPM


def _full(value: int, n: int = 2) -> torch.Tensor:
    return torch.full((n,), value, dtype=torch.long)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_alphas_cumprod_decrease_from_near_one_to_near_zero(schedule):
    process = ICDPM(schedule=schedule)
    abar = process.alphas_cumprod
    assert torch.all(abar[1:] < abar[:-1])
    assert abar[0] > 0.99 and abar[-1] < 1e-3


def test_linear_betas_span_ho_et_al_range():
    betas = ICDPM().betas
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)


def test_x0_from_eps_inverts_add_noise():
    process = ICDPM(clip_x0=False)
    x0, eps = torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    t = torch.tensor([5, 900])
    torch.testing.assert_close(process.x0_from_eps(process.add_noise(x0, eps, t), eps, t), x0)
    assert torch.equal(process.target(x0, eps, t), eps)


def test_posterior_is_consistent_with_marginals_for_any_gap():
    """Mean: c_x0 + c_xt sqrt(abar_t) = sqrt(abar_s). Variance (total variance): var + c_xt^2 (1 - abar_t) = 1 - abar_s."""
    process = ICDPM()
    t, s = torch.tensor([999, 999, 500, 10]), torch.tensor([989, 0, 250, 9])
    c_x0, c_xt, var = process.posterior(t, s)
    abar = process.alphas_cumprod
    torch.testing.assert_close(c_x0 + c_xt * abar[t].sqrt(), abar[s].sqrt())
    torch.testing.assert_close(var + c_xt**2 * (1 - abar[t]), 1 - abar[s])


def test_final_step_with_true_eps_returns_x0():
    process = ICDPM()
    x0 = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1
    eps = torch.randn_like(x0)
    xt = process.add_noise(x0, eps, _full(0))
    out = process.step(eps, _full(0), _full(-1), xt, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0)


def test_step_is_posterior_mean_plus_seeded_noise():
    process = ICDPM(clip_x0=False)
    x0, eps = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    t, s = _full(600), _full(300)
    xt = process.add_noise(x0, eps, t)
    out = process.step(eps, t, s, xt, generator=torch.Generator().manual_seed(3))
    c_x0, c_xt, var = process.posterior(t, s)
    noise = torch.randn(xt.shape, generator=torch.Generator().manual_seed(3)).double()
    torch.testing.assert_close(out, c_x0[0] * x0 + c_xt[0] * xt + var[0].sqrt() * noise)


def test_timesteps_and_sample_t_stay_in_range():
    process = ICDPM(num_train_steps=10, schedule="cosine")  # linear at T = 10 would need betas > 1
    assert process.timesteps(5).tolist() == [9, 7, 5, 3, 1, -1]
    t = process.sample_t(1000, generator=torch.Generator().manual_seed(0))
    assert t.min() >= 0 and t.max() <= 9


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="schedule"):
        ICDPM(schedule="sigmoid")
    with pytest.raises(ValueError, match="num_steps"):
        ICDPM(num_train_steps=10, schedule="cosine").timesteps(11)


def test_a_linear_schedule_too_short_for_its_betas_is_refused():
    with pytest.raises(ValueError, match="every beta in"):
        ICDPM(num_train_steps=10)  # betas rescaled by 1000 / T reach 2.0
