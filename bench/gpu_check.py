"""The first GPU's checklist: one JSON and one table, in about 8 minutes on one GPU.

    .venv/bin/python -m bench.gpu_check [--out gpu_check.json] [--only train_step ddp]
    .venv/bin/python -m bench.gpu_check --dry-run     # the same code, tiny shapes, on the CPU (CI runs it)

Sections, each timed and recorded on its own (one that fails is recorded with its error and the rest still run;
the JSON is rewritten after every section, so a run stopped by a time limit keeps what it measured):
- train_step: the paper Refusion train step (NAFNet w64 [1,1,1,28], Lion, 128^2 x 4 as in refusion.yml, and
  256^2 x 16), fp32 vs bf16 autocast vs bf16 + channels_last vs bf16 + channels_last + torch.compile:
  steps/s, peak memory and the ratio to fp32 measured in the same run;
- data_wait: `pipelines/train.py --recipe refusion_deblurring` on paired folders made from the bundled photos
  (GT photo, Gaussian-blurred LQ): the data-wait fraction and samples/s its own log reports;
- latent_restore: a 6000x4000 Latent Refusion restore (dehazing recipe's nets, random weights, posterior sampler,
  one pass): seconds for a `--latent-steps` restore and for its reverse steps alone, projected to T = 100,
  and peak memory;
- osediff: the SD 2.1-base-shaped random-weight one-step restore at 512^2 and a bf16 train step (bench.osediff);
- ddp: one process per GPU (NCCL): all-reduce bus bandwidth of 256 MiB and a DDP step of the paper NAFNet.
`--dry-run` swaps in the tiny nets, 32^2 crops, a 96x64 latent image, tiny SD, gloo over 2 CPU processes, Train
local mode for the data-wait run (the same Ray Data stream, without a worker process to start) and the `aot_eager`
compile backend (inductor needs minutes of C++ compilation on a 2-core CPU).
"""

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import cv2
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lion_pytorch import Lion
from torch import nn

from bench.osediff import PAPER_S_PER_IMAGE
from bench.osediff import bench as osediff_bench
from bench.timing import sync, timed
from models.nets.latent_unet import DEHAZE_UNET, TINY_UNET, LatentUNet
from models.nets.nafnet import REFUSION_NAFNET, TINY_NAFNET, NAFNetConfig
from models.refusion import Refusion, RefusionConfig, latent_refusion_tiny
from models.sampling import sample
from pipelines import cli
from pipelines.samples import write_sample_images
from pipelines.train_step import TrainStep

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("train_step", "data_wait", "latent_restore", "osediff", "ddp")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Shapes:
    """What each section runs: the paper's shapes on a GPU, tiny ones for --dry-run."""

    net: NAFNetConfig
    train_cases: tuple[tuple[int, int], ...]  # (patch, batch)
    warmup: int
    repeats: int
    compile_backend: str
    latent_image: tuple[int, int]  # (H, W)
    latent_steps: int
    data_steps: int
    data_overrides: tuple[str, ...]
    sd_kind: str
    osediff_batch: int
    osediff_crop: int  # training crop; restore is always 512^2
    ddp_backend: str
    ddp_world_size: int
    allreduce_mib: int


def gpu_shapes(latent_steps: int) -> Shapes:
    return Shapes(net=REFUSION_NAFNET, train_cases=((128, 4), (256, 16)), warmup=3, repeats=10,
                  compile_backend="inductor", latent_image=(4000, 6000), latent_steps=latent_steps,
                  data_steps=200, data_overrides=(), sd_kind="sd21", osediff_batch=4, osediff_crop=512,
                  ddp_backend="nccl",
                  ddp_world_size=max(1, torch.cuda.device_count()), allreduce_mib=256)


def dry_shapes() -> Shapes:
    tiny = [f"method.net.{k}={json.dumps(v)}" for k, v in dataclasses.asdict(TINY_NAFNET).items()]
    return Shapes(net=TINY_NAFNET, train_cases=((32, 2),), warmup=1, repeats=2, compile_backend="aot_eager",
                  latent_image=(64, 96), latent_steps=2, data_steps=4,
                  data_overrides=(*tiny, "data.patch_size=32", "train.batch_size=2", "data.num_cpu_workers=1",
                                  "scaling.use_gpu=false", "scaling.num_workers=0", "scaling.cpus_per_worker=1",
                                  "method.T=4"),
                  sd_kind="tiny", osediff_batch=1, osediff_crop=128, ddp_backend="gloo", ddp_world_size=2,
                  allreduce_mib=8)


def train_step(shapes: Shapes, device: torch.device) -> dict:
    """Paper NAFNet + Lion step in four precisions/layouts; ratios are against fp32 at the same shape."""
    variants = {
        "fp32": dict(bf16=False, channels_last=False, compiled=False),
        "bf16": dict(bf16=True, channels_last=False, compiled=False),
        "bf16+channels_last": dict(bf16=True, channels_last=True, compiled=False),
        "bf16+channels_last+compile": dict(bf16=True, channels_last=True, compiled=True),
    }
    rows, params = [], 0
    for patch, batch in shapes.train_cases:
        base = None
        for name, v in variants.items():
            torch.manual_seed(0)
            method = Refusion(RefusionConfig(net=shapes.net))
            net = method.build().to(device)
            params = sum(p.numel() for p in net.parameters())
            layout = torch.channels_last if v["channels_last"] else torch.contiguous_format
            net = net.to(memory_format=layout)
            optimizer = Lion(method.param_groups(net), lr=4e-5, betas=(0.9, 0.99))
            model: nn.Module = net
            compile_s = 0.0
            if v["compiled"]:
                model = torch.compile(net, backend=shapes.compile_backend)
            generator = torch.Generator(device).manual_seed(0)
            hq = (torch.rand(batch, 3, patch, patch, device=device) * 2 - 1).contiguous(memory_format=layout)
            lq = (hq + 0.1 * torch.randn_like(hq)).contiguous(memory_format=layout)
            autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=v["bf16"])

            def step(model=model, method=method, optimizer=optimizer, hq=hq, lq=lq, generator=generator,
                     autocast=autocast) -> None:
                with autocast:
                    loss, _ = method.loss(model, hq, lq, step=0, generator=generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            if v["compiled"]:  # the first call compiles; timed apart from the steady state
                start = time.perf_counter()
                step()
                sync(device)
                compile_s = time.perf_counter() - start
            seconds, peak = timed(step, device, warmup=shapes.warmup, repeats=shapes.repeats)
            base = base or seconds
            rows.append({"patch": patch, "batch": batch, "variant": name, "s_per_step": seconds,
                         "steps_per_s": 1 / seconds, "speedup_vs_fp32": base / seconds, "peak_gib": peak,
                         "compile_s": compile_s})
            del model, net, optimizer
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {"params": params, "rows": rows}


def _paired_folders(root: Path) -> tuple[Path, Path]:
    """GT = the bundled photos, LQ = the same photos Gaussian-blurred (sigma 3): a deblurring pair set."""
    gt_dir, lq_dir = root / "GT", root / "LQ"
    photos = write_sample_images(root / "photos")
    lq_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(photos.glob("*.png")):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        cv2.imwrite(str(gt_dir / path.name), image)
        cv2.imwrite(str(lq_dir / path.name), cv2.GaussianBlur(image, (0, 0), 3.0))
    return lq_dir, gt_dir


STEP_LINE = re.compile(r"step (\d+)/(\d+) \| .*? \| ([\d.]+) samples/s \| data wait (\d+)%")


def data_wait(shapes: Shapes, device: torch.device) -> dict:
    """The paper deblurring recipe through Ray Data and Ray Train, as `train.py` runs it; its own log line."""
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        lq_dir, gt_dir = _paired_folders(Path(tmp))
        half = max(1, shapes.data_steps // 2)  # the last log line covers the second half: start-up excluded
        sets = [f"data.source.lq_dir={lq_dir}", f"data.source.gt_dir={gt_dir}", "data.val_images=1",
                f"train.num_steps={shapes.data_steps}", f"train.log_every={half}", "train.num_val_images=1",
                f"train.val_every={10 * shapes.data_steps}", f"train.ckpt_every={10 * shapes.data_steps}",
                *shapes.data_overrides]
        cmd = [sys.executable, str(ROOT / "pipelines" / "train.py"), "--recipe", "refusion_deblurring",
               "--storage-path", str(Path(tmp) / "runs"), "--name", "gpu-check"]
        for item in sets:
            cmd += ["--set", item]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        wall = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    lines = [m for m in STEP_LINE.finditer(log) if int(m.group(1)) == int(m.group(2))]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"train.py exited {proc.returncode} without a final step line; its last output:\n"
                           + log[-3000:])
    last = lines[-1]
    return {"recipe": "refusion_deblurring", "steps": shapes.data_steps, "window_steps": half,
            "samples_per_s": float(last.group(3)), "data_wait_frac": int(last.group(4)) / 100, "wall_s": wall}


def latent_restore(shapes: Shapes, device: torch.device) -> dict:
    """One-pass Latent Refusion restore of a full-size image, and its reverse steps timed on their own.

    T = 100 is projected from the N-step restore plus (T - N) times the directly timed cost of a reverse step;
    a step is never taken as the difference of two timings (on a busy CPU that came out below zero).
    """
    torch.manual_seed(0)
    if shapes.sd_kind == "tiny":
        config, autoencoder = latent_refusion_tiny(), LatentUNet(TINY_UNET)
    else:
        net_config = dataclasses.replace(REFUSION_NAFNET, img_channels=DEHAZE_UNET.embed_dim, global_skip=True)
        config, autoencoder = RefusionConfig(net=net_config, latent=DEHAZE_UNET), LatentUNet(DEHAZE_UNET)
    method = Refusion(config, autoencoder=autoencoder)
    net = method.build().to(device).eval()
    h, w = shapes.latent_image
    lq = torch.rand(1, 3, h, w, device=device) * 2 - 1
    steps, bf16 = shapes.latent_steps, device.type == "cuda"
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        whole, peak = timed(lambda: method.restore(net, lq, generator=None, num_steps=steps, mode="posterior",
                                                   temperature=0.0), device, warmup=1, repeats=1)
        mu = net.autoencoder.encode(lq)[0].float()
        steps_s, _ = timed(lambda: sample(net, method.process, mu, num_steps=steps, mode="posterior", generator=None,
                                          temperature=0.0), device, warmup=0, repeats=1)
    per_step = steps_s / steps
    return {"image": f"{w}x{h}", f"s_{steps}_steps": whole, "s_per_step": per_step,
            "s_T100_projected": whole + per_step * (method.process.T - steps), "peak_gib": peak, "bf16": bf16}


def osediff(shapes: Shapes, device: torch.device) -> dict:
    result = osediff_bench(shapes.sd_kind, device, batch=shapes.osediff_batch, repeats=shapes.repeats,
                           crop=shapes.osediff_crop)
    return result | {"sd": shapes.sd_kind, "batch": shapes.osediff_batch, "crop": shapes.osediff_crop,
                     "paper_restore_s_a100": PAPER_S_PER_IMAGE}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, shapes: Shapes, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(shapes.ddp_backend, rank=rank, world_size=shapes.ddp_world_size)
    try:
        device = torch.device("cuda", rank) if shapes.ddp_backend == "nccl" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        numel = shapes.allreduce_mib * 2**20 // 4
        buffer = torch.ones(numel, device=device)
        allreduce_s, _ = timed(lambda: dist.all_reduce(buffer), device, warmup=shapes.warmup, repeats=shapes.repeats)
        n = shapes.ddp_world_size
        bus_gbps = 2 * (n - 1) / n * numel * 4 / allreduce_s / 1e9  # nccl-tests' bus bandwidth
        torch.manual_seed(0)
        method = Refusion(RefusionConfig(net=shapes.net))
        net = method.build().to(device)
        ddp = nn.parallel.DistributedDataParallel(TrainStep(method, net),
                                                  device_ids=[rank] if device.type == "cuda" else None)
        optimizer = Lion(method.param_groups(net), lr=4e-5, betas=(0.9, 0.99))
        patch, batch = shapes.train_cases[0]
        generator = torch.Generator(device).manual_seed(rank)
        hq = torch.rand(batch, 3, patch, patch, device=device) * 2 - 1
        lq = hq + 0.1 * torch.randn_like(hq)

        def step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss, _ = ddp(hq, lq, step=0, generator=generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        step_s, peak = timed(step, device, warmup=shapes.warmup, repeats=shapes.repeats)
        first = next(iter(net.parameters())).detach().flatten()[:64].clone()
        gathered = [torch.empty_like(first) for _ in range(n)]
        dist.all_gather(gathered, first)
        if rank == 0:
            Path(out).write_text(json.dumps({
                "backend": shapes.ddp_backend, "world_size": n, "allreduce_mib": shapes.allreduce_mib,
                "allreduce_s": allreduce_s, "bus_gb_per_s": bus_gbps, "ddp_s_per_step": step_s,
                "ddp_peak_gib": peak, "patch": patch, "batch_per_rank": batch,
                "replicas_identical": all(torch.equal(g, gathered[0]) for g in gathered)}))
    finally:
        dist.destroy_process_group()
        gc.freeze()  # the process exits next: its last garbage collection would take seconds (pipelines/cli.py::run)


def ddp(shapes: Shapes, device: torch.device) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ddp.json"
        mp.spawn(_ddp_worker, args=(shapes, _free_port(), str(out)), nprocs=shapes.ddp_world_size, join=True)
        return json.loads(out.read_text())


RUNNERS: dict[str, Callable[[Shapes, torch.device], dict]] = {
    "train_step": train_step, "data_wait": data_wait, "latent_restore": latent_restore, "osediff": osediff, "ddp": ddp,
}


def environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {"gpu": props.name, "gpu_memory_gib": props.total_memory / 2**30, "gpus": torch.cuda.device_count(),
                "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                "nccl": ".".join(map(str, torch.cuda.nccl.version()))}
    return env


def table(results: dict) -> str:
    """The short human-readable summary of the JSON."""
    lines = []
    for name, section in results["sections"].items():
        if "error" in section:
            lines.append(f"{name}: FAILED after {section['seconds']:.0f} s: {section['error']}")
            continue
        r = section["result"]
        if name == "train_step":
            lines.append(f"train_step (NAFNet, {r['params']:,} params; {section['seconds']:.0f} s)")
            lines.append("  patch x batch | variant                    | steps/s | x fp32 | peak GiB | compile s")
            for row in r["rows"]:
                lines.append(f"  {row['patch']:>4}^2 x {row['batch']:<3} | {row['variant']:<26} | "
                             f"{row['steps_per_s']:7.2f} | {row['speedup_vs_fp32']:6.2f} | {row['peak_gib']:8.2f} | "
                             f"{row['compile_s']:.1f}")
        elif name == "data_wait":
            lines.append(f"data_wait ({r['recipe']}, last {r['window_steps']} of {r['steps']} steps): data wait "
                         f"{100 * r['data_wait_frac']:.0f}%, {r['samples_per_s']:.1f} samples/s ({r['wall_s']:.0f} s)")
        elif name == "latent_restore":
            lines.append(f"latent_restore {r['image']}: {r['s_per_step']:.3f} s/step, T=100 projected "
                         f"{r['s_T100_projected']:.1f} s, peak {r['peak_gib']:.2f} GiB")
        elif name == "osediff":
            lines.append(f"osediff ({r['sd']}): restore {r['restore_s']:.3f} s per 512^2 image (paper "
                         f"{r['paper_restore_s_a100']} s on A100), train step {r['step_s']:.3f} s "
                         f"(batch {r['batch']} x {r['crop']}^2), peak {r['peak_gib']:.1f} GiB")
        elif name == "ddp":
            lines.append(f"ddp ({r['backend']}, {r['world_size']} ranks): all-reduce {r['allreduce_mib']} MiB "
                         f"{1000 * r['allreduce_s']:.2f} ms ({r['bus_gb_per_s']:.1f} GB/s bus), DDP step "
                         f"{r['ddp_s_per_step']:.3f} s, replicas identical: {r['replicas_identical']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU (what CI runs)")
    parser.add_argument("--out", default="gpu_check.json", help="where the JSON goes (rewritten after each section)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--latent-steps", type=int, default=5, help="reverse steps timed for the latent restore")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --dry-run to check the code on a CPU")
    device = torch.device("cpu") if args.dry_run else torch.device("cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    shapes = dry_shapes() if args.dry_run else gpu_shapes(args.latent_steps)
    results = {"dry_run": args.dry_run, "environment": environment(device), "sections": {}}
    out = Path(args.out)
    for name in args.only:
        start = time.perf_counter()
        print(f"gpu_check: {name} ...", flush=True)
        try:
            section = {"result": RUNNERS[name](shapes, device)}
        except Exception as error:  # recorded; the other sections still run
            traceback.print_exc()
            section = {"error": f"{type(error).__name__}: {str(error)[-2000:]}"}
        section["seconds"] = time.perf_counter() - start
        results["sections"][name] = section
        tmp = out.with_name(out.name + ".part")
        tmp.write_text(json.dumps(results, indent=2))
        tmp.replace(out)
        with contextlib.suppress(Exception):
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print(table(results))
    print(f"gpu_check: wrote {out}")
    return results


if __name__ == "__main__":
    results = cli.run(main, prog="bench/gpu_check.py")  # which also spares the exit its last garbage collection
    sys.exit(1 if any("error" in s for s in results["sections"].values()) else 0)
