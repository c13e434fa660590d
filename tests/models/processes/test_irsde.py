"""IR-SDE against the numeric table of shared/reference/refusion.md (Sec. 2) and analytic identities."""

import math

import pytest
import torch

from models.refusion import IRSDE

# t: (theta_t, thetas_cumsum[t], e^{-thetabar_t}, sigmabar_t, sigma_t); T=100, max_sigma=50, cosine, eps=0.005.
TABLE = {
    0: (0.000614, 0.0, 1.0, 0.0, 0.006872),
    1: (0.001695, 0.0016946, 0.999824, 0.003683, 0.011415),
    10: (0.032085, 0.141634, 0.985365, 0.033423, 0.049670),
    50: (0.506156, 9.792815, 0.360822, 0.182870, 0.197282),
    100: (0.999767, 50.899448, 0.005000, 0.196076, 0.277264),
}
# t: (a, b, posterior std)
POSTERIOR = {
    1: (0.0, 1.0, 0.0),
    2: (0.343406, 0.656594, 0.002984),
    10: (0.773452, 0.226528, 0.014094),
    50: (0.932896, 0.043733, 0.061492),
    100: (0.901157, 0.001043, 0.084996),
}
TOL = 1e-6 + 5e-7  # the table is rounded to 6 decimals


@pytest.fixture
def sde() -> IRSDE:
    return IRSDE(max_sigma=50, T=100, schedule="cosine", eps=0.005)


def test_dt_and_total_match_reference(sde: IRSDE) -> None:
    assert sde.dt == pytest.approx(0.104094, abs=TOL)
    assert float(sde.thetas_cumsum[-1]) == pytest.approx(50.89945, abs=1e-5)
    assert float(sde.thetabar[-1]) == pytest.approx(-math.log(0.005), abs=1e-12)


@pytest.mark.parametrize("t", sorted(TABLE))
def test_schedule_table_matches_reference(sde: IRSDE, t: int) -> None:
    theta, cumsum, mean_weight, sigmabar, sigma = TABLE[t]
    assert float(sde.thetas[t]) == pytest.approx(theta, abs=TOL)
    # The reference prints the cumsum with 6 decimals of a value near 10-50: compare relatively there.
    assert float(sde.thetas_cumsum[t]) == pytest.approx(cumsum, abs=TOL, rel=1e-6)
    assert float(torch.exp(-sde.thetabar[t])) == pytest.approx(mean_weight, abs=TOL)
    assert float(sde.sigmabar[t]) == pytest.approx(sigmabar, abs=TOL)
    assert float(sde.sigmas[t]) == pytest.approx(sigma, abs=TOL)


@pytest.mark.parametrize("t", sorted(POSTERIOR))
def test_posterior_coefficients_and_std_match_reference(sde: IRSDE, t: int) -> None:
    a_ref, b_ref, std_ref = POSTERIOR[t]
    a, b = sde.posterior_coefficients(torch.tensor([t]))
    assert float(a) == pytest.approx(a_ref, abs=TOL)
    assert float(b) == pytest.approx(b_ref, abs=TOL)
    assert float(sde.posterior_std(torch.tensor([t]))) == pytest.approx(std_ref, abs=TOL)


def test_other_settings_match_reference() -> None:
    eps01 = IRSDE(max_sigma=50, T=100, eps=0.01)
    assert eps01.dt == pytest.approx(0.090476, abs=TOL)
    assert float(eps01.sigmabar[50]) == pytest.approx(0.178637, abs=TOL)
    linear = IRSDE(max_sigma=50, T=100, schedule="linear", eps=0.005)
    assert linear.dt == pytest.approx(0.527248, abs=TOL)
    assert float(torch.exp(-linear.thetabar[10])) == pytest.approx(0.939548, abs=TOL)
    assert float(IRSDE(max_sigma=10, T=100).sigmabar[50]) == pytest.approx(0.036574, abs=TOL)


def test_data_range_scales_lambda_and_sigmas() -> None:
    unit, signed = IRSDE(max_sigma=50), IRSDE(max_sigma=50, data_range=2.0)
    assert signed.lam == pytest.approx(2 * 50 / 255)
    assert torch.allclose(signed.sigmabar, 2 * unit.sigmabar)
    assert signed.dt == unit.dt


def test_add_noise_at_t0_returns_x0(sde: IRSDE) -> None:
    x0, lq, noise = torch.randn(3, 2, 3, 8, 8, generator=torch.Generator().manual_seed(0)).unbind(0)
    # lq + (x0 - lq) * 1 rounds in float32: equal to x0 up to one ulp of |lq| + |x0|
    assert torch.allclose(sde.add_noise(x0, lq, noise, torch.zeros(2, dtype=torch.long)), x0, atol=1e-6)


def test_mean_at_T_is_lq_up_to_eps(sde: IRSDE) -> None:
    x0, lq = torch.randn(2, 2, 3, 8, 8, dtype=torch.float64).unbind(0)
    mean = sde.mean(x0, lq, torch.full((2,), 100))
    assert torch.allclose(mean, lq + 0.005 * (x0 - lq), atol=1e-12)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_sigmabar_is_monotone_and_bounded_by_lambda(schedule: str) -> None:
    sde = IRSDE(max_sigma=30, T=50, schedule=schedule)
    assert bool((sde.sigmabar[1:] > sde.sigmabar[:-1]).all())
    assert float(sde.sigmabar[-1]) < sde.lam


def test_reverse_sde_step_matches_hand_computation(sde: IRSDE) -> None:
    torch.manual_seed(0)
    xt, lq, eps_hat, noise = torch.randn(4, 1, 3, 4, 4, dtype=torch.float64).unbind(0)
    t = 50
    theta, sigma, sigmabar, dt = float(sde.thetas[t]), float(sde.sigmas[t]), float(sde.sigmabar[t]), sde.dt
    score = -eps_hat / sigmabar
    expected = xt - (theta * (lq - xt) - sigma**2 * score) * dt - sigma * math.sqrt(dt) * noise
    got = sde.reverse_sde_step(xt, eps_hat, lq, torch.tensor([t]), noise)
    assert torch.allclose(got, expected, atol=1e-12)
    expected_ode = xt - (theta * (lq - xt) - 0.5 * sigma**2 * score) * dt
    assert torch.allclose(sde.reverse_ode_step(xt, eps_hat, lq, torch.tensor([t])), expected_ode, atol=1e-12)


def test_x0_from_true_noise_recovers_x0(sde: IRSDE) -> None:
    x0, lq, noise = torch.randn(3, 2, 3, 8, 8, dtype=torch.float64).unbind(0)
    t = torch.tensor([7, 93])
    xt = sde.add_noise(x0, lq, noise, t)
    assert torch.allclose(sde.x0_from_noise(xt, noise, lq, t), x0, atol=1e-9)


def test_optimal_step_at_t1_is_x0_and_posterior_step_with_true_noise_is_exact(sde: IRSDE) -> None:
    x0, lq, noise = torch.randn(3, 2, 3, 8, 8, dtype=torch.float64).unbind(0)
    xt = sde.add_noise(x0, lq, noise, torch.tensor([1, 1]))
    assert torch.allclose(sde.optimal_reverse_step(xt, x0, lq, torch.tensor([1, 1])), x0, atol=1e-12)
    t = torch.tensor([40, 40])
    xt = sde.add_noise(x0, lq, noise, t)
    no_noise = torch.zeros_like(x0)
    assert torch.allclose(sde.posterior_step(xt, noise, lq, t, no_noise),
                          sde.optimal_reverse_step(xt, x0, lq, t), atol=1e-9)


def test_loss_is_near_zero_for_true_noise_and_grows_with_error(sde: IRSDE) -> None:
    x0, lq, noise = torch.randn(3, 4, 3, 16, 16).unbind(0)
    t = torch.tensor([2, 20, 60, 100])
    xt = sde.add_noise(x0, lq, noise, t)
    exact = sde.loss(noise, xt, x0, lq, t)
    wrong = sde.loss(noise + 0.5 * torch.randn_like(noise), xt, x0, lq, t)
    assert float(exact) < 1e-3  # only the EM-vs-posterior discretisation gap remains
    assert float(wrong) > 3 * float(exact)


def test_timesteps_descend_from_T_to_0(sde: IRSDE) -> None:
    assert sde.timesteps().tolist() == list(range(100, -1, -1))
    steps = sde.timesteps(10).tolist()
    assert steps[0] == 100 and steps[-1] == 0 and len(steps) == 11
    with pytest.raises(ValueError, match="num_steps"):
        sde.timesteps(101)


def test_bad_schedule_raises() -> None:
    with pytest.raises(ValueError, match="schedule"):
        IRSDE(schedule="sigmoid")


@pytest.mark.parametrize("t, s", [(50, 30), (100, 1), (7, 6), (64, 0)])
def test_posterior_over_any_gap_is_consistent_with_the_marginals(t, s):
    # For q(x_s | x0) = N(mu + (x0 - mu) C, lam^2 (1 - C^2)), the bridge posterior q(x_s | x_t, x0) must
    # give back that marginal: C = a B + b (means) and lam^2 (1 - C^2) = var + a^2 lam^2 (1 - B^2) (total variance).
    process = IRSDE(max_sigma=50, T=100, schedule="cosine", eps=0.005)
    t_B, s_B = torch.tensor([t]), torch.tensor([s])
    a, b = (c.item() for c in process.posterior_coefficients(t_B, s_B))
    B, C = (torch.exp(-process.thetabar[i]).item() for i in (t, s))
    var = process.posterior_std(t_B, s_B).item() ** 2
    lam2 = process.lam**2
    assert a * B + b == pytest.approx(C, abs=1e-9)
    assert var + a**2 * lam2 * (1 - B**2) == pytest.approx(lam2 * (1 - C**2), abs=1e-9)
