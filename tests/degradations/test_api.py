"""degradations/__init__.py: degrade / replay / params_from_dict for every config class."""

import dataclasses
import json

import numpy as np
import pytest

import degradations
from degradations import (
    BicubicConfig,
    GaussianNoiseConfig,
    MotionBlurConfig,
    RealESRGANConfig,
    degrade,
    params_from_dict,
    replay,
)

CONFIGS = [
    RealESRGANConfig(),
    RealESRGANConfig(scale=2),
    RealESRGANConfig(scale=1),
    RealESRGANConfig.preset("mild"),
    MotionBlurConfig(),
    GaussianNoiseConfig(),
    BicubicConfig(),
    BicubicConfig(scale=2, antialias=False),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{type(c).__name__}-{c.scale}")
def test_degrade_shape_dtype_grid_and_replay(hq96, config):
    lq, params = degrade(hq96, config, np.random.default_rng([0, 1, 2]))
    s = config.scale
    assert lq.shape == (96 // s, 96 // s, 3) and lq.dtype == np.float32
    assert 0.0 <= lq.min() and lq.max() <= 1.0
    np.testing.assert_allclose(lq * 255, np.rint(lq * 255), atol=1e-4)
    assert replay(hq96, params).tobytes() == lq.tobytes()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{type(c).__name__}-{c.scale}")
def test_params_json_round_trip_replays_the_same_lq(hq96, config):
    lq, params = degrade(hq96, config, np.random.default_rng(5))
    text = json.dumps(dataclasses.asdict(params))
    restored = params_from_dict(json.loads(text))
    assert restored == params
    assert replay(hq96, restored).tobytes() == lq.tobytes()


@pytest.mark.parametrize("config", CONFIGS[:1] + CONFIGS[4:6], ids=lambda c: type(c).__name__)
def test_same_seed_same_lq_and_different_seed_different_lq(hq96, config):
    a, pa = degrade(hq96, config, np.random.default_rng([1, 0, 7]))
    b, pb = degrade(hq96, config, np.random.default_rng([1, 0, 7]))
    c, _ = degrade(hq96, config, np.random.default_rng([1, 0, 8]))
    assert a.tobytes() == b.tobytes() and pa == pb
    assert not np.array_equal(a, c)


def test_params_are_frozen_and_dispatch_rejects_unknown_types(hq96):
    _, params = degrade(hq96, GaussianNoiseConfig(), np.random.default_rng(0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.sigma = 1.0
    with pytest.raises(TypeError):
        degrade(hq96, object(), np.random.default_rng(0))
    with pytest.raises(TypeError):
        replay(hq96, object())
    with pytest.raises(ValueError, match="kind"):
        params_from_dict({"kind": "jpeg_only"})


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{type(c).__name__}-{c.scale}")
def test_config_json_round_trip(config):
    assert type(config).from_dict(json.loads(json.dumps(dataclasses.asdict(config)))) == config


def test_every_config_exposes_scale():
    assert [c.scale for c in CONFIGS] == [4, 2, 1, 4, 1, 1, 4, 2]
    assert set(degradations.__all__) >= {"degrade", "replay", "params_from_dict", "RealESRGANConfig"}
