"""JPEG compression artefacts through libjpeg (cv2), the last step of each Real-ESRGAN stage
(arXiv 2107.10833, Sec. 3.1). The reference uses DiffJPEG with a continuous quality; cv2 takes an
integer, so the continuous quality is rounded to the nearest integer (ties to even) at application.
"""

import cv2
import numpy as np


def jpeg_quality_int(quality: float) -> int:
    return round(quality)


def jpeg_compress(img: np.ndarray, *, quality: float) -> np.ndarray:
    """Encode + decode as 4:2:0 JPEG at round(quality); HxWx3 float32 RGB in, [0, 1] on the 8-bit grid out.

    The input is clipped to [0, 1] first, as the reference does before every JPEG.
    """
    u8 = np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    # cv2 expects BGR: without the swap the luma weights would land on the wrong channels
    flags = [
        cv2.IMWRITE_JPEG_QUALITY, jpeg_quality_int(quality),
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,  # as DiffJPEG
    ]
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), flags)
    assert ok
    out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out.astype(np.float32) * np.float32(1.0 / 255.0)
