import collections
import dataclasses
import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from degradations import BicubicConfig, GaussianNoiseConfig, MaskConfig, RealESRGANConfig
from degradations.crop import ImageTooSmall
from pipelines.data import (
    DataConfig,
    DataError,
    PairMaker,
    build_val_set,
    epoch_order,
    locate,
    make_pair,
    make_pair_or_skip,
)
from pipelines.decode import DecodeError
from pipelines.sources import FolderSource, PairedFolderSource, Sample

ROWS = ("hq", "lq", "sample_id", "epoch", "index")


def _smooth_rgb(h, w, seed):
    """A smooth colour image (a random low-resolution image, upsampled), as uint8."""
    small = np.random.default_rng(seed).integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def _png(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _folder(tmp_path, sizes, bad=()):
    """PNGs img_00.png.. of the given (h, w) sizes plus the named bad files (name -> bytes)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        (tmp_path / f"img_{i:02d}.png").write_bytes(_png(_smooth_rgb(h, w, i)))
    for name, data in dict(bad).items():
        (tmp_path / name).write_bytes(data)
    return FolderSource(paths=(str(tmp_path),))


def _config(source, **overrides):
    """A DataConfig over `source` that trains on all of it (val_images=0) unless the test holds images out."""
    fields = {"source": source, "degradation": RealESRGANConfig(), "patch_size": 32, "crop_margin": 8,
              "hflip": True, "rot": True, "num_cpu_workers": 1, "rows_per_task": 4, "val_images": 0}
    return DataConfig(**(fields | overrides))


BAD_FILES = {
    "bad_corrupt.png": _png(_smooth_rgb(16, 16, 0))[:30] + b"\x00" * 200,
    "bad_empty.png": b"",
    "bad_text.jpg": b"not an image at all\n",
    "bad_truncated.jpg": b"\xff\xd8\xff\xe0" + b"\x00" * 50,
}


def test_data_config_rejects_bad_values(tmp_path):
    source = FolderSource(paths=(str(tmp_path),))
    paired = PairedFolderSource(lq_dir=str(tmp_path), gt_dir=str(tmp_path))
    with pytest.raises(ValueError, match="degradation"):
        DataConfig(source=paired)  # a paired source takes no synthetic degradation
    with pytest.raises(ValueError, match="degradation"):
        DataConfig(source=source, degradation=None)
    with pytest.raises(ValueError, match="patch_size"):
        DataConfig(source=source, patch_size=30)  # not a multiple of 4
    with pytest.raises(ValueError, match="crop_margin"):
        DataConfig(source=source, crop_margin=6)
    with pytest.raises(ValueError, match="small"):
        DataConfig(source=source, small="crop")
    with pytest.raises(ValueError, match="seed"):
        DataConfig(source=source, seed=-1)
    assert DataConfig(source=paired, degradation=None, patch_size=30).scale == 1


def test_locate_visits_every_image_once_per_epoch_in_a_seeded_order():
    epoch, sample_id = locate(np.arange(30), num_images=10, seed=3)
    assert epoch.tolist() == [0] * 10 + [1] * 10 + [2] * 10
    for e in range(3):
        assert sorted(sample_id[epoch == e]) == list(range(10))
    assert sample_id[:10].tolist() != sample_id[10:20].tolist()
    np.testing.assert_array_equal(locate(np.arange(30), num_images=10, seed=3)[1], sample_id)
    assert locate(np.arange(10), num_images=10, seed=4)[1].tolist() != sample_id[:10].tolist()
    np.testing.assert_array_equal(locate(np.arange(13, 27), num_images=10, seed=3)[1], sample_id[13:27])
    assert not epoch_order(3, 0, 10).flags.writeable


@pytest.mark.parametrize(
    "degradation", [RealESRGANConfig(scale=4), RealESRGANConfig(scale=2), RealESRGANConfig(scale=1),
                    BicubicConfig(scale=2), GaussianNoiseConfig()],
    ids=["realesrgan-x4", "realesrgan-x2", "realesrgan-x1", "bicubic-x2", "noise"],
)
def test_make_pair_shapes_dtypes_and_determinism(tmp_path, degradation):
    config = _config(_folder(tmp_path, [(70, 90)]), degradation=degradation)
    sample = config.source.manifest().samples[0]
    hq, lq = make_pair(sample, epoch=0, config=config)
    q = 32 // degradation.scale
    assert hq.shape == (32, 32, 3) and hq.dtype == np.uint8
    assert lq.shape == (q, q, 3) and lq.dtype == np.uint8
    again = make_pair(sample, epoch=0, config=config)
    assert hq.tobytes() == again[0].tobytes() and lq.tobytes() == again[1].tobytes()
    other = make_pair(sample, epoch=1, config=config)
    assert hq.tobytes() != other[0].tobytes()


def test_inpainting_pairs_carry_the_hole_mask_through_crops_flips_and_validation(tmp_path):
    holes = MaskConfig(fill=0.0, hole_channel=True)
    config = _config(_folder(tmp_path, [(70, 90), (64, 64)]), degradation=holes, crop_margin=0, val_images=1)
    assert config.lq_channels == 4 and _config(config.source).lq_channels == 3
    rows = _run_udf(dataclasses.replace(config, val_images=0), start_index=0, ids=np.arange(8))
    for hq, lq in zip(rows["hq"], rows["lq"]):
        hole = lq[..., 3] == 255
        assert lq.shape == (32, 32, 4) and set(np.unique(lq[..., 3])) <= {0, 255}
        assert np.all(lq[hole, :3] == 0) and np.array_equal(lq[~hole, :3], hq[~hole])  # after flips and rot90
    assert any(lq[..., 3].any() for lq in rows["lq"])
    maker = PairMaker(config=config, manifest=config.source.manifest(), start_index=0)
    assert maker({"id": np.zeros(0, np.int64)})["lq"].shape == (0, 32, 32, 4)
    hqs, lqs, _ = build_val_set(config, 1)
    assert lqs[0].shape == (*hqs[0].shape[:2], 4)


def test_make_pair_lq_is_aligned_with_hq(tmp_path):
    # Bicubic x4 of a smooth image: the lq must match the block mean of its own hq patch.
    config = _config(_folder(tmp_path, [(96, 120)]), degradation=BicubicConfig(scale=4))
    sample = config.source.manifest().samples[0]
    for epoch in range(6):
        hq, lq = make_pair(sample, epoch=epoch, config=config)
        block_mean = hq.reshape(8, 4, 8, 4, 3).astype(np.float32).mean(axis=(1, 3))
        assert np.abs(block_mean - lq).mean() < 3.0
        shifted = np.roll(block_mean, 1, axis=1)
        assert np.abs(shifted - lq).mean() > np.abs(block_mean - lq).mean()


def test_usm_gt_sharpens_the_hq_target(tmp_path):
    source = _folder(tmp_path, [(70, 90)])
    sample = source.manifest().samples[0]
    plain = make_pair(sample, epoch=0, config=_config(source, degradation=RealESRGANConfig(usm_gt=False)))[0]
    sharp = make_pair(sample, epoch=0, config=_config(source, degradation=RealESRGANConfig(usm_gt=True)))[0]
    assert plain.shape == sharp.shape and np.abs(plain.astype(int) - sharp).max() > 0


def test_bad_files_are_skipped_counted_and_warned_about_once(tmp_path, caplog):
    config = _config(_folder(tmp_path, [(48, 48)], bad=BAD_FILES))
    samples = config.source.manifest().samples
    counter, warned = collections.Counter(), set()
    with caplog.at_level(logging.WARNING, logger="pipelines.data"):
        for epoch in range(2):
            results = {s.name: make_pair_or_skip(s, epoch=epoch, config=config, counter=counter, warned=warned)
                       for s in samples}
            assert results["img_00"] is not None
            assert [n for n, r in results.items() if r is None] == sorted(n.split(".")[0] for n in BAD_FILES)
    assert counter == {"DecodeError": 8}
    assert len([r for r in caplog.records if "skipping sample" in r.message]) == 4


def test_image_larger_than_max_pixels_is_skipped(tmp_path):
    config = _config(_folder(tmp_path, [(60, 60)]), max_image_pixels=59 * 60)
    counter = collections.Counter()
    assert make_pair_or_skip(config.source.manifest().samples[0], epoch=0, config=config, counter=counter,
                             warned=set()) is None
    assert counter == {"ImageTooLarge": 1}


def test_small_images_are_padded_or_skipped(tmp_path):
    source = _folder(tmp_path, [(20, 30)])
    sample = source.manifest().samples[0]
    hq, lq = make_pair(sample, epoch=0, config=_config(source, small="pad"))
    assert hq.shape == (32, 32, 3) and lq.shape == (8, 8, 3)
    counter = collections.Counter()
    assert make_pair_or_skip(sample, epoch=0, config=_config(source, small="skip"), counter=counter,
                             warned=set()) is None
    assert counter == {"ImageTooSmall": 1}


def _paired_folders(tmp_path, gt_sizes, scale):
    """GT images and LQ = exact block means of the GT (so alignment is checkable), plus one unpaired GT."""
    for i, (h, w) in enumerate(gt_sizes):
        gt = _smooth_rgb(h, w, i)
        lq = gt.reshape(h // scale, scale, w // scale, scale, 3).astype(np.float32).mean(axis=(1, 3))
        (tmp_path / "gt").mkdir(exist_ok=True)
        (tmp_path / "lq").mkdir(exist_ok=True)
        (tmp_path / "gt" / f"{i:04d}.png").write_bytes(_png(gt))
        (tmp_path / "lq" / f"{i:04d}.png").write_bytes(_png(np.rint(lq).astype(np.uint8)))
    (tmp_path / "gt" / "lonely.png").write_bytes(_png(_smooth_rgb(8, 8, 9)))
    return PairedFolderSource(lq_dir=str(tmp_path / "lq"), gt_dir=str(tmp_path / "gt"), scale=scale)


def test_paired_folders_give_aligned_crops_of_the_given_lq(tmp_path):
    source = _paired_folders(tmp_path, [(64, 80), (48, 56)], scale=2)
    config = _config(source, degradation=None, patch_size=32)
    manifest = source.manifest()
    assert len(manifest) == 2 and manifest.num_unpaired == 1
    for sample in manifest.samples:
        for epoch in range(3):
            hq, lq = make_pair(sample, epoch=epoch, config=config)
            assert hq.shape == (32, 32, 3) and lq.shape == (16, 16, 3)
            block_mean = hq.reshape(16, 2, 16, 2, 3).astype(np.float32).mean(axis=(1, 3))
            assert np.abs(block_mean - lq).max() <= 1.0


def test_paired_small_images_are_padded_or_skipped_and_size_mismatch_is_skipped(tmp_path):
    source = _paired_folders(tmp_path, [(20, 24)], scale=2)
    sample = source.manifest().samples[0]
    hq, lq = make_pair(sample, epoch=0, config=_config(source, degradation=None, small="pad"))
    assert hq.shape == (32, 32, 3) and lq.shape == (16, 16, 3)
    with pytest.raises(ImageTooSmall):
        make_pair(sample, epoch=0, config=_config(source, degradation=None, small="skip"))
    wrong_scale = dataclasses.replace(source, scale=4)
    counter = collections.Counter()
    assert make_pair_or_skip(sample, epoch=0, config=_config(wrong_scale, degradation=None), counter=counter,
                             warned=set()) is None
    assert counter == {"PairSizeMismatch": 1}


def _run_udf(config, *, start_index, ids):
    maker = PairMaker(config=config, manifest=config.source.manifest(), start_index=start_index)
    out = [maker({"id": np.asarray(chunk, np.int64)}) for chunk in np.array_split(ids, max(1, len(ids) // 4))]
    return {key: np.concatenate([o[key] for o in out]) for key in ROWS}


def test_pair_maker_replaces_bad_samples_without_changing_the_others(tmp_path):
    config = _config(_folder(tmp_path, [(48, 48), (40, 56), (64, 40)], bad=BAD_FILES))
    manifest = config.source.manifest()
    rows = _run_udf(config, start_index=0, ids=np.arange(2 * len(manifest)))
    good = {s.sample_id for s in manifest.samples if s.name.startswith("img")}
    assert rows["index"].tolist() == list(range(2 * len(manifest))) and set(rows["sample_id"].tolist()) <= good
    _, own_ids = locate(rows["index"], num_images=len(manifest), seed=config.seed)
    for hq, lq, sid, own, epoch, index in zip(rows["hq"], rows["lq"], rows["sample_id"], own_ids, rows["epoch"],
                                               rows["index"]):
        stand_in_for = None if sid == own else int(index)  # a good sample's pair is what it always was
        expected = make_pair(manifest.samples[sid], epoch=int(epoch), config=config, stand_in_for=stand_in_for)
        assert hq.tobytes() == expected[0].tobytes() and lq.tobytes() == expected[1].tobytes()


def test_pair_maker_raises_a_data_error_when_everything_is_bad(tmp_path):
    config = _config(_folder(tmp_path, [], bad=BAD_FILES))
    with pytest.raises(DataError, match="none of the .* training images can be used"):
        _run_udf(config, start_index=0, ids=np.arange(4))


def test_start_index_continues_the_stream_exactly(tmp_path):
    config = _config(_folder(tmp_path, [(48, 48), (40, 56), (64, 40)]))
    full = _run_udf(config, start_index=0, ids=np.arange(12))
    tail = _run_udf(config, start_index=5, ids=np.arange(7))
    for key in ROWS:
        np.testing.assert_array_equal(tail[key], full[key][5:])
    np.testing.assert_array_equal(full["index"], np.arange(12))


def test_val_set_is_deterministic_and_independent_of_the_run_seed(tmp_path):
    val = _folder(tmp_path / "val", [(48, 48), (40, 56), (20, 20)], bad={"a_bad.png": b""})
    train = _folder(tmp_path / "train", [(48, 48)])
    hqs, lqs, keys = build_val_set(_config(train, val_source=val, seed=1), 3)
    assert len(hqs) == 3 and all(h.shape == (32, 32, 3) and h.dtype == np.uint8 for h in hqs)
    assert all(q.shape == (8, 8, 3) for q in lqs)
    assert keys == ["img_00", "img_01", "img_02"]  # the file stems; the bad file has no pair and no key
    hqs2, lqs2, _ = build_val_set(_config(train, val_source=val, seed=2), 3)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(hqs + lqs, hqs2 + lqs2))
    big, _, _ = build_val_set(_config(train, val_source=val, val_patch_size=40), 1)
    assert big[0].shape == (40, 40, 3)
    skipped, _, skipped_keys = build_val_set(_config(train, val_source=val, small="skip"), 3)
    assert len(skipped) == len(skipped_keys) == 2  # the 20x20 image is skipped, the empty file too, and the source runs out


def test_decode_error_is_the_skip_reason_for_missing_files(tmp_path):
    config = _config(_folder(tmp_path, [(48, 48)]))
    ghost = Sample(sample_id=0, name="ghost", hq=str(tmp_path / "ghost.png"))
    with pytest.raises(DecodeError):
        make_pair(ghost, epoch=0, config=config)


def _collect(ds):
    batches = list(ds.iter_batches(batch_size=5, batch_format="numpy"))
    return {key: np.concatenate([b[key] for b in batches]) for key in ROWS}


@pytest.mark.slow
def test_ray_dataset_end_to_end_with_iter_torch_batches_replaces_bad_files(tmp_path, ray_local):
    import torch

    from pipelines.batching import to_model
    from pipelines.data import build_train_dataset

    config = _config(_folder(tmp_path, [(48, 48), (40, 56), (64, 40)], bad=BAD_FILES), num_cpu_workers=2)
    manifest = config.source.manifest()
    ds = build_train_dataset(config, num_samples=2 * len(manifest))
    seen = collections.defaultdict(list)
    for batch in ds.iter_torch_batches(batch_size=4, drop_last=False):
        assert batch["hq"].dtype == torch.uint8 and batch["hq"].shape[1:] == (32, 32, 3)
        assert batch["lq"].dtype == torch.uint8 and batch["lq"].shape[1:] == (8, 8, 3)
        hq_BCHW, lq_BCHW = to_model(batch["hq"]), to_model(batch["lq"])
        assert hq_BCHW.shape[1:] == (3, 32, 32) and lq_BCHW.shape[1:] == (3, 8, 8)
        assert hq_BCHW.min() >= -1 and hq_BCHW.max() <= 1
        for key in ("sample_id", "epoch", "index"):
            assert batch[key].dtype == torch.int64
            seen[key] += batch[key].tolist()
    # 7 images x 2 epochs: one row per position, the 4 bad files' places taken by good images.
    assert seen["index"] == list(range(2 * len(manifest)))
    assert {manifest.samples[i].name for i in seen["sample_id"]} == {"img_00", "img_01", "img_02"}
    expected = _run_udf(config, start_index=0, ids=np.arange(2 * len(manifest)))
    assert seen["index"] == expected["index"].tolist()


@pytest.mark.slow
def test_ray_stream_is_identical_for_1_and_2_workers_and_resumes_from_start_index(tmp_path, ray_local):
    """With bad files in the folder too: their places are taken by the same stand-ins whatever the workers."""
    from pipelines.data import build_train_dataset

    config = _config(_folder(tmp_path, [(48, 48), (40, 56), (64, 40), (56, 56)], bad=BAD_FILES), rows_per_task=2)
    one = _collect(build_train_dataset(config, num_samples=12))
    two = _collect(build_train_dataset(dataclasses.replace(config, num_cpu_workers=2), num_samples=12))
    tail = _collect(build_train_dataset(dataclasses.replace(config, num_cpu_workers=2), num_samples=7, start_index=5))
    np.testing.assert_array_equal(one["index"], np.arange(12))
    for key in ROWS:
        assert one[key].tobytes() == two[key].tobytes(), key
        assert tail[key].tobytes() == one[key][5:].tobytes(), key
    pure = _run_udf(config, start_index=0, ids=np.arange(12))
    assert pure["hq"].tobytes() == one["hq"].tobytes() and pure["lq"].tobytes() == one["lq"].tobytes()


def test_decode_cache_does_not_change_pairs(tmp_path):
    from pipelines.decode import DecodeCache

    config = _config(_folder(tmp_path, [(48, 48), (40, 56)]))
    cache = DecodeCache(2**20)
    for sample in config.source.manifest().samples:
        for epoch in range(2):
            cached = make_pair(sample, epoch=epoch, config=config, cache=cache)
            plain = make_pair(sample, epoch=epoch, config=config)
            assert cached[0].tobytes() == plain[0].tobytes() and cached[1].tobytes() == plain[1].tobytes()
    assert len(cache.images) == 2


def test_held_out_images_never_reach_the_training_stream(tmp_path):
    from pipelines.data import train_manifest, val_manifest

    config = _config(_folder(tmp_path, [(48, 48)] * 6), val_images=2)
    train, val = train_manifest(config), val_manifest(config)
    assert len(train) == 4 and len(val) == 2
    assert {s.key for s in train.samples}.isdisjoint(s.key for s in val.samples)
    assert [s.sample_id for s in train.samples] == [0, 1, 2, 3]
    # The held-out files are made unreadable: a stream that read one would count a DecodeError.
    for sample in val.samples:
        Path(sample.hq).write_bytes(b"")
    maker = PairMaker(config=config, manifest=train, start_index=0)
    rows = maker({"id": np.arange(3 * len(train))})
    assert len(rows["index"]) == 12 and not maker.num_skipped
    assert {train.samples[i].key for i in rows["sample_id"]} == {s.key for s in train.samples}
    assert len(build_val_set(config, 2)[0]) == 0  # the validation set reads exactly those files
