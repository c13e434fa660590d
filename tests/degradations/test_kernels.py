import math

import numpy as np
import pytest

from degradations import kernels
from degradations.kernels import MIXED_FAMILIES, PAD_SIZE, Kernel

X4PLUS_PROBS = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)


def _sample(rng, **overrides):
    kw = {
        "sizes": kernels.KERNEL_SIZES, "sinc_prob": 0.1, "families": MIXED_FAMILIES, "probs": X4PLUS_PROBS,
        "sigma_range": (0.2, 3.0), "betag_range": (0.5, 4.0), "betap_range": (1.0, 2.0),
    }
    return kernels.sample_blur_kernel(rng, **{**kw, **overrides})


@pytest.fixture(scope="module")
def sampled() -> list[Kernel]:
    rng = np.random.default_rng(0)
    return [_sample(rng) for _ in range(3000)]


def test_sampled_kernels_sum_to_one_and_are_point_symmetric(sampled):
    for k in sampled:
        a = k.array()
        assert a.shape == (k.size, k.size)
        assert abs(a.sum() - 1.0) < 1e-12
        np.testing.assert_allclose(a, a[::-1, ::-1], atol=1e-15)
        assert np.unravel_index(np.argmax(a), a.shape) == (k.size // 2, k.size // 2)


def test_sampled_sizes_are_odd_7_to_21_and_padding_is_zero_outside(sampled):
    assert {k.size for k in sampled} == set(range(7, 22, 2))
    for k in sampled[:300]:
        p = k.padded()
        assert p.shape == (PAD_SIZE, PAD_SIZE)
        off = (PAD_SIZE - k.size) // 2
        inner = np.zeros_like(p, dtype=bool)
        inner[off : off + k.size, off : off + k.size] = True
        assert np.all(p[~inner] == 0.0)
        np.testing.assert_array_equal(p[inner].reshape(k.size, k.size), k.array())


def test_every_family_occurs_with_its_probability(sampled):
    n = len(sampled)
    counts = {f: sum(k.family == f for k in sampled) for f in (*MIXED_FAMILIES, "sinc")}
    expected = {f: 0.9 * p for f, p in zip(MIXED_FAMILIES, X4PLUS_PROBS)} | {"sinc": 0.1}
    for family, p in expected.items():
        sd = math.sqrt(p * (1 - p) / n)
        assert abs(counts[family] / n - p) < 4.5 * sd + 1e-9, (family, counts[family] / n, p)


def test_iso_families_are_isotropic_and_non_negative(sampled):
    for k in sampled:
        a = k.array()
        if k.family != "sinc":
            assert a.min() >= 0.0
        if k.family in ("iso", "generalized_iso", "plateau_iso", "sinc"):
            np.testing.assert_allclose(a, a.T, atol=1e-14)
            np.testing.assert_allclose(a, a[::-1], atol=1e-14)


def test_iso_kernel_values_depend_only_on_the_radius(sampled):
    xx, yy = np.meshgrid(np.arange(21) - 10, np.arange(21) - 10)
    r2 = (xx * xx + yy * yy).ravel()
    for k in [k for k in sampled if k.family in ("iso", "generalized_iso", "plateau_iso", "sinc")][:200]:
        p = k.padded().ravel()
        inside = np.abs(xx.ravel()).clip(np.abs(yy.ravel())) <= k.size // 2  # within the KxK support
        for radius in (25, 50, 65, 85):  # radii reached by several non-equivalent lattice points
            group = p[(r2 == radius) & inside]
            if len(group) > 1:
                assert np.ptp(group) < 1e-14, (k.family, radius)


def test_aniso_kernel_is_not_transpose_symmetric():
    a = kernels.gaussian(21, sigma_x=3.0, sigma_y=0.5, theta=0.3)
    assert np.abs(a - a.T).max() > 1e-3


def test_sinc_has_negative_lobes_and_cutoff_follows_size_rule(sampled):
    sincs = [k for k in sampled if k.family == "sinc"]
    assert sincs and all(k.array().min() < 0 for k in sincs)
    assert all(k.omega >= math.pi / 3 for k in sincs if k.size < 13)
    assert any(k.omega < math.pi / 3 for k in sincs if k.size >= 13)
    assert all(math.pi / 5 <= k.omega <= math.pi for k in sincs)


def test_sinc_is_a_circular_low_pass():
    omega = math.pi / 3
    k = kernels.circular_lowpass(21, omega=omega)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(k, s=(128, 128))))
    f = np.fft.fftshift(np.fft.fftfreq(128)) * 2 * math.pi
    radius = np.hypot(*np.meshgrid(f, f))
    assert abs(spectrum[64, 64] - 1.0) < 1e-12  # DC gain
    assert abs(spectrum[radius < 0.7 * omega].mean() - 1.0) < 0.03
    assert spectrum[radius > 1.3 * omega].mean() < 0.03


def test_bessel_j1_matches_known_values():
    x = np.array([0.0, 1.0, 3.8317059702075125, 10.0, 44.0])
    expected = np.array([0.0, 0.44005058574493355, 0.0, 0.04347274616886141, -0.08280335937602906])
    np.testing.assert_allclose(kernels.bessel_j1(x), expected, atol=1e-13)


def test_generalized_beta_one_is_gaussian_but_plateau_beta_one_is_not():
    g = kernels.gaussian(21, sigma_x=2.0, sigma_y=1.0, theta=0.4)
    np.testing.assert_allclose(kernels.generalized_gaussian(21, sigma_x=2.0, sigma_y=1.0, theta=0.4, beta=1.0), g, atol=1e-15)
    p = kernels.plateau(21, sigma_x=2.0, sigma_y=1.0, theta=0.4, beta=1.0)
    assert np.abs(p - g).max() > 1e-2
    assert p[0, 0] > 10 * g[0, 0]  # heavy (Cauchy-like) tails


def test_gaussian_second_moment_is_sigma_squared():
    for sigma in (1.0, 2.0):
        k = kernels.gaussian(21, sigma_x=sigma, sigma_y=sigma, theta=0.0)
        x = np.arange(21) - 10
        assert abs((k.sum(axis=0) * x * x).sum() - sigma**2) < 1e-3


def test_plateau_beta_is_exactly_one_for_about_half_the_draws():
    rng = np.random.default_rng(3)
    ks = [_sample(rng, sinc_prob=0.0, families=("plateau_iso",), probs=(1.0,)) for _ in range(400)]
    frac = np.mean([k.beta == 1.0 for k in ks])
    assert 0.4 < frac < 0.6


def test_final_sinc_is_sinc_with_prob_and_otherwise_the_pulse():
    rng = np.random.default_rng(4)
    ks = [kernels.sample_final_sinc(rng, sizes=kernels.KERNEL_SIZES, prob=0.8) for _ in range(2000)]
    frac = np.mean([k.family == "sinc" for k in ks])
    assert abs(frac - 0.8) < 0.04
    assert all(math.pi / 3 <= k.omega <= math.pi for k in ks if k.family == "sinc")
    pulse = next(k for k in ks if k.family == "pulse")
    np.testing.assert_array_equal(pulse.padded()[10, 10], 1.0)
    assert pulse.padded().sum() == 1.0


def test_separable_iso_blur_equals_the_2d_convolution():
    img = np.random.default_rng(0).random((40, 50, 3), dtype=np.float32)
    k = kernels.sample_mixed_kernel(
        np.random.default_rng(1), size=15, families=("iso",), probs=(1.0,), sigma_range=(2.0, 2.5),
        betag_range=(0.5, 4.0), betap_range=(1.0, 2.0),
    )
    np.testing.assert_allclose(kernels.blur(img, kernel=k), kernels.convolve(img, kernel=k.array()), atol=2e-6)


def test_convolve_flips_so_a_shift_kernel_moves_the_image_forward():
    img = np.zeros((9, 9, 3), np.float32)
    img[4, 4] = 1.0
    shift = np.zeros((3, 3))
    shift[1, 2] = 1.0  # PSF: a point lands one pixel to the right
    out = kernels.convolve(img, kernel=shift)
    assert out[4, 5, 0] == 1.0 and out[4, 4, 0] == 0.0


def test_kernel_json_dict_round_trip():
    k = _sample(np.random.default_rng(5))
    import dataclasses
    import json

    assert Kernel.from_dict(json.loads(json.dumps(dataclasses.asdict(k)))) == k
