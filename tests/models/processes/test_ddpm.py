"""The shared GaussianDDPM and DiffIR's DDPM over it: schedule values, posterior identities, the steps."""

import pytest
import torch

from models.processes.ddpm import DDPM, GaussianDDPM


def _t(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


def test_betas_are_diffir_schedule():
    process = DDPM()
    assert process.betas.tolist() == pytest.approx([0.1, 0.2943, 0.5910, 0.99], abs=1e-4)
    assert process.alphas_cumprod.tolist() == pytest.approx([0.9, 0.6351, 0.2598, 0.0026], abs=1e-4)


def test_posterior_coefficients_match_reference_table():
    c_x0, c_xt, var = DDPM().posterior(_t(0, 1, 2, 3), _t(-1, 0, 1, 2))
    assert c_x0.tolist() == pytest.approx([1.0, 0.7652, 0.6363, 0.5059], abs=1e-4)
    assert c_xt.tolist() == pytest.approx([0.0, 0.2302, 0.3153, 0.0742], abs=1e-4)
    assert var[0] == 0.0 and bool((var[1:] > 0).all())


def test_step_with_true_x0_is_bayes_posterior_mean():
    """With x0 known, step() equals the mean of q(x_{t-1} | x_t, x0) from the product of the two Gaussians."""
    process = DDPM()
    x0, xt = torch.randn(3, 64, dtype=torch.float64), torch.randn(3, 64, dtype=torch.float64)
    for t in (1, 2, 3):
        abar_prev, beta = process.alphas_cumprod[t - 1], process.betas[t]
        # prior N(sqrt(abar_prev) x0, 1 - abar_prev) times likelihood N(x_t; sqrt(1 - beta) x_prev, beta)
        precision = 1 / (1 - abar_prev) + (1 - beta) / beta
        mean = (abar_prev.sqrt() * x0 / (1 - abar_prev) + (1 - beta).sqrt() * xt / beta) / precision
        out = process.step(x0, _t(t, t, t), _t(t - 1, t - 1, t - 1), xt, generator=None)
        torch.testing.assert_close(out, mean)


def test_last_step_returns_the_x0_estimate():
    process = DDPM()
    x0_hat, xt = torch.randn(2, 8), torch.randn(2, 8)
    assert torch.equal(process.step(x0_hat, _t(0, 0), _t(-1, -1), xt, generator=None), x0_hat)


def test_posterior_mean_averages_back_to_the_marginal_for_any_gap():
    """E[E[x_s | x_t, x0] | x0] = sqrt(abar_s) x0, i.e. c_x0 + c_xt sqrt(abar_t) = sqrt(abar_s)."""
    process = DDPM()
    t, s = _t(3, 3, 2, 3), _t(1, -1, 0, 0)
    c_x0, c_xt, _ = process.posterior(t, s)
    abar = torch.cat([torch.ones(1, dtype=torch.float64), process.alphas_cumprod])
    torch.testing.assert_close(c_x0 + c_xt * abar[t + 1].sqrt(), abar[s + 1].sqrt())


def test_add_noise_at_last_step_keeps_five_percent_of_x0():
    process = DDPM()
    x0, eps = torch.ones(1, 4), torch.zeros(1, 4)
    assert process.add_noise(x0, eps, _t(3)).tolist()[0] == pytest.approx([0.0510] * 4, abs=1e-4)
    assert torch.equal(process.target(x0, eps, _t(3)), x0)
    assert torch.equal(process.loss_weight(_t(0, 3)), torch.ones(2))


def test_timesteps_descend_to_minus_one():
    process = DDPM()
    assert process.timesteps().tolist() == [3, 2, 1, 0, -1]
    assert process.timesteps(2).tolist() == [3, 1, -1]
    with pytest.raises(ValueError, match="num_steps"):
        process.timesteps(5)


def test_invalid_schedule_is_rejected():
    with pytest.raises(ValueError, match="beta_start"):
        DDPM(beta_start=0.5, beta_end=0.1)
    with pytest.raises(ValueError, match="num_train_steps"):
        DDPM(num_train_steps=0)


def test_eps_and_x0_parameterisations_take_the_same_step():
    """A deterministic step from eps_hat equals the step from the x0 that eps_hat implies."""
    betas = torch.linspace(1e-3, 0.2, 50, dtype=torch.float64)
    by_eps = GaussianDDPM(betas=betas, prediction="eps", stochastic=False)
    by_x0 = GaussianDDPM(betas=betas, prediction="x0", stochastic=False)
    xt, eps_hat = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    t, s = _t(40, 40), _t(10, 10)
    x0_hat = by_eps.x0_from_eps(xt, eps_hat, t)
    torch.testing.assert_close(by_eps.step(eps_hat, t, s, xt, generator=None),
                               by_x0.step(x0_hat, t, s, xt, generator=None))
    assert torch.equal(by_eps.target(x0_hat, eps_hat, t), eps_hat) and torch.equal(by_x0.target(x0_hat, eps_hat, t), x0_hat)


def test_abar_table_and_betas_build_the_same_process():
    betas = torch.linspace(1e-3, 0.2, 50, dtype=torch.float64)
    from_betas = GaussianDDPM(betas=betas)
    from_table = GaussianDDPM(alphas_cumprod=from_betas.alphas_cumprod)
    torch.testing.assert_close(from_table.betas, betas)
    assert from_table.num_train_steps == 50


@pytest.mark.parametrize("kwargs", [{}, {"betas": torch.ones(3), "alphas_cumprod": torch.ones(3)},
                                    {"alphas_cumprod": torch.tensor([0.9, 0.0])}, {"betas": torch.full((3,), 0.1),
                                                                                   "prediction": "v"}])
def test_bad_schedules_are_refused(kwargs):
    with pytest.raises(ValueError):
        GaussianDDPM(**kwargs)
