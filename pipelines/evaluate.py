"""Validation: restore held-out lq images, score them and their input against hq (PSNR/SSIM/LPIPS), draw grids.

The input's own score (`lq_*`: the lq upsampled bicubically to hq size) is logged beside the output's, so a
model that makes images worse than its input is seen at once: `psnr_gain` = psnr - lq_psnr.
"""

import numpy as np
import torch
import torch.nn.functional as F
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

    Scores: psnr, ssim, lpips of the output; lq_psnr, lq_ssim, lq_lpips of the bicubic-upsampled input;
    psnr_gain and ssim_gain, output minus input.

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
        lq_up = upsample_input(lq, hq.shape[-2:])
        batch_scores = metrics(out, hq) | {f"lq_{k}": v for k, v in metrics(lq_up, hq).items()}
        for key, value in batch_scores.items():
            sums[key] = sums.get(key, 0.0) + value * len(hq)
        rows.append(_grid_rows(to_image(lq_up), to_image(out), to_image(hq)))
    net.train(was_training)
    scores = {key: total / num_images for key, total in sums.items()}
    scores["psnr_gain"] = scores["psnr"] - scores["lq_psnr"]
    scores["ssim_gain"] = scores["ssim"] - scores["lq_ssim"]
    return scores, np.concatenate(rows, axis=0)


def upsample_input(lq_BCHW: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The input as a viewer sees it at hq size: bicubic upsampling (identity at the same size), in [-1, 1]."""
    if tuple(lq_BCHW.shape[-2:]) == tuple(size):
        return lq_BCHW
    return F.interpolate(lq_BCHW, size=tuple(size), mode="bicubic", align_corners=False).clamp(-1, 1)


def _grid_rows(lq_up_BHWC: np.ndarray, out_BHWC: np.ndarray, hq_BHWC: np.ndarray) -> np.ndarray:
    """Stack [lq (upsampled to hq size) | out | hq] per image, images below each other."""
    return np.concatenate([np.concatenate(trio, axis=1) for trio in zip(lq_up_BHWC, out_BHWC, hq_BHWC)], axis=0)
