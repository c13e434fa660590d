"""The Ray Data graph for training pairs: index stream -> (epoch, sample_id) -> read + decode -> crop ->
degrade (Real-ESRGAN, arXiv 2107.10833, or a simpler task degradation) -> aligned crop + flips -> uint8 rows.

Every random choice of a pair comes from np.random.default_rng([seed, epoch, sample_id]), so the stream
is the same whatever the number of CPU workers, and `start_index` resumes it exactly.
"""

import collections
import dataclasses
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

if TYPE_CHECKING:
    import ray.data

from degradations import (
    BicubicConfig,
    GaussianNoiseConfig,
    MaskConfig,
    MotionBlurConfig,
    RealESRGANConfig,
    degrade,
)
from degradations.crop import ImageTooSmall, augment_pair, pad_to_crop, paired_crop, random_crop
from degradations.sharpen import usm_sharpen
from pipelines.cli import UserError, describe
from pipelines.decode import DecodeCache, DecodeError, decode_image
from pipelines.samples import SampleImages
from pipelines.sources import (
    FolderSource,
    Manifest,
    PairedFolderSource,
    ParquetSource,
    Sample,
    holdout_split,
)

logger = logging.getLogger(__name__)

Source = FolderSource | PairedFolderSource | ParquetSource | SampleImages
Degradation = RealESRGANConfig | MotionBlurConfig | GaussianNoiseConfig | BicubicConfig | MaskConfig

VAL_SEED = 0  # validation pairs do not depend on the run's seed, so runs with different seeds compare


class PairSizeMismatch(Exception):
    """A paired LQ image whose size is not the GT size // scale."""


class DataError(UserError):
    """The data cannot feed a run: a missing folder, no images, an unreadable schema, or no sample that decodes."""


# Why a sample is skipped; each is counted under its class name (ImageTooLarge is a DecodeError).
SKIPPED = (DecodeError, ImageTooSmall, PairSizeMismatch)
READ_TASK_CPUS = 0.1  # Ray Data's read tasks of the stream positions (0, 1, ...), which feed the pair makers


@dataclass(frozen=True, kw_only=True, slots=True)
class DataConfig:
    """Where the images come from, how pairs are made and how many CPU workers make them.

    degradation: the synthetic degradation (its .scale is the SR factor); must be None for a
        PairedFolderSource, whose LQ images are used as they are (the scale is the source's).
    crop_margin: extra HQ pixels around the patch that are degraded too, so blur kernels, resizes
        and JPEG blocks do not see the patch border (traiNNer-redux uses gt_size + 32).
    small: images smaller than the crop are reflect-padded ("pad") or skipped and counted ("skip").
    val_images: images of `source` held out for validation, chosen by the SHA-256 of their keys
        (`holdout_split`); training never reads them. Ignored when `val_source` is given: validation then
        reads that source and training reads all of `source`.
    val_patch_size: side of the centred validation crop (None: patch_size); larger shows more of a photo.
    """

    source: Source = field(default_factory=SampleImages)
    val_images: int = 2
    val_source: Source | None = None
    val_patch_size: int | None = None
    degradation: Degradation | None = field(default_factory=RealESRGANConfig)
    patch_size: int = 256
    crop_margin: int = 32
    small: Literal["pad", "skip"] = "pad"
    hflip: bool = True
    rot: bool = False  # Real-ESRGAN trains with hflip only
    seed: int = 0
    num_cpu_workers: int = 2
    cpus_per_worker: float = 1.0
    rows_per_task: int = 16  # Ray Data rows per map_batches call of a degradation actor (not the training batch)
    max_image_pixels: int = 100_000_000
    decode_cache_mb: int = 256  # per worker; decoded images kept for later epochs (0: off)
    # Node labels the degradation actors must run on, e.g. {"ray-subcluster": "data"} (cluster/README.md).
    label_selector: dict[str, str] | None = None

    def __post_init__(self) -> None:
        paired = isinstance(self.source, PairedFolderSource)
        if paired != (self.degradation is None):
            raise ValueError(
                f"degradation={type(self.degradation).__name__}: must be None for a PairedFolderSource "
                "and a degradation config (RealESRGANConfig, MotionBlurConfig, ...) for any other source"
            )
        if self.small not in ("pad", "skip"):
            raise ValueError(f"small={self.small!r}: must be one of ('pad', 'skip')")
        if self.patch_size <= 0 or self.patch_size % self.scale:
            raise ValueError(f"patch_size={self.patch_size}: must be a positive multiple of scale={self.scale}")
        if self.crop_margin < 0 or self.crop_margin % self.scale:
            raise ValueError(f"crop_margin={self.crop_margin}: must be a non-negative multiple of scale={self.scale}")
        if self.val_images < 0:
            raise ValueError(f"val_images={self.val_images}: must be >= 0")
        if self.val_patch_size is not None and (self.val_patch_size <= 0 or self.val_patch_size % self.scale):
            raise ValueError(f"val_patch_size={self.val_patch_size}: must be a positive multiple of scale={self.scale}")
        if self.val_source is not None and isinstance(self.val_source, PairedFolderSource) != (self.degradation is None):
            raise ValueError("val_source must be a PairedFolderSource exactly when source is one")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed={self.seed}: must be in [0, 2**32)")
        if self.decode_cache_mb < 0:
            raise ValueError(f"decode_cache_mb={self.decode_cache_mb}: must be >= 0")
        for name in ("num_cpu_workers", "rows_per_task", "max_image_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.cpus_per_worker <= 0:
            raise ValueError(f"cpus_per_worker={self.cpus_per_worker}: must be > 0")

    @property
    def scale(self) -> int:
        return self.source.scale if self.degradation is None else self.degradation.scale

    @property
    def lq_channels(self) -> int:
        """3, or 4 for inpainting masks with a hole channel (the lq then tells the net where its holes are)."""
        return 4 if isinstance(self.degradation, MaskConfig) and self.degradation.hole_channel else 3

    @property
    def has_validation(self) -> bool:
        return self.val_source is not None or self.val_images > 0


def train_manifest(config: DataConfig) -> Manifest:
    """The samples training may read: the source less its held-out images (all of it with a val_source)."""
    manifest = config.source.manifest()
    if config.val_source is not None:
        return manifest
    return holdout_split(manifest, config.val_images)[0]


def val_manifest(config: DataConfig) -> Manifest:
    """The validation samples: the held-out images of the source, or the whole val_source."""
    if config.val_source is not None:
        return config.val_source.manifest()
    return holdout_split(config.source.manifest(), config.val_images)[1]


@functools.lru_cache(maxsize=4)
def epoch_order(seed: int, epoch: int, num_images: int) -> np.ndarray:
    """The seeded order in which one epoch visits the sample ids 0..num_images-1."""
    # Four words, so the key never equals a per-sample key [seed, epoch, sample_id] (SeedSequence
    # zero-pads keys to four words; [s, e, i] is [s, e, i, 0]).
    order = np.random.default_rng([seed, epoch, 0, 1]).permutation(num_images)
    order.flags.writeable = False
    return order


def locate(index: np.ndarray, *, num_images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stream positions -> (epoch, sample_id), both int64: epoch i // N visits every image once."""
    index = np.asarray(index, dtype=np.int64)
    epoch = index // num_images
    sample_id = np.empty_like(index)
    for e in np.unique(epoch):
        rows = epoch == e
        sample_id[rows] = epoch_order(seed, int(e), num_images)[index[rows] % num_images]
    return epoch, sample_id


def make_pair(
    sample: Sample, *, epoch: int, config: DataConfig, cache: DecodeCache | None = None, stand_in_for: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One training pair from (seed, epoch, sample_id) alone: hq PxPx3 and lq (P/s)x(P/s)xC, uint8 (C = lq_channels).

    stand_in_for: the stream position whose own sample was skipped; the pair then gets draws of its own
    (five words, so never a sample's own key), not a copy of this sample's pair in the same epoch.
    Raises DecodeError (ImageTooLarge included), ImageTooSmall (small="skip") or PairSizeMismatch for
    a sample that must be skipped.
    """
    key = [config.seed, epoch, sample.sample_id] + ([] if stand_in_for is None else [stand_in_for, 3])
    rng = np.random.default_rng(key)
    hq, lq = _load(sample, config, cache)
    if lq is None:
        hq, lq = _synthesise(hq, config, rng, crop=random_crop)
    else:
        hq, lq = _fit_pair(hq, lq, config)
    hq, lq = paired_crop(hq, lq, config.patch_size, config.scale, rng)
    hq, lq = augment_pair(hq, lq, rng, hflip=config.hflip, rot=config.rot)
    return _to_uint8(hq), _to_uint8(lq)


def _load(sample: Sample, config: DataConfig, cache: DecodeCache | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The decoded hq and (paired sources only) lq of a sample."""
    images = []
    for key, src in (("hq", sample.hq), ("lq", sample.lq)):
        if src is None:
            images.append(None)
        elif cache is None:
            images.append(decode_image(src, max_pixels=config.max_image_pixels))
        else:
            images.append(cache.decode((sample.sample_id, key), src, max_pixels=config.max_image_pixels))
    return images[0], images[1]


def _synthesise(
    hq: np.ndarray, config: DataConfig, rng: np.random.Generator, *, crop: Callable[..., np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Crop P + margin (on the LQ grid), then degrade only that crop."""
    hq = crop(hq, config.patch_size + config.crop_margin, rng, multiple_of=config.scale, small=config.small)
    lq, _ = degrade(hq, config.degradation, rng)
    if isinstance(config.degradation, RealESRGANConfig) and config.degradation.usm_gt:
        hq = usm_sharpen(hq)  # the LQ came from the sharpened HQ; it is also the target (Real-ESRNet gt_usm)
    return hq, lq


def _fit_pair(hq: np.ndarray, lq: np.ndarray, config: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Check a decoded LQ/GT pair's sizes and pad both when the GT is smaller than the patch."""
    s, p = config.scale, config.patch_size
    (lh, lw) = lq.shape[:2]
    if (hq.shape[0] // s, hq.shape[1] // s) != (lh, lw):
        raise PairSizeMismatch(f"lq {lh}x{lw} is not gt {hq.shape[0]}x{hq.shape[1]} // {s}")
    if config.small == "skip" or min(lh, lw) * s >= p:
        return hq, lq  # paired_crop raises ImageTooSmall for small pairs
    pad_h, pad_w = max(0, p - lh * s), max(0, p - lw * s)  # multiples of s, as p is
    hq = cv2.copyMakeBorder(hq[: lh * s, : lw * s], 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT_101)
    lq = cv2.copyMakeBorder(lq, 0, pad_h // s, 0, pad_w // s, cv2.BORDER_REFLECT_101)
    return hq, lq


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


class PairMaker:
    """Ray Data class UDF: a batch of stream positions {"id"} -> a batch of training pairs."""

    def __init__(self, *, config: DataConfig, manifest: Manifest, start_index: int) -> None:
        # One OpenCV thread per logical CPU the actor books; more would oversubscribe the node.
        cv2.setNumThreads(max(1, int(config.cpus_per_worker)))
        self.config, self.samples, self.start_index = config, manifest.samples, start_index
        self.num_skipped: collections.Counter[str] = collections.Counter()
        self.warned: set[int] = set()
        self.bad: set[int] = set()  # sample ids known to be skipped (a skip depends on the file alone)
        self.cache = DecodeCache(config.decode_cache_mb * 2**20)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        index = batch["id"].astype(np.int64) + self.start_index
        epoch, sample_id = locate(index, num_images=len(self.samples), seed=self.config.seed)
        rows = collections.defaultdict(list)
        for i, e, s in zip(index, epoch, sample_id):
            hq, lq, used = self.pair_at(int(i), epoch=int(e), sample_id=int(s))
            for key, value in zip(("hq", "lq", "sample_id", "epoch", "index"), (hq, lq, used, e, i)):
                rows[key].append(value)
        p, q = self.config.patch_size, self.config.patch_size // self.config.scale
        empty = {"hq": np.zeros((0, p, p, 3), np.uint8), "lq": np.zeros((0, q, q, self.config.lq_channels), np.uint8)}
        return {
            key: np.stack(rows[key]) if rows[key] else empty.get(key, np.zeros(0, np.int64))
            for key in ("hq", "lq", "sample_id", "epoch", "index")
        }


    def pair_at(self, index: int, *, epoch: int, sample_id: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(hq, lq, sample id used) for a stream position: a skipped sample's place is taken by the next usable
        sample of the epoch's order, so every position yields a row and the stream never runs dry."""
        num_images = len(self.samples)
        order = epoch_order(self.config.seed, epoch, num_images)
        position = index % num_images
        for attempt in range(num_images):
            candidate = sample_id if attempt == 0 else int(order[(position + attempt) % num_images])
            if candidate in self.bad:
                continue
            pair = make_pair_or_skip(self.samples[candidate], epoch=epoch, config=self.config,
                                     counter=self.num_skipped, warned=self.warned, cache=self.cache,
                                     stand_in_for=None if attempt == 0 else index)
            if pair is not None:
                return (*pair, candidate)
            self.bad.add(candidate)
        raise DataError(f"none of the {num_images} training images can be used: skipped {dict(self.num_skipped)}")


def make_pair_or_skip(
    sample: Sample,
    *,
    epoch: int,
    config: DataConfig,
    counter: collections.Counter,
    warned: set[int],
    cache: DecodeCache | None = None,
    stand_in_for: int | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """make_pair, or None for a bad sample: counted in `counter` by reason, warned about once per sample."""
    try:
        return make_pair(sample, epoch=epoch, config=config, cache=cache, stand_in_for=stand_in_for)
    except SKIPPED as e:
        counter[type(e).__name__] += 1
        if sample.sample_id not in warned:
            warned.add(sample.sample_id)
            logger.warning(
                "skipping sample %d (%s): %s: %s [skipped so far here: %s]",
                sample.sample_id, sample.name, type(e).__name__, e, dict(counter),
            )
        return None


def build_train_dataset(config: DataConfig, *, num_samples: int, start_index: int = 0) -> "ray.data.Dataset":
    """Rows {"hq": uint8 PxPx3, "lq": uint8 (P/s)x(P/s)xC (C = config.lq_channels), "sample_id", "epoch", "index": int64}.

    Stream positions start_index .. start_index + num_samples - 1, one row each: a bad sample's place is
    taken by the next usable one of its epoch (`PairMaker.pair_at`). Order is preserved, so consumers see the
    same rows in the same order with any worker count. Only the training manifest reaches the actors: no
    held-out image is ever read here.
    """
    import ray.data  # here, not at the top: the configs in this module are read by processes that never stream
    from ray.data._internal.datasource.range_datasource import RangeDatasource  # what ray.data.range reads

    manifest = train_manifest(config)
    # ray.data.range's read tasks book a whole CPU each for making integers; booked at 1 CPU they kept small
    # clusters from running two sweep trials at once. One at a time: at 0.1 CPU, Ray ran many at once, each in a
    # worker process of its own, and a 2-worker debug run took 8 s longer (34 s vs 26 s).
    positions = ray.data.read_datasource(RangeDatasource(n=num_samples, block_format="arrow", column_name="id"),
                                         num_cpus=READ_TASK_CPUS, concurrency=1)
    ds = positions.map_batches(
        PairMaker,
        fn_constructor_kwargs={"config": config, "manifest": manifest, "start_index": start_index},
        compute=ray.data.ActorPoolStrategy(size=config.num_cpu_workers),
        num_cpus=config.cpus_per_worker,
        label_selector=config.label_selector,
        batch_size=config.rows_per_task,
        batch_format="numpy",
    )
    ds.context.execution_options = execution_options(config)
    return ds


def check_data(config: DataConfig) -> None:
    """Raise DataError unless the sources list and at least one training (and validation) sample makes a pair.

    Run on the driver before Ray starts: a missing folder, a folder of broken files or a bad Parquet schema is
    one line, and no run is created for it.
    """
    try:
        train = train_manifest(config)
        val = val_manifest(config) if config.has_validation else None
    except (OSError, ValueError, KeyError) as error:  # pyarrow's errors are OSError/ValueError/KeyError subclasses
        raise DataError(f"data: {describe(error)}") from error
    _first_usable(train, config, what="training", make=lambda sample: make_pair(sample, epoch=0, config=config))
    if val is not None:
        val_config = (config if config.val_patch_size is None
                      else dataclasses.replace(config, patch_size=config.val_patch_size))
        _first_usable(val, config, what="validation", make=lambda sample: _val_pair(sample, val_config))


def _first_usable(manifest: Manifest, config: DataConfig, *, what: str, make: Callable[[Sample], object]) -> None:
    counter: collections.Counter[str] = collections.Counter()
    last = "no images"
    for sample in manifest.samples:
        try:
            make(sample)
            return
        except SKIPPED as error:
            counter[type(error).__name__] += 1
            last = f"{sample.name}: {error}"
    source = config.val_source if what == "validation" and config.val_source is not None else config.source
    raise DataError(f"none of the {len(manifest)} {what} images of {source} can be used (skipped: "
                    f"{', '.join(f'{k} {v}' for k, v in sorted(counter.items()))}; last: {last})")


def execution_options(config: DataConfig | None = None) -> "ray.data.ExecutionOptions":
    """Options for ray.train.DataConfig(execution_options=...): Train replaces the dataset's own."""
    import ray.data

    options = ray.data.ExecutionOptions()
    options.preserve_order = True
    if config is not None and config.label_selector:
        options.label_selector = dict(config.label_selector)
    return options


def build_val_set(config: DataConfig, num_images: int) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Deterministic validation pairs (uint8 hq PxPx3, lq (P/s)x(P/s)xC, image key), P = val_patch_size.

    Centre crops of the first `num_images` held-out images (`val_manifest`), never of a training image.
    Plain function, no Ray. Degradations use a fixed seed (VAL_SEED), not config.seed. Bad images are
    skipped (and counted in the log); fewer than num_images pairs come back if the held-out set runs out.
    """
    samples = val_manifest(config).samples
    if config.val_patch_size is not None:
        config = dataclasses.replace(config, patch_size=config.val_patch_size)
    counter, warned = collections.Counter(), set()
    hqs, lqs, keys = [], [], []
    for sample in samples:
        if len(hqs) == num_images:
            break
        pair = _val_pair_or_skip(sample, config, counter, warned)
        if pair is not None:
            hqs.append(pair[0])
            lqs.append(pair[1])
            keys.append(sample.key)
    logger.info("validation set: %d pairs from %d held-out images (%s), skipped %s", len(hqs), len(samples),
                ", ".join(keys), dict(counter))
    return hqs, lqs, keys


def _val_pair_or_skip(sample: Sample, config: DataConfig, counter: collections.Counter, warned: set[int]):
    try:
        return _val_pair(sample, config)
    except SKIPPED as e:
        counter[type(e).__name__] += 1
        warned.add(sample.sample_id)
        logger.warning("validation: skipping sample %d (%s): %s: %s", sample.sample_id, sample.name, type(e).__name__, e)
        return None


def _val_pair(sample: Sample, config: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    # Ends in 2: never equal to a training key ([seed, epoch, sample_id, 0] or [seed, epoch, 0, 1]).
    rng = np.random.default_rng([VAL_SEED, sample.sample_id, 0, 2])
    hq, lq = _load(sample, config, cache=None)
    if lq is None:
        hq, lq = _synthesise(hq, config, rng, crop=_centre_crop)
    else:
        hq, lq = _fit_pair(hq, lq, config)
    q = config.patch_size // config.scale
    top, left = (lq.shape[0] - q) // 2, (lq.shape[1] - q) // 2
    if top < 0 or left < 0:
        raise ImageTooSmall(f"lq {lq.shape[0]}x{lq.shape[1]} is smaller than the lq patch {q}")
    s = config.scale
    hq = hq[top * s : (top + q) * s, left * s : (left + q) * s]
    return _to_uint8(hq), _to_uint8(lq[top : top + q, left : left + q])


def _centre_crop(
    img: np.ndarray, size: int, rng: np.random.Generator, *, multiple_of: int, small: Literal["pad", "skip"]
) -> np.ndarray:
    """random_crop's signature, but the crop is centred (top/left on the LQ grid); rng is unused."""
    img = pad_to_crop(img, size, small=small)
    h, w = img.shape[:2]
    top = (h - size) // 2 // multiple_of * multiple_of
    left = (w - size) // 2 // multiple_of * multiple_of
    return np.ascontiguousarray(img[top : top + size, left : left + size])
