import numpy as np

from degradations.jpeg import jpeg_compress, jpeg_quality_int


def test_jpeg_output_is_float32_on_the_8bit_grid(hq64):
    out = jpeg_compress(hq64, quality=50.3)
    assert out.dtype == np.float32 and out.shape == hq64.shape
    np.testing.assert_allclose(out * 255, np.rint(out * 255), atol=1e-4)
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_lower_quality_gives_larger_error(hq64):
    err = [np.abs(jpeg_compress(hq64, quality=q) - hq64).mean() for q in (95, 60, 30)]
    assert err[0] < err[1] < err[2]


def test_continuous_quality_is_rounded():
    assert jpeg_quality_int(30.4) == 30 and jpeg_quality_int(30.6) == 31 and jpeg_quality_int(94.9) == 95
    img = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    np.testing.assert_array_equal(jpeg_compress(img, quality=70.2), jpeg_compress(img, quality=70.0))


def test_channel_order_is_preserved():
    red = np.zeros((32, 32, 3), np.float32)
    red[..., 0] = 0.9
    out = jpeg_compress(red, quality=90)
    assert out[..., 0].mean() > 0.85 and out[..., 1:].mean() < 0.05


def test_input_outside_unit_range_is_clipped_first():
    img = np.full((16, 16, 3), 1.3, np.float32)
    img[:8] = -0.2
    out = jpeg_compress(img, quality=95)
    assert out[:6].max() < 0.03 and out[10:].min() > 0.97
