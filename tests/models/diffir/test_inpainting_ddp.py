"""Two DDP replicas (gloo, 2 CPU processes) of DiffIR inpainting keep identical parameters through the R1 penalty's
double backward and a BatchNorm discriminator, as the training loop wraps the loss (TrainStep). The BatchNorm
running statistics are not compared: DDP broadcasts rank 0's before each forward."""

import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from models.diffir import configs
from models.diffir.lama import LamaConfig
from models.diffir.method import DiffIR
from pipelines.train_step import TrainStep
from tests.models.diffir.test_inpainting import _masked_pairs

NUM_STEPS = 3


def _replica(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)  # the same initial weights on both ranks (Ray Train's prepare_model broadcasts them)
        lama = LamaConfig(disc_ndf=8, disc_layers=2, resnet_pl_path="random")
        method = DiffIR(configs.tiny_inpainting(stage=1, lama=lama))
        net = method.build().train()
        train_step = DistributedDataParallel(TrainStep(method, net), find_unused_parameters=True)
        optimizer = torch.optim.Adam(method.param_groups(net), lr=1e-3)
        generator = torch.Generator().manual_seed(1000 + rank)
        losses = []
        for step in range(NUM_STEPS):
            hq, lq = _masked_pairs(seed=100 * rank + step)  # each rank its own data
            loss, logs = train_step(hq, lq, step=step, generator=generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(logs["d_gp"])
        params = {k: v.detach() for k, v in net.named_parameters()}
        torch.save({"params": params, "losses": losses}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_replicas_of_the_lama_trainer_stay_identical(tmp_path: Path):
    port = 29500 + (os.getpid() + 500) % 1000
    mp.spawn(_replica, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["losses"] != r1["losses"], "ranks saw the same data, so the test proves nothing"
    assert all(v > 0 for v in r0["losses"])  # the R1 penalty ran
    different = [k for k in r0["params"] if not torch.equal(r0["params"][k], r1["params"][k])]
    assert not different, different[:5]
    assert any(k.startswith("discriminator.") for k in r0["params"])
