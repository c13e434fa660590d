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


def _dense_usm_reference(img: np.ndarray) -> np.ndarray:
    """The reference's USM written out densely: 51x51 Gaussian of sigma 8, reflect padding, weight 0.5,
    threshold 10 on the 0-255 scale, soft mask = blurred hard mask (realesrgan.md, USMSharp defaults)."""
    x = np.arange(51) - 25
    g = np.exp(-(x**2) / (2 * 8.0**2))
    kernel = np.outer(g, g) / np.outer(g, g).sum()

    def blur(a: np.ndarray) -> np.ndarray:
        padded = np.pad(a, ((25, 25), (25, 25), (0, 0)), mode="reflect")
        windows = np.lib.stride_tricks.sliding_window_view(padded, (51, 51), axis=(0, 1))
        return np.einsum("hwcij,ij->hwc", windows, kernel)

    img64 = img.astype(np.float64)
    residual = img64 - blur(img64)
    soft_mask = blur((np.abs(residual) * 255 > 10).astype(np.float64))
    sharp = np.clip(img64 + 0.5 * residual, 0, 1)
    return soft_mask * sharp + (1 - soft_mask) * img64


def test_usm_sharpen_equals_the_dense_reference_formula():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.random((60, 70, 3)).astype(np.float32), (0, 0), 2.0)
    np.testing.assert_allclose(usm_sharpen(img), _dense_usm_reference(img), atol=2e-5)
