"""Training-step and restore time of DiffIR (arXiv 2303.09472), MSGD (arXiv 2212.01789) and Refusion
(arXiv 2304.08291) at one image size, in one table (paper-sized networks unless --tiny).

    python bench/methods.py --size 256 --device cuda
    python bench/methods.py --size 256 --sampling-steps 10    # CPU: fewer sampler steps, per-step time shown
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import dataclasses
import time
from collections.abc import Callable

import torch

from models.diffir import configs as diffir_configs
from models.diffir.method import DiffIR
from models.msgd import configs as msgd_configs
from models.msgd.method import MSGD
from models.nets.nafnet import REFUSION_NAFNET
from models.refusion import Refusion, RefusionConfig, refusion_tiny


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of fn() over repeats, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _methods(tiny: bool, sampling_steps: int | None) -> list[tuple[str, object, int]]:
    """(name, method, number of sampler network evaluations) for each benchmarked method."""
    msgd = msgd_configs.tiny() if tiny else msgd_configs.deblur()
    if sampling_steps is not None:
        msgd = dataclasses.replace(msgd, num_sampling_steps=sampling_steps)
    refusion = refusion_tiny() if tiny else RefusionConfig(net=REFUSION_NAFNET)
    refusion = dataclasses.replace(refusion, num_steps=sampling_steps or refusion.num_steps)
    diffir_sr = diffir_configs.tiny(stage=2, scale=4) if tiny else diffir_configs.sr4x(stage=2)
    diffir_db = diffir_configs.tiny(stage=2, scale=1) if tiny else diffir_configs.deblur(stage=2)
    return [
        ("DiffIR S2 SR x4", DiffIR(dataclasses.replace(diffir_sr, prior_only_steps=0)), diffir_sr.num_diffusion_steps),
        ("DiffIR S2 deblur", DiffIR(dataclasses.replace(diffir_db, prior_only_steps=0)), diffir_db.num_diffusion_steps),
        ("MSGD deblur", MSGD(dataclasses.replace(msgd, warmup_steps=0, ramp_steps=0)), msgd.num_sampling_steps),
        ("Refusion deblur", Refusion(refusion), refusion.num_steps or refusion.T),
    ]


def bench(name: str, method, num_evals: int, *, size: int, batch: int, device: torch.device, repeats: int) -> dict:
    scale = method.config.scale
    torch.manual_seed(0)
    net = method.build().to(device)
    optimizer = torch.optim.Adam(method.param_groups(net), lr=1e-4)
    hq = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    lq = torch.rand(batch, 3, size // scale, size // scale, device=device) * 2 - 1
    generator = torch.Generator(device=device).manual_seed(0)

    def train_step() -> None:
        loss, _ = method.loss(net, hq, lq, step=10**9, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step_s = _timed(train_step, device, repeats)
    restore_s = _timed(lambda: method.restore(net, lq[:1], generator=generator), device, max(1, repeats // 2))
    params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return {"method": name, "params_M": params / 1e6, "train_step_s": step_s, "restore_s": restore_s,
            "sampler_evals": num_evals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="hq side in pixels")
    parser.add_argument("--batch", type=int, default=1, help="training batch size")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sampling-steps", type=int, default=None, help="override MSGD/Refusion sampler steps")
    parser.add_argument("--tiny", action="store_true", help="tiny test configs instead of the paper-sized nets")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"size {args.size}^2, batch {args.batch}, device {device}, torch {torch.__version__}")
    print("| method | trainable params (M) | train step (s) | restore 1 image (s) | sampler net evals |")
    print("|---|---|---|---|---|")
    for name, method, evals in _methods(args.tiny, args.sampling_steps):
        row = bench(name, method, evals, size=args.size, batch=args.batch, device=device, repeats=args.repeats)
        print(f"| {row['method']} | {row['params_M']:.2f} | {row['train_step_s']:.3f} | {row['restore_s']:.3f} "
              f"| {row['sampler_evals']} |", flush=True)


if __name__ == "__main__":
    main()
