"""DiffIR and MSGD as two DDP replicas (gloo, 2 CPU processes, no Ray), wrapped as the training loop wraps them
(TrainStep, find_unused_parameters where the method has phases): across the phase switch (prior-only -> joint,
warm start -> icDPM ramp) some parameters first get no gradient, then all do, and the replicas stay identical.
The Ray Train side of a 2-worker run (stream split, checkpoints, a killed worker) is in test_train.py."""

import dataclasses
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from pipelines import recipes
from pipelines.checkpoints import build_method
from pipelines.optim import build_optimizer
from pipelines.train_step import TrainStep

NUM_STEPS = 4
PHASED = {  # the recipe and its phase switch after 2 steps
    "diffir_debug": {"prior_only_steps": 2},
    "msgd_debug": {"warmup_steps": 2, "ramp_steps": 1},
}


def _replica(rank: int, world_size: int, recipe: str, port: int, out_dir: str) -> None:
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        config = recipes.RECIPES[recipe]()
        method = build_method(dataclasses.replace(config.method, **PHASED[recipe]))
        torch.manual_seed(0)  # the same initial weights on both ranks, as prepare_model broadcasts them
        net = method.build().train()
        unused = {"find_unused_parameters": True} if method.has_unused_parameters else {}
        train_step = DistributedDataParallel(TrainStep(method, net), **unused)
        optimizer = build_optimizer(config.optim, method.param_groups(net))
        generator = torch.Generator().manual_seed(1000 + rank)
        losses, logged = [], []
        for step in range(NUM_STEPS):
            g = torch.Generator().manual_seed(100 * rank + step)  # each rank its own data
            hq = F.interpolate(torch.rand(2, 3, 8, 8, generator=g), size=32, mode="bilinear") * 2 - 1
            lq = F.avg_pool2d(hq, 5, 1, 2, count_include_pad=False)
            loss, logs = train_step(hq, lq, step=step, generator=generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(logs["loss"])
            logged.append(sorted(logs))
        torch.save({"params": {k: v.detach() for k, v in net.named_parameters()}, "losses": losses,
                    "logged": logged}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("recipe", sorted(PHASED))
def test_ddp_replicas_stay_identical_across_the_phase_switch(recipe: str, tmp_path: Path):
    port = 29500 + (os.getpid() + 250 + 100 * sorted(PHASED).index(recipe)) % 1000
    mp.spawn(_replica, args=(2, recipe, port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["losses"] != r1["losses"], "ranks saw the same data, so the test proves nothing"
    assert all(torch.isfinite(torch.tensor(r0["losses"])))
    assert r0["logged"][0] != r0["logged"][-1], "no phase switch inside the run"
    different = [k for k in r0["params"] if not torch.equal(r0["params"][k], r1["params"][k])]
    assert not different, different[:5]


@pytest.mark.parametrize("recipe, unused", [("diffir_debug", True), ("msgd_debug", True), ("debug", False)])
def test_the_loop_asks_ray_train_for_find_unused_parameters_when_the_method_has_phases(recipe, unused, monkeypatch):
    import ray.train.torch

    from pipelines.loop import build_state

    wrapped = {}

    def prepare_model(module, *, parallel_strategy_kwargs=None):
        wrapped["kwargs"] = parallel_strategy_kwargs
        return module

    monkeypatch.setattr(ray.train.torch, "prepare_model", prepare_model)
    config = recipes.RECIPES[recipe]()
    method = build_method(config.method)
    build_state(config, method, device=torch.device("cpu"), world_size=2)
    assert method.has_unused_parameters is unused
    assert wrapped["kwargs"] == ({"find_unused_parameters": True} if unused else None)
