import logging

import pytest
import torch

from models.metrics import ImageMetrics, alexnet_weights_cached, build_lpips


def _pair():
    g = torch.Generator().manual_seed(0)
    hq = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    noisy = (hq + 0.2 * torch.randn(hq.shape, generator=g)).clamp(-1, 1)
    return hq, noisy


def test_identical_images_score_best_and_noise_scores_worse():
    metrics = ImageMetrics(device=torch.device("cpu"))
    hq, noisy = _pair()
    same, worse = metrics(hq, hq), metrics(noisy, hq)
    lpips = metrics.lpips_key
    assert set(same) == {"psnr", "ssim", "psnr_y", "ssim_y", lpips}  # the rgb protocol prints Y beside RGB
    assert lpips == ("lpips" if metrics.lpips_is_real else "lpips_random")  # a random backbone is never "lpips"
    assert same["psnr"] > 60 and same["ssim"] > 0.999 and same[lpips] < 1e-4
    assert 10 < worse["psnr"] < 30 and worse["ssim"] < 0.99 and worse[lpips] > 0.005


def test_lpips_without_cached_weights_is_random_but_reproducible_and_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="models.metrics"):
        first, real = build_lpips(device=torch.device("cpu"))
        second, _ = build_lpips(device=torch.device("cpu"))
    assert real == alexnet_weights_cached()
    if not real:
        assert any("random backbone" in r.message for r in caplog.records)
    hq, noisy = _pair()
    assert torch.equal(first(noisy, hq), second(noisy, hq))


@pytest.mark.parametrize("test_y_channel,crop_border", [(True, 0), (False, 4)])
def test_separable_ssim_matches_pyiqas_ssim(test_y_channel, crop_border):
    import pyiqa

    from models.metrics import SeparableSSIM

    g = torch.Generator().manual_seed(0)
    hq = torch.rand(2, 3, 70, 60, generator=g)
    out = (hq + 0.1 * torch.randn(2, 3, 70, 60, generator=g)).clamp(0, 1)
    reference = pyiqa.create_metric("ssim", device="cpu", test_y_channel=test_y_channel, color_space="ycbcr",
                                    crop_border=crop_border)
    ours = SeparableSSIM(test_y_channel=test_y_channel, crop_border=crop_border)
    torch.testing.assert_close(ours(out, hq), reference(out, hq).reshape(-1), atol=2e-6, rtol=0)
