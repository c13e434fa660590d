"""Two DDP replicas (gloo, 2 CPU processes) stay bit-identical, fake-score LoRA included."""

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from models.osediff.config import OSEDiffConfig
from models.osediff.method import OSEDiff
from pipelines.train_step import TrainStep

NUM_STEPS = 3


def _replica(rank: int, world_size: int, sd_dir: str, port: int, out_dir: str) -> None:
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        method = OSEDiff(OSEDiffConfig(sd_path=sd_dir))
        net = method.build().train()
        train_step = DistributedDataParallel(TrainStep(method, net))  # as the training loop wraps it
        optimizer = torch.optim.AdamW(method.param_groups(net), lr=1e-3)
        generator = torch.Generator().manual_seed(1000 + rank)  # each rank draws its own data and noise
        losses = []
        for step in range(NUM_STEPS):
            hq = torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1
            lq = torch.nn.functional.avg_pool2d(hq, 4)
            loss, logs = train_step(hq, lq, step=step, generator=generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(logs["loss"])
        torch.save({"state": net.state_dict(), "losses": losses}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_replicas_stay_identical_including_fake_score_lora(tiny_sd_dir: Path, tmp_path: Path):
    port = 29500 + os.getpid() % 1000
    mp.spawn(_replica, args=(2, str(tiny_sd_dir), port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["losses"] != r1["losses"], "ranks saw the same data, so the test proves nothing"
    # LoRA B matrices start at zero (peft's "gaussian" init): a nonzero one was trained.
    fake_b = [k for k in r0["state"] if k.startswith("score_unet.") and "lora_B" in k]
    assert fake_b and any(r0["state"][k].abs().sum() > 0 for k in fake_b), "the fake score got no update"
    different = [k for k in r0["state"] if not torch.equal(r0["state"][k], r1["state"][k])]
    assert not different, different[:5]
