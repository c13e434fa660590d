"""Full-reference image metrics for validation: PSNR and SSIM (pyiqa), LPIPS-Alex (Zhang et al. 2018, arXiv 1801.03924).

Build `ImageMetrics` once per worker; calling it on BCHW tensors in [-1, 1] returns mean scores.
PSNR is on RGB, SSIM on the Y channel (pyiqa defaults, as in the IR-SDE/Refusion tables).
"""

import logging
from pathlib import Path

import lpips
import pyiqa
import torch

logger = logging.getLogger(__name__)

# torchvision's AlexNet weights as torch.hub caches them; LPIPS' own linear heads ship inside the lpips package.
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


def alexnet_weights_cached() -> bool:
    """Whether the ImageNet AlexNet backbone is in the local torch hub cache (nothing is downloaded)."""
    return (Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE).is_file()


def build_lpips(*, device: torch.device) -> tuple[torch.nn.Module, bool]:
    """(LPIPS-Alex module, whether its backbone is the real one).

    Without cached AlexNet weights the backbone is random (seeded, so scores are reproducible but are not
    comparable to published LPIPS); a warning says so once.
    """
    real = alexnet_weights_cached()
    if not real:
        logger.warning(
            "LPIPS: AlexNet weights not in %s/checkpoints; using a random backbone (test path). "
            "LPIPS numbers are not comparable to published ones.",
            torch.hub.get_dir(),
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the random backbone is the same in every process
        net = lpips.LPIPS(net="alex", pnet_rand=not real, verbose=False)
    return net.eval().requires_grad_(False).to(device), real


class ImageMetrics:
    """PSNR / SSIM / LPIPS between restored and ground-truth images, built once per worker."""

    def __init__(self, *, device: torch.device) -> None:
        self.device = device
        self.psnr = pyiqa.create_metric("psnr", device=device)
        self.ssim = pyiqa.create_metric("ssim", device=device)
        self.lpips, self.lpips_is_real = build_lpips(device=device)

    @torch.no_grad()
    def __call__(self, out_BCHW: torch.Tensor, hq_BCHW: torch.Tensor) -> dict[str, float]:
        """Mean scores over the batch; inputs in [-1, 1], same shape."""
        if out_BCHW.shape != hq_BCHW.shape:
            raise ValueError(f"shape mismatch: {tuple(out_BCHW.shape)} vs {tuple(hq_BCHW.shape)}")
        out = out_BCHW.to(self.device, torch.float32).clamp(-1, 1)
        hq = hq_BCHW.to(self.device, torch.float32).clamp(-1, 1)
        # Scores on the 8-bit grid, as images are saved and as the reference test scripts measure them.
        out01 = torch.round((out + 1) * 127.5) / 255
        hq01 = torch.round((hq + 1) * 127.5) / 255
        out = out01 * 2 - 1
        return {
            "psnr": self.psnr(out01, hq01).mean().item(),
            "ssim": self.ssim(out01, hq01).mean().item(),
            "lpips": self.lpips(out, hq).mean().item(),
        }
