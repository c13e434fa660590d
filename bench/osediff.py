"""OSEDiff (arXiv 2406.08177) timings: seconds per 512^2 x4 restoration and per training step.

    .venv/bin/python -m bench.osediff [--tiny-only] [--batch 4] [--repeats 5]

Tiny random SD on the CPU always; the real SD 2.1-base shapes (random weights, built in memory) on a GPU
when CUDA is available, with restore() as the pipeline calls it (bf16 autocast, LoRA unmerged). The paper
reports 0.11 s per 512^2 image on an A100 (fp16, merged LoRA; 0.35 s in its first version).
"""

import argparse

import torch

from bench.timing import timed
from models.osediff.config import OSEDiffConfig
from models.osediff.method import OSEDiff
from models.osediff.random_sd import random_sd

PAPER_S_PER_IMAGE = 0.11  # A100, fp16, batch 1, 512^2 output


def bench(kind: str, device: torch.device, *, batch: int, repeats: int, crop: int = 512) -> dict[str, float]:
    """Restore time per 512^2 image (batch 1) and one training step (batch x crop^2 crops; the paper's 512), in
    seconds."""
    method = OSEDiff(OSEDiffConfig(sd_path="<random weights in memory>"))
    net = method.assemble(random_sd(kind, seed=0)).to(device).train()
    g = torch.Generator(device=device).manual_seed(0)
    lq1 = torch.rand(1, 3, 128, 128, generator=g, device=device) * 2 - 1
    restore_s, _ = timed(lambda: method.restore(net, lq1, generator=g), device, warmup=2, repeats=repeats)

    optimizer = torch.optim.AdamW(method.param_groups(net), lr=5e-5, weight_decay=1e-2)
    hq = torch.rand(batch, 3, crop, crop, generator=g, device=device) * 2 - 1
    lq = torch.nn.functional.interpolate(hq, scale_factor=0.25, mode="area")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def train_step() -> None:
        with autocast:
            loss, _ = method.loss(net, hq, lq, step=0, generator=g)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for group in method.param_groups(net) for p in group["params"]], 1.0)
        optimizer.step()

    step_s, _ = timed(train_step, device, warmup=1, repeats=max(1, repeats // 2))
    peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"restore_s": restore_s, "step_s": step_s, "peak_gib": peak_gib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny-only", action="store_true", help="skip the SD 2.1-shaped GPU run")
    parser.add_argument("--batch", type=int, default=4, help="training batch of 512^2 crops (official: 4 per GPU)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    cpu = torch.device("cpu")
    tiny = bench("tiny", cpu, batch=1, repeats=3)
    print(
        f"tiny SD, CPU ({torch.get_num_threads()} threads): restore {tiny['restore_s']:.3f} s per 512^2 image, "
        f"training step {tiny['step_s']:.3f} s (batch 1, 512^2)"
    )
    if args.tiny_only:
        return
    if not torch.cuda.is_available():
        print("SD 2.1-base shapes: skipped, CUDA is not available")
        return
    gpu = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    real = bench("sd21", gpu, batch=args.batch, repeats=args.repeats)
    name = torch.cuda.get_device_name(gpu)
    print(
        f"SD 2.1-base shapes, {name}: restore {real['restore_s']:.3f} s per 512^2 image "
        f"(paper: {PAPER_S_PER_IMAGE} s on A100, fp16 merged LoRA); training step {real['step_s']:.3f} s "
        f"(batch {args.batch}, 512^2, bf16 autocast), peak memory {real['peak_gib']:.1f} GiB"
    )


if __name__ == "__main__":
    main()
