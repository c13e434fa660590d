"""DiffIR's S2-GAN stage (arXiv 2303.09472; official train_DiffIRS2_GAN_x4.yml), as Real-ESRGAN trains (arXiv 2107.10833).

The generator loss is L1 + the prior L1 + VGG19 perceptual + vanilla GAN. The discriminator is a U-Net with
spectral normalisation that scores every pixel.

Legend: B batch, C channels, H height, W width; images in [-1, 1].
"""

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

log = logging.getLogger(__name__)

VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's ImageNet VGG19, the file BasicSR's VGGFeatureExtractor loads
# The conv outputs (before their ReLU) the perceptual loss compares, as indices into torchvision's vgg19().features.
VGG19_LAYERS = {"conv1_2": 2, "conv2_2": 7, "conv3_4": 16, "conv4_4": 25, "conv5_4": 34}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, kw_only=True, slots=True)
class GANConfig:
    """The official S2-GAN loss weights; the layer weights are for VGG19_LAYERS in order."""

    l1_weight: float = 1.0
    perceptual_weight: float = 1.0
    layer_weights: tuple[float, ...] = (0.1, 0.1, 1.0, 1.0, 1.0)
    gan_weight: float = 1.0  # the official yml's 1.0 (Real-ESRGAN's own config uses 0.1)
    disc_num_feat: int = 64
    disc_lr: float = 1e-4  # the discriminator's Adam lr; the generator's is optim.lr
    # The VGG19 weights: empty is torch.hub's checkpoints/VGG19_FILE. "random" builds untrained features, which
    # make the perceptual term meaningless: for tests only.
    vgg19_path: str = ""

    def __post_init__(self) -> None:
        if len(self.layer_weights) != len(VGG19_LAYERS):
            raise ValueError(f"gan.layer_weights needs {len(VGG19_LAYERS)} weights, for {list(VGG19_LAYERS)}; "
                             f"got {self.layer_weights}")
        for name in ("l1_weight", "perceptual_weight", "gan_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"gan.{name} must be >= 0, got {getattr(self, name)}")
        if self.disc_num_feat < 1 or self.disc_lr <= 0:
            raise ValueError(f"gan.disc_num_feat must be >= 1 and gan.disc_lr > 0, got {self.disc_num_feat}, "
                             f"{self.disc_lr}")

    def vgg19_file(self) -> Path | None:
        """The weights file to load, None for "random"; FileNotFoundError naming the file when it is missing."""
        if self.vgg19_path == "random":
            return None
        path = Path(self.vgg19_path).expanduser() if self.vgg19_path else (
            Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE)
        if not path.is_file():
            raise FileNotFoundError(
                f"the DiffIR GAN stage's perceptual loss needs torchvision's ImageNet VGG19 weights: {path} is "
                f"missing. Supply {VGG19_FILE} there, or point --set method.gan.vgg19_path=FILE at it")
        return path


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's discriminator: 3 strided downsamplings, 3 bilinear upsamplings with skips, a logit per pixel.

    forward(x_BCHW) -> logits_B1HW; H and W must be multiples of 8."""

    def __init__(self, in_channels: int = 3, num_feat: int = 64) -> None:
        super().__init__()
        n = num_feat

        def sn_conv(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Module:
            return spectral_norm(nn.Conv2d(c_in, c_out, kernel, stride, 1, bias=False))

        self.conv0 = nn.Conv2d(in_channels, n, 3, 1, 1)
        self.down = nn.ModuleList([sn_conv(n, 2 * n, 4, 2), sn_conv(2 * n, 4 * n, 4, 2), sn_conv(4 * n, 8 * n, 4, 2)])
        self.up = nn.ModuleList([sn_conv(8 * n, 4 * n, 3, 1), sn_conv(4 * n, 2 * n, 3, 1), sn_conv(2 * n, n, 3, 1)])
        self.head = nn.Sequential(sn_conv(n, n, 3, 1), nn.LeakyReLU(0.2), sn_conv(n, n, 3, 1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(n, 1, 3, 1, 1))

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        skips = [F.leaky_relu(self.conv0(x_BCHW), 0.2)]
        for conv in self.down:
            skips.append(F.leaky_relu(conv(skips[-1]), 0.2))
        x = skips.pop()
        for conv in self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = F.leaky_relu(conv(x), 0.2) + skips.pop()
        return self.head(x)


class FrozenImageNetNet(nn.Module):
    """Base of the frozen perceptual nets (this VGG19, lama.ResNet50Dilated): always in eval mode, no gradients
    to their weights once `freeze()` ran, and the ImageNet normalisation of [-1, 1] images that they expect."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def freeze(self) -> None:
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "FrozenImageNetNet":
        return super().train(False)  # frozen: always in eval mode

    def normalise(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return ((x_BCHW + 1) / 2 - self.mean) / self.std


class VGG19Features(FrozenImageNetNet):
    """Frozen VGG19 conv outputs at VGG19_LAYERS of [-1, 1] images, ImageNet-normalised (use_input_norm)."""

    def __init__(self, weights_file: Path | None) -> None:
        super().__init__()
        import torchvision  # here: only the GAN stage needs it

        vgg = torchvision.models.vgg19(weights=None)
        if weights_file is None:
            log.warning("VGG19 with RANDOM weights: the perceptual loss is not meaningful (gan.vgg19_path=random)")
        else:
            vgg.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
        self.features = vgg.features[: max(VGG19_LAYERS.values()) + 1]
        for layer in self.features:  # torchvision's in-place ReLUs would overwrite the conv outputs kept below
            if isinstance(layer, nn.ReLU):
                layer.inplace = False
        self.freeze()

    def forward(self, x_BCHW: torch.Tensor) -> list[torch.Tensor]:
        x = self.normalise(x_BCHW)
        outputs, wanted = [], set(VGG19_LAYERS.values())
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                outputs.append(x)
        return outputs


def perceptual_loss(vgg: VGG19Features, out_BCHW: torch.Tensor, hq_BCHW: torch.Tensor,
                    layer_weights: tuple[float, ...]) -> torch.Tensor:
    """sum_k w_k L1(phi_k(out), phi_k(hq)) over VGG19_LAYERS (BasicSR's PerceptualLoss, criterion l1, no style).

    In float32 under autocast too, as the official stage trains."""
    with torch.autocast(device_type=out_BCHW.device.type, enabled=False):
        with torch.no_grad():
            target = vgg(hq_BCHW.float())
        return sum(w * F.l1_loss(f, t) for w, f, t in zip(layer_weights, vgg(out_BCHW.float()), target))


def bce_logits(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Vanilla GAN loss: BCE of every logit against all-real or all-fake."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real)))


@contextlib.contextmanager
def frozen(module: nn.Module):
    """The module's weights as constants (no gradients to them) inside, trainable again after: the generator's
    adversarial terms see the discriminator so, as BasicSR and LaMa freeze it for their generator step."""
    module.requires_grad_(False)
    try:
        yield module
    finally:
        module.requires_grad_(True)


def adversarial_losses(disc: nn.Module, out_BCHW: torch.Tensor, hq_BCHW: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(generator's GAN loss, discriminator's loss on real, on fake) for one backward and one optimiser step.

    The generator's term reaches the generator only: the discriminator's weights are constants in its graph, as
    BasicSR freezes net_d for the generator step. The discriminator's terms see out detached. Stepping both
    with the gradients of their sum equals BasicSR's G step then D step: both use this iteration's D and out.
    """
    out_BCHW, hq_BCHW = out_BCHW.float(), hq_BCHW.float()
    with torch.autocast(device_type=out_BCHW.device.type, enabled=False):  # float32, spectral norm's sigma too
        with frozen(disc):
            g_gan = bce_logits(disc(out_BCHW), real=True)
        d_real = bce_logits(disc(hq_BCHW), real=True)
        d_fake = bce_logits(disc(out_BCHW.detach()), real=False)
    return g_gan, d_real, d_fake
