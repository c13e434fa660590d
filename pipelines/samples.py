"""Embedded default data: every colour photograph that ships offline inside the scikit-image and matplotlib
wheels, written out as PNGs. Used when no data path is given.

Source and licence of each picture (from the skimage.data docstrings and matplotlib's sample_data):
astronaut (Eileen Collins, NASA, public domain), chelsea (Stefan van der Walt, CC0), coffee (Rachel
Michetti, CC0), rocket (DSCOVR launch, SpaceX, public domain), hubble_deep_field (NASA, public domain),
immunohistochemistry (CMMI, no known copyright restrictions), retina (M. Haggstrom, CC0), grace_hopper
(Commodore Grace M. Hopper, US Navy photograph, public domain; matplotlib's sample_data). Left out:
skimage's stereo_motorcycle (Middlebury 2014, no licence stated), the synthetic and grey images.
"""

import dataclasses
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np
import skimage.data

from pipelines.sources import FolderSource, Manifest

logger = logging.getLogger(__name__)

SAMPLE_NAMES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "grace_hopper",
)
DEFAULT_FOLDER = str(Path(tempfile.gettempdir()) / "restoration_sample_images")


def write_sample_images(folder: str | Path) -> Path:
    """Write the sample photographs as `<name>.png` into `folder` (files already there are kept)."""
    folder = Path(folder).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for name in SAMPLE_NAMES:
        path = folder / f"{name}.png"
        if path.exists():
            continue
        rgb = _load_photo(name)
        ok, encoded = cv2.imencode(".png", rgb[:, :, ::-1])
        if not ok:
            raise OSError(f"could not encode {name} as PNG")
        # Write then rename, so neither a crash nor a concurrent writer leaves half a PNG behind.
        tmp = path.with_name(f"{name}.{os.getpid()}.part")
        tmp.write_bytes(encoded.tobytes())
        tmp.replace(path)
    logger.info("sample images in %s", folder)
    return folder


def _load_photo(name: str) -> np.ndarray:
    """HxWx3 uint8 RGB of one bundled photograph."""
    if name == "grace_hopper":
        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            encoded = np.frombuffer(f.read(), np.uint8)
        return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1]
    return getattr(skimage.data, name)()


@dataclass(frozen=True, kw_only=True, slots=True)
class SampleImages:
    """The bundled photographs, listed through `FolderSource` from the cache `folder`.

    With the default `data.val_images=2`, `holdout_split` holds out chelsea and coffee (the two smallest
    SHA-256 keys); the other six are trained on.

    The manifest carries the encoded bytes rather than the paths, so workers on other nodes (which do not
    share this machine's temp folder) read the same images.
    """

    folder: str = DEFAULT_FOLDER

    def manifest(self) -> Manifest:
        folder = write_sample_images(self.folder)
        listed = FolderSource(paths=(str(folder),)).manifest()
        samples = tuple(dataclasses.replace(s, hq=Path(s.hq).read_bytes()) for s in listed.samples)
        return Manifest(samples=samples)
