import dataclasses
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.samples import SAMPLE_NAMES, SampleImages
from pipelines.sources import FolderSource, PairedFolderSource, ParquetSource


def _png(seed=0, size=8):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _write(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (folder / name).write_bytes(_png(i))


def test_folder_source_lists_images_recursively_in_sorted_order(tmp_path):
    _write(tmp_path, ["b.png", "a.jpg", "notes.txt"])
    _write(tmp_path / "sub", ["c.webp"])
    manifest = FolderSource(paths=(str(tmp_path),)).manifest()
    assert [s.name for s in manifest.samples] == ["a", "b", "c"]
    assert [s.sample_id for s in manifest.samples] == [0, 1, 2]
    assert all(isinstance(s.hq, str) and s.lq is None for s in manifest.samples)
    assert not manifest.is_paired


def test_folder_source_accepts_globs_and_files_and_drops_duplicates(tmp_path):
    _write(tmp_path, ["x1.png", "x2.png", "y.png"])
    manifest = FolderSource(paths=(str(tmp_path / "x*.png"), str(tmp_path / "y.png"), str(tmp_path))).manifest()
    assert [s.name for s in manifest.samples] == ["x1", "x2", "y"]


def test_folder_source_sample_ids_do_not_depend_on_listing_order(tmp_path):
    _write(tmp_path, ["c.png", "a.png", "b.png"])
    forward = FolderSource(paths=(str(tmp_path / "a.png"), str(tmp_path / "b.png"), str(tmp_path / "c.png")))
    backward = FolderSource(paths=(str(tmp_path / "c.png"), str(tmp_path / "b.png"), str(tmp_path / "a.png")))
    assert forward.manifest() == backward.manifest()


def test_folder_source_keeps_same_stem_files_apart(tmp_path):
    _write(tmp_path / "one", ["img.png"])
    _write(tmp_path / "two", ["img.png"])
    names = [s.name for s in FolderSource(paths=(str(tmp_path),)).manifest().samples]
    assert len(set(names)) == 2


def test_folder_source_without_images_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        FolderSource(paths=(str(tmp_path),)).manifest()
    with pytest.raises(FileNotFoundError):
        FolderSource(paths=(str(tmp_path / "nothing*.png"),)).manifest()
    with pytest.raises(TypeError):
        FolderSource(paths=str(tmp_path))


def test_paired_folders_match_by_stem_and_count_missing_partners(tmp_path):
    _write(tmp_path / "lq", ["0001.jpg", "0002.png", "0003.png", "only_lq.png"])
    _write(tmp_path / "gt", ["0001.png", "0002.png", "0003.png", "only_gt_a.png", "only_gt_b.png"])
    manifest = PairedFolderSource(lq_dir=str(tmp_path / "lq"), gt_dir=str(tmp_path / "gt")).manifest()
    assert [s.name for s in manifest.samples] == ["0001", "0002", "0003"]
    assert manifest.num_unpaired == 3
    assert manifest.is_paired
    first = manifest.samples[0]
    assert first.lq.endswith("lq/0001.jpg") and first.hq.endswith("gt/0001.png")


def test_paired_folders_without_any_pair_raise(tmp_path):
    _write(tmp_path / "lq", ["a.png"])
    _write(tmp_path / "gt", ["b.png"])
    with pytest.raises(FileNotFoundError):
        PairedFolderSource(lq_dir=str(tmp_path / "lq"), gt_dir=str(tmp_path / "gt")).manifest()


def test_parquet_source_sorts_by_name_and_carries_bytes(tmp_path):
    images = [_png(i) for i in range(3)]
    table = pa.table({"img": images, "key": ["c", "a", "b"], "label": [0, 1, 2]})
    pq.write_table(table, tmp_path / "data.parquet")
    manifest = ParquetSource(path=str(tmp_path / "data.parquet"), image_column="img", name_column="key").manifest()
    assert [s.name for s in manifest.samples] == ["a", "b", "c"]
    assert manifest.samples[0].hq == images[1]
    assert [s.sample_id for s in manifest.samples] == [0, 1, 2]


def test_parquet_folder_without_name_column_keeps_file_order(tmp_path):
    for part in range(2):
        pq.write_table(pa.table({"image": [_png(10 * part + i) for i in range(2)]}), tmp_path / f"part{part}.parquet")
    manifest = ParquetSource(path=str(tmp_path), name_column=None).manifest()
    assert [s.hq for s in manifest.samples] == [_png(0), _png(1), _png(10), _png(11)]
    assert [s.name for s in manifest.samples] == ["part0/00000000", "part0/00000001", "part1/00000000", "part1/00000001"]


def test_sample_images_are_the_skimage_photographs_as_bytes(tmp_path):
    manifest = SampleImages(folder=str(tmp_path)).manifest()
    assert [s.name for s in manifest.samples] == sorted(SAMPLE_NAMES)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.png" for n in SAMPLE_NAMES)
    assert all(isinstance(s.hq, bytes) and s.hq.startswith(b"\x89PNG") for s in manifest.samples)
    assert SampleImages(folder=str(tmp_path)).manifest() == manifest


def test_holdout_split_is_disjoint_stable_and_independent_of_listing_order(tmp_path):
    from pipelines.sources import Manifest, Sample, holdout_split

    samples = tuple(Sample(sample_id=i, name=f"photo_{i:03d}", hq=f"/x/photo_{i:03d}.png") for i in range(50))
    train, val = holdout_split(Manifest(samples=samples), 5)
    assert len(train) == 45 and len(val) == 5
    assert {s.key for s in train.samples}.isdisjoint(s.key for s in val.samples)
    assert [s.sample_id for s in val.samples] == list(range(5))
    reordered = tuple(dataclasses.replace(s, sample_id=i) for i, s in enumerate(reversed(samples)))
    assert {s.key for s in holdout_split(Manifest(samples=reordered), 5)[1].samples} == {s.key for s in val.samples}
    # More images: a held-out image stays held out unless a new key ranks below it.
    more = samples + tuple(Sample(sample_id=50 + i, name=f"new_{i}", hq="") for i in range(10))
    grown = {s.key for s in holdout_split(Manifest(samples=more), 5)[1].samples}
    assert len(grown & {s.key for s in val.samples}) >= 5 - len({k for k in grown if k.startswith("new_")})
    with pytest.raises(ValueError, match="leaves none to train on"):
        holdout_split(Manifest(samples=samples[:2]), 2)


def test_bundled_photos_hold_out_chelsea_and_coffee(tmp_path):
    from pipelines.sources import holdout_split

    train, val = holdout_split(SampleImages(folder=str(tmp_path)).manifest(), 2)
    assert [s.key for s in val.samples] == ["chelsea", "coffee"]
    assert len(train) == len(SAMPLE_NAMES) - 2
