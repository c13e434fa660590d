import numpy as np

from degradations.noise import add_gaussian_noise, add_poisson_noise, poisson_noise


def _gray(value: float, size: int = 128) -> np.ndarray:
    return np.full((size, size, 3), value, np.float32)


def test_gaussian_noise_has_sigma_on_the_255_scale():
    out = add_gaussian_noise(_gray(0.5), sigma=20.0, gray=False, rng=np.random.default_rng(0))
    assert out.dtype == np.float32 and out.shape == (128, 128, 3)
    assert abs((out - 0.5).std() * 255 - 20.0) < 0.5
    assert abs((out - 0.5).mean() * 255) < 0.3


def test_gray_gaussian_noise_is_identical_on_rgb_and_colour_noise_is_not():
    gray = add_gaussian_noise(_gray(0.5), sigma=10.0, gray=True, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    colour = add_gaussian_noise(_gray(0.5), sigma=10.0, gray=False, rng=np.random.default_rng(0))
    assert np.abs(colour[..., 0] - colour[..., 1]).max() > 0.01


def test_noise_output_is_clipped_to_unit_range():
    out = add_gaussian_noise(_gray(0.98), sigma=30.0, gray=False, rng=np.random.default_rng(1))
    assert out.max() == 1.0 and out.min() >= 0.0
    out = add_poisson_noise(_gray(0.01), scale=3.0, gray=False, rng=np.random.default_rng(1))
    assert out.min() == 0.0 and out.max() <= 1.0


def test_poisson_noise_v_follows_the_number_of_distinct_levels():
    img = np.full((64, 64, 3), 0.5, np.float32)
    img[0, 0] = 0.0  # 2 distinct levels -> v = 2: noise is a multiple of 1/2
    noise = poisson_noise(img, rng=np.random.default_rng(1))
    x_q = np.rint(img * 255) / 255
    np.testing.assert_allclose(np.rint((noise + x_q) * 2), (noise + x_q) * 2, atol=1e-5)


def test_poisson_noise_is_zero_mean_with_shot_noise_variance():
    noise = poisson_noise(np.random.default_rng(2).random((64, 64, 3), dtype=np.float32), rng=np.random.default_rng(2))
    assert abs(noise.mean()) < 2e-3
    # natural-image case: 256 distinct levels -> v = 256, variance x/256
    ramp = np.linspace(0, 1, 256, dtype=np.float32)[:, None, None]
    mid = np.full((256, 256, 3), 100 / 255, np.float32)
    mid[:, :8] = ramp  # keeps all 256 levels present in the image
    n = poisson_noise(mid, rng=np.random.default_rng(3))[:, 8:]
    assert abs(n.var() - (100 / 255) / 256) / ((100 / 255) / 256) < 0.05
    assert abs(n.mean()) < 1e-3


def test_poisson_scale_multiplies_the_noise():
    img = np.random.default_rng(4).random((64, 64, 3), dtype=np.float32) * 0.5 + 0.25
    small = add_poisson_noise(img, scale=0.1, gray=False, rng=np.random.default_rng(5)) - img
    large = add_poisson_noise(img, scale=0.4, gray=False, rng=np.random.default_rng(5)) - img  # no clipping
    np.testing.assert_allclose(large, 4 * small, atol=1e-5)


def test_gray_poisson_noise_is_identical_on_rgb():
    img = np.random.default_rng(6).random((32, 32, 3), dtype=np.float32) * 0.5 + 0.25
    out = add_poisson_noise(img, scale=1.0, gray=True, rng=np.random.default_rng(7))
    noise = out - img
    np.testing.assert_allclose(noise[..., 0], noise[..., 1], atol=1e-6)
    np.testing.assert_allclose(noise[..., 0], noise[..., 2], atol=1e-6)
    assert np.abs(noise).max() > 0.01


def test_same_seed_same_noise():
    img = _gray(0.4, 32)
    a = add_poisson_noise(img, scale=1.0, gray=False, rng=np.random.default_rng(8))
    b = add_poisson_noise(img, scale=1.0, gray=False, rng=np.random.default_rng(8))
    c = add_poisson_noise(img, scale=1.0, gray=False, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
