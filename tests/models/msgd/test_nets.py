"""MSGD's guidance network and guided UNet: shapes, and guidance features reaching the UNet."""

import pytest
import torch

from models.msgd.guidance import GuidanceConfig, GuidanceNet, grayscale, structure
from models.msgd.unet import GuidedUNet, UNetConfig

UNET = UNetConfig(base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1, norm_groups=4)
GUIDANCE = GuidanceConfig(scales=(1, 2), channels=8, num_res_blocks=1, norm_groups=4)


def test_grayscale_of_a_gray_image_is_that_gray():
    x = torch.full((1, 3, 4, 4), 0.25)
    torch.testing.assert_close(grayscale(x), torch.full((1, 1, 4, 4), 0.25))
    assert structure(torch.rand(2, 3, 16, 16), 2).shape == (2, 1, 4, 4)


@pytest.mark.parametrize("shared", [True, False])
def test_guidance_net_gives_features_and_predictions_per_scale(shared):
    net = GuidanceNet(GuidanceConfig(scales=(1, 2), channels=8, num_res_blocks=1, norm_groups=4, shared=shared))
    assert len(net.branches) == (1 if shared else 2)
    features, predictions = net(torch.rand(2, 3, 16, 16))
    assert {k: v.shape for k, v in features.items()} == {1: (2, 8, 8, 8), 2: (2, 8, 4, 4)}
    assert {k: v.shape for k, v in predictions.items()} == {1: (2, 1, 8, 8), 2: (2, 1, 4, 4)}


def test_guidance_features_reach_the_unet_output():
    torch.manual_seed(0)
    guidance, unet = GuidanceNet(GUIDANCE), GuidedUNet(UNET, guided_levels=(1, 2), guidance_channels=8)
    xt, y = torch.randn(1, 3, 16, 16), torch.rand(1, 3, 16, 16) * 2 - 1
    t = torch.tensor([3])
    features_a, _ = guidance(y)
    features_b, _ = guidance(y, [torch.randn(1, 1, 8, 8), torch.randn(1, 1, 4, 4)])
    out_a, out_b = unet(xt, t, y, features_a), unet(xt, t, y, features_b)
    assert out_a.shape == (1, 3, 16, 16)
    assert not torch.allclose(out_a, out_b)
    # Only a guided level's features matter: changing level 2 alone changes the output too.
    assert not torch.allclose(out_a, unet(xt, t, y, {1: features_a[1], 2: torch.zeros_like(features_a[2])}))


def test_unet_without_guided_levels_takes_no_guidance():
    unet = GuidedUNet(UNET)
    assert all(block.guide is None for level in unet.down_blocks for block in level)
    assert unet(torch.randn(1, 3, 16, 16), torch.tensor([0]), torch.randn(1, 3, 16, 16), {}).shape == (1, 3, 16, 16)


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="norm_groups"):
        UNetConfig(base_channels=8, norm_groups=32)
    with pytest.raises(ValueError, match="scales"):
        GuidanceConfig(scales=(2, 1))
