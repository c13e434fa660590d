import numpy as np
import pytest

from degradations import simple
from degradations.simple import BicubicConfig, GaussianNoiseConfig


def test_gaussian_noise_params_and_level():
    config = GaussianNoiseConfig(sigma_range=(15.0, 15.0))
    params = simple.sample_noise_params(config, np.random.default_rng(0), (128, 128, 3))
    assert params.sigma == 15.0 and not params.gray
    hq = np.full((128, 128, 3), 0.5, np.float32)
    lq = simple.apply_noise(hq, params)
    assert abs((lq - hq).std() * 255 - 15.0) < 0.5
    np.testing.assert_allclose(lq * 255, np.rint(lq * 255), atol=1e-4)
    assert GaussianNoiseConfig().scale == 1


def test_gaussian_noise_gray_prob():
    config = GaussianNoiseConfig(gray_prob=0.5)
    grays = [simple.sample_noise_params(config, np.random.default_rng(i), (8, 8)).gray for i in range(400)]
    assert 0.4 < np.mean(grays) < 0.6


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize("antialias", [True, False])
def test_bicubic_shapes_and_grid(hq64, scale, antialias):
    config = BicubicConfig(scale=scale, antialias=antialias)
    rng = np.random.default_rng(0)
    lq = simple.apply_bicubic(hq64, simple.sample_bicubic_params(config, rng, hq64.shape))
    assert lq.shape == (64 // scale, 64 // scale, 3) and lq.dtype == np.float32
    np.testing.assert_allclose(lq * 255, np.rint(lq * 255), atol=1e-4)
    assert rng.uniform() == np.random.default_rng(0).uniform()  # the rng was not consumed


def test_bicubic_scale_one_is_the_quantised_identity(hq64):
    lq = simple.apply_bicubic(hq64, simple.BicubicParams(scale=1, antialias=True))
    np.testing.assert_array_equal(lq, np.rint(hq64 * 255).astype(np.float32) / 255)


def test_antialiasing_changes_the_result(hq64):
    a = simple.apply_bicubic(hq64, simple.BicubicParams(scale=4, antialias=True))
    b = simple.apply_bicubic(hq64, simple.BicubicParams(scale=4, antialias=False))
    assert np.abs(a - b).max() > 0.02


def test_invalid_simple_configs_name_the_field():
    with pytest.raises(ValueError, match="scale"):
        BicubicConfig(scale=3)
    with pytest.raises(ValueError, match="sigma_range"):
        GaussianNoiseConfig(sigma_range=(10.0, 5.0))
    with pytest.raises(ValueError, match="gray_prob"):
        GaussianNoiseConfig(gray_prob=-0.1)
