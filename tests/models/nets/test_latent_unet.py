"""LatentUNet compressor: reference parameter counts, 8x latent shapes, crop to size, lq-skip usage."""

import pytest
import torch

from models.nets.latent_unet import BOKEH_UNET, DEHAZE_UNET, TINY_UNET, LatentUNet


def num_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_dehazing_config_has_reference_parameter_count() -> None:
    assert num_params(LatentUNet(DEHAZE_UNET)) == 2_007_859


def test_bokeh_config_has_reference_parameter_count() -> None:
    assert num_params(LatentUNet(BOKEH_UNET)) == 6_155_139


@pytest.mark.parametrize(("size", "latent_size"), [((64, 48), (8, 6)), ((50, 37), (8, 6))])
def test_encode_downscales_8x_with_8_channels_and_decode_crops_back(size, latent_size) -> None:
    net = LatentUNet(TINY_UNET)
    x = torch.randn(2, 3, *size)
    z, skips = net.encode(x)
    assert DEHAZE_UNET.downscale == 8 and DEHAZE_UNET.embed_dim == 8
    assert z.shape == (2, 8, *latent_size)
    assert len(skips.features) == 1 + 2 * len(TINY_UNET.ch_mult)
    assert net.decode(z, skips).shape == x.shape


def test_decoder_uses_the_given_skips() -> None:
    torch.manual_seed(0)
    net = LatentUNet(TINY_UNET)
    a, b = torch.randn(2, 1, 3, 32, 32).unbind(0)
    z_a, skips_a = net.encode(a)
    _, skips_b = net.encode(b)
    # Same latent, different skips: a different image, and the highest-resolution skip alone changes it.
    assert not torch.allclose(net.decode(z_a, skips_a), net.decode(z_a, skips_b))
    features = list(skips_a.features)
    features[0] = features[0] + 1.0
    assert not torch.allclose(net.decode(z_a, skips_a), net.decode(z_a, skips_a._replace(features=features)))
