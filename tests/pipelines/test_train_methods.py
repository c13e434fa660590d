"""2-worker CPU Ray Train runs of DiffIR, MSGD and OSEDiff through the common loop (DDP over gloo): phased losses,
a generator and a regulariser, a checkpoint each. Refusion's 2-worker run (with a killed worker) is in test_train.py."""

import dataclasses
from pathlib import Path

import pytest
import torch

from models.osediff.recipes import osediff_tiny
from pipelines import recipes
from pipelines.checkpoints import find_latest_checkpoint, load_state
from pipelines.data import DataConfig
from pipelines.launch import build_trainer
from pipelines.optim import OptimConfig
from pipelines.tracking import TrackingTarget


def _phased(recipe: str, num_steps: int) -> recipes.RunConfig:
    """DiffIR / MSGD debug: the phase switch (prior-only / warm start -> joint) happens inside the run, so DDP
    sees both the partial and the full set of parameters with gradients."""
    base = recipes.RECIPES[recipe]()
    method = dataclasses.replace(base.method, **(
        {"prior_only_steps": 3} if recipe.startswith("diffir") else {"warmup_steps": 3, "ramp_steps": 2}))
    return dataclasses.replace(
        base, name=recipe, method=method,
        train=dataclasses.replace(base.train, num_steps=num_steps, batch_size=2, val_every=num_steps,
                                  ckpt_every=num_steps, num_val_images=0, log_every=1),
    )


def _osediff(num_steps: int) -> recipes.RunConfig:
    """The tiny random SD with LoRA and the VSD regulariser (two optimiser groups, gradient clipping)."""
    return recipes.RunConfig(
        name="osediff_ray",
        method=osediff_tiny(),
        data=DataConfig(patch_size=32, crop_margin=16, num_cpu_workers=1, batch_size=2),
        optim=OptimConfig(name="adamw", lr=5e-5, betas=(0.9, 0.999), weight_decay=1e-2, scheduler="constant"),
        train=recipes.TrainConfig(num_steps=num_steps, batch_size=1, num_val_images=0, ckpt_every=num_steps,
                                  log_every=1, ema=False, grad_clip=1.0),
    )


def _check_osediff_state(state: dict) -> None:
    assert state["ema"] is None
    keys = set(state["net"])
    assert keys and all("lora_" in k or k.startswith("unet.conv_in.") for k in keys)  # only the trained weights
    assert any(k.startswith("score_unet.") for k in keys)


RUNS = {
    "diffir_debug": (lambda: _phased("diffir_debug", 6), 6, None),
    "msgd_debug": (lambda: _phased("msgd_debug", 6), 6, None),
    "osediff_tiny": (lambda: _osediff(2), 2, _check_osediff_state),
}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", list(RUNS))
def test_two_worker_run_trains_and_writes_a_finite_checkpoint(name, ray_local, tmp_path: Path):
    make_config, num_steps, check_state = RUNS[name]
    config = dataclasses.replace(make_config(), storage_path=str(tmp_path / "runs"),
                                 scaling=recipes.ScalingSettings(num_workers=2, cpus_per_worker=1.0))
    result = build_trainer(
        config, target=TrackingTarget(uri="", run_id=None), resume=None,
        storage_path=config.storage_path, run=f"{config.storage_path}/{config.name}",
    ).fit()
    assert result.error is None
    uri, step = find_latest_checkpoint(config.storage_path, config.name)
    assert step == num_steps
    state = load_state(uri)
    assert all(torch.isfinite(v).all() for v in state["net"].values() if v.is_floating_point())
    if check_state is not None:
        check_state(state)
