"""CPEN, DIRformer and the prior denoiser of DiffIR: shapes, prior modulation, the reverse chain."""

import pytest
import torch

from models.diffir.cpen import CPEN, CPENConfig
from models.diffir.dirformer import DIRformer, DIRformerConfig
from models.diffir.prior import PriorDenoiser, PriorDenoiserConfig
from models.processes.ddpm import DDPM
from models.sampling import reverse

TINY = DIRformerConfig(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2), ffn_expansion=2.0)


def test_cpen_maps_an_image_to_a_4c_prior_vector():
    cpen = CPEN(51, CPENConfig(num_feats=16, num_res_blocks=1))
    assert cpen(torch.randn(2, 51, 8, 8)).shape == (2, 64)


@pytest.mark.parametrize(("scale", "lq_side"), [(1, 32), (2, 16), (4, 8)])
def test_dirformer_returns_hq_size(scale, lq_side):
    net = DIRformer(TINY, scale=scale, prior_dim=64)
    out = net(torch.randn(1, 3, lq_side, lq_side), torch.randn(1, 64))
    assert out.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("layer_norm_bias", [False, True])
def test_dirformer_output_depends_on_the_prior(layer_norm_bias):
    torch.manual_seed(0)
    config = DIRformerConfig(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=0, heads=(1, 2, 4, 8),
                             layer_norm_bias=layer_norm_bias)
    net = DIRformer(config, scale=1, prior_dim=64)
    lq = torch.randn(1, 3, 16, 16)
    assert not torch.allclose(net(lq, torch.randn(1, 64)), net(lq, torch.randn(1, 64)))


def test_bad_heads_are_rejected():
    with pytest.raises(ValueError, match="heads"):
        DIRformerConfig(dim=6, heads=(4, 1, 1, 1))


def test_reverse_chain_with_an_exact_denoiser_recovers_x0():
    """If f(x_t, t, c) is the true x0 at every step, the posterior-mean chain ends exactly at x0."""
    x0 = torch.randn(3, 64)

    def exact(xt, t, cond):
        return x0

    xt = torch.randn(3, 64)
    cond = torch.zeros(3, 64)
    out = reverse(lambda x, t_B: exact(x, t_B, cond), DDPM(), xt, generator=None)
    torch.testing.assert_close(out, x0)


@pytest.mark.parametrize("encoding", ["scalar", "sinusoidal"])
def test_prior_denoiser_sees_time_and_condition(encoding):
    torch.manual_seed(0)
    net = PriorDenoiser(64, PriorDenoiserConfig(time_encoding=encoding, time_dim=8), num_train_steps=4)
    xt, cond = torch.randn(2, 64), torch.randn(2, 64)
    t0, t3 = torch.zeros(2, dtype=torch.long), torch.full((2,), 3)
    assert net(xt, t0, cond).shape == (2, 64)
    assert not torch.allclose(net(xt, t0, cond), net(xt, t3, cond))
    assert not torch.allclose(net(xt, t0, cond), net(xt, t0, torch.randn(2, 64)))


def test_scalar_time_encoding_is_the_reference_input_layer():
    # concat[c (256), t / (10 T) (1), x_t (256)] -> Linear(513 -> 256)
    net = PriorDenoiser(256, PriorDenoiserConfig(), num_train_steps=4)
    first = net.mlp[0]
    assert (first.in_features, first.out_features) == (513, 256)
    seen = []
    first.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    cond, xt = torch.randn(1, 256), torch.randn(1, 256)
    net(xt, torch.tensor([3]), cond)
    torch.testing.assert_close(seen[0], torch.cat([cond, torch.tensor([[3 / 40]]), xt], dim=1))
