"""OSEDiff (arXiv 2406.08177) loss pieces beyond MSE: LPIPS-VGG and variational score distillation (VSD).

VSD follows the official distribution_matching_loss: the real score is the frozen SD at CFG 7.5 (negative
prompt as the unconditional branch), the fake score is SD + LoRA, both as x0 estimates, with the DMD
normaliser (Yin et al. 2023, arXiv 2311.18828).

Legend: B batch; z_BCHW SD latents.
"""

import logging
from pathlib import Path

import lpips
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16, which lpips loads through torch.hub


def build_lpips_vgg() -> lpips.LPIPS:
    """Frozen LPIPS-VGG on [-1, 1] images; random VGG features (with a warning) when VGG16 is not cached.

    Nothing is downloaded: the real features need torch.hub's checkpoints/vgg16-397923af.pth.
    """
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE
    if not cached.is_file():
        log.warning(
            "LPIPS: %s not found, using RANDOM VGG features (the LPIPS loss is not meaningful); "
            "put the torchvision VGG16 weights there for real training",
            cached,
        )
    net = lpips.LPIPS(net="vgg", pnet_rand=not cached.is_file(), verbose=False)
    return net.eval().requires_grad_(False)


def cfg_eps(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, arXiv 2207.12598): eps_u + s (eps_c - eps_u)."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def vsd_loss(z_BCHW: torch.Tensor, x0_fake_BCHW: torch.Tensor, x0_real_BCHW: torch.Tensor) -> torch.Tensor:
    """Scalar whose gradient w.r.t. z is 2 (x0_fake - x0_real) / (w numel), w_B = mean |z - x0_real|.

    Descending it moves z toward the real score's x0 and away from the fake score's; x0_* carry no gradient.
    """
    z = z_BCHW.float()
    w_B111 = (z.detach() - x0_real_BCHW).abs().mean(dim=(1, 2, 3), keepdim=True)
    grad = (x0_fake_BCHW - x0_real_BCHW) / w_B111
    return F.mse_loss(z, (z - grad).detach())
