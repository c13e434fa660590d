"""Refusion (arXiv 2304.08291) costs: training step time/peak memory and restoration time/peak vs image size.

    .venv/bin/python -m bench.refusion [--full] [--steps 2] [--max-side 6000]

CUDA when available, else CPU. Peak memory is torch.cuda.max_memory_allocated on CUDA and, on CPU,
the peak of live tensor storage seen by models.tiling.PeakTensorMemory (kernel workspaces excluded).
Restoration runs `--steps` reverse steps and also prints the time projected to the full T = 100 steps
(encode/decode of the latent model counted once). Each table's first row is its baseline for the ratios.
"""

import argparse
import time
from collections.abc import Callable

import torch
from lion_pytorch import Lion

from bench.timing import sync
from models.nets.latent_unet import TINY_UNET, LatentUNet
from models.nets.nafnet import REFUSION_NAFNET, TINY_NAFNET
from models.refusion import Refusion, RefusionConfig, latent_refusion_tiny
from models.tiling import PeakTensorMemory, tiled


def measure(fn: Callable[[], object], device: torch.device, *, warmup: int = 1) -> tuple[float, float]:
    """(seconds of one call after warm-up, peak bytes of that call)."""
    for _ in range(warmup):
        fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        fn()
        sync(device)
        return time.perf_counter() - start, float(torch.cuda.max_memory_allocated(device) - base)
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    with PeakTensorMemory() as tracker:  # a second, untimed call: the tracker slows every op down
        fn()
    return seconds, float(tracker.peak)


def print_table(title: str, header: list[str], rows: list[list[object]], time_col: int, mem_col: int) -> None:
    """Rows with ratio columns against the first row."""
    print(f"\n{title}")
    print(" | ".join(header + ["time x", "mem x"]))
    base_t, base_m = rows[0][time_col], rows[0][mem_col]
    for row in rows:
        cells = [f"{c:.3f}" if isinstance(c, float) else str(c) for c in row]
        print(" | ".join(cells + [f"{row[time_col] / base_t:.2f}", f"{row[mem_col] / base_m:.2f}"]))


def train_step_rows(device: torch.device, full: bool) -> list[list[object]]:
    """(config, size, batch, s/step, MiB) for a forward + backward + Lion step."""
    cases = [("tiny", TINY_NAFNET, 128, 4), ("tiny", TINY_NAFNET, 256, 4)]
    if full:
        batch = 4 if device.type == "cuda" else 1
        cases += [("refusion", REFUSION_NAFNET, 128, batch), ("refusion", REFUSION_NAFNET, 256, batch)]
    rows = []
    for name, net_config, size, batch in cases:
        method = Refusion(RefusionConfig(net=net_config))
        net = method.build().to(device)
        optimizer = Lion(method.param_groups(net), lr=4e-5, betas=(0.9, 0.99))
        generator = torch.Generator(device).manual_seed(0)
        hq = torch.rand(batch, 3, size, size, device=device) * 2 - 1
        lq = hq + 0.1 * torch.randn_like(hq)

        def step() -> None:
            loss, _ = method.loss(net, hq, lq, step=0, generator=generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        seconds, peak = measure(step, device)
        rows.append([name, f"{size}^2", batch, seconds, peak / 2**20])
    return rows


def restore_rows(device: torch.device, steps: int, max_side: int) -> list[list[object]]:
    """(model, size, tiles, s for `steps`, s projected to T=100, MiB) for pixel and latent tiny models."""
    torch.manual_seed(0)
    pixel = Refusion(RefusionConfig(net=TINY_NAFNET))
    pixel_net = pixel.build().to(device).eval()
    latent = Refusion(latent_refusion_tiny(), autoencoder=LatentUNet(TINY_UNET))
    latent_net = latent.build().to(device).eval()
    sizes = [(512, 512), (1024, 1024), (2048, 2048), (4000, 6000)]
    cases = [("pixel", h, w, None) for h, w in sizes[:3]]
    cases += [("latent", h, w, None) for h, w in sizes[:3]]
    cases += [("latent", 4000, 6000, 2048)]
    rows = []
    for name, h, w, tile in cases:
        if max(h, w) > max_side:
            continue
        method, net = (pixel, pixel_net) if name == "pixel" else (latent, latent_net)
        lq = torch.rand(1, 3, h, w, device=device) * 2 - 1

        def run(num_steps: int, lq=lq, method=method, net=net, tile=tile) -> torch.Tensor:
            def fn(x: torch.Tensor) -> torch.Tensor:
                return method.restore(net, x, generator=None, num_steps=num_steps, mode="posterior",
                                      temperature=0.0)
            return fn(lq) if tile is None else tiled(fn, lq, tile=tile, overlap=32)

        seconds, peak = measure(lambda: run(steps), device, warmup=0)
        one, _ = measure(lambda: run(1), device, warmup=0)
        per_step = (seconds - one) / (steps - 1)  # what one more reverse step costs
        projected = one + per_step * (method.process.T - 1)
        tiles = "-" if tile is None else f"{tile}+32"
        rows.append([name, f"{w}x{h}", tiles, seconds, projected, peak / 2**20])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="also time the 76.6 M-parameter Refusion NAFNet")
    parser.add_argument("--steps", type=int, default=2, help="reverse steps actually run per restoration (>= 2)")
    parser.add_argument("--max-side", type=int, default=6000, help="skip restorations larger than this")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    if not args.skip_train:
        print_table("training step (forward + backward + Lion)", ["net", "patch", "batch", "s/step", "peak MiB"],
                    train_step_rows(device, args.full), time_col=3, mem_col=4)
    print_table(f"restoration (tiny nets, posterior sampler, {args.steps} steps run, T=100 projected)",
                ["model", "image", "tiles", f"s ({args.steps} steps)", "s (T=100)", "peak MiB"],
                restore_rows(device, max(args.steps, 2), args.max_side), time_col=4, mem_col=5)


if __name__ == "__main__":
    main()
