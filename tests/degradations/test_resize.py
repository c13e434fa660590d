import numpy as np
import pytest

from degradations.resize import _bicubic_weights, bicubic_antialias, resize


@pytest.mark.parametrize("mode", ["area", "bilinear", "bicubic"])
def test_resize_gives_requested_size_and_float32(hq64, mode):
    for size in ((23, 31), (100, 90)):
        out = resize(hq64, size_hw=size, mode=mode)
        assert out.shape == (*size, 3) and out.dtype == np.float32


def test_same_size_is_identity(hq64):
    assert resize(hq64, size_hw=(64, 64), mode="bicubic") is hq64


def test_area_shrink_is_a_box_average_and_area_enlarge_replicates(hq64):
    box = hq64.reshape(16, 4, 16, 4, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(resize(hq64, size_hw=(16, 16), mode="area"), box, atol=1e-6)
    small = hq64[:8, :8]
    np.testing.assert_array_equal(resize(small, size_hw=(16, 16), mode="area"), small.repeat(2, axis=0).repeat(2, axis=1))


@pytest.mark.parametrize("size", [(41, 37), (83, 101), (64, 23)])
def test_area_matches_torch_adaptive_average_pooling_at_fractional_ratios(hq64, size):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(hq64).permute(2, 0, 1)[None]
    expected = torch.nn.functional.interpolate(x, size=size, mode="area")[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(resize(hq64, size_hw=size, mode="area"), expected, atol=1e-6)


def test_bicubic_weight_rows_sum_to_one_and_constant_is_preserved():
    w = _bicubic_weights(96, 24)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    const = np.full((96, 80, 3), 0.3, np.float32)
    np.testing.assert_allclose(bicubic_antialias(const, size_hw=(24, 20)), 0.3, atol=1e-6)


def test_antialiased_bicubic_suppresses_aliasing():
    # a Nyquist-rate checkerboard must average out when downsampled 4x with antialiasing
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)[..., None].repeat(3, axis=2)
    out = bicubic_antialias(checker, size_hw=(16, 16))
    assert np.abs(out - 0.5).max() < 0.02


def test_antialiased_bicubic_of_a_ramp_matches_the_box_average():
    ramp = np.tile(np.arange(64, dtype=np.float32), (64, 1))[..., None].repeat(3, axis=2) / 64
    out = bicubic_antialias(ramp, size_hw=(16, 16))
    box = ramp.reshape(16, 4, 16, 4, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(out[:, 2:-2], box[:, 2:-2], atol=1e-5)  # linear data, symmetric kernel
