"""The channel LayerNorm's statistics on the CPU: torch.var_mean over dim 1 vs models.nets.channel_stats, and what
that does to a training step of the demo's NAFNet and of a tiny DIRformer.

    .venv/bin/python -m bench.channel_norm [--threads 2]

Each table's first row is the baseline of its ratios; both rows run in this process, one after the other.
"""

import argparse
import contextlib
from collections.abc import Callable, Iterator
from unittest import mock

import torch

from bench.timing import timed
from models.diffir import dirformer
from models.nets import channel_stats, nafnet

CPU = torch.device("cpu")


def single_pass(x_BCHW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The baseline: torch's one-pass var_mean over the channels."""
    return torch.var_mean(x_BCHW, dim=1, unbiased=False, keepdim=True)


@contextlib.contextmanager
def statistics(fn: Callable) -> Iterator[None]:
    """Both LayerNorms (NAFNet's and DIRformer's) compute their statistics with fn."""
    with mock.patch.object(nafnet, "channel_var_mean", fn), mock.patch.object(dirformer, "channel_var_mean", fn):
        yield


def norm_step(x_BCHW: torch.Tensor) -> Callable[[], None]:
    norm = nafnet.LayerNorm(x_BCHW.shape[1])
    x = x_BCHW.clone().requires_grad_()
    return lambda: norm(x).sum().backward()


def train_step(recipe: str) -> Callable[[], None]:
    """One optimiser step of a bench recipe's method on a batch of 8 random 64^2 (SR: 96^2 HQ) pairs."""
    from bench import quality_recipes
    from pipelines.checkpoints import build_method

    config = {"nafnet": quality_recipes.refusion_inpaint, "dirformer": quality_recipes.diffir_sr_s1}[recipe]()
    method = build_method(config.method)
    torch.manual_seed(0)
    net = method.build()
    optimizer = torch.optim.Adam(net.parameters(), 1e-4)
    scale = getattr(config.method, "scale", 1)
    side = 96 if scale > 1 else 64
    hq = torch.rand(8, 3, side, side) * 2 - 1
    lq = torch.nn.functional.avg_pool2d(hq, scale) if scale > 1 else hq
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        loss, _ = method.loss(net, hq, lq, step=0, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = torch.randn(8, 16, 64, 64)
    cases = {"LayerNorm fwd+bwd, 8x16x64x64": lambda: norm_step(x),
             "train step, NAFNet (refusion-inpaint bench)": lambda: train_step("nafnet"),
             "train step, DIRformer (diffir-sr bench, S1)": lambda: train_step("dirformer")}
    print(f"CPU, {args.threads} threads; median of {args.repeats} calls after 2 warm-up calls")
    for title, make in cases.items():
        rows = []
        for name, fn in (("torch.var_mean (baseline)", single_pass), ("two passes", channel_stats.channel_var_mean)):
            with statistics(fn):
                seconds, _ = timed(make(), CPU, warmup=2, repeats=args.repeats)
            rows.append((name, seconds))
        print(f"\n{title}")
        for name, seconds in rows:
            print(f"  {name:26s} {seconds * 1e3:8.2f} ms   x{rows[0][1] / seconds:.2f}")


if __name__ == "__main__":
    main()
