"""Data sources: list HQ images (folder/glob/files), paired LQ/GT folders or a Parquet of encoded bytes.

Each source turns into a `Manifest`: samples in sorted order with a stable `sample_id`, each holding a
path or the encoded bytes. Decoding happens later, per sample (pipelines/decode.py).
"""

import collections
import dataclasses
import glob
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

MAX_ROW_WARNINGS = 10
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})


@dataclass(frozen=True, slots=True)
class Sample:
    """One manifest row: `hq` (and `lq` for paired sources) is a file path or the encoded image bytes."""

    sample_id: int
    name: str
    hq: str | bytes
    lq: str | bytes | None = None

    @property
    def key(self) -> str:
        """The name without its suffix (a flat folder's file stem): what a keyed prompt file is indexed by."""
        return str(PurePosixPath(self.name).with_suffix(""))


@dataclass(frozen=True, slots=True)
class Manifest:
    samples: tuple[Sample, ...]
    num_unpaired: int = 0  # files without a partner (paired sources only); left out of `samples`
    num_skipped: dict[str, int] = dataclasses.field(default_factory=dict)  # rows left out, by reason (Parquet)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def is_paired(self) -> bool:
        return bool(self.samples) and self.samples[0].lq is not None


def holdout_split(manifest: Manifest, num_val: int) -> tuple[Manifest, Manifest]:
    """(train, validation) manifests: the `num_val` samples whose keys have the smallest SHA-256 are held out.

    The choice depends on the keys alone (not on the listing order, the seed or the machine), so adding images
    to a folder moves an image into validation only when its own key ranks among the smallest. Both manifests
    keep the source order and number their samples 0..n-1 again, so a training sample id never names a
    validation image.
    """
    if num_val < 0:
        raise ValueError(f"num_val must be >= 0, got {num_val}")
    if num_val >= len(manifest):
        raise ValueError(f"holding out {num_val} of {len(manifest)} images leaves none to train on: "
                         "lower data.val_images or give data.val_source")
    ranked = sorted(manifest.samples, key=lambda s: hashlib.sha256(s.key.encode()).hexdigest())
    held_out = {s.sample_id for s in ranked[:num_val]}
    train = [s for s in manifest.samples if s.sample_id not in held_out]
    val = [s for s in manifest.samples if s.sample_id in held_out]
    return _renumbered(manifest, train), _renumbered(manifest, val)


def _renumbered(manifest: Manifest, samples: list[Sample]) -> Manifest:
    return dataclasses.replace(manifest, samples=tuple(dataclasses.replace(s, sample_id=i) for i, s in enumerate(samples)))


@dataclass(frozen=True, kw_only=True, slots=True)
class FolderSource:
    """HQ images from folders (searched recursively), glob patterns or single files, in any mix."""

    paths: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.paths, str):
            raise TypeError(f"paths must be a tuple of strings, got the string {self.paths!r}")
        if not self.paths:
            raise ValueError("paths is empty: give at least one folder, glob or file")

    def manifest(self) -> Manifest:
        files = sorted({str(p) for entry in self.paths for p in _expand(entry)})
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {self.paths}")
        names = _unique_names(files)
        samples = tuple(Sample(sample_id=i, name=n, hq=f) for i, (n, f) in enumerate(zip(names, files)))
        logger.info("FolderSource: %d images from %s", len(samples), self.paths)
        return Manifest(samples=samples)


@dataclass(frozen=True, kw_only=True, slots=True)
class PairedFolderSource:
    """LQ and GT folders whose images are matched by file stem (`0001.png` <-> `0001.jpg`).

    scale: GT size // LQ size (1 for same-size tasks such as shadow removal or dehazing).
    """

    lq_dir: str
    gt_dir: str
    scale: int = 1

    def __post_init__(self) -> None:
        if self.scale not in (1, 2, 4):
            raise ValueError(f"scale={self.scale}: must be one of (1, 2, 4)")

    def manifest(self) -> Manifest:
        lq_by_stem = _by_stem(self.lq_dir)
        gt_by_stem = _by_stem(self.gt_dir)
        stems = sorted(lq_by_stem.keys() & gt_by_stem.keys())
        missing = sorted(lq_by_stem.keys() ^ gt_by_stem.keys())
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            logger.warning("PairedFolderSource: %d files without a partner are left out: %s", len(missing), shown)
        if not stems:
            raise FileNotFoundError(f"no LQ/GT pairs with matching stems in {self.lq_dir} and {self.gt_dir}")
        samples = tuple(
            Sample(sample_id=i, name=s, hq=gt_by_stem[s], lq=lq_by_stem[s]) for i, s in enumerate(stems)
        )
        logger.info("PairedFolderSource: %d pairs", len(samples))
        return Manifest(samples=samples, num_unpaired=len(missing))


@dataclass(frozen=True, kw_only=True, slots=True)
class ParquetSource:
    """A Parquet file (or a folder of them) with a column of encoded image bytes and an optional name column.

    Samples are sorted by name when `name_column` is given, else kept in file order (files sorted by path).
    """

    path: str
    image_column: str = "image"
    name_column: str | None = "name"

    def manifest(self) -> Manifest:
        # TODO: the encoded bytes are held in memory (and shipped to each worker); fine up to a few GB.
        files = sorted(Path(self.path).rglob("*.parquet")) if Path(self.path).is_dir() else [Path(self.path)]
        if not files:
            raise FileNotFoundError(f"no .parquet files under {self.path}")
        rows: list[tuple[str, bytes]] = []
        skipped: collections.Counter[str] = collections.Counter()
        for file in files:
            images, names = self._read(file)
            for i, (name, image) in enumerate(zip(names, images)):
                if isinstance(image, bytes):
                    rows.append((name, image))
                    continue
                reason = "null image" if image is None else f"{type(image).__name__} image, not bytes"
                if sum(skipped.values()) < MAX_ROW_WARNINGS:  # one line per row, up to a cap; the count follows
                    logger.warning("ParquetSource: skipping row %d (%s) of %s: %s", i, name, file, reason)
                skipped[reason] += 1
        if skipped:
            logger.warning("ParquetSource: skipped %d rows: %s", sum(skipped.values()), dict(skipped))
        if not rows:
            raise FileNotFoundError(f"no usable rows in Parquet source {self.path} (skipped: {dict(skipped)})")
        if self.name_column:
            rows.sort(key=lambda row: row[0])
        samples = tuple(Sample(sample_id=i, name=n, hq=data) for i, (n, data) in enumerate(rows))
        logger.info("ParquetSource: %d images from %d file(s) under %s", len(samples), len(files), self.path)
        return Manifest(samples=samples, num_skipped=dict(skipped))

    def _read(self, file: Path) -> tuple[list, list[str]]:
        """(image cells, row names) of one file; a missing column or a non-binary image column is a ValueError."""
        try:
            schema = pq.read_schema(file)
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(f"{file}: not a readable Parquet file ({error})") from error
        for column in (self.image_column, self.name_column):
            if column is not None and column not in schema.names:
                raise ValueError(f"{file}: no column {column!r} (columns: {schema.names}); set image_column/"
                                 "name_column")
        kind = schema.field(self.image_column).type
        if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
            raise ValueError(f"{file}: column {self.image_column!r} holds {kind}, not encoded image bytes (binary)")
        table = pq.read_table(file, columns=[self.image_column] + ([self.name_column] if self.name_column else []))
        images = table.column(self.image_column).to_pylist()
        if self.name_column:
            names = [str(n) for n in table.column(self.name_column).to_pylist()]
        else:
            names = [f"{file.stem}/{i:08d}" for i in range(len(images))]
        return images, names


def _expand(entry: str) -> list[Path]:
    path = Path(entry).expanduser()
    if path.is_dir():
        return [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if path.is_file():
        return [path]
    matches = [Path(p) for p in glob.glob(str(path), recursive=True)]
    if not matches:
        raise FileNotFoundError(f"{entry!r} is neither a folder, a file nor a glob that matches anything")
    return [p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def _unique_names(files: list[str]) -> list[str]:
    """File stems, made unique with their parent folders when two files share a stem."""
    stems = [Path(f).stem for f in files]
    if len(set(stems)) == len(stems):
        return stems
    return files


def _by_stem(folder: str) -> dict[str, str]:
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{folder!r} is not a folder")
    by_stem: dict[str, str] = {}
    for path in sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        if path.stem in by_stem:
            raise ValueError(f"two images share the stem {path.stem!r} in {folder}: {by_stem[path.stem]}, {path}")
        by_stem[path.stem] = str(path)
    return by_stem
