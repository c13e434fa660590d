"""The one reverse loop: oracle denoisers (true noise) lead back to x0 for every process; seeded runs replay."""

import inspect
import itertools

import pytest
import torch

from models.processes.ddpm import DDPM
from models.processes.icdpm import ICDPM
from models.processes.irsde import IRSDE
from models.sampling import reverse, sample


def make_oracle(process: IRSDE, hq: torch.Tensor):
    def oracle(xt: torch.Tensor, t_B: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        return (xt - process.mean(hq, mu, t_B)) / process.std(t_B, xt)
    return oracle


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    hq = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return hq, 0.5 * hq


@pytest.mark.parametrize("num_steps", [None, 4])
def test_posterior_sampling_with_oracle_noise_returns_x0(pair, num_steps: int | None) -> None:
    hq, lq = pair
    process = IRSDE(max_sigma=50, T=20, data_range=2.0)
    out = sample(make_oracle(process, hq), process, lq, num_steps=num_steps, mode="posterior",
                 generator=torch.Generator().manual_seed(1))
    assert torch.allclose(out, hq, atol=1e-5)


@pytest.mark.parametrize("mode", ["sde", "ode"])
def test_sde_and_ode_with_oracle_noise_land_near_x0(pair, mode: str) -> None:
    hq, lq = pair
    process = IRSDE(max_sigma=10, T=50, data_range=2.0)
    out = sample(make_oracle(process, hq), process, lq, mode=mode, generator=torch.Generator().manual_seed(1))
    # Euler discretisation error only: far closer to hq than the lq is.
    assert (out - hq).abs().mean() < 0.05 * (lq - hq).abs().mean()


def test_same_seed_same_output_and_zero_temperature_is_deterministic(pair) -> None:
    hq, lq = pair
    process = IRSDE(max_sigma=50, T=10, data_range=2.0)
    net = lambda xt, t, mu: 0.1 * (xt - mu)  # noqa: E731
    a = sample(net, process, lq, generator=torch.Generator().manual_seed(3))
    b = sample(net, process, lq, generator=torch.Generator().manual_seed(3))
    c = sample(net, process, lq, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    d = sample(net, process, lq, mode="posterior", temperature=0.0, generator=None)
    e = sample(net, process, lq, mode="posterior", temperature=0.0, generator=None)
    assert torch.equal(d, e)


def test_callback_sees_every_step_down_to_zero(pair) -> None:
    _, lq = pair
    process = IRSDE(T=12, data_range=2.0)
    seen: list[int] = []
    sample(lambda xt, t, mu: torch.zeros_like(xt), process, lq, num_steps=4, mode="ode",
           generator=torch.Generator().manual_seed(0), callback=lambda t, x: seen.append(t))
    assert seen == [9, 6, 3, 0]


def test_irsde_sampler_draws_the_start_then_one_noise_after_each_network_call(pair) -> None:
    """The RNG order seeded restores replay: start noise, then per step the net call and the step's noise."""
    _, lq = pair
    process = IRSDE(max_sigma=50, T=10, data_range=2.0)
    net = lambda xt, t, mu: 0.1 * (xt - mu)  # noqa: E731
    g = torch.Generator().manual_seed(5)
    x = process.prior(lq, 0.7 * torch.randn(lq.shape, generator=g))
    steps = process.timesteps(5).tolist()
    for t, s in itertools.pairwise(steps):
        t_B, s_B = torch.full((2,), t), torch.full((2,), s)
        x = process.step(net(x, t_B, lq), t_B, s_B, x, mu=lq, mode="sde", noise=0.7 * torch.randn(lq.shape, generator=g))
    out = sample(net, process, lq, num_steps=5, temperature=0.7, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out, x)


@pytest.mark.parametrize("num_steps", [None, 7])
def test_ancestral_icdpm_chain_with_the_true_eps_returns_x0_for_any_seed(pair, num_steps) -> None:
    hq, _ = pair
    process = ICDPM(num_train_steps=50, clip_x0=False)
    hq = hq.double()

    def true_eps(xt: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
        abar = process.alphas_cumprod[t_B].reshape(-1, 1, 1, 1)
        return (xt - abar.sqrt() * hq) / (1 - abar).sqrt()

    for seed in (0, 1):
        g = torch.Generator().manual_seed(seed)
        out = reverse(true_eps, process, torch.randn(hq.shape, generator=g, dtype=torch.float64), num_steps=num_steps,
                      generator=g)
        torch.testing.assert_close(out, hq)


def test_the_loop_is_differentiable_through_a_deterministic_chain() -> None:
    """DiffIR's stage 2 trains the prior denoiser through all T steps of the x0 chain."""
    weight = torch.tensor(0.5, requires_grad=True)
    out = reverse(lambda x, t_B: weight * x, DDPM(), torch.ones(3, 4), generator=None)
    out.sum().backward()
    assert weight.grad is not None and weight.grad.abs() > 0


def _processes():
    from models.osediff.random_sd import sd_scheduler
    from models.processes.ddpm import GaussianDDPM

    lq = torch.zeros(1, 3, 4, 4)
    return [DDPM(), ICDPM(num_train_steps=50), GaussianDDPM(alphas_cumprod=sd_scheduler().alphas_cumprod),
            IRSDE(T=10).given(lq)]


@pytest.mark.parametrize("name", ["add_noise", "target", "step", "timesteps"])
def test_every_process_has_one_signature_for_the_protocol(name) -> None:
    """DiffIR's DDPM, MSGD's icDPM, OSEDiff's SD table and the IR-SDE given its mu: one add_noise, target, step."""
    signatures = {type(p).__name__: str(inspect.signature(getattr(p, name))) for p in _processes()}
    assert len(set(signatures.values())) == 1, signatures


def test_the_conditioned_irsde_noises_as_the_irsde_and_targets_the_noise(pair) -> None:
    hq, lq = pair
    process = IRSDE(max_sigma=50, T=10, data_range=2.0)
    eps, t_B = torch.randn_like(hq), torch.tensor([3, 7])
    given = process.given(lq)
    assert torch.equal(given.add_noise(hq, eps, t_B), process.add_noise(hq, lq, eps, t_B))
    assert torch.equal(given.target(hq, eps, t_B), eps)
