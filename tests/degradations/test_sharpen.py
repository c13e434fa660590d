import cv2
import numpy as np

from degradations.sharpen import usm_sharpen


def _high_freq_energy(img: np.ndarray) -> float:
    return float((img - cv2.GaussianBlur(img, (0, 0), 1.5)).var())


def test_usm_increases_high_frequency_energy(hq96):
    out = usm_sharpen(hq96)
    assert _high_freq_energy(out) > 1.1 * _high_freq_energy(hq96)
    assert out.dtype == np.float32 and out.shape == hq96.shape
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_usm_leaves_flat_images_and_sub_threshold_detail_alone():
    flat = np.full((64, 64, 3), 0.4, np.float32)
    np.testing.assert_allclose(usm_sharpen(flat), flat, atol=1e-6)
    faint = flat + np.float32(2 / 255) * (np.indices((64, 64)).sum(axis=0) % 2)[..., None]
    np.testing.assert_allclose(usm_sharpen(faint), faint, atol=1e-6)  # |residual| * 255 < threshold 10


def test_usm_gaussian_is_51_taps_with_sigma_8():
    g = cv2.getGaussianKernel(51, 0).ravel()
    x = np.arange(51) - 25
    expected = np.exp(-x * x / (2 * 8.0**2))
    np.testing.assert_allclose(g, expected / expected.sum(), atol=1e-7)


def test_usm_weight_zero_is_identity(hq64):
    np.testing.assert_allclose(usm_sharpen(hq64, weight=0.0), hq64, atol=1e-6)
