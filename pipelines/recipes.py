"""Run configs: `ExperimentConfig` and one function per recipe, for every method.

Refusion / IR-SDE (arXiv 2304.08291, 2301.11699): the official `codes/config/*/options/train/*.yml`
values (shared/reference/refusion.md section 5a). OSEDiff, DiffIR and MSGD: the values of
shared/reference/methods.md (official configs where they exist; values a paper leaves unstated are
marked UNVERIFIED where they are set). `debug`/`*_debug` recipes are small CPU-sized versions.
Batch sizes are per worker: the global batch is
`train.batch_size * train.grad_accum * scaling.num_workers` (1 worker in local mode).
"""

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
import typing
from typing import Literal

import yaml

from degradations import BicubicConfig, GaussianNoiseConfig, MaskConfig, MotionBlurConfig, RealESRGANConfig
from models.diffir import DiffIRConfig
from models.diffir import configs as diffir_configs
from models.diffir.gan import GANConfig
from models.msgd import MSGDConfig
from models.msgd import configs as msgd_configs
from models.nets.cond_unet import IRSDE_UNET
from models.nets.latent_unet import DEHAZE_UNET
from models.nets.nafnet import REFUSION_NAFNET
from models.metrics import PROTOCOLS
from models.osediff import OSEDiffConfig
from models.osediff import osediff_sd21 as osediff_sd21_method
from models.osediff import osediff_tiny as osediff_tiny_method
from models.refusion import LatentAutoencoderConfig, RefusionConfig, refusion_tiny
from pipelines.cli import NAME_PATTERN, describe
from pipelines.config_dict import (
    deep_merge,
    from_dict,
    parse_scalar,
    set_dotted,
    to_dict,
)
from pipelines.data import DataConfig
from pipelines.optim import OptimConfig
from pipelines.progressive import PatchPhase, phases
from pipelines.sources import FolderSource, PairedFolderSource


# The method configs a run may hold (the tagged union config_dict loads by `kind`); each config builds its method.
MethodConfig = RefusionConfig | LatentAutoencoderConfig | OSEDiffConfig | DiffIRConfig | MSGDConfig
METHOD_KINDS: tuple[str, ...] = tuple(next(f.default for f in dataclasses.fields(c) if f.name == "kind")
                                      for c in typing.get_args(MethodConfig))


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainConfig:
    """What the loop does: steps, batches, validation, checkpoints, EMA, clipping, AMP, logging."""

    num_steps: int = 40
    batch_size: int = 4  # per worker
    val_every: int = 20  # steps; validation runs on rank 0 with the EMA net when there is one
    num_val_images: int = 2  # held-out images each validation scores (at most data.val_images of them)
    ckpt_every: int = 20
    keep_last: int = 2
    ema: bool = True
    ema_beta: float = 0.995
    ema_every: int = 10
    ema_update_after: int = 0  # the EMA is a plain copy of the net up to this step
    ema_warmup: bool = False  # decay 1 - (1 + n)^(-2/3) capped at ema_beta after that (ema_pytorch, Refusion)
    # Which weights validation scores (both are saved): "ema", or "net" as the official Refusion / IR-SDE code.
    validate_weights: Literal["ema", "net"] = "ema"
    grad_clip: float | None = None  # max global grad norm; None = no clipping
    amp: bool = True  # bf16 autocast, on CUDA only
    log_every: int = 5
    prefetch_batches: int = 2
    max_failures: int = 0  # worker-group restarts from the last checkpoint (FailureConfig)
    # The official run's global batch (per-GPU batch x its GPUs); a run whose global batch differs says so at start.
    official_global_batch: int | None = None
    # Micro-batches of batch_size per optimiser step, gradients summed (mean loss over all of them). None: as many
    # as reach official_global_batch with the run's workers (a DiffIR recipe on 2 GPUs accumulates 4), else 1.
    grad_accum: int | None = None
    # Progressive patches and batches (Restormer; DiffIR's GoPro training): phase i runs its num_steps on the
    # first batch_size rows of each batch, cropped to patch_size (pipelines/progressive.py). Empty: one phase.
    progressive: tuple[PatchPhase, ...] = ()

    def __post_init__(self) -> None:
        if self.ema_update_after < 0:
            raise ValueError(f"train.ema_update_after must be >= 0, got {self.ema_update_after}")
        for name in ("num_steps", "batch_size", "val_every", "ckpt_every", "keep_last", "ema_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_val_images < 0 or self.prefetch_batches < 0 or self.max_failures < -1:
            raise ValueError("train.num_val_images and train.prefetch_batches must be >= 0, max_failures >= -1")
        if not 0.0 < self.ema_beta < 1.0:
            raise ValueError(f"train.ema_beta must be in (0, 1), got {self.ema_beta}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"train.grad_clip must be > 0 or null, got {self.grad_clip}")
        if self.grad_accum is not None and self.grad_accum < 1:
            raise ValueError(f"train.grad_accum must be >= 1 or null, got {self.grad_accum}")
        if self.validate_weights not in ("ema", "net"):
            raise ValueError(f"train.validate_weights must be one of ('ema', 'net'), got {self.validate_weights!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ScalingSettings:
    """Ray Train workers. num_workers 0 = Train local mode (the loop runs in the driver process)."""

    num_workers: int = 0
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    # Intra-op threads of a CPU worker (None: int(cpus_per_worker), at least 1). A sweep that books fewer logical
    # CPUs than its recipe, so that a trial fits a small machine, keeps the recipe's thread count here.
    torch_threads: int | None = None
    # Node labels the training workers must run on, e.g. {"ray-subcluster": "train"} (cluster/README.md).
    label_selector: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.num_workers < 0 or self.cpus_per_worker <= 0 or (self.torch_threads or 1) < 1:
            raise ValueError(f"scaling.num_workers must be >= 0, cpus_per_worker > 0 and torch_threads >= 1, got {self}")

    @property
    def threads(self) -> int:
        return self.torch_threads or max(1, int(self.cpus_per_worker))

    @property
    def num_processes(self) -> int:
        """Processes that train: the workers, or in local mode (0 workers) the one that runs the loop itself."""
        return max(1, self.num_workers)

    @property
    def local_mode(self) -> bool:
        """0 workers: Train local mode, the loop runs in the calling process (the driver, or a sweep trial's)."""
        return self.num_workers == 0


@dataclass(frozen=True, kw_only=True, slots=True)
class ExperimentConfig:
    """Everything a training run depends on; saved as config.json with every checkpoint."""

    name: str
    method: MethodConfig
    data: DataConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scaling: ScalingSettings = field(default_factory=ScalingSettings)
    seed: int = 0
    storage_path: str = "runs"  # local folder or pyarrow URI (s3://...); must be shared on multi-node clusters
    protocol: str = "rgb"  # how validation and evaluate.py score it: a models.metrics.PROTOCOLS name

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise ValueError(f"name {self.name!r}: use letters, digits, '.', '_' and '-' (up to 128, not starting "
                             "with . _ -)")
        if self.data.scale != self.method.scale:
            raise ValueError(f"data.scale ({self.data.scale}) must equal method.scale ({self.method.scale})")
        net_channels = getattr(self.method, "in_channels", 3)
        if self.data.lq_channels != net_channels:
            raise ValueError(f"the data's lq has {self.data.lq_channels} channels (data.degradation.hole_channel="
                             f"{self.data.lq_channels == 4}) but the method takes {net_channels}"
                             " (method.in_channels): an inpainting net needs the hole channel, any other net none")
        if self.data.seed != self.seed:  # one seed per run; `--set seed=N` sets both
            raise ValueError(f"data.seed ({self.data.seed}) must equal seed ({self.seed})")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {self.protocol!r}")
        for phase in self.train.progressive:
            if phase.batch_size > self.train.batch_size:
                raise ValueError(f"train.progressive: batch_size {phase.batch_size} > train.batch_size "
                                 f"{self.train.batch_size}, the rows the stream gives each step")
            if phase.patch_size > self.data.patch_size or phase.patch_size % self.data.scale:
                raise ValueError(f"train.progressive: patch_size {phase.patch_size} > data.patch_size "
                                 f"{self.data.patch_size}, or not a multiple of data.scale {self.data.scale}")
        if self.train.num_val_images > 0 and not self.data.has_validation:
            raise ValueError(f"train.num_val_images={self.train.num_val_images} needs held-out images: set "
                             "data.val_images >= 1 or data.val_source (or train.num_val_images=0)")

    @staticmethod
    def from_dict(d: dict) -> "ExperimentConfig":
        """Strict inverse of `to_dict`: unknown keys raise ValueError naming the dotted key."""
        return from_dict(ExperimentConfig, d)

    def to_dict(self) -> dict:
        return to_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @property
    def grad_accum_steps(self) -> int:
        """Micro-batches per optimiser step: train.grad_accum, or (None) what reaches the official global batch."""
        if self.train.grad_accum is not None:
            return self.train.grad_accum
        per_step = self.train.batch_size * self.scaling.num_processes
        official = self.train.official_global_batch
        return official // per_step if official and official % per_step == 0 else 1

    @property
    def global_batch_size(self) -> int:
        """Samples per optimiser step over all workers and accumulated micro-batches."""
        return self.train.batch_size * self.scaling.num_processes * self.grad_accum_steps


def apply_overrides(config: ExperimentConfig, *, files: list[str] = (), sets: list[str] = ()) -> ExperimentConfig:
    """Merge YAML/JSON files, then `dotted.key=value` overrides, into `config`; the result is validated.

    A file holds nested mappings (`optim: {lr: 1e-4}`), dotted keys (`optim.lr: 1e-4`) or both; an empty file
    changes nothing. Errors name the file (and the line, for a syntax error) or the `--set` item.
    """
    tree = config.to_dict()
    for path in files:
        tree = _merge_file(tree, path)
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {item!r}")
        set_dotted(tree, key.strip(), parse_scalar(value))
        if key.strip() == "seed":
            tie_data_seed(tree)
    return ExperimentConfig.from_dict(tree)


def tie_data_seed(tree: dict) -> None:
    """After `seed` changed in a ExperimentConfig dict: the run has one seed, so degradations draw from it too."""
    tree["data"]["seed"] = tree["seed"]


def _merge_file(tree: dict, path: str) -> dict:
    try:
        text = Path(path).read_text()
        overlay = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
        raise ValueError(f"--config {path}: {describe(error)}") from error
    if overlay is None:
        return tree
    if not isinstance(overlay, dict):
        raise ValueError(f"--config {path}: expected a mapping of config keys at the top level, "
                         f"got {type(overlay).__name__}")
    nested = {k: v for k, v in overlay.items() if "." not in str(k)}
    try:
        tree = deep_merge(tree, nested)
        for key, value in overlay.items():
            if "." in str(key):
                set_dotted(tree, key, value)
        if "seed" in overlay:
            tie_data_seed(tree)
        ExperimentConfig.from_dict(tree)  # validated here, so an error names this file
    except ValueError as error:
        raise ValueError(f"--config {path}: {error}") from error
    return tree


def debug() -> ExperimentConfig:
    """Tiny Refusion denoising the embedded sample photos, P=64, x1 Gaussian noise, CPU; well under a minute."""
    return ExperimentConfig(
        name="debug",
        method=dataclasses.replace(refusion_tiny(), T=20),
        data=DataConfig(degradation=GaussianNoiseConfig(sigma_range=(10.0, 30.0)), patch_size=64, crop_margin=0,
                        num_cpu_workers=1, rows_per_task=8),
        optim=OptimConfig(name="adam", lr=1e-2, scheduler="cosine", eta_min=1e-4),  # tiny net, few steps
        # EMA over the last ~10 steps: the paper's 0.995 / 10 would keep the initial weights in a 30-step run.
        train=TrainConfig(num_steps=30, batch_size=4, val_every=15, ckpt_every=15, log_every=5, num_val_images=2,
                          ema_beta=0.9, ema_every=1),
    )


def demo() -> ExperimentConfig:
    """What `make demo` trains (the default recipe): Refusion denoising the bundled photos on a CPU in ~2 min.

    Validated on the two held-out photos (chelsea, coffee), never trained on. A small NAFNet (width 16), T=10,
    max_sigma 30 and the posterior sampler, which beats Euler-Maruyama at few steps (refusion.md, issues #87,
    #110); a short EMA, since the paper's 0.995/10 would average in weights from the first minute. Its held-out
    PSNR gain over the noisy input is in the README.
    """
    method = dataclasses.replace(refusion_tiny(), net=dataclasses.replace(refusion_tiny().net, width=16), T=10,
                                 max_sigma=30.0, sampler="posterior")
    return ExperimentConfig(
        name="demo",
        method=method,
        data=DataConfig(degradation=GaussianNoiseConfig(sigma_range=(10.0, 30.0)), patch_size=48, crop_margin=0,
                        num_cpu_workers=1, rows_per_task=32, val_images=2, val_patch_size=256),
        optim=OptimConfig(name="adam", lr=4e-3, scheduler="cosine", eta_min=1e-5),
        train=TrainConfig(num_steps=800, batch_size=8, val_every=200, ckpt_every=200, log_every=50, num_val_images=2,
                          ema_beta=0.95, ema_every=1),
        scaling=ScalingSettings(cpus_per_worker=2),
    )


def _paper(name: str, method: MethodConfig, data: DataConfig, optim: OptimConfig, *, num_steps: int,
           batch_size: int, protocol: str = "rgb") -> ExperimentConfig:
    """A paper recipe; `protocol` is how its paper's table scores it (models.metrics.PROTOCOLS)."""
    return ExperimentConfig(
        name=name,
        protocol=protocol,
        method=method,
        data=dataclasses.replace(data, val_images=8),  # held out of the training folder; or give data.val_source
        optim=optim,
        train=TrainConfig(num_steps=num_steps, batch_size=batch_size, val_every=5000, ckpt_every=5000,
                          keep_last=3, log_every=100, num_val_images=8, grad_clip=None),
        scaling=ScalingSettings(num_workers=1, use_gpu=True, cpus_per_worker=2),
    )


def _refusion(r: ExperimentConfig) -> ExperimentConfig:
    """Refusion's EMA: ema_pytorch.EMA(beta=0.995, update_every=10) with its defaults (copy for 100 steps, warmup),
    fp32 training (`--set train.amp=true` trades fidelity for bf16 speed) and validation of the raw net, as the
    official code (both weights are saved; restore.py uses the EMA)."""
    train = dataclasses.replace(r.train, ema_beta=0.995, ema_every=10, ema_update_after=100, ema_warmup=True,
                                amp=False, validate_weights="net")
    return dataclasses.replace(r, train=train)


def _paired(folder: str, *, patch_size: int, scale: int = 1) -> DataConfig:
    """Paired LQ/GT folders `data/<task>/train/{LQ,GT}` (replace with --config or --set), flips + rot90."""
    source = PairedFolderSource(lq_dir=f"data/{folder}/train/LQ", gt_dir=f"data/{folder}/train/GT", scale=scale)
    return DataConfig(source=source, degradation=None, patch_size=patch_size, hflip=True, rot=True,
                      num_cpu_workers=6)


LION = OptimConfig(name="lion", lr=4e-5, betas=(0.9, 0.99), scheduler="cosine", eta_min=1e-7)


def refusion_deblurring() -> ExperimentConfig:
    """refusion.yml (deblurring): NAFNet w64 [1,1,1,28], sigma 50, T 100, Lion 4e-5 cosine, 700k x 4, 128^2."""
    return _refusion(_paper("refusion_deblurring", RefusionConfig(net=REFUSION_NAFNET),
                            _paired("gopro", patch_size=128), LION, num_steps=700_000, batch_size=4))


def refusion_deshadow() -> ExperimentConfig:
    """refusion.yml (deshadow): as deblurring, on shadow / shadow-free pairs."""
    return dataclasses.replace(refusion_deblurring(), name="refusion_deshadow", data=_paired("shadow", patch_size=128))


def refusion_sisr() -> ExperimentConfig:
    """refusion.yml (sisr): x4 bicubic, GT 128 / LR 32, nearest upsampling of lq as in the released weights."""
    method = RefusionConfig(net=REFUSION_NAFNET, scale=4, upsample="nearest")
    data = DataConfig(source=FolderSource(paths=("data/DIV2K/train_HR",)), degradation=BicubicConfig(scale=4),
                      patch_size=128, crop_margin=0, hflip=True, rot=True, num_cpu_workers=6)
    return _refusion(_paper("refusion_sisr", method, data, LION, num_steps=700_000, batch_size=4))


def sweep_gpu() -> ExperimentConfig:
    """Base of `sweep_refusion.py --scale gpu`: the paper Refusion (NAFNet w64 [1,1,1,28], sigma 50, T 100, Lion
    4e-5 cosine, batch 4, 128^2) denoising HQ photos (Gaussian sigma 10-30; DIV2K by default, or data.source)."""
    data = DataConfig(source=FolderSource(paths=("data/DIV2K/train_HR",)),
                      degradation=GaussianNoiseConfig(sigma_range=(10.0, 30.0)), patch_size=128, crop_margin=0,
                      hflip=True, rot=True, num_cpu_workers=6, val_patch_size=256)
    return _refusion(_paper("sweep_gpu", RefusionConfig(net=REFUSION_NAFNET), data, LION, num_steps=20_000,
                            batch_size=4))


def latent_refusion_dehazing(autoencoder_path: str | None = None) -> ExperimentConfig:
    """nasde.yml: NAFNet img_ch 8 on the 8x dehazing AE, Lion 3e-5 cosine, 400k x 8, 1024^2 patches."""
    net = dataclasses.replace(REFUSION_NAFNET, img_channels=DEHAZE_UNET.embed_dim, global_skip=True)
    method = RefusionConfig(net=net, latent=DEHAZE_UNET, autoencoder_path=autoencoder_path)
    optim = dataclasses.replace(LION, lr=3e-5)
    return _refusion(_paper("latent_refusion_dehazing", method, _paired("hazy", patch_size=1024), optim,
                            num_steps=400_000, batch_size=8))


def latent_autoencoder_dehazing() -> ExperimentConfig:
    """unet-latent train_haze.yml: the 8x/8-channel AE, Lion 3e-5 cosine, 300k x 16, 256^2, lq/hq swap."""
    method = LatentAutoencoderConfig(net=DEHAZE_UNET)
    optim = dataclasses.replace(LION, lr=3e-5)
    return _refusion(_paper("latent_autoencoder_dehazing", method, _paired("hazy", patch_size=256), optim,
                            num_steps=300_000, batch_size=16))


def irsde_deblurring() -> ExperimentConfig:
    """ir-sde.yml (deblurring): the ConditionalUNet (width 64, depth 4, 137,147,523 parameters), sigma 10, Adam 1e-4,
    MultiStep [200k,400k,600k] x0.5, 700k x 4."""
    optim = OptimConfig(name="adam", lr=1e-4, betas=(0.9, 0.99), scheduler="multistep",
                        milestones=(200_000, 400_000, 600_000), gamma=0.5)
    method = RefusionConfig(net=IRSDE_UNET, max_sigma=10.0)
    return _refusion(_paper("irsde_deblurring", method, _paired("gopro", patch_size=128), optim,
                            num_steps=700_000, batch_size=4))


def _inpainting_data() -> DataConfig:
    """The official inpainting data (`inpainting/options/train/*.yml`): GT-only CelebA-HQ 256^2 faces, 128^2 crops,
    flips + rot90, holes filled with 1 (white) as its `mask_to`. Its holes come from RePaint's mask files
    (`gt_keep_masks/thin`, 100 PNGs); ours are drawn per sample and replayable (degradations/mask.py)."""
    return DataConfig(source=FolderSource(paths=("data/celebahq/train",)), degradation=MaskConfig(fill=1.0),
                      patch_size=128, crop_margin=0, hflip=True, rot=True, num_cpu_workers=6)


def refusion_inpainting() -> ExperimentConfig:
    """refusion.yml (inpainting): as deblurring (NAFNet w64 [1,1,1,28], sigma 50, T 100, Lion 4e-5 cosine, 700k x 4)
    on masked faces."""
    return dataclasses.replace(refusion_deblurring(), name="refusion_inpainting", data=_inpainting_data())


def irsde_inpainting() -> ExperimentConfig:
    """ir-sde.yml (inpainting): as IR-SDE deblurring (ConditionalUNet, Adam 1e-4 MultiStep) with sigma 30."""
    r = irsde_deblurring()
    return dataclasses.replace(r, name="irsde_inpainting", method=dataclasses.replace(r.method, max_sigma=30.0),
                               data=_inpainting_data())


# OSEDiff (arXiv 2406.08177): AdamW 5e-5 constant, grad-clip 1, batch 4 per GPU x 4, ~14k steps, no EMA
# (an EMA copy would duplicate SD; the official method has none).
OSEDIFF_OPTIM = OptimConfig(name="adamw", lr=5e-5, betas=(0.9, 0.999), weight_decay=1e-2, scheduler="constant")


# LSDIR + the first 10k FFHQ faces, Real-ESRGAN degradations without the USM-sharpened GT (commented out upstream).
OSEDIFF_DATA = DataConfig(source=FolderSource(paths=("data/LSDIR", "data/FFHQ10k")),
                          degradation=RealESRGANConfig(usm_gt=False), patch_size=512, num_cpu_workers=6)


def osediff_sd21() -> ExperimentConfig:
    """OSEDiff on SD 2.1-base (--set method.sd_path=/path/to/sd21), Real-ESRGAN x4 degradations, 512^2."""
    return ExperimentConfig(
        name="osediff_sd21", method=osediff_sd21_method(), data=OSEDIFF_DATA, optim=OSEDIFF_OPTIM, protocol="sr-y",
        train=TrainConfig(num_steps=14_000, batch_size=4, ema=False, grad_clip=1.0, val_every=500, ckpt_every=500),
        scaling=ScalingSettings(num_workers=4, use_gpu=True, cpus_per_worker=2),
    )


def osediff_tiny() -> ExperimentConfig:
    """OSEDiff with a tiny random SD written locally once; a CPU check of the whole method."""
    return ExperimentConfig(
        name="osediff_tiny", method=osediff_tiny_method(), protocol="sr-y",
        data=DataConfig(patch_size=32, crop_margin=16, num_cpu_workers=1), optim=OSEDIFF_OPTIM,
        train=TrainConfig(num_steps=4, batch_size=1, ema=False, grad_clip=1.0, val_every=4, ckpt_every=4),
    )


# DiffIR (arXiv 2303.09472): Adam 2e-4, MultiStep in stage 1; stage 2's manual two-phase schedule (phase A
# 0.1^(it//60k) while the prior learns alone, then 0.5^((it-100k)//N)). Approximation: one Adam state spans both
# phases (the official phase A has its own).
ADAM_DIFFIR = OptimConfig(name="adam", lr=2e-4, betas=(0.9, 0.99), scheduler="multistep",
                          milestones=(500_000, 700_000), gamma=0.5)


def _diffir_two_phase(*, decay_every: int) -> OptimConfig:
    return OptimConfig(name="adam", lr=2e-4, betas=(0.9, 0.99), scheduler="two_phase", phase_steps=100_000,
                       phase_a_every=60_000, phase_a_gamma=0.1, decay_every=decay_every, gamma=0.5)


def _diffir(r: ExperimentConfig, *, validate: bool) -> ExperimentConfig:
    """DiffIR's EMA (BasicSR, 0.999 every step) and its 8 GPUs (train_*.sh: nproc_per_node=8), so the recipe's
    global batch is the official one (per-GPU batch x 8); stage 1 needs the GT to restore (CPEN_S1), so it has no
    validation."""
    train = dataclasses.replace(r.train, num_val_images=r.train.num_val_images if validate else 0, ema_beta=0.999,
                                ema_every=1, official_global_batch=r.train.batch_size * 8)
    return dataclasses.replace(r, train=train, scaling=dataclasses.replace(r.scaling, num_workers=8))


def diffir_sr4x_s1() -> ExperimentConfig:
    data = DataConfig(source=FolderSource(paths=("data/DF2K/train_HR",)), degradation=RealESRGANConfig(usm_gt=False),
                      patch_size=256, num_cpu_workers=6)  # DiffIR trains without the USM-sharpened GT (gt_usm: False)
    return _diffir(_paper("diffir_sr4x_s1", diffir_configs.sr4x(stage=1), data, ADAM_DIFFIR, num_steps=1_000_000,
                          batch_size=9, protocol="sr-y"), validate=False)


def diffir_sr4x_s2(init_from: str = "runs/diffir_sr4x_s1/checkpoint_01000000") -> ExperimentConfig:
    r = diffir_sr4x_s1()
    return dataclasses.replace(r, name="diffir_sr4x_s2", method=diffir_configs.sr4x(stage=2, init_from=init_from),
                               optim=_diffir_two_phase(decay_every=600_000),
                               train=dataclasses.replace(r.train, num_val_images=8))


def _progressive(r: ExperimentConfig, *, num_steps: tuple[int, ...]) -> ExperimentConfig:
    """The official GoPro progressive training (mini_batch_sizes / gt_sizes of train_DiffIRS*.yml): per-GPU batches
    8, 4, 2, 2, 1, 1 of 192^2 .. 512^2 patches; the stream carries 8 rows of 512^2 and each phase crops them.
    Validation keeps its 256^2 centre crops."""
    schedule = phases(num_steps=num_steps, batch_sizes=(8, 4, 2, 2, 1, 1), patch_sizes=(192, 256, 320, 384, 464, 512))
    return dataclasses.replace(r, train=dataclasses.replace(r.train, progressive=schedule),
                               data=dataclasses.replace(r.data, val_patch_size=256))


def diffir_sr4x_gan(init_from: str = "runs/diffir_sr4x_s2/checkpoint_01000000") -> ExperimentConfig:
    """train_DiffIRS2_GAN_x4.yml, the paper's real-world SR model: the stage-2 net (its EMA) plus Real-ESRGAN's
    U-Net discriminator, L1 + prior L1 + VGG19 perceptual + GAN (weights 1, 1, 1, 1), generator and discriminator
    Adam 1e-4, halved at step 300k of 400k. Needs torchvision's VGG19 file (method.gan.vgg19_path)."""
    r = diffir_sr4x_s1()
    method = dataclasses.replace(diffir_configs.sr4x(stage=2, init_from=init_from), prior_only_steps=0,
                                 gan=GANConfig())
    optim = OptimConfig(name="adam", lr=1e-4, betas=(0.9, 0.99), scheduler="multistep", milestones=(300_000,),
                        gamma=0.5)
    return dataclasses.replace(r, name="diffir_sr4x_gan", method=method, optim=optim,
                               train=dataclasses.replace(r.train, num_steps=400_000, num_val_images=8))


def diffir_deblur_s1() -> ExperimentConfig:
    """train_DiffIRS1.yml (GoPro): Adam 2e-4, BasicSR's cyclic cosine over periods 92k and 208k with eta_mins
    2.85e-4 (above the lr: the first period rises to it) and 1e-6."""
    optim = OptimConfig(name="adam", lr=2e-4, betas=(0.9, 0.999), scheduler="cosine_restarts",
                        periods=(92_000, 208_000), eta_mins=(2.85e-4, 1e-6), restart_weights=(1.0, 1.0))
    r = _diffir(_paper("diffir_deblur_s1", diffir_configs.deblur(stage=1), _paired("gopro", patch_size=512), optim,
                       num_steps=300_000, batch_size=8, protocol="gopro"), validate=False)
    return _progressive(r, num_steps=(92_000, 80_000, 38_000, 33_000, 33_000, 24_000))


def diffir_deblur_s2(init_from: str = "runs/diffir_deblur_s1/checkpoint_00300000") -> ExperimentConfig:
    optim = _diffir_two_phase(decay_every=80_000)
    r = _diffir(_paper("diffir_deblur_s2", diffir_configs.deblur(stage=2, init_from=init_from),
                       _paired("gopro", patch_size=512), optim, num_steps=400_000, batch_size=8, protocol="gopro"),
                validate=True)
    return _progressive(r, num_steps=(150_000, 60_000, 50_000, 60_000, 40_000, 40_000))


def _diffir_inpainting_data() -> DataConfig:
    """DiffIR-inpainting's CelebA-HQ data (data/abl-04-256-mh-dist-celeba.yaml): the 256^2 faces whole, no flips,
    the hole mask as a 4th channel and the holes zeroed (LaMa's img * (1 - mask)). LaMa draws per sample either
    irregular strokes (1-5 strokes of 1-5 segments, 10-209 px long, 5-104 px wide, any turn) or 1-4 boxes of
    30-150 px; ours draws both kinds into one mask, at the same sizes (fractions of 256)."""
    holes = MaskConfig(num_strokes_range=(1, 5), num_vertices_range=(1, 5), segment_length_range=(0.04, 0.82),
                       stroke_width_range=(0.02, 0.41), max_turn=math.pi, num_boxes_range=(1, 4),
                       box_size_range=(0.12, 0.59), fill=0.0, hole_channel=True)
    return DataConfig(source=FolderSource(paths=("data/celebahq/train_256",)), degradation=holes, patch_size=256,
                      crop_margin=0, hflip=False, rot=False, num_cpu_workers=6)


def _lama(name: str, method: MethodConfig, *, validate: bool) -> ExperimentConfig:
    """DiffIR-inpainting's LaMa trainer: G Adam 2e-4 and D Adam 1e-4 (lama.disc_lr), constant; gradients clipped
    at norm 1 per net; fp32; 40 epochs x 25,000 batches of 5 per GPU, on 8 GPUs (UNVERIFIED: the trainer takes
    every GPU it sees, `gpus: -1`); no generator averaging (average_generator is off), so no EMA."""
    optim = OptimConfig(name="adam", lr=2e-4, betas=(0.9, 0.999), scheduler="constant")
    r = _paper(name, method, _diffir_inpainting_data(), optim, num_steps=1_000_000, batch_size=5)
    train = dataclasses.replace(r.train, ema=False, amp=False, grad_clip=1.0, official_global_batch=5 * 8,
                                num_val_images=r.train.num_val_images if validate else 0)
    return dataclasses.replace(r, train=train, scaling=dataclasses.replace(r.scaling, num_workers=8))


def diffir_inpaint_s1() -> ExperimentConfig:
    """DiffIRS1-celeba.yaml: CPEN_S1 sees the masked image, the mask and the GT; LaMa's losses."""
    return _lama("diffir_inpaint_s1", diffir_configs.inpainting(stage=1), validate=False)


def diffir_inpaint_s2(init_from: str = "runs/diffir_inpaint_s1/checkpoint_01000000") -> ExperimentConfig:
    """DiffIRS2-celeba.yaml: from stage 1 (generatorS1_path and generatorS2_path), CPEN_S2 + the prior denoiser
    trained jointly with the DIRformer, LaMa's losses plus L1 of the prior (KDLoss's l_abs, weight 1)."""
    return _lama("diffir_inpaint_s2", diffir_configs.inpainting(stage=2, init_from=init_from), validate=True)


def diffir_debug() -> ExperimentConfig:
    """Tiny DiffIR stage 2 (10 prior-only steps, then joint) on the debug data."""
    return dataclasses.replace(debug(), name="diffir_debug",
                               method=diffir_configs.tiny(stage=2, scale=1, prior_only_steps=10))


def msgd_deblurring() -> ExperimentConfig:
    """MSGD on GoPro 128^2 crops with the paper's optimiser (methods.md 3.3b): Adam (0.5, 0.999), lr linear up over
    20k steps, then 1e-4, and its global batch of 256 (32 TPU v3 cores): 8 per worker, with as many accumulated
    micro-batches as the workers need (32 on one, 4 on 8). The EMA is UNVERIFIED: TrainConfig's defaults (beta
    0.995 every 10 steps) are Refusion's values, not the paper's."""
    optim = OptimConfig(name="adam", lr=1e-4, betas=(0.5, 0.999), scheduler="warmup_constant", warmup_steps=20_000)
    r = _paper("msgd_deblurring", msgd_configs.deblur(), _paired("gopro", patch_size=128), optim,
               num_steps=1_000_000, batch_size=8, protocol="gopro")
    return dataclasses.replace(r, train=dataclasses.replace(r.train, official_global_batch=256))


def msgd_debug() -> ExperimentConfig:
    """Tiny MSGD deblurring synthetic motion blur of the sample photos (10 warm-start steps, then the ramp)."""
    r = debug()
    return dataclasses.replace(r, name="msgd_debug", method=msgd_configs.tiny(warmup_steps=10, ramp_steps=5),
                               data=dataclasses.replace(r.data, degradation=MotionBlurConfig()))


RECIPES = {
    f.__name__: f
    for f in (demo, debug, refusion_deblurring, refusion_deshadow, refusion_sisr, sweep_gpu, latent_refusion_dehazing,
              latent_autoencoder_dehazing, irsde_deblurring, refusion_inpainting, irsde_inpainting, osediff_sd21,
              osediff_tiny, diffir_sr4x_s1, diffir_sr4x_s2, diffir_sr4x_gan, diffir_deblur_s1, diffir_deblur_s2, diffir_debug,
              diffir_inpaint_s1, diffir_inpaint_s2,
              msgd_deblurring, msgd_debug)
}
