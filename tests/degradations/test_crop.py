import numpy as np
import pytest

from degradations.crop import ImageTooSmall, augment_pair, paired_crop, random_crop


def _coords(h: int, w: int) -> np.ndarray:
    """An image whose pixels encode their own (row, col), so crops reveal where they came from."""
    rows, cols = np.indices((h, w)).astype(np.float32)
    return np.stack([rows, cols, np.zeros_like(rows)], axis=-1)


def test_random_crop_size_position_and_determinism():
    img = _coords(100, 120)
    a = random_crop(img, 48, np.random.default_rng(0))
    b = random_crop(img, 48, np.random.default_rng(0))
    assert a.shape == (48, 48, 3)
    np.testing.assert_array_equal(a, b)
    top, left = int(a[0, 0, 0]), int(a[0, 0, 1])
    np.testing.assert_array_equal(a, img[top : top + 48, left : left + 48])
    positions = {tuple(random_crop(img, 48, np.random.default_rng(i))[0, 0, :2]) for i in range(20)}
    assert len(positions) > 10


def test_random_crop_multiple_of_aligns_the_corner():
    img = _coords(101, 97)
    for i in range(30):
        c = random_crop(img, 32, np.random.default_rng(i), multiple_of=4)
        assert c[0, 0, 0] % 4 == 0 and c[0, 0, 1] % 4 == 0
    with pytest.raises(ValueError, match="multiple_of"):
        random_crop(img, 30, np.random.default_rng(0), multiple_of=4)


def test_small_images_are_reflect_padded_or_skipped():
    img = _coords(20, 40)
    padded = random_crop(img, 32, np.random.default_rng(0), small="pad")
    assert padded.shape == (32, 32, 3)
    # reflect-101 at the bottom: row 20 mirrors row 18, row 21 mirrors row 17
    np.testing.assert_array_equal(padded[20:22, :, 0], np.array([[18.0], [17.0]]).repeat(32, axis=1))
    np.testing.assert_array_equal(padded[:20, :, 0], img[:20, : 32, 0])
    with pytest.raises(ImageTooSmall):
        random_crop(img, 32, np.random.default_rng(0), small="skip")
    assert random_crop(img, 16, np.random.default_rng(0), small="skip").shape == (16, 16, 3)


def test_paired_crop_is_aligned_with_a_box_downsampled_lq():
    rng = np.random.default_rng(1)
    hq = rng.random((96, 80, 3), dtype=np.float32)
    lq = hq.reshape(24, 4, 20, 4, 3).mean(axis=(1, 3))
    for i in range(20):
        hq_p, lq_p = paired_crop(hq, lq, 32, 4, np.random.default_rng(i))
        assert hq_p.shape == (32, 32, 3) and lq_p.shape == (8, 8, 3)
        np.testing.assert_allclose(hq_p.reshape(8, 4, 8, 4, 3).mean(axis=(1, 3)), lq_p, atol=1e-6)


def test_paired_crop_positions_are_scale_multiples():
    hq = _coords(64, 64)
    lq = _coords(16, 16)
    hq_p, lq_p = paired_crop(hq, lq, 16, 4, np.random.default_rng(5))
    assert hq_p[0, 0, 0] == 4 * lq_p[0, 0, 0] and hq_p[0, 0, 1] == 4 * lq_p[0, 0, 1]


def test_paired_crop_rejects_mismatch_and_too_small():
    hq = np.zeros((64, 64, 3), np.float32)
    with pytest.raises(ValueError, match="hq"):
        paired_crop(hq, np.zeros((15, 16, 3), np.float32), 16, 4, np.random.default_rng(0))
    with pytest.raises(ImageTooSmall):
        paired_crop(hq, np.zeros((16, 16, 3), np.float32), 128, 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="patch"):
        paired_crop(hq, np.zeros((16, 16, 3), np.float32), 18, 4, np.random.default_rng(0))


def test_augment_pair_keeps_alignment_and_covers_all_eight_transforms():
    rng = np.random.default_rng(2)
    hq = rng.random((32, 32, 3), dtype=np.float32)
    lq = hq.reshape(8, 4, 8, 4, 3).mean(axis=(1, 3))
    seen = set()
    for i in range(64):
        hq_a, lq_a = augment_pair(hq, lq, np.random.default_rng(i))
        np.testing.assert_allclose(hq_a.reshape(8, 4, 8, 4, 3).mean(axis=(1, 3)), lq_a, atol=1e-6)
        assert hq_a.flags.c_contiguous and lq_a.flags.c_contiguous
        seen.add(hq_a.tobytes())
    assert len(seen) == 8


def test_augment_pair_flags_restrict_the_transforms():
    hq = np.random.default_rng(3).random((16, 16, 3), dtype=np.float32)
    lq = hq[::2, ::2]
    for i in range(16):
        hq_a, _ = augment_pair(hq, lq, np.random.default_rng(i), hflip=False, rot=False)
        np.testing.assert_array_equal(hq_a, hq)
    outs = {augment_pair(hq, lq, np.random.default_rng(i), rot=False)[0].tobytes() for i in range(16)}
    assert outs == {hq.tobytes(), np.ascontiguousarray(hq[:, ::-1]).tobytes()}
