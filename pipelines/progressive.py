"""Progressive patch and batch sizes (Restormer, arXiv 2111.09881, Sec. 3.3; DiffIR's GoPro training).

The stream always carries train.batch_size rows of data.patch_size crops; in phase i the step uses the first
batch_size_i rows, each cropped to patch_size_i at an offset drawn from the step's generator. The official
trainer does the same on its loader's full-size batch (random rows there; our rows are already a random draw of
the epoch, so the first ones are as good).

Legend: B batch, C channels, H height, W width.
"""

import itertools
from dataclasses import dataclass

import torch

from models.rng import randint


@dataclass(frozen=True, kw_only=True, slots=True)
class PatchPhase:
    """`num_steps` optimiser steps on `batch_size` rows per worker of `patch_size` HQ crops."""

    num_steps: int
    batch_size: int
    patch_size: int

    def __post_init__(self) -> None:
        if min(self.num_steps, self.batch_size, self.patch_size) < 1:
            raise ValueError(f"a progressive phase needs num_steps, batch_size and patch_size >= 1, got {self}")


def phases(*, num_steps: tuple[int, ...], batch_sizes: tuple[int, ...], patch_sizes: tuple[int, ...]
           ) -> tuple[PatchPhase, ...]:
    """The phases of an official yml's (iters, mini_batch_sizes, gt_sizes) lists."""
    if not len(num_steps) == len(batch_sizes) == len(patch_sizes):
        raise ValueError(f"iters, batch sizes and patch sizes differ in length: {num_steps}, {batch_sizes}, "
                         f"{patch_sizes}")
    return tuple(PatchPhase(num_steps=n, batch_size=b, patch_size=p)
                 for n, b, p in zip(num_steps, batch_sizes, patch_sizes))


def phase_index(schedule: tuple[PatchPhase, ...], step: int) -> int:
    """The phase of 0-based optimiser step `step`; steps past the schedule's end stay in its last phase."""
    ends = itertools.accumulate(p.num_steps for p in schedule)
    return next((i for i, end in enumerate(ends) if step < end), len(schedule) - 1)


def crop_to_phase(hq_BCHW: torch.Tensor, lq_BCHW: torch.Tensor, phase: PatchPhase, *, scale: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The phase's rows and one aligned random crop of them (hq patch_size, lq patch_size / scale)."""
    hq_BCHW, lq_BCHW = hq_BCHW[: phase.batch_size], lq_BCHW[: phase.batch_size]
    q, room = phase.patch_size // scale, lq_BCHW.shape[-1] - phase.patch_size // scale
    if room == 0:
        return hq_BCHW, lq_BCHW
    top, left = randint(0, room + 1, 2, generator, device="cpu").tolist()
    lq_BCHW = lq_BCHW[..., top : top + q, left : left + q]
    hq_BCHW = hq_BCHW[..., top * scale : (top + q) * scale, left * scale : (left + q) * scale]
    return hq_BCHW, lq_BCHW
