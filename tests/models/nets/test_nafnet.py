"""ConditionalNAFNet: reference parameter counts, shapes, identity blocks at init, time conditioning."""

import dataclasses

import pytest
import torch

from models.nets.nafnet import REFUSION_NAFNET, TINY_NAFNET, ConditionalNAFNet, NAFBlock, NAFNetConfig


def num_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_refusion_config_has_reference_parameter_count() -> None:
    assert num_params(ConditionalNAFNet(REFUSION_NAFNET)) == 76_608_387


def test_latent_dehazing_config_has_reference_parameter_count() -> None:
    config = dataclasses.replace(REFUSION_NAFNET, img_channels=8, global_skip=True)
    assert num_params(ConditionalNAFNet(config)) == 76_617_032


@pytest.mark.parametrize(("c", "expected"), [(64, 63_680), (128, 184_704)])
def test_nafblock_parameter_count_matches_reference(c: int, expected: int) -> None:
    assert num_params(NAFBlock(c, time_dim=256)) == expected


@pytest.mark.parametrize("size", [(16, 16), (23, 37)])
def test_tiny_net_keeps_shape_for_any_size(size: tuple[int, int]) -> None:
    net = ConditionalNAFNet(TINY_NAFNET)
    xt, lq = torch.randn(2, 2, 3, *size).unbind(0)
    assert net(xt, torch.tensor([1, 100]), lq).shape == xt.shape


def test_blocks_are_identity_at_init() -> None:
    block = NAFBlock(8, time_dim=32)
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(block(x, torch.randn(2, 32)), x)


def test_output_depends_on_time_and_on_lq() -> None:
    torch.manual_seed(0)
    net = ConditionalNAFNet(TINY_NAFNET)
    for p in net.parameters():  # leave the zero init so every path is active
        torch.nn.init.normal_(p, std=0.1)
    xt, lq = torch.randn(2, 1, 3, 16, 16).unbind(0)
    base = net(xt, torch.tensor([5]), lq)
    assert not torch.allclose(base, net(xt, torch.tensor([60]), lq))
    assert not torch.allclose(base, net(xt, torch.tensor([5]), lq + 0.1))


def test_channels_last_matches_contiguous() -> None:
    torch.manual_seed(0)
    net = ConditionalNAFNet(TINY_NAFNET)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    xt, lq = torch.randn(2, 2, 3, 16, 16).unbind(0)
    t = torch.tensor([3, 40])
    ref = net(xt, t, lq)
    net_cl = net.to(memory_format=torch.channels_last)
    out = net_cl(xt.to(memory_format=torch.channels_last), t, lq.to(memory_format=torch.channels_last))
    assert torch.allclose(out, ref, atol=1e-5)


def test_config_rejects_mismatched_depths() -> None:
    with pytest.raises(ValueError, match="equal length"):
        NAFNetConfig(enc_blocks=(1, 1), dec_blocks=(1,))
