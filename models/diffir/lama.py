"""The LaMa inpainting losses (arXiv 2109.07161) that DiffIR's inpainting trainer uses (arXiv 2303.09472;
official DiffIRS1-celeba.yaml, DiffIRS2-celeba.yaml): masked L1, the ResNet50-dilated perceptual loss
(resnet_pl), and a pix2pixHD discriminator trained with non-saturating loss, R1 and feature matching.

Legend: B batch, C channels, H height, W width, h w the discriminator's logit grid; images in [-1, 1];
hole_B1HW is 1 in the holes (missing pixels) and 0 where known.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.diffir.gan import FrozenImageNetNet, frozen

log = logging.getLogger(__name__)

# Under torch's home, as LaMa's resnet_pl.weights_path=${env:TORCH_HOME} resolves it.
RESNET_PL_FILE = Path("ade20k") / "ade20k-resnet50dilated-ppm_deepsup" / "encoder_epoch_20.pth"
# (planes, blocks, stride, dilation of the first block's 3x3, dilation of the others'): the MIT CSAIL
# resnet50dilated with dilate_scale 8, whose layer3 and layer4 trade their stride 2 for dilation.
RESNET50_DILATED_LAYERS = ((64, 3, 1, 1, 1), (128, 4, 2, 1, 1), (256, 6, 1, 1, 2), (512, 3, 1, 2, 4))


@dataclass(frozen=True, kw_only=True, slots=True)
class LamaConfig:
    """The official inpainting loss weights; the generator's lr (2e-4) is optim.lr."""

    weight_known: float = 10.0  # masked L1 on known pixels
    weight_missing: float = 0.0  # masked L1 in the holes
    adversarial_weight: float = 10.0
    gp_coef: float = 0.001  # R1 on real images
    feature_matching_weight: float = 100.0
    resnet_pl_weight: float = 30.0
    disc_ndf: int = 64
    disc_layers: int = 4
    disc_lr: float = 1e-4  # the discriminator's Adam lr
    # The ResNet50-dilated weights: empty is <torch home>/RESNET_PL_FILE. "random" builds an untrained encoder,
    # which makes resnet_pl meaningless: for tests only.
    resnet_pl_path: str = ""

    def __post_init__(self) -> None:
        for name in ("weight_known", "weight_missing", "adversarial_weight", "gp_coef", "feature_matching_weight",
                     "resnet_pl_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"lama.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("disc_ndf", "disc_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"lama.{name} must be >= 1, got {getattr(self, name)}")
        if self.disc_lr <= 0:
            raise ValueError(f"lama.disc_lr must be > 0, got {self.disc_lr}")

    def resnet_pl_file(self) -> Path | None:
        """The encoder weights to load, None for "random"; FileNotFoundError naming the file when it is missing."""
        if self.resnet_pl_path == "random":
            return None
        path = Path(self.resnet_pl_path).expanduser() if self.resnet_pl_path else (
            Path(torch.hub.get_dir()).parent / RESNET_PL_FILE)  # get_dir() is $TORCH_HOME/hub
        if not path.is_file():
            raise FileNotFoundError(
                f"LaMa's resnet_pl loss needs the ADE20k ResNet50-dilated encoder of the MIT CSAIL "
                f"semantic-segmentation models: {path} is missing. Supply it there, or point "
                f"--set method.lama.resnet_pl_path=FILE at it")
        return path


def masked_l1(out_BCHW: torch.Tensor, hq_BCHW: torch.Tensor, hole_B1HW: torch.Tensor, *, weight_known: float,
              weight_missing: float) -> torch.Tensor:
    """mean((hole w_missing + (1 - hole) w_known) |out - hq|), LaMa's masked_l1_loss, in LaMa's units: the
    differences of its [0, 1] images (half ours), so the official weights mean what they meant there."""
    pixel_weights_B1HW = hole_B1HW * weight_missing + (1 - hole_B1HW) * weight_known
    return (pixel_weights_B1HW * (out_BCHW - hq_BCHW).abs()).mean() / 2


class NLayerDiscriminator(nn.Module):
    """pix2pixHD's PatchGAN with BatchNorm: n_layers strided 4x4 convs, one more at stride 1, a logit conv.

    forward(x_BCHW) -> (logits_B1hw, the n_layers + 1 block outputs before it, for feature matching)."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 4) -> None:
        super().__init__()
        self.num_blocks = n_layers + 2
        pad = 2  # ceil((4 - 1) / 2)
        blocks = [[nn.Conv2d(in_channels, ndf, 4, 2, pad), nn.LeakyReLU(0.2)]]
        nf = ndf
        for stride in [2] * (n_layers - 1) + [1]:
            nf_prev, nf = nf, min(2 * nf, 512)
            blocks.append([nn.Conv2d(nf_prev, nf, 4, stride, pad), nn.BatchNorm2d(nf), nn.LeakyReLU(0.2)])
        blocks.append([nn.Conv2d(nf, 1, 4, 1, pad)])
        for i, block in enumerate(blocks):  # model0.. as the official names, so its checkpoints load
            setattr(self, f"model{i}", nn.Sequential(*block))

    def forward(self, x_BCHW: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        x = x_BCHW
        for i in range(self.num_blocks):
            x = getattr(self, f"model{i}")(x)
            features.append(x)
        return features[-1], features[:-1]


class _Bottleneck(nn.Module):
    """ResNet's 1x1 -> 3x3 (stride, dilation) -> 1x1 block, 4x expansion, a projected shortcut where shapes change."""

    def __init__(self, inplanes: int, planes: int, *, stride: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.downsample = None
        if stride != 1 or inplanes != 4 * planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, 4 * planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(4 * planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + residual)


class ResNet50Dilated(FrozenImageNetNet):
    """The frozen MIT CSAIL resnet50dilated encoder (deep 3-conv stem, output stride 8) of LaMa's resnet_pl.

    forward(x_BCHW in [-1, 1]) -> the outputs of layer1..layer4: 256, 512, 1024, 2048 channels at 1/4, 1/8,
    1/8, 1/8 of H and W. Its state_dict keys are the official encoder_epoch_20.pth's."""

    def __init__(self, weights_file: Path | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 128, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)
        inplanes = 128
        for i, (planes, num_blocks, stride, first_dilation, dilation) in enumerate(RESNET50_DILATED_LAYERS, 1):
            blocks = [_Bottleneck(inplanes, planes, stride=stride, dilation=first_dilation)]
            blocks += [_Bottleneck(4 * planes, planes, stride=1, dilation=dilation) for _ in range(num_blocks - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            inplanes = 4 * planes
        if weights_file is None:
            log.warning("ResNet50-dilated with RANDOM weights: the resnet_pl loss is not meaningful "
                        "(lama.resnet_pl_path=random)")
        else:
            self.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True), strict=True)
        self.freeze()

    def forward(self, x_BCHW: torch.Tensor) -> list[torch.Tensor]:
        x = self.normalise(x_BCHW)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = F.max_pool2d(x, 3, 2, 1)
        outputs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outputs.append(x)
        return outputs


def resnet_pl_loss(net: ResNet50Dilated, out_BCHW: torch.Tensor, hq_BCHW: torch.Tensor) -> torch.Tensor:
    """sum_k MSE(phi_k(out), phi_k(hq)) over the 4 layers, LaMa's ResNetPL before its weight (the caller's).

    In float32 under autocast too."""
    with torch.autocast(device_type=out_BCHW.device.type, enabled=False):
        with torch.no_grad():
            target = net(hq_BCHW.float())
        return sum(F.mse_loss(f, t) for f, t in zip(net(out_BCHW.float()), target))


def lama_adversarial(disc: nn.Module, out_BCHW: torch.Tensor, hq_BCHW: torch.Tensor, hole_B1HW: torch.Tensor, *,
                     gp_coef: float) -> dict[str, torch.Tensor]:
    """LaMa's NonSaturatingWithR1 (mask_as_fake_target) and feature matching, float32 scalars for one backward.

    disc(x) -> (logits, features), as NLayerDiscriminator. The caller's loss is adversarial_weight * adv_g +
    feature_matching_weight * feature_matching + d_real + d_gp + d_fake: LaMa does not weight the D loss.
    adv_g and feature_matching reach the generator only (D's weights are constants in their graph, as LaMa
    freezes D for its G step); the d terms see out detached. LaMa calls D separately in its G step and in its
    D step, real then fake each time, and so do we: BatchNorm sees the same 4 batches in the same order. So
    stepping both nets with the gradients of the sum is LaMa's G step then D step on this iteration's D. One
    difference: LaMa's D step reruns the just-stepped generator, while here D scores this iteration's out.
    """
    out_BCHW, hq_BCHW, hole_B1HW = out_BCHW.float(), hq_BCHW.float(), hole_B1HW.float()
    with torch.autocast(device_type=out_BCHW.device.type, enabled=False):
        with frozen(disc):
            _, real_features = disc(hq_BCHW)
            fake_logits, fake_features = disc(out_BCHW)
        # use_unmasked_for_gen with extra_mask_weight_for_gen 0: the generator's term ignores the mask.
        adv_g = F.softplus(-fake_logits).mean()
        # pass_mask off: every feature pixel counts.
        feature_matching = torch.stack([F.mse_loss(f, r) for f, r in zip(fake_features, real_features)]).mean()

        # The R1 gradient is taken with respect to LaMa's [0, 1] image (twice ours), so gp_coef means what it did.
        real01_BCHW = ((hq_BCHW.detach() + 1) / 2).requires_grad_(True)
        real_logits, _ = disc(real01_BCHW * 2 - 1)
        d_real = F.softplus(-real_logits).mean()
        # R1 (Mescheder et al. 2018): E ||grad_x D(x)||^2 on reals, kept in the graph so D's weights get its gradient.
        (grad_BCHW,) = torch.autograd.grad(real_logits.sum(), real01_BCHW, create_graph=True)
        d_gp = gp_coef * (grad_BCHW.flatten(1).norm(2, dim=1) ** 2).mean()
        fake_logits_d, _ = disc(out_BCHW.detach())
        # mask_as_fake_target: only the holes of the output are fake; its known pixels count as real.
        hole_B1hw = F.interpolate(hole_B1HW, size=fake_logits_d.shape[-2:], mode="nearest")
        d_fake = (hole_B1hw * F.softplus(fake_logits_d) + (1 - hole_B1hw) * F.softplus(-fake_logits_d)).mean()
    return {"adv_g": adv_g, "feature_matching": feature_matching, "d_real": d_real, "d_gp": d_gp, "d_fake": d_fake}
