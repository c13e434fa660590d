"""Decode an image file or its bytes to HxWx3 float32 RGB in [0, 1].

PNG, JPEG, WebP, BMP and TIFF; 8-, 16-, 32-bit and float; gray, RGB and RGBA (composited over black); EXIF
orientation applied. Anything that neither OpenCV nor Pillow decodes cleanly raises `DecodeError`.
"""

import functools
import io
import itertools
import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

_ORIENTATION_TAG = 0x0112
_BUFFER_REPR = re.compile(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>")  # Pillow names the buffer in its errors


class DecodeError(Exception):
    """The file is missing, empty, truncated, corrupt or not an image."""

    user_error = True  # a CLI reports it in one line (pipelines/cli.py)


class ImageTooLarge(DecodeError):
    """The image has more pixels than allowed (a decompression-bomb guard)."""


def read_bytes(src: str | bytes) -> bytes:
    """The encoded bytes of a path or of bytes already in memory."""
    if isinstance(src, bytes):
        return src
    try:
        return Path(src).read_bytes()
    except OSError as e:
        raise DecodeError(f"cannot read {src}: {e}") from e


def decode_image(src: str | bytes, *, max_pixels: int) -> np.ndarray:
    """Path or encoded bytes -> HxWx3 float32 RGB in [0, 1], upright according to EXIF.

    OpenCV decodes; what it refuses, Pillow tries, and the reverse for headers Pillow cannot parse (a float
    RGB TIFF), so a file either decoder reads is read. The pixel count is checked from the header before
    decoding, and again on the decoded pixels.
    """
    data = read_bytes(src)
    where = src if isinstance(src, str) else f"<{len(data)} bytes>"
    if not data:
        raise DecodeError(f"{where}: empty file")
    header_error, orientation = None, 1
    try:
        orientation = _read_header(data, where, max_pixels=max_pixels)
    except DecodeError as e:
        if isinstance(e, ImageTooLarge):
            raise
        header_error = e
    pixels_RGB = _decode_opencv(data)
    if pixels_RGB is None and header_error is not None:
        raise header_error
    if pixels_RGB is None:
        pixels_RGB = _decode_pil(data, where)
    height, width = pixels_RGB.shape[:2]
    if height * width > max_pixels:
        raise ImageTooLarge(f"{where}: {width}x{height} exceeds max_pixels={max_pixels}")
    return _to_rgb_float(_upright(orientation)(pixels_RGB), where)


Image.MAX_IMAGE_PIXELS = None  # decode_image's max_pixels check (from the header) replaces PIL's limit


def _read_header(data: bytes, where: str, *, max_pixels: int) -> int:
    """EXIF orientation from the header only, after refusing images over max_pixels; nothing is decoded yet."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:  # before getexif, which may read past a bomb's header
                raise ImageTooLarge(f"{where}: {width}x{height} exceeds max_pixels={max_pixels}")
            orientation = img.getexif().get(_ORIENTATION_TAG, 1)
    except (OSError, SyntaxError, ValueError) as e:
        raise DecodeError(f"{where}: not a readable image ({_BUFFER_REPR.sub('', str(e))})") from e
    return orientation if orientation in range(1, 9) else 1


@functools.cache
def _upright(orientation: int) -> Callable[[np.ndarray], np.ndarray]:
    """The numpy transpose that ImageOps.exif_transpose applies for an EXIF orientation (tag 0x0112).

    Read off PIL itself on a 2x3 probe, so PIL stays the one definition: OpenCV decodes 16-bit and float files
    whose pixels no PIL image mode holds, so the transpose runs on the numpy pixels.
    """
    probe = np.arange(6, dtype=np.uint8).reshape(2, 3)
    img = Image.fromarray(probe)
    img.getexif()[_ORIENTATION_TAG] = orientation  # exif_transpose reads the image's Exif object
    upright = np.array(ImageOps.exif_transpose(img))
    swap = upright.shape != probe.shape
    for flip_rows, flip_cols in itertools.product((False, True), repeat=2):
        def op(a: np.ndarray, swap=swap, flip_rows=flip_rows, flip_cols=flip_cols) -> np.ndarray:
            a = a.swapaxes(0, 1) if swap else a
            return a[::-1 if flip_rows else 1, ::-1 if flip_cols else 1]
        if np.array_equal(op(probe), upright):
            return op
    raise AssertionError(f"no transpose matches ImageOps.exif_transpose for orientation {orientation}")


def _decode_opencv(data: bytes) -> np.ndarray | None:
    """HxW or HxWxC pixels in RGB(A) order and the file's own dtype, or None when OpenCV cannot decode them."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.ndim == 2:
        return pixels
    if pixels.shape[2] in (3, 4):
        return np.concatenate([pixels[:, :, 2::-1], pixels[:, :, 3:]], axis=2)  # BGR(A) -> RGB(A)
    return pixels


def _decode_pil(data: bytes, where: str) -> np.ndarray:
    """Pillow's pixels (RGB(A), gray, 16-bit, int32 or float), for what OpenCV refused."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # truncated data raises here (ImageFile.LOAD_TRUNCATED_IMAGES stays False)
            if img.mode in ("P", "PA"):
                img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else "RGB")
            elif img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGB")
            elif img.mode == "1":
                img = img.convert("L")
            return np.array(img)
    except (OSError, SyntaxError, ValueError) as e:
        raise DecodeError(f"{where}: corrupt or truncated image data ({_BUFFER_REPR.sub('', str(e))})") from e


def _to_unit_range(pixels: np.ndarray, where: str) -> np.ndarray:
    """Pixels -> float32 in [0, 1] over their real range: 8 and 16 bits by their type's maximum; other integers
    by 255 or 65535 when their values fit, else by their maximum; float data as it is when within [0, 1], else
    divided by its maximum (negative values and NaN become 0)."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / 65535.0
    if pixels.dtype == bool:
        return pixels.astype(np.float32)
    if not (np.issubdtype(pixels.dtype, np.integer) or np.issubdtype(pixels.dtype, np.floating)):
        raise DecodeError(f"{where}: unsupported pixel type {pixels.dtype}")
    img = np.nan_to_num(pixels.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0.0)
    peak = float(img.max(initial=0.0))
    if np.issubdtype(pixels.dtype, np.integer):
        scale = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
    else:
        scale = 1.0 if peak <= 1.0 else peak
    return img / scale


def _to_rgb_float(pixels_RGB: np.ndarray, where: str) -> np.ndarray:
    img = _to_unit_range(pixels_RGB, where)
    if img.ndim == 2:
        img = img[:, :, None]
    num_channels = img.shape[2]
    if num_channels == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    if num_channels == 2:  # gray + alpha, composited over black
        return np.ascontiguousarray(np.repeat(img[:, :, :1] * img[:, :, 1:], 3, axis=2))
    if num_channels == 3:
        return np.ascontiguousarray(img)
    if num_channels == 4:
        # Composite over black: transparent regions carry no trustworthy colour.
        return np.ascontiguousarray(img[:, :, :3] * img[:, :, 3:4])
    raise DecodeError(f"{where}: unsupported channel count {num_channels}")


class DecodeCache:
    """Decoded images kept by key until `max_bytes` is used up; later images are decoded on every call.

    For small data sets (the embedded samples, a few dozen photos), decoding costs as much as degrading
    a crop. Cached arrays are read-only, so an in-place edit downstream fails loudly.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.num_bytes = max_bytes, 0
        self.images: dict[object, np.ndarray] = {}

    def decode(self, key: object, src: str | bytes, *, max_pixels: int) -> np.ndarray:
        img = self.images.get(key)
        if img is None:
            img = decode_image(src, max_pixels=max_pixels)
            if self.num_bytes + img.nbytes <= self.max_bytes:
                img.flags.writeable = False
                self.images[key] = img
                self.num_bytes += img.nbytes
        return img
