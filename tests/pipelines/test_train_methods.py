"""2-worker CPU Ray Train runs of DiffIR and MSGD through the common loop (DDP over gloo, phased losses)."""

import dataclasses
from pathlib import Path

import pytest
import torch

from pipelines import recipes
from pipelines.checkpoints import find_latest_checkpoint, load_state
from pipelines.launch import build_trainer
from pipelines.tracking import TrackingTarget

NUM_STEPS = 6


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("recipe", ["diffir_debug", "msgd_debug"])
def test_two_worker_run_crosses_the_phase_switch_and_writes_a_checkpoint(recipe, ray_local, tmp_path: Path):
    base = recipes.RECIPES[recipe]()
    # The phase switch (prior-only / warm start -> joint) happens inside the run, so DDP sees both
    # the partial and the full set of parameters with gradients.
    method = dataclasses.replace(base.method, **(
        {"prior_only_steps": 3} if recipe.startswith("diffir") else {"warmup_steps": 3, "ramp_steps": 2}))
    config = dataclasses.replace(
        base, name=recipe, method=method, storage_path=str(tmp_path / "runs"),
        train=dataclasses.replace(base.train, num_steps=NUM_STEPS, batch_size=2, val_every=NUM_STEPS,
                                  ckpt_every=NUM_STEPS, num_val_images=1, log_every=1),
        scaling=recipes.ScalingSettings(num_workers=2, cpus_per_worker=1.0),
    )
    result = build_trainer(
        config, target=TrackingTarget(uri="", run_id=None), resume=None,
        storage_path=config.storage_path, run=f"{config.storage_path}/{config.name}",
    ).fit()
    assert result.error is None
    uri, step = find_latest_checkpoint(config.storage_path, config.name)
    assert step == NUM_STEPS
    state = load_state(uri)
    assert all(torch.isfinite(v).all() for v in state["net"].values() if v.is_floating_point())
