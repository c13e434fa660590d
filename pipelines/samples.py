"""Embedded default data: colour photographs shipped inside the scikit-image wheel, written out as PNGs.

Used when no data path is given. Source and licence of each picture (from the skimage.data docstrings):
astronaut (Eileen Collins, NASA, public domain), chelsea (Stefan van der Walt, CC0), coffee (Rachel
Michetti, CC0), rocket (DSCOVR launch, SpaceX, public domain), hubble_deep_field (NASA, public domain),
immunohistochemistry (CMMI, no known copyright restrictions), retina (M. Haggstrom, CC0).
"""

import dataclasses
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
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
        rgb = getattr(skimage.data, name)()
        ok, encoded = cv2.imencode(".png", rgb[:, :, ::-1])
        if not ok:
            raise OSError(f"could not encode {name} as PNG")
        # Write then rename, so neither a crash nor a concurrent writer leaves half a PNG behind.
        tmp = path.with_name(f"{name}.{os.getpid()}.part")
        tmp.write_bytes(encoded.tobytes())
        tmp.replace(path)
    logger.info("sample images in %s", folder)
    return folder


@dataclass(frozen=True, kw_only=True, slots=True)
class SampleImages:
    """The scikit-image photographs, listed through `FolderSource` from the cache `folder`.

    The manifest carries the encoded bytes rather than the paths, so workers on other nodes (which do not
    share this machine's temp folder) read the same images.
    """

    folder: str = DEFAULT_FOLDER

    def manifest(self) -> Manifest:
        folder = write_sample_images(self.folder)
        listed = FolderSource(paths=(str(folder),)).manifest()
        samples = tuple(dataclasses.replace(s, hq=Path(s.hq).read_bytes()) for s in listed.samples)
        return Manifest(samples=samples)
