"""Overlapping tiles: coverage, exactness for pointwise maps, near one-pass output for a real sampler."""

import pytest
import torch
import torch.nn.functional as F

from models.refusion import Refusion, refusion_tiny
from models.tiling import choose_tile, measure_bytes_per_pixel, tile_starts, tiled


def smooth_image(h: int, w: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return 0.8 * torch.stack([torch.sin(3 * yy + 1), torch.cos(2 * xx), torch.sin(2 * xx + 3 * yy)])[None]


@pytest.mark.parametrize(("length", "tile", "overlap"), [(100, 40, 8), (97, 32, 8), (64, 64, 16), (50, 64, 16)])
def test_tile_starts_cover_the_image_with_the_requested_overlap(length: int, tile: int, overlap: int) -> None:
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and min(starts[-1] + tile, length) == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_tiling_a_pointwise_upscaler_is_exact() -> None:
    x = torch.rand(2, 3, 50, 37)
    fn = lambda t: F.interpolate(t, scale_factor=2, mode="nearest") * 2 - 1  # noqa: E731
    assert torch.allclose(tiled(fn, x, scale=2, tile=16, overlap=4), fn(x), atol=1e-6)


def test_tiled_refusion_matches_one_pass_on_a_smooth_image() -> None:
    torch.manual_seed(0)
    method = Refusion(refusion_tiny())
    net = method.build()
    img = smooth_image(96, 80)

    def fn(lq: torch.Tensor) -> torch.Tensor:  # deterministic: ODE path from x_T = lq
        return method.restore(net, lq, generator=None, num_steps=5, mode="ode", temperature=0.0)

    one_pass = fn(img)
    small = (tiled(fn, img, tile=48, overlap=16) - one_pass).abs()
    wide = (tiled(fn, img, tile=48, overlap=24) - one_pass).abs()
    assert small.mean() < 2e-3 and small.max() < 0.05  # within 1/255 on average, no visible seam
    assert wide.max() < small.max()  # more overlap, less border effect


def test_choose_tile_prefers_one_pass_and_fits_the_budget() -> None:
    assert choose_tile(512, 512, max_bytes=2**30, bytes_per_pixel=1000) is None
    tile = choose_tile(4000, 6000, max_bytes=2**30, bytes_per_pixel=1000)
    assert tile % 16 == 0 and tile**2 * 1000 <= 2**30 < (tile + 16) ** 2 * 1000
    with pytest.raises(ValueError, match="budget"):
        choose_tile(4000, 6000, max_bytes=2**20, bytes_per_pixel=1000)


def test_measured_bytes_per_pixel_counts_live_intermediates() -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        y = x * 2  # 3 x 4 B per pixel, alive until the end
        z = y + 1
        return z.sum(dim=1, keepdim=True)

    bpp = measure_bytes_per_pixel(fn, torch.rand(1, 3, 32, 32), margin=1.0)
    assert 24.0 <= bpp <= 24.0 + 4.0 + 1.0
