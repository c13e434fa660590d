"""Decode an image file or its bytes to HxWx3 float32 RGB in [0, 1].

PNG, JPEG, WebP, BMP and TIFF; 8- and 16-bit; gray, RGB and RGBA (composited over black); EXIF
orientation applied. Anything that does not decode cleanly raises `DecodeError`.
"""

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# EXIF orientation tag value -> numpy ops that turn the stored pixels upright (EXIF 2.32, tag 0x0112).
_ORIENT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, k=1),
}
_ORIENTATION_TAG = 0x0112


class DecodeError(Exception):
    """The file is missing, empty, truncated, corrupt or not an image."""


class ImageTooLarge(DecodeError):
    """The header announces more pixels than allowed (a decompression-bomb guard)."""


def read_bytes(src: str | bytes) -> bytes:
    """The encoded bytes of a path or of bytes already in memory."""
    if isinstance(src, bytes):
        return src
    try:
        return Path(src).read_bytes()
    except OSError as e:
        raise DecodeError(f"cannot read {src}: {e}") from e


def decode_image(src: str | bytes, *, max_pixels: int) -> np.ndarray:
    """Path or encoded bytes -> HxWx3 float32 RGB in [0, 1], upright according to EXIF."""
    data = read_bytes(src)
    where = src if isinstance(src, str) else f"<{len(data)} bytes>"
    if not data:
        raise DecodeError(f"{where}: empty file")
    orientation = _read_header(data, where, max_pixels=max_pixels)
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise DecodeError(f"{where}: corrupt or truncated image data")
    return _to_rgb_float(_ORIENT[orientation](pixels), where)


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
        raise DecodeError(f"{where}: not a readable image ({e})") from e
    return orientation if orientation in _ORIENT else 1


def _to_rgb_float(pixels: np.ndarray, where: str) -> np.ndarray:
    if pixels.dtype == np.uint8:
        img = pixels.astype(np.float32) / 255.0
    elif pixels.dtype == np.uint16:
        img = pixels.astype(np.float32) / 65535.0
    elif pixels.dtype == np.float32:  # e.g. float TIFF; assumed to be in [0, 1] already
        img = np.clip(pixels, 0.0, 1.0)
    else:
        raise DecodeError(f"{where}: unsupported pixel type {pixels.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    num_channels = img.shape[2]
    if num_channels == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    if num_channels == 3:
        return np.ascontiguousarray(img[:, :, ::-1])  # OpenCV decodes to BGR
    if num_channels == 4:
        # Composite over black: transparent regions carry no trustworthy colour.
        return np.ascontiguousarray(img[:, :, 2::-1] * img[:, :, 3:4])
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
