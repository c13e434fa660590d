"""Validation: restore held-out lq images, score them against hq (PSNR/SSIM/LPIPS) and draw LQ | output | GT grids."""

import numpy as np
import torch
from torch import nn

from models.method import RestorationMethod
from models.metrics import ImageMetrics
from pipelines.batching import to_image, to_model


@torch.no_grad()
def evaluate(
    method: RestorationMethod,
    net: nn.Module,
    val_set: tuple[list[np.ndarray], list[np.ndarray], list[str]],
    metrics: ImageMetrics,
    *,
    device: torch.device,
    seed: int,
    batch_size: int = 4,
) -> tuple[dict[str, float], np.ndarray]:
    """(mean scores, uint8 HWC grid with one row per image: LQ upsampled | restored | GT).

    `val_set` is (hq list, lq list, image keys) of uint8 HWC crops (P x P and P/scale x P/scale). Sampling noise comes
    from a generator seeded with `seed`, so two evaluations of the same weights agree.
    """
    was_training = net.training
    net.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    sums: dict[str, float] = {}
    rows = []
    hq_all, lq_all = np.stack(val_set[0]), np.stack(val_set[1])
    num_images = len(hq_all)
    for start in range(0, num_images, batch_size):
        hq = to_model(torch.from_numpy(hq_all[start : start + batch_size]).to(device))
        lq = to_model(torch.from_numpy(lq_all[start : start + batch_size]).to(device))
        keys = {"keys": val_set[2][start : start + batch_size]} if getattr(method, "needs_keys", False) else {}
        out = method.restore(net, lq, generator=generator, **keys)
        for key, value in metrics(out, hq).items():
            sums[key] = sums.get(key, 0.0) + value * len(hq)
        rows.append(_grid_rows(to_image(lq), to_image(out), to_image(hq)))
    net.train(was_training)
    scores = {key: total / num_images for key, total in sums.items()}
    return scores, np.concatenate(rows, axis=0)


def _grid_rows(lq_BHWC: np.ndarray, out_BHWC: np.ndarray, hq_BHWC: np.ndarray) -> np.ndarray:
    """Stack [lq (nearest-upsampled to hq size) | out | hq] per image, images below each other."""
    scale = hq_BHWC.shape[1] // lq_BHWC.shape[1]
    lq_up = lq_BHWC.repeat(scale, axis=1).repeat(scale, axis=2)
    return np.concatenate([np.concatenate(trio, axis=1) for trio in zip(lq_up, out_BHWC, hq_BHWC)], axis=0)
