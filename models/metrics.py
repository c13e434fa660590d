"""Image metrics: the papers' evaluation protocols (PSNR/SSIM on RGB or Y, border crop) through pyiqa, LPIPS-Alex
(Zhang et al. 2018, arXiv 1801.03924) for validation, and pyiqa's learned metrics loaded from local weight files.

Build `ImageMetrics` once per worker; calling it on BCHW tensors in [-1, 1] returns mean scores. The same
`Protocol` scores validation during training and `pipelines/evaluate.py`.
"""

import contextlib
import dataclasses
import io
import logging
import os
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

# pyiqa (~4 s) and lpips are imported where they are used: every Ray worker that unpickles a config imports this
# module, and most of them (the data actors) never score an image.

logger = logging.getLogger(__name__)

# torchvision's AlexNet weights as torch.hub caches them; LPIPS' own linear heads ship inside the lpips package.
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


@dataclass(frozen=True, kw_only=True, slots=True)
class Protocol:
    """How a paper's table scores a restored image against its GT, on the 8-bit grid."""

    name: str
    channels: str  # "rgb", or "y": the luma of BT.601 YCbCr, as MATLAB's rgb2ycbcr (pyiqa color_space="ycbcr")
    crop_border: int  # pixels dropped on each side before PSNR/SSIM
    with_y: bool  # also psnr_y / ssim_y, as IR-SDE's test.py prints them beside the RGB scores
    learned: tuple[str, ...]  # the learned metrics the tables report (pyiqa names), the default of evaluate.py
    tables: str

    def __post_init__(self) -> None:
        if self.channels not in ("rgb", "y"):
            raise ValueError(f"channels must be 'rgb' or 'y', got {self.channels!r}")
        if self.crop_border < 0:
            raise ValueError(f"crop_border must be >= 0, got {self.crop_border}")


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol(name="sr-y", channels="y", crop_border=0, with_y=False,
             learned=("lpips", "dists", "niqe", "musiq", "maniqa", "clipiqa", "fid"),
             tables="OSEDiff, DiffIR and Real-ESRGAN x4 SR: PSNR/SSIM on the Y of YCbCr (OSEDiff: no border crop)"),
    Protocol(name="rgb", channels="rgb", crop_border=4, with_y=True, learned=("lpips",),
             tables="IR-SDE / Refusion test.py: uint8 RGB PSNR and per-channel SSIM with crop_border = scale, 4 "
                    "by default even without SR; Y-channel PSNR/SSIM beside"),
    Protocol(name="gopro", channels="rgb", crop_border=0, with_y=False, learned=("lpips",),
             tables="GoPro/HIDE deblurring (MPRNet, Restormer, DiffIR evaluate_PSNR_SSIM.m): RGB PSNR and SSIM of "
                    "the whole image; our SSIM is the per-channel mean, MATLAB's filters the RGB array in 3-D"),
)}


def get_protocol(name: str, *, crop_border: int | None = None) -> Protocol:
    """A named preset, optionally with another border crop."""
    if name not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {name!r}")
    protocol = PROTOCOLS[name]
    return protocol if crop_border is None else dataclasses.replace(protocol, crop_border=crop_border)


class PixelMetrics:
    """PSNR and SSIM of a protocol (pyiqa's psnr/ssim with its channels and crop), on [0, 1] BCHW tensors."""

    def __init__(self, protocol: Protocol, *, device: torch.device) -> None:
        import pyiqa

        self.protocol = protocol
        crop = {"crop_border": protocol.crop_border}
        rgb = {"test_y_channel": False, **crop}
        y = {"test_y_channel": True, "color_space": "ycbcr", **crop}
        main = rgb if protocol.channels == "rgb" else y
        self.metrics = {"psnr": pyiqa.create_metric("psnr", device=device, **main), "ssim": SeparableSSIM(**main)}
        if protocol.with_y:
            self.metrics |= {"psnr_y": pyiqa.create_metric("psnr", device=device, **y), "ssim_y": SeparableSSIM(**y)}

    @torch.no_grad()
    def per_image(self, out01_BCHW: torch.Tensor, hq01_BCHW: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scores per image (B,) of two [0, 1] batches of the same shape."""
        if out01_BCHW.shape != hq01_BCHW.shape:
            raise ValueError(f"shape mismatch: {tuple(out01_BCHW.shape)} vs {tuple(hq01_BCHW.shape)}")
        return {name: metric(out01_BCHW, hq01_BCHW).reshape(-1) for name, metric in self.metrics.items()}


class SeparableSSIM:
    """pyiqa's `ssim` metric (Wang et al. 2004 as in MATLAB's ssim_index: inputs on the rounded 0..255 grid, Y of
    YCbCr or per RGB channel, Gaussian window 11 / sigma 1.5, 'valid' filtering, float64), with the Gaussian applied
    as two 1-D passes instead of one 11x11 convolution: the same scores to ~1e-6 (pyiqa rounds its window to
    float32), about 10x faster on a CPU."""

    def __init__(self, *, test_y_channel: bool, crop_border: int, color_space: str = "ycbcr") -> None:
        self.test_y_channel, self.crop_border, self.color_space = test_y_channel, crop_border, color_space
        x = torch.arange(11, dtype=torch.float64) - 5.0
        g = torch.exp(-x * x / (2 * 1.5**2))
        self.window = g / g.sum()  # fspecial('gaussian', 11, 1.5) is the outer product of this with itself

    def __call__(self, x01_BCHW: torch.Tensor, y01_BCHW: torch.Tensor) -> torch.Tensor:
        from pyiqa.archs.func_util import preprocess_rgb

        if self.crop_border:
            c = self.crop_border
            x01_BCHW, y01_BCHW = x01_BCHW[..., c:-c, c:-c], y01_BCHW[..., c:-c, c:-c]
        x = preprocess_rgb(x01_BCHW, self.test_y_channel, 255, self.color_space).to(torch.float64)
        y = preprocess_rgb(y01_BCHW, self.test_y_channel, 255, self.color_space).to(torch.float64)
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        mu_x, mu_y = self._filter(x), self._filter(y)
        var_x = self._filter(x * x) - mu_x**2
        var_y = self._filter(y * y) - mu_y**2
        cov = self._filter(x * y) - mu_x * mu_y
        cs = torch.relu((2 * cov + c2) / (var_x + var_y + c2))  # pyiqa keeps the contrast-structure term >= 0
        return (((2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)) * cs).mean(dim=(1, 2, 3))

    def _filter(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        channels = x_BCHW.shape[1]
        w = self.window.to(x_BCHW.device)
        x_BCHW = torch.nn.functional.conv2d(x_BCHW, w.view(1, 1, 11, 1).repeat(channels, 1, 1, 1), groups=channels)
        return torch.nn.functional.conv2d(x_BCHW, w.view(1, 1, 1, 11).repeat(channels, 1, 1, 1), groups=channels)


def to_8bit_grid(x_BCHW: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] on the 8-bit grid, as images are saved and as the reference test scripts read them."""
    return torch.round((x_BCHW.to(torch.float32).clamp(-1, 1) + 1) * 127.5) / 255


def alexnet_weights_cached() -> bool:
    """Whether the ImageNet AlexNet backbone is in the local torch hub cache (nothing is downloaded)."""
    return (Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE).is_file()


def build_lpips(*, device: torch.device) -> tuple[torch.nn.Module, bool]:
    """(LPIPS-Alex module, whether its backbone is the real one), for validation during training.

    Without cached AlexNet weights the backbone is random (seeded, so scores are reproducible but are not
    comparable to published LPIPS); a warning says so once, and ImageMetrics names the score lpips_random.
    """
    import lpips

    real = alexnet_weights_cached()
    if not real:
        logger.warning(
            "LPIPS: AlexNet weights not in %s/checkpoints; using a random backbone (test path), logged as "
            "lpips_random. Those numbers are not comparable to published LPIPS.",
            torch.hub.get_dir(),
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the random backbone is the same in every process
        net = lpips.LPIPS(net="alex", pnet_rand=not real, verbose=False)
    return net.eval().requires_grad_(False).to(device), real


class ImageMetrics:
    """Validation scores between restored and ground-truth images: the protocol's PSNR/SSIM and LPIPS-Alex
    (`lpips`, or `lpips_random` when its backbone is the random test fallback). Built once per worker."""

    def __init__(self, *, device: torch.device, protocol: Protocol = PROTOCOLS["rgb"]) -> None:
        self.device = device
        self.pixel = PixelMetrics(protocol, device=device)
        self.lpips, self.lpips_is_real = build_lpips(device=device)
        self.lpips_key = "lpips" if self.lpips_is_real else "lpips_random"

    @torch.no_grad()
    def __call__(self, out_BCHW: torch.Tensor, hq_BCHW: torch.Tensor) -> dict[str, float]:
        """Mean scores over the batch; inputs in [-1, 1], same shape."""
        out01 = to_8bit_grid(out_BCHW.to(self.device))
        hq01 = to_8bit_grid(hq_BCHW.to(self.device))
        scores = {k: v.mean().item() for k, v in self.pixel.per_image(out01, hq01).items()}
        return scores | {self.lpips_key: self.lpips(out01 * 2 - 1, hq01 * 2 - 1).mean().item()}


# --- pyiqa's learned metrics, from local files only -------------------------------------------------------------

NO_REFERENCE = ("niqe", "musiq", "maniqa", "clipiqa")  # score the restored image alone
FULL_REFERENCE = ("lpips", "dists")  # pyiqa's LPIPS-Alex v0.1 and DISTS against the GT
LEARNED = (*FULL_REFERENCE, *NO_REFERENCE, "fid")  # fid compares the two folders
PIXEL = ("psnr", "ssim", "psnr_y", "ssim_y")  # PixelMetrics' names


class MissingWeights(RuntimeError):
    """A metric needs a weight file that is neither in the weights folder nor in the local caches."""

    def __init__(self, file_name: str) -> None:
        super().__init__(f"missing {file_name}")
        self.file_name = file_name


@contextlib.contextmanager
def local_weights_only(weights_dir: Path | None) -> Iterator[None]:
    """Within: every weight download pyiqa would make (its own files, torchvision backbones, CLIP, the Hugging Face
    hub) is served from `weights_dir` (a flat folder of files, matched by file name) or raises MissingWeights.

    Files already in the local caches (torch hub, pyiqa's, CLIP's) load as usual; nothing reaches the network.
    """
    def local_file(url: str) -> Path:
        name = os.path.basename(urllib.parse.urlparse(url).path)
        if weights_dir is None or not (Path(weights_dir) / name).is_file():
            raise MissingWeights(name)
        return Path(weights_dir) / name

    def serve(url: str, dst: str, *args, **kwargs) -> None:
        source = local_file(url)
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dst)

    def urlopen(url, *args, **kwargs):  # CLIP's loader streams from urlopen: give it the local file
        return _LocalResponse(local_file(getattr(url, "full_url", url)))

    import huggingface_hub.constants
    import pyiqa.utils.download_util

    saved = (torch.hub.download_url_to_file, pyiqa.utils.download_util.download_url_to_file, urllib.request.urlopen,
             huggingface_hub.constants.HF_HUB_OFFLINE)
    torch.hub.download_url_to_file = pyiqa.utils.download_util.download_url_to_file = serve
    urllib.request.urlopen = urlopen
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        (torch.hub.download_url_to_file, pyiqa.utils.download_util.download_url_to_file, urllib.request.urlopen,
         huggingface_hub.constants.HF_HUB_OFFLINE) = saved


class _LocalResponse(io.FileIO):
    """A local file that answers `info()` like an HTTP response (CLIP reads Content-Length)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "rb")
        self._length = path.stat().st_size

    def info(self) -> dict[str, str]:
        return {"Content-Length": str(self._length)}


# pyiqa's MANIQA builds timm's ViT-B/8 with pretrained=True, which the Hugging Face hub serves (not a plain file).
HF_HUB_WEIGHTS = {"maniqa": "timm/vit_base_patch8_224.augreg2_in21k_ft_in1k (Hugging Face hub cache, HF_HOME)"}


def load_learned_metric(name: str, *, device: torch.device, weights_dir: Path | None) -> torch.nn.Module:
    """pyiqa's metric `name` with its real weights, or MissingWeights naming the first file it lacks."""
    import pyiqa

    if name not in LEARNED:
        raise ValueError(f"learned metric must be one of {LEARNED}, got {name!r}")
    with local_weights_only(weights_dir), contextlib.redirect_stdout(io.StringIO()):  # pyiqa prints "Downloading"
        try:
            return pyiqa.create_metric(name, device=device)
        except MissingWeights:
            raise
        except ModuleNotFoundError as err:  # e.g. CLIP's loader imports pkg_resources (setuptools < 81)
            raise MissingWeights(f"python module {err.name} (pyiqa's {name} imports it)") from err
        except Exception as err:  # the Hugging Face hub refuses offline with its own errors
            if type(err).__name__ in ("LocalEntryNotFoundError", "OfflineModeIsEnabled") or "offline" in str(err).lower() \
                    or "local cache" in str(err):
                raise MissingWeights(HF_HUB_WEIGHTS.get(name, "weights from the Hugging Face hub")) from err
            raise
