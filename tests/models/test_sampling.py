"""The reverse sampling loop: an oracle denoiser (true noise) must lead back to x0."""

import pytest
import torch

from models.processes.irsde import IRSDE
from models.sampling import sample


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
