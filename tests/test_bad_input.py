"""Bad input through the real code paths: decode, the pair maker, sources, config overrides, checkpoints.

Each test pins the behaviour reported in cluster/BAD_INPUT.md (the README's bad-input table).
"""

import collections
import io
import logging
import pickle
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from degradations import BicubicConfig
from models.refusion import latent_refusion_tiny
from pipelines.checkpoints import load_state, write_checkpoint
from pipelines.data import (
    DataConfig,
    DataError,
    PairMaker,
    build_val_set,
    check_data,
    locate,
    make_pair_or_skip,
)
from pipelines.decode import DecodeError, ImageTooLarge, decode_image
from pipelines.recipes import apply_overrides, debug
from pipelines.restore import CheckpointMismatch, check_process_flags, load_model
from pipelines.sources import FolderSource, PairedFolderSource, ParquetSource

MAX_PIXELS = 100_000_000


def _photo(h: int = 96, w: int = 80) -> np.ndarray:
    """A smooth uint8 RGB test image (gradients, so JPEG round trips stay close)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([x / w, y / h, (x + y) / (h + w)], axis=-1).__mul__(255).astype(np.uint8)


def _png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", rgb[..., ::-1] if rgb.ndim == 3 and rgb.shape[2] == 3 else rgb)[1].tobytes()


def _jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", rgb[..., ::-1] if rgb.ndim == 3 else rgb, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def _png_header_only(width: int, height: int) -> bytes:
    """A 69-byte PNG whose IHDR claims width x height RGB pixels (a decompression-bomb shape)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


BROKEN = {
    "zero_byte.png": (b"", "empty file"),
    "truncated.png": (_png(_photo())[:2000], "truncated"),
    "truncated.jpg": (_jpeg(_photo())[:1000], "corrupt or truncated"),
    "corrupt.png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "not a readable image"),
    "text_named.jpg": (b"this is a text file, not a JPEG\n" * 20, "not a readable image"),
}


# --- decode -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_raise_decode_error_naming_the_problem(name, tmp_path):
    data, message = BROKEN[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DecodeError, match=message) as err:
        decode_image(str(path), max_pixels=MAX_PIXELS)
    assert str(path) in str(err.value)


def test_huge_header_is_refused_before_any_pixel_is_decoded():
    bomb = _png_header_only(20000, 20000)
    assert len(bomb) < 100
    with pytest.raises(ImageTooLarge, match="20000x20000 exceeds max_pixels"):
        decode_image(bomb, max_pixels=MAX_PIXELS)


def test_one_pixel_image_decodes():
    out = decode_image(_png(_photo(1, 1)), max_pixels=MAX_PIXELS)
    assert out.shape == (1, 1, 3) and out.dtype == np.float32


def test_grayscale_jpeg_becomes_three_equal_channels():
    out = decode_image(_jpeg(_photo()[..., 0]), max_pixels=MAX_PIXELS)
    assert out.shape == (96, 80, 3)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_rgba_png_is_composited_over_black():
    rgba = np.dstack([_photo(), np.zeros((96, 80), np.uint8)])
    rgba[:48, :, 3] = 255  # top half opaque, bottom half fully transparent
    out = decode_image(cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))[1].tobytes(), max_pixels=MAX_PIXELS)
    assert out.shape == (96, 80, 3)
    assert np.allclose(out[:48], _photo()[:48] / 255.0, atol=1e-6) and out[48:].max() == 0.0


def test_16_bit_png_keeps_its_precision():
    rgb16 = (_photo().astype(np.uint16) * 257) + 7  # values that 8 bits cannot hold
    out = decode_image(cv2.imencode(".png", rgb16[..., ::-1])[1].tobytes(), max_pixels=MAX_PIXELS)
    assert np.allclose(out, rgb16 / 65535.0, atol=1e-6)


def test_cmyk_jpeg_decodes_to_the_same_rgb_as_pil():
    buf = io.BytesIO()
    Image.fromarray(_photo()).convert("CMYK").save(buf, "JPEG", quality=95)
    out = decode_image(buf.getvalue(), max_pixels=MAX_PIXELS)
    reference = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), np.float32) / 255.0
    assert out.shape == (96, 80, 3) and np.abs(out - reference).mean() < 0.01


def test_float_rgb_tiff_that_pillow_cannot_open_is_decoded_by_opencv(tmp_path):
    rgb = np.random.default_rng(0).random((20, 30, 3), dtype=np.float32)
    cv2.imwrite(str(tmp_path / "float.tif"), rgb[..., ::-1])
    with pytest.raises(OSError):
        Image.open(tmp_path / "float.tif")
    np.testing.assert_allclose(decode_image(str(tmp_path / "float.tif"), max_pixels=MAX_PIXELS), rgb, atol=1e-6)


@pytest.mark.parametrize("dtype,peak,scale", [(np.float32, 1000.0, 1000.0), (np.int32, 200.0, 255.0),
                                              (np.int32, 4000.0, 65535.0), (np.int32, 70000.0, 70000.0)])
def test_float_and_wide_integer_tiffs_keep_their_real_range(tmp_path, dtype, peak, scale):
    gray = np.linspace(0, peak, 20 * 30).reshape(20, 30).astype(dtype)
    Image.fromarray(gray).save(tmp_path / "wide.tif")
    out = decode_image(str(tmp_path / "wide.tif"), max_pixels=MAX_PIXELS)
    np.testing.assert_allclose(out[..., 0], gray.astype(np.float32) / scale, rtol=1e-6)


def test_pixel_count_is_checked_on_the_decoded_image_too(tmp_path):
    cv2.imwrite(str(tmp_path / "float.tif"), np.zeros((60, 50, 3), np.float32))  # no header Pillow can read
    with pytest.raises(ImageTooLarge, match="50x60 exceeds max_pixels=1000"):
        decode_image(str(tmp_path / "float.tif"), max_pixels=1000)


# --- the pair maker and sources -------------------------------------------------------------------------


def _mixed_folder(root: Path) -> Path:
    """Two good photos, every broken file, a 1x1 image, a bomb header and a stray .txt file."""
    root.mkdir()
    (root / "good_a.png").write_bytes(_png(_photo()))
    (root / "good_b.jpg").write_bytes(_jpeg(_photo(120, 100)))
    for name, (data, _) in BROKEN.items():
        (root / name).write_bytes(data)
    (root / "tiny_1x1.png").write_bytes(_png(_photo(1, 1)))
    (root / "bomb.png").write_bytes(_png_header_only(20000, 20000))
    (root / "notes.txt").write_text("not listed: wrong suffix")
    return root


def _data_config(root: Path, **kw) -> DataConfig:
    """Trains on every file of `root` (no hold-out), so each bad file reaches the pair maker."""
    return DataConfig(source=FolderSource(paths=(str(root),)), degradation=BicubicConfig(scale=2), patch_size=32,
                      crop_margin=0, **({"val_images": 0} | kw))


@pytest.mark.parametrize("small,expected_pairs", [("pad", 3), ("skip", 2)])
def test_pair_maker_skips_bad_files_and_counts_them_by_reason(tmp_path, caplog, small, expected_pairs):
    config = _data_config(_mixed_folder(tmp_path / "mixed"), small=small)
    samples = config.source.manifest().samples
    assert len(samples) == 9  # notes.txt is not listed
    counter, warned = collections.Counter(), set()
    with caplog.at_level(logging.WARNING, logger="pipelines.data"):
        pairs = [make_pair_or_skip(s, epoch=0, config=config, counter=counter, warned=warned) for s in samples]
    made = [p for p in pairs if p is not None]
    assert len(made) == expected_pairs
    assert all(hq.shape == (32, 32, 3) and lq.shape == (16, 16, 3) for hq, lq in made)
    expected = {"DecodeError": 5, "ImageTooLarge": 1} | ({"ImageTooSmall": 1} if small == "skip" else {})
    assert dict(counter) == expected
    assert sum("skipping sample" in r.message for r in caplog.records) == sum(expected.values())


def test_validation_set_skips_bad_files(tmp_path):
    mixed = FolderSource(paths=(str(_mixed_folder(tmp_path / "mixed")),))
    hqs, lqs, _ = build_val_set(_data_config(tmp_path / "mixed", val_source=mixed), num_images=9)
    assert len(hqs) == len(lqs) == 3  # the two photos and the padded 1x1 image


def test_a_skipped_sample_is_replaced_by_the_next_usable_one_with_draws_of_its_own(tmp_path):
    config = _data_config(_mixed_folder(tmp_path / "mixed"))
    manifest = config.source.manifest()
    good = {s.sample_id for s in manifest.samples if Path(s.name).stem in ("good_a", "good_b", "tiny_1x1")}
    batch = PairMaker(config=config, manifest=manifest, start_index=0)({"id": np.arange(9)})  # one epoch
    assert list(batch["index"]) == list(range(9)) and set(batch["sample_id"]) <= good
    own = {s: hq for s, hq, i in zip(batch["sample_id"], batch["hq"], batch["index"])
           if locate(np.array([i]), num_images=9, seed=0)[1][0] == s}
    stand_ins = [(s, hq) for s, hq, i in zip(batch["sample_id"], batch["hq"], batch["index"])
                 if locate(np.array([i]), num_images=9, seed=0)[1][0] != s]
    assert len(own) == 3 and len(stand_ins) == 6
    photos = {s.sample_id for s in manifest.samples if Path(s.name).stem in ("good_a", "good_b")}
    # Not a copy of the photo's own pair (a padded 1x1 image looks the same whatever the draws).
    assert not any(np.array_equal(hq, own[s]) for s, hq in stand_ins if s in photos)
    again = PairMaker(config=config, manifest=manifest, start_index=4)({"id": np.arange(5)})  # a resumed stream
    assert np.array_equal(again["hq"], batch["hq"][4:]) and list(again["sample_id"]) == list(batch["sample_id"][4:])


def test_no_usable_sample_is_one_error_naming_the_folder_and_the_reasons(tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    for name, (data, _) in BROKEN.items():
        (root / name).write_bytes(data)
    with pytest.raises(DataError, match=r"none of the 5 training images of FolderSource.*broken.*DecodeError 5"):
        check_data(_data_config(root))


def test_parquet_rows_without_image_bytes_are_left_out_counted_and_named(tmp_path, caplog):
    images = [_png(_photo()), None, b"not an image", _png(_photo(40, 50))]
    pq.write_table(pa.table({"image": pa.array(images, pa.binary()), "name": ["a", "b", "c", "d"]}),
                   tmp_path / "rows.parquet")
    with caplog.at_level(logging.WARNING, logger="pipelines.sources"):
        manifest = ParquetSource(path=str(tmp_path / "rows.parquet")).manifest()
    assert [s.name for s in manifest.samples] == ["a", "c", "d"] and manifest.num_skipped == {"null image": 1}
    assert any("skipping row 1 (b)" in r.message and "null image" in r.message for r in caplog.records)
    config = DataConfig(source=ParquetSource(path=str(tmp_path / "rows.parquet")), degradation=BicubicConfig(scale=2),
                        patch_size=32, crop_margin=0, val_images=0)
    counter = collections.Counter()
    pairs = [make_pair_or_skip(s, epoch=0, config=config, counter=counter, warned=set()) for s in manifest.samples]
    assert [p is None for p in pairs] == [False, True, False] and dict(counter) == {"DecodeError": 1}


@pytest.mark.parametrize("table,kwargs,message", [
    (pa.table({"image": [1, 2], "name": ["a", "b"]}), {}, r"column 'image' holds int64, not encoded image bytes"),
    (pa.table({"image": [b"x"], "name": ["a"]}), {"image_column": "img"}, r"no column 'img' \(columns: \['image', 'name'\]\)"),
    (None, {}, r"not a readable Parquet file"),
])
def test_parquet_schema_problems_are_one_data_error_naming_file_and_column(tmp_path, table, kwargs, message):
    path = tmp_path / "bad.parquet"
    if table is None:
        path.write_bytes(b"not parquet at all")
    else:
        pq.write_table(table, path)
    config = DataConfig(source=ParquetSource(path=str(path), **kwargs), degradation=BicubicConfig(scale=2),
                        patch_size=32, crop_margin=0, val_images=0)
    with pytest.raises(DataError, match=f"bad.parquet: {message}"):
        check_data(config)


def test_paired_folders_leave_out_files_without_a_partner(tmp_path, caplog):
    lq_dir, gt_dir = tmp_path / "lq", tmp_path / "gt"
    lq_dir.mkdir()
    gt_dir.mkdir()
    for stem in ("0001", "0002", "0003"):
        (gt_dir / f"{stem}.png").write_bytes(_png(_photo(64, 64)))
    for stem in ("0001", "0003", "0009"):
        (lq_dir / f"{stem}.png").write_bytes(_png(_photo(64, 64)))
    with caplog.at_level(logging.WARNING, logger="pipelines.sources"):
        manifest = PairedFolderSource(lq_dir=str(lq_dir), gt_dir=str(gt_dir)).manifest()
    assert [s.name for s in manifest.samples] == ["0001", "0003"] and manifest.num_unpaired == 2
    assert "0002, 0009" in caplog.text


def test_paired_folders_without_any_pair_raise(tmp_path):
    (tmp_path / "lq").mkdir()
    (tmp_path / "gt").mkdir()
    (tmp_path / "lq" / "a.png").write_bytes(_png(_photo()))
    (tmp_path / "gt" / "b.png").write_bytes(_png(_photo()))
    with pytest.raises(FileNotFoundError, match="no LQ/GT pairs"):
        PairedFolderSource(lq_dir=str(tmp_path / "lq"), gt_dir=str(tmp_path / "gt")).manifest()


# --- config values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override,expected",
    [
        ("data.small=crop", ["small='crop'", "('pad', 'skip')"]),
        ("optim.name=sgd", ["optim.name", "lion", "adamw", "'sgd'"]),
        ("optim.scheduler=linear", ["optim.scheduler", "'linear'"]),
        ("train.num_steps=0", ["train.num_steps", ">= 1", "0"]),
        ("train.batch_size=four", ["train.batch_size", "expected int", "'four'"]),
        ("train.num_stpes=10", ["'train.num_stpes'", "num_steps"]),
        ("optim.lr=-1", ["optim.lr", "> 0"]),
        ("method.kind=vae", ["method.kind", "refusion", "'vae'"]),
        ("seed=-3", ["seed=-3", "[0, 2**32)"]),
        ("method.T=0", ["T >= 1", "max_sigma > 0", "got 0"]),
        ("method.max_sigma=-5", ["max_sigma > 0", "-5.0"]),
        ("optim.eta_min=1", ["optim.eta_min", "[0, optim.lr=0.01]", "got 1.0"]),
        ("optim.gamma=2", ["optim.gamma", "(0, 1]", "2.0"]),
        ("train.ema_beta=.nan", ["train.ema_beta", "finite", "nan"]),
    ],
)
def test_bad_config_value_names_the_field_and_the_allowed_values(override, expected):
    with pytest.raises(ValueError) as err:
        apply_overrides(debug(), sets=[override])
    for fragment in expected:
        assert fragment in str(err.value), (fragment, str(err.value))


# --- checkpoints -----------------------------------------------------------------------------------------


def _debug_checkpoint(directory: Path, *, net_state: dict | None = None) -> Path:
    config = debug()
    if net_state is None:
        net_state = config.method.build_method(saved_state=True).build().state_dict()
    state = {"net": net_state, "ema": None, "optimizer": {}, "scheduler": {}, "step": 0}
    return write_checkpoint(directory, state=state, config=config.to_dict())


def test_a_matching_checkpoint_loads(tmp_path):
    method, net, config = load_model(_debug_checkpoint(tmp_path / "ckpt"), device=torch.device("cpu"))
    assert config.method.kind == "refusion" and not net.training


def test_weights_from_another_method_are_refused_with_the_mismatching_keys(tmp_path):
    other = latent_refusion_tiny().build_method(saved_state=True).build().state_dict()
    directory = _debug_checkpoint(tmp_path / "ckpt", net_state=other)
    with pytest.raises(RuntimeError, match="Error\\(s\\) in loading state_dict") as err:
        load_model(directory, device=torch.device("cpu"))
    assert "Unexpected key(s)" in str(err.value) or "size mismatch" in str(err.value)


def test_restore_flags_that_contradict_the_checkpoint_are_refused(tmp_path):
    directory = _debug_checkpoint(tmp_path / "ckpt")
    method, _, _ = load_model(directory, device=torch.device("cpu"))
    with pytest.raises(CheckpointMismatch, match="--T 100 but the checkpoint has 20"):
        check_process_flags(method, {"T": 100, "max_sigma": None, "schedule": None, "eps": None})


class _Payload:
    """Unpickling this runs Path.touch(marker): what a malicious checkpoint would do with os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_malicious_pickle_in_a_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    directory = _debug_checkpoint(tmp_path / "ckpt")
    state = load_state(directory)
    state["net"]["evil"] = _Payload(marker)
    torch.save(state, directory / "state.pt")
    pickle.loads(pickle.dumps(_Payload(marker)))  # proof that the payload works when unpickled unsafely
    assert marker.exists()
    marker.unlink()

    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_state(directory)
    with pytest.raises(pickle.UnpicklingError):
        load_model(directory, device=torch.device("cpu"))
    assert not marker.exists()
