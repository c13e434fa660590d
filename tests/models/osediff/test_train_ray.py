"""A 2-worker CPU Ray Train run of OSEDiff with the tiny random SD, through pipelines/train.py."""

import dataclasses
from pathlib import Path

import pytest
import torch

from models.osediff.recipes import osediff_tiny

recipes = pytest.importorskip("pipelines.recipes")

NUM_STEPS = 2


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_worker_ray_train_run_writes_an_osediff_checkpoint(ray_local, tmp_path: Path):
    if "osediff" not in recipes.METHODS:
        pytest.skip("pipelines/recipes.py does not register osediff in METHODS yet")
    from pipelines.checkpoints import find_latest_checkpoint, load_state
    from pipelines.data import DataConfig
    from pipelines.launch import build_trainer
    from pipelines.optim import OptimConfig
    from pipelines.tracking import TrackingTarget

    config = recipes.RunConfig(
        name="osediff_ray",
        method=osediff_tiny(),
        data=DataConfig(patch_size=32, crop_margin=16, num_cpu_workers=1, batch_size=2),
        optim=OptimConfig(name="adamw", lr=5e-5, betas=(0.9, 0.999), weight_decay=1e-2, scheduler="constant"),
        train=recipes.TrainConfig(
            num_steps=NUM_STEPS, batch_size=1, num_val_images=0, ckpt_every=NUM_STEPS, log_every=1, ema=False,
            grad_clip=1.0,
        ),
        scaling=recipes.ScalingSettings(num_workers=2, cpus_per_worker=1.0),
        storage_path=str(tmp_path / "runs"),
    )
    result = build_trainer(
        config, target=TrackingTarget(uri="", run_id=None), resume=None,
        storage_path=config.storage_path, run=f"{config.storage_path}/{config.name}",
    ).fit()  # fmt: skip
    assert result.error is None
    uri, step = find_latest_checkpoint(config.storage_path, config.name)
    assert step == NUM_STEPS
    state = load_state(uri)
    assert state["ema"] is None
    keys = set(state["net"])
    assert keys and all("lora_" in k or k.startswith("unet.conv_in.") for k in keys)
    assert any(k.startswith("score_unet.") for k in keys)
    assert all(torch.isfinite(v).all() for v in state["net"].values())
    assert dataclasses.asdict(config.method)["sd_path"] == osediff_tiny().sd_path
