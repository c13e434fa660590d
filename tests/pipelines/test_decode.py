import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from pipelines.decode import DecodeError, ImageTooLarge, decode_image

MAX = 10_000_000


def _rgb8(h=24, w=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _pil_bytes(arr, fmt, **kwargs):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kwargs)
    return buf.getvalue()


def _check_float_rgb(img, h, w):
    assert img.shape == (h, w, 3)
    assert img.dtype == np.float32
    assert img.min() >= 0.0 and img.max() <= 1.0


def test_png_from_path_and_bytes_is_exact(tmp_path):
    rgb = _rgb8()
    path = tmp_path / "a.png"
    path.write_bytes(_pil_bytes(rgb, "PNG"))
    for src in (str(path), path.read_bytes()):
        img = decode_image(src, max_pixels=MAX)
        _check_float_rgb(img, 24, 40)
        np.testing.assert_array_equal(np.rint(img * 255).astype(np.uint8), rgb)


def test_jpeg_and_webp_decode_to_rgb_close_to_the_source():
    smooth = np.zeros((32, 48, 3), np.uint8)
    smooth[..., 0] = 200  # a strongly red image: a BGR/RGB swap would be caught
    smooth[..., 2] = 30
    for fmt, kwargs in (("JPEG", {"quality": 95}), ("WEBP", {"quality": 95})):
        img = decode_image(_pil_bytes(smooth, fmt, **kwargs), max_pixels=MAX)
        _check_float_rgb(img, 32, 48)
        assert np.abs(img * 255 - smooth).mean() < 3, fmt


def test_16bit_rgb_png_keeps_more_than_8_bits():
    rgb16 = np.random.default_rng(1).integers(0, 65536, (10, 12, 3), dtype=np.uint16)
    ok, buf = cv2.imencode(".png", rgb16[:, :, ::-1])
    assert ok
    img = decode_image(buf.tobytes(), max_pixels=MAX)
    _check_float_rgb(img, 10, 12)
    np.testing.assert_array_equal(np.rint(img.astype(np.float64) * 65535).astype(np.uint16), rgb16)


def test_gray_8_and_16_bit_become_three_equal_channels():
    gray8 = _rgb8()[:, :, 0]
    gray16 = gray8.astype(np.uint16) * 257
    for gray, scale in ((gray8, 255), (gray16, 65535)):
        ok, buf = cv2.imencode(".png", gray)
        assert ok
        img = decode_image(buf.tobytes(), max_pixels=MAX)
        _check_float_rgb(img, 24, 40)
        np.testing.assert_array_equal(img[..., 0], img[..., 2])
        np.testing.assert_array_equal(np.rint(img[..., 1] * scale), gray)


def test_rgba_is_composited_over_black():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (255, 128, 0)
    rgba[:2, :, 3] = 255  # top half opaque, bottom half transparent
    img = decode_image(_pil_bytes(rgba, "PNG"), max_pixels=MAX)
    _check_float_rgb(img, 4, 4)
    np.testing.assert_allclose(img[0, 0], [1.0, 128 / 255, 0.0])
    np.testing.assert_array_equal(img[3], 0.0)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pil_exif_transpose(orientation):
    rgb = _rgb8(6, 10)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _pil_bytes(rgb, "PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    img = decode_image(data, max_pixels=MAX)
    np.testing.assert_array_equal(np.rint(img * 255).astype(np.uint8), expected)


def test_exif_rotated_jpeg_is_turned_upright():
    rgb = np.zeros((40, 80, 3), np.uint8)
    rgb[:, :40] = 255  # white left half, black right half
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; the camera says: rotate 90 degrees clockwise to view
    img = decode_image(_pil_bytes(rgb, "JPEG", quality=95, exif=exif), max_pixels=MAX)
    _check_float_rgb(img, 80, 40)
    assert img[:30].mean() > 0.9 and img[50:].mean() < 0.1  # the white half ends up on top


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="zero-byte"),
        pytest.param(b"this is a text file, not an image\n" * 10, id="text"),
        pytest.param(np.random.default_rng(0).bytes(2000), id="random"),
        pytest.param(_pil_bytes(_rgb8(64, 64), "PNG")[:500], id="truncated-png"),
        pytest.param(_pil_bytes(_rgb8(64, 64), "JPEG")[:-300], id="truncated-jpeg"),
        pytest.param(_pil_bytes(_rgb8(64, 64), "PNG")[:40] + b"\0" * 400, id="corrupt-png"),
    ],
)
def test_bad_data_raises_decode_error(data, tmp_path):
    with pytest.raises(DecodeError):
        decode_image(data, max_pixels=MAX)
    path = tmp_path / "bad.png"
    path.write_bytes(data)
    with pytest.raises(DecodeError):
        decode_image(str(path), max_pixels=MAX)


def test_missing_file_raises_decode_error(tmp_path):
    with pytest.raises(DecodeError):
        decode_image(str(tmp_path / "gone.png"), max_pixels=MAX)


def test_image_over_max_pixels_is_refused_before_decoding():
    data = _pil_bytes(_rgb8(100, 100), "PNG")
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_pixels=100 * 100 - 1)
    assert decode_image(data, max_pixels=100 * 100).shape == (100, 100, 3)


def test_decode_cache_returns_read_only_copies_within_budget():
    from pipelines.decode import DecodeCache

    small, big = _pil_bytes(_rgb8(4, 4), "PNG"), _pil_bytes(_rgb8(40, 40), "PNG")
    cache = DecodeCache(max_bytes=4 * 4 * 3 * 4)  # room for the small image only
    first = cache.decode("small", small, max_pixels=MAX)
    assert cache.decode("small", small, max_pixels=MAX) is first
    assert not first.flags.writeable
    np.testing.assert_array_equal(first, decode_image(small, max_pixels=MAX))
    assert cache.decode("big", big, max_pixels=MAX) is not cache.decode("big", big, max_pixels=MAX)
    assert list(cache.images) == ["small"]
