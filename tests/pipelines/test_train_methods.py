"""2-worker CPU Ray Train runs of DiffIR and MSGD through the common loop (DDP over gloo): phased losses, a
checkpoint each. Refusion's 2-worker run (with a killed worker) is in test_train.py; OSEDiff's DDP replicas (its
generator and fake-score regulariser in one DDP forward) in tests/models/osediff/test_ddp.py."""

import dataclasses
from pathlib import Path

import pytest
import torch

from pipelines import recipes
from pipelines.checkpoints import find_latest_checkpoint, load_state
from pipelines.launch import build_trainer
from pipelines.tracking import TrackingTarget


def _phased(recipe: str, num_steps: int) -> recipes.ExperimentConfig:
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


RUNS = {
    "diffir_debug": lambda: _phased("diffir_debug", 6),
    "msgd_debug": lambda: _phased("msgd_debug", 6),
}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", list(RUNS))
def test_two_worker_run_trains_and_writes_a_finite_checkpoint(name, ray_local, tmp_path: Path):
    config = dataclasses.replace(RUNS[name](), storage_path=str(tmp_path / "runs"),
                                 scaling=recipes.ScalingSettings(num_workers=2, cpus_per_worker=1.0))
    result = build_trainer(
        config, target=TrackingTarget(uri="", run_id=None), resume=None,
        storage_path=config.storage_path, run=f"{config.storage_path}/{config.name}",
    ).fit()
    assert result.error is None
    uri, step = find_latest_checkpoint(config.storage_path, config.name)
    assert step == config.train.num_steps
    state = load_state(uri)
    assert all(torch.isfinite(v).all() for v in state["net"].values() if v.is_floating_point())
