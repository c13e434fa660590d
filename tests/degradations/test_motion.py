import numpy as np
import pytest

from degradations import motion
from degradations.motion import MotionBlurConfig


@pytest.fixture(scope="module")
def many_params():
    config = MotionBlurConfig()
    return [motion.sample_params(config, np.random.default_rng([3, i]), (64, 64, 3)) for i in range(200)]


def test_motion_kernels_sum_to_one_fit_and_are_centred(many_params):
    c = 15
    for p in many_params:
        k = np.array(p.kernel)
        assert k.shape == (31, 31) and k.min() >= 0.0
        assert abs(k.sum() - 1.0) < 1e-12
        assert np.all(k[0] == 0) and np.all(k[-1] == 0) and np.all(k[:, 0] == 0) and np.all(k[:, -1] == 0)
        ys, xs = np.indices(k.shape)
        assert abs((k * xs).sum() - c) < 1e-9 and abs((k * ys).sum() - c) < 1e-9  # no image shift


def test_motion_lengths_are_within_range_and_kernels_vary(many_params):
    lengths = np.array([p.length for p in many_params])
    assert lengths.min() >= 0.0 and lengths.max() <= 28.0 + 1e-9
    assert lengths.std() > 3.0
    spreads = [np.count_nonzero(np.array(p.kernel) > 1e-4) for p in many_params]
    assert min(spreads) < 20 < max(spreads)


def test_long_paths_are_not_straight_lines_only(many_params):
    # the random walk curves: some kernels are clearly not rank 1 / not a single line
    ranks = [np.linalg.matrix_rank(np.array(p.kernel), tol=1e-3) for p in many_params if p.length > 15]
    assert max(ranks) >= 3


def test_resample_spacing_and_uniform_time():
    path = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0]])
    pts = motion.resample(path, spacing=0.25)
    assert np.linalg.norm(np.diff(pts, axis=0), axis=1).max() <= 0.25 + 1e-12
    np.testing.assert_allclose(pts[0], path[0])
    np.testing.assert_allclose(pts[-1], path[-1])


def test_noise_prob_controls_noise(many_params):
    frac = np.mean([p.noise_sigma is not None for p in many_params])
    assert 0.35 < frac < 0.65
    quiet = motion.sample_params(MotionBlurConfig(noise_prob=0.0), np.random.default_rng(0), (8, 8))
    assert quiet.noise_sigma is None


def test_rasterize_keeps_subpixel_position():
    k = motion.rasterize(np.array([[0.25, 0.0]]), size=5)
    assert abs(k[2, 2] - 0.75) < 1e-12 and abs(k[2, 3] - 0.25) < 1e-12


def test_apply_blurs_is_deterministic_and_on_the_8bit_grid(hq64, many_params):
    p = max(many_params, key=lambda q: q.length)
    lq = motion.apply(hq64, p)
    assert lq.shape == hq64.shape and lq.dtype == np.float32
    np.testing.assert_allclose(lq * 255, np.rint(lq * 255), atol=1e-4)
    assert np.abs(np.diff(lq, axis=1)).mean() + np.abs(np.diff(lq, axis=0)).mean() < (
        np.abs(np.diff(hq64, axis=1)).mean() + np.abs(np.diff(hq64, axis=0)).mean())
    assert motion.apply(hq64, p).tobytes() == lq.tobytes()


def test_invalid_motion_config_names_the_field():
    with pytest.raises(ValueError, match="kernel_size"):
        MotionBlurConfig(kernel_size=30)
    with pytest.raises(ValueError, match="length_range"):
        MotionBlurConfig(kernel_size=15, length_range=(4.0, 20.0))
    with pytest.raises(ValueError, match="momentum"):
        MotionBlurConfig(momentum=1.0)
    assert MotionBlurConfig().scale == 1
