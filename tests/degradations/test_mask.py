import dataclasses
import json

import numpy as np
import pytest

from degradations import degrade, mask, params_from_dict, replay
from degradations.mask import MaskConfig


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    import skimage.data

    return (skimage.data.astronaut()[:128, 100:228].astype(np.float32) / 255.0)


def test_the_same_seed_gives_the_same_holes_and_json_params_replay_them(photo):
    lq_a, params_a = degrade(photo, MaskConfig(), np.random.default_rng([0, 5]))
    lq_b, params_b = degrade(photo, MaskConfig(), np.random.default_rng([0, 5]))
    assert params_a == params_b and np.array_equal(lq_a, lq_b)
    restored = params_from_dict(json.loads(json.dumps(dataclasses.asdict(params_a))))
    assert restored == params_a and np.array_equal(replay(photo, restored), lq_a)
    _, params_c = degrade(photo, MaskConfig(), np.random.default_rng([0, 6]))
    assert params_c != params_a


def test_kept_pixels_are_the_photo_and_holes_the_fill_on_the_8_bit_grid(photo):
    for fill in (1.0, 0.0):
        lq, params = degrade(photo, MaskConfig(fill=fill), np.random.default_rng(1))
        keep = mask.keep_mask(params).astype(bool)
        assert lq.shape == photo.shape and lq.dtype == np.float32
        assert np.allclose(lq * 255, np.rint(lq * 255), atol=1e-4)  # 8-bit grid
        assert np.allclose(lq[keep], np.rint(photo[keep] * 255) / 255, atol=1e-6)
        assert np.all(lq[~keep] == np.float32(fill))


def test_a_hole_channel_appends_the_mask_and_replays_from_json(photo):
    config = MaskConfig(fill=0.0, hole_channel=True)
    lq, params = degrade(photo, config, np.random.default_rng(2))
    plain, _ = degrade(photo, MaskConfig(fill=0.0), np.random.default_rng(2))
    assert lq.shape == (*photo.shape[:2], 4) and params.hole_channel
    assert np.array_equal(lq[..., :3], plain)  # the same holes, the same image
    assert np.array_equal(lq[..., 3], 1.0 - mask.keep_mask(params)) and 0 < lq[..., 3].mean() < 1
    restored = params_from_dict(json.loads(json.dumps(dataclasses.asdict(params))))
    assert np.array_equal(replay(photo, restored), lq)
    old = {k: v for k, v in dataclasses.asdict(params).items() if k != "hole_channel"}  # params saved before it
    assert params_from_dict(old).hole_channel is False


def test_every_sample_has_a_hole_and_hole_areas_vary():
    config = MaskConfig()
    fractions = []
    for i in range(200):
        params = mask.sample_params(config, np.random.default_rng([2, i]), (96, 128, 3))
        keep = mask.keep_mask(params)
        assert keep.shape == (96, 128) and set(np.unique(keep)) <= {0.0, 1.0}
        fractions.append(1.0 - keep.mean())
    fractions = np.array(fractions)
    assert fractions.min() > 0.0 and fractions.max() < 0.9
    assert 0.05 < np.median(fractions) < 0.5 and fractions.std() > 0.03
    # Only boxes, or only one stroke: still a hole every time.
    for only in (MaskConfig(num_strokes_range=(0, 0), num_boxes_range=(0, 1)),
                 MaskConfig(num_strokes_range=(0, 1), num_boxes_range=(0, 0))):
        for i in range(20):
            assert mask.keep_mask(mask.sample_params(only, np.random.default_rng(i), (64, 64, 3))).min() == 0.0


def test_strokes_stay_inside_the_image_and_the_mask_must_match_the_image(photo):
    params = mask.sample_params(MaskConfig(segment_length_range=(0.5, 1.0)), np.random.default_rng(3), (40, 70, 3))
    for _, points in params.strokes:
        assert all(0 <= x < 70 and 0 <= y < 40 for x, y in points)
    with pytest.raises(ValueError, match="mask drawn for 40x70, image is 128x128"):
        mask.apply(photo, params)


@pytest.mark.parametrize("field, value, message", [
    ("fill", 1.5, "fill"),
    ("num_vertices_range", (0, 3), "needs >= 1 segment"),
    ("num_strokes_range", (0, 0), "allow no hole"),
    ("box_size_range", (0.5, 0.2), "box_size_range"),
    ("num_boxes_range", (0.5, 2), "must be integers"),
])
def test_bad_configs_name_the_field(field, value, message):
    kwargs = {field: value}
    if field == "num_strokes_range":
        kwargs["num_boxes_range"] = (0, 0)
    with pytest.raises(ValueError, match=message):
        MaskConfig(**kwargs)
