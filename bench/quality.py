"""Reduced-scale restoration quality of each method: train on the bundled photos through the real pipeline
(Ray Train local mode, Ray Data, MLflow), restore the held-out photos, score them beside their input.

    python -m bench.quality --method refusion-denoise              # one method, its default budget
    python -m bench.quality --method diffir-sr --minutes 5         # steps scaled to about 5 minutes here
    python -m bench.quality --method all                           # every method, then the README table
    python -m bench.quality --method diffir-realsr --drealsr DIR   # trained on Real-ESRGAN degradations,
                                                                   # scored on DRealSR's real x4 pairs
    python -m bench.quality --method diffir-realsr --drealsr DIR --gan ''   # then the GAN stage (VGG19 file)

Ends with `NAME: input X dB -> output Y dB (gain +Z dB) on N held-out images`. The held-out photos (chelsea
and coffee, `data.val_images=2`) are never trained on; validation is their centred 256^2 (SR: 128^2 lq) crops.
`minutes` of each bench is what its default steps took on the project's 2-core CPU machine.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch

from bench import quality_recipes as recipes
from models.method import RestorationMethod
from models.metrics import PROTOCOLS, ImageMetrics, Protocol
from degradations import MaskConfig
from pipelines.batching import to_image, to_model
from pipelines.checkpoints import build_method
from pipelines.data import build_val_set
from pipelines.evaluate import evaluate, upsample_input
from pipelines.launch import run_training
from pipelines.recipes import ExperimentConfig
from pipelines.tracking import metric_history

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Bench:
    """One method on one task: its stages (each gets the previous stage's checkpoint) and a classical baseline."""

    method: str
    task: str
    stages: tuple[Callable[[str | None], ExperimentConfig], ...]
    minutes: float  # measured for the default steps on the 2-core CPU machine (README)
    baseline: str | None = None  # "nlm" (OpenCV non-local means) or "bicubic"


BENCHES: dict[str, Bench] = {
    "refusion-denoise": Bench("Refusion (pixel)", "denoising, Gaussian sigma 10-30", (recipes.refusion_denoise,),
                              minutes=4.4, baseline="nlm"),
    "refusion-deblur": Bench("Refusion (pixel)", "motion deblurring", (recipes.refusion_deblur,), minutes=9.8),
    "latent-refusion": Bench("Latent Refusion", "denoising, Gaussian sigma 10-30",
                             (recipes.latent_autoencoder_denoise, recipes.latent_refusion_denoise), minutes=4.0,
                             baseline="nlm"),
    "diffir-sr": Bench("DiffIR S1 -> S2", "x4 SR, bicubic", (recipes.diffir_sr_s1, recipes.diffir_sr_s2),
                       minutes=7.9, baseline="bicubic"),
    "msgd-deblur": Bench("MSGD", "motion deblurring", (recipes.msgd_deblur,), minutes=7.4),
    "diffir-inpaint": Bench("DiffIR S1 -> S2 (LaMa losses)", "inpainting, free-form strokes + boxes",
                            (recipes.diffir_inpaint_s1, recipes.diffir_inpaint_s2), minutes=9.2, baseline="telea"),
    "refusion-inpaint": Bench("Refusion (pixel)", "inpainting, free-form strokes + boxes", (recipes.refusion_inpaint,),
                              minutes=2.9, baseline="telea"),
}


@dataclasses.dataclass(frozen=True, slots=True)
class QualityResult:
    name: str
    lq_psnr: float
    psnr: float
    lq_ssim: float
    ssim: float
    psnr_start: float | None  # the last stage's net before its first step (random, or stage 1's for DiffIR S2)
    baseline_psnr: float | None
    num_images: int
    minutes: float
    checkpoint: str
    holes: "HoleScores | None" = None  # inpainting: PSNR inside the holes only

    @property
    def gain(self) -> float:
        return self.psnr - self.lq_psnr

    def line(self) -> str:
        holes = "" if self.holes is None else f"; {self.holes.line()}"
        return (f"{self.name}: input {self.lq_psnr:.2f} dB -> output {self.psnr:.2f} dB (gain {self.gain:+.2f} dB) "
                f"on {self.num_images} held-out images{holes}")

    def start_line(self) -> str:
        start = "not scored" if self.psnr_start is None else f"{self.psnr_start:.2f} dB"
        return f"{self.name}: held-out PSNR {start} at step 0 -> {self.psnr:.2f} dB after training"


@dataclasses.dataclass(frozen=True, slots=True)
class HoleScores:
    """PSNR over the hole pixels alone (all three channels), where an inpainting model has to invent content."""

    lq_psnr: float  # the fill value against the photo
    psnr: float
    baseline_psnr: float  # OpenCV's Telea inpainting given the same holes
    hole_fraction: float
    mean_fill_psnr: float = float("nan")  # the holes filled with the mean colour of the image's known pixels

    @property
    def gain(self) -> float:
        return self.psnr - self.lq_psnr

    def line(self) -> str:
        return (f"inside the holes ({100 * self.hole_fraction:.0f}% of the pixels) input {self.lq_psnr:.2f} dB -> "
                f"output {self.psnr:.2f} dB (gain {self.gain:+.2f} dB; mean-colour fill {self.mean_fill_psnr:.2f} dB, "
                f"Telea {self.baseline_psnr:.2f} dB)")


def scaled(config: ExperimentConfig, factor: float, *, num_validations: int = 4,
           val_patch_size: int | None = None, torch_threads: int | None = None) -> ExperimentConfig:
    """The config with num_steps scaled by `factor` and `num_validations` validations (and checkpoints) spread
    over it, optionally on smaller held-out crops and with `torch_threads` intra-op threads (default: one per
    booked CPU); phased methods keep their phase fractions."""
    if torch_threads is not None:
        config = dataclasses.replace(config, scaling=dataclasses.replace(config.scaling, torch_threads=torch_threads))
    if val_patch_size is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, val_patch_size=val_patch_size))
    train = config.train
    num_steps = max(2, math.ceil(train.num_steps * factor))
    every = max(1, num_steps // num_validations)
    config = dataclasses.replace(config, train=dataclasses.replace(
        train, num_steps=num_steps, val_every=every, ckpt_every=every, log_every=max(1, min(train.log_every, every))))
    return recipes.rescale_phases(config, factor)


def run_bench(name: str, *, minutes: float | None = None, storage_path: str = "runs", mlflow_uri: str | None = None,
              num_validations: int = 4, val_patch_size: int | None = None, score_start: bool = True,
              torch_threads: int | None = None) -> QualityResult:
    """Train every stage of bench `name` (steps scaled to `minutes`), then score the held-out photos (their
    centred crops of `val_patch_size`, default the bench's 256^2). `score_start=False` skips scoring the
    untrained net (a full restore of the held-out crops: about 30 s on the CPU)."""
    bench = BENCHES[name]
    factor = 1.0 if minutes is None else minutes / bench.minutes
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    started, previous, config, result = time.perf_counter(), None, None, None
    for index, stage in enumerate(bench.stages):
        config = scaled(stage(previous), factor, num_validations=num_validations, val_patch_size=val_patch_size,
                        torch_threads=torch_threads)
        config = dataclasses.replace(config, name=f"{name}-{stamp}-{config.name}", storage_path=storage_path)
        if index == len(bench.stages) - 1:
            start = score_at_step_0(config) if score_start else {"psnr": None}
        result = run_training(config, mlflow_uri=mlflow_uri, experiment="quality")
        if result.checkpoint is None:
            raise RuntimeError(f"{name}: stage {index} ({config.name}) left no checkpoint")
        previous = result.checkpoint[0]
    m = result.metrics
    hqs, lqs, _ = build_val_set(config.data, config.train.num_val_images)
    holes = None
    if isinstance(config.data.degradation, MaskConfig):
        holes = score_holes(config, Path(previous), hqs, lqs)
        baseline = score_telea(hqs, lqs, hole_masks(config), protocol=PROTOCOLS[config.protocol])[0]
    else:
        baseline = (classical_baseline(bench.baseline, hqs, lqs, protocol=PROTOCOLS[config.protocol])
                    if bench.baseline else None)
    return QualityResult(name=name, lq_psnr=m["val/lq_psnr"], psnr=m["val/psnr"], lq_ssim=m["val/lq_ssim"],
                         ssim=m["val/ssim"], psnr_start=start["psnr"], baseline_psnr=baseline, num_images=len(hqs),
                         minutes=(time.perf_counter() - started) / 60, checkpoint=previous, holes=holes)


def hole_masks(config: ExperimentConfig) -> list[np.ndarray]:
    """HxW bool holes of the held-out crops. The fill draws nothing from the rng, so the validation pairs built
    with fill 0 and with fill 1 have the same holes and differ exactly in them."""
    data = config.data
    lqs = [build_val_set(dataclasses.replace(data, degradation=dataclasses.replace(data.degradation, fill=fill)),
                         config.train.num_val_images)[1] for fill in (0.0, 1.0)]
    return [np.any(zero[..., :3] != one[..., :3], axis=-1) for zero, one in zip(*lqs)]


def hole_psnr(out: np.ndarray, hq: np.ndarray, holes: np.ndarray) -> float:
    """PSNR of uint8 HxWx3 images over the hole pixels only."""
    error = out[holes].astype(np.float64) - hq[holes].astype(np.float64)
    return float(10 * np.log10(255.0**2 / max(np.mean(error**2), 1e-10)))


def score_holes(config: ExperimentConfig, checkpoint: Path, hqs: list[np.ndarray], lqs: list[np.ndarray]) -> HoleScores:
    """Restore the held-out crops with the run's checkpoint (restore.py's weights) and score inside the holes."""
    from pipelines.restore import load_model

    method, net, _ = load_model(checkpoint, device=torch.device("cpu"))
    return _hole_scores(config, method, net, hqs, lqs)


def untrained_hole_psnr(config: ExperimentConfig) -> float:
    """PSNR inside the held-out holes of `config`'s net before any training: its random init (torch seed
    config.seed, as the training loop builds it), not started from an earlier stage (DiffIR S2 without S1)."""
    method_config = config.method
    if getattr(method_config, "init_from", ""):
        method_config = dataclasses.replace(method_config, init_from="")
    method = build_method(method_config)
    torch.manual_seed(config.seed)
    net = method.build().eval()
    hqs, lqs, _ = build_val_set(config.data, config.train.num_val_images)
    return _hole_scores(config, method, net, hqs, lqs).psnr


def _hole_scores(config: ExperimentConfig, method: RestorationMethod, net: torch.nn.Module, hqs: list[np.ndarray],
                 lqs: list[np.ndarray]) -> HoleScores:
    generator = torch.Generator().manual_seed(config.seed)
    masks = hole_masks(config)
    inputs, outputs, telea = [], [], score_telea(hqs, lqs, masks, protocol=PROTOCOLS[config.protocol])[1]
    mean_fills = []
    for hq, lq, holes in zip(hqs, lqs, masks, strict=True):
        mean_fill = lq[..., :3].copy()
        mean_fill[holes] = np.round(hq[~holes].mean(axis=0)).astype(np.uint8)
        mean_fills.append(hole_psnr(mean_fill, hq, holes))
        with torch.no_grad():
            out = to_image(method.restore(net, to_model(torch.from_numpy(lq[None])), generator=generator))[0]
        inputs.append(hole_psnr(lq[..., :3], hq, holes))  # an lq with a hole channel: its image
        outputs.append(hole_psnr(out, hq, holes))
    return HoleScores(lq_psnr=float(np.mean(inputs)), psnr=float(np.mean(outputs)), baseline_psnr=telea,
                      hole_fraction=float(np.mean([m.mean() for m in masks])), mean_fill_psnr=float(np.mean(mean_fills)))


def score_telea(hqs: list[np.ndarray], lqs: list[np.ndarray], masks: list[np.ndarray], *,
                protocol: Protocol) -> tuple[float, float]:
    """(whole-image PSNR, PSNR inside the holes) of OpenCV's Telea inpainting (radius 5) given the true holes."""
    metrics = ImageMetrics(device=torch.device("cpu"), protocol=protocol)
    whole, inside = [], []
    for hq, lq, holes in zip(hqs, lqs, masks, strict=True):
        out = cv2.inpaint(np.ascontiguousarray(lq[..., :3]), holes.astype(np.uint8), 5, cv2.INPAINT_TELEA)
        whole.append(metrics(to_model(torch.from_numpy(out[None])), to_model(torch.from_numpy(hq[None])))["psnr"])
        inside.append(hole_psnr(out, hq, holes))
    return float(np.mean(whole)), float(np.mean(inside))


@dataclasses.dataclass(frozen=True, slots=True)
class LearningResult:
    """OSEDiff on a random tiny SD: held-out PSNR before and after training, and each loss term's first and
    last logged means (a random SD cannot restore; this shows the method learns)."""

    psnr_start: float
    psnr_end: float
    lq_psnr: float
    losses: dict[str, tuple[float, float]]
    num_images: int

    def line(self) -> str:
        terms = ", ".join(f"{k} {a:.4f} -> {b:.4f}" for k, (a, b) in self.losses.items())
        return (f"osediff: held-out PSNR {self.psnr_start:.2f} dB at step 0 -> {self.psnr_end:.2f} dB "
                f"(input {self.lq_psnr:.2f} dB) on {self.num_images} held-out images; {terms}")


def run_osediff(*, minutes: float | None = None, storage_path: str = "runs", mlflow_uri: str | None = None,
                num_validations: int = 4, torch_threads: int | None = None) -> LearningResult:
    """Score the untrained OSEDiff (step 0) on the held-out photos, train it, score again, read the loss curves."""
    config = recipes.osediff_tiny_sr()
    config = scaled(config, 1.0 if minutes is None else minutes / OSEDIFF_MINUTES, num_validations=num_validations,
                    torch_threads=torch_threads)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    config = dataclasses.replace(config, name=f"osediff-{stamp}", storage_path=storage_path)
    start = score_at_step_0(config)
    val_set = build_val_set(config.data, config.train.num_val_images)
    result = run_training(config, mlflow_uri=mlflow_uri, experiment="quality")
    losses = {}
    for key in ("loss_l2", "loss_lpips", "loss_vsd", "loss_fake"):
        values = [v for _, v in metric_history(result.target, f"train/{key}")]
        quarter = max(1, len(values) // 4)
        losses[key] = (float(np.mean(values[:quarter])), float(np.mean(values[-quarter:])))
    return LearningResult(psnr_start=start["psnr"], psnr_end=result.metrics["val/psnr"],
                          lq_psnr=result.metrics["val/lq_psnr"], losses=losses, num_images=len(val_set[0]))


def score_at_step_0(config: ExperimentConfig) -> dict[str, float]:
    """Held-out scores of the net the training loop starts from (same seed, same build), before any step."""
    method = build_method(config.method)
    torch.manual_seed(config.seed)
    net = method.build()
    val_set = build_val_set(config.data, config.train.num_val_images)
    metrics = ImageMetrics(device=torch.device("cpu"), protocol=PROTOCOLS[config.protocol])
    scores, _ = evaluate(method, net, val_set, metrics, device=torch.device("cpu"), seed=config.seed)
    return scores


OSEDIFF_MINUTES = 2.3  # osediff_tiny_sr's default steps on the 2-core machine


REAL_SR_MINUTES = 9.0  # diffir_realsr_s1 + s2 default steps on the 2-core machine
REAL_SR_GAN_MINUTES = 8.0  # diffir_realsr_gan's 300 steps (VGG19 on 6 x 96^2 crops, forward and backward)


@dataclasses.dataclass(frozen=True, slots=True)
class RealWorldResult:
    """A model trained on synthetic degradations, scored on real LR/HR pairs beside the bicubic upsampling of the
    same LR (Y-channel PSNR/SSIM, protocol sr-y, as the real-world SR papers' tables)."""

    bicubic: dict[str, float]
    output: dict[str, float]
    num_images: int
    synthetic: QualityResult  # the held-out photos with synthetic degradations, from the same run
    stage2: dict[str, float] | None = None  # with --gan: the stage-2 net's scores, before the GAN stage

    def line(self) -> str:
        gain = self.output["psnr"] - self.bicubic["psnr"]
        before = ("" if self.stage2 is None else
                  f" (stage 2 before the GAN stage: {self.stage2['psnr']:.2f} dB / {self.stage2['ssim']:.4f})")
        return (f"diffir-realsr on DRealSR: bicubic {self.bicubic['psnr']:.2f} dB / {self.bicubic['ssim']:.4f} -> "
                f"output {self.output['psnr']:.2f} dB / {self.output['ssim']:.4f} (gain {gain:+.2f} dB) "
                f"on {self.num_images} real pairs{before}")


def run_realsr(drealsr: Path, *, minutes: float | None = None, storage_path: str = "runs",
               mlflow_uri: str | None = None, gan_vgg19: str | None = None,
               torch_threads: int | None = None) -> RealWorldResult:
    """Train DiffIR S1 -> S2 on Real-ESRGAN degradations of the bundled photos, then score DRealSR's real x4 pairs
    (`drealsr/test_LR`, `drealsr/test_HR`; not shipped: give the folder) against bicubic.

    gan_vgg19: also train the GAN stage after S2 with this VGG19 file ("" torch.hub's, "random" untrained
    features), and score the S2 net too."""
    stages = [recipes.diffir_realsr_s1, recipes.diffir_realsr_s2]
    if gan_vgg19 is not None:
        stages.append(functools.partial(recipes.diffir_realsr_gan, vgg19_path=gan_vgg19))
    full_minutes = REAL_SR_MINUTES + (REAL_SR_GAN_MINUTES if gan_vgg19 is not None else 0.0)
    factor = 1.0 if minutes is None else minutes / full_minutes
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    started, previous, config, result, stage2 = time.perf_counter(), None, None, None, None
    for stage in stages:
        config = scaled(stage(previous), factor, num_validations=1, torch_threads=torch_threads)
        config = dataclasses.replace(config, name=f"diffir-realsr-{stamp}-{config.name}", storage_path=storage_path)
        result = run_training(config, mlflow_uri=mlflow_uri, experiment="quality")
        previous = result.checkpoint[0]
        if stage is recipes.diffir_realsr_s2 and gan_vgg19 is not None:  # the S2 net, before the GAN stage
            stage2 = score_real_pairs(Path(previous), drealsr)[1]
    m = result.metrics
    synthetic = QualityResult(name="diffir-realsr", lq_psnr=m["val/lq_psnr"], psnr=m["val/psnr"],
                              lq_ssim=m["val/lq_ssim"], ssim=m["val/ssim"], psnr_start=None, baseline_psnr=None,
                              num_images=config.train.num_val_images, minutes=(time.perf_counter() - started) / 60,
                              checkpoint=previous)
    bicubic, output, num_images = score_real_pairs(Path(previous), drealsr)
    return RealWorldResult(bicubic=bicubic, output=output, num_images=num_images, synthetic=synthetic, stage2=stage2)


def score_real_pairs(checkpoint: Path, folder: Path, *, device: torch.device = torch.device("cpu")
                     ) -> tuple[dict[str, float], dict[str, float], int]:
    """(bicubic means, model means, pairs) of PSNR/SSIM (sr-y) on folder/test_LR -> folder/test_HR, through
    evaluate.py's pairing and scoring and restore.py's restore (seed = index, as restore.py numbers images)."""
    from pipelines.evaluate import pair_folders, score_pairs
    from pipelines.restore import load_model, restore_image

    pairs, unmatched = pair_folders(folder / "test_HR", lq_dir=folder / "test_LR")
    if unmatched:
        logger.warning("DRealSR: %d files without a partner: %s", len(unmatched), ", ".join(unmatched[:5]))
    method, net, config = load_model(checkpoint, device=device)
    scale, protocol = config.method.scale, PROTOCOLS["sr-y"]
    seeds = {pair.stem: i for i, pair in enumerate(pairs)}

    def bicubic(lq_BCHW: torch.Tensor, pair) -> torch.Tensor:
        return upsample_input(lq_BCHW, (lq_BCHW.shape[-2] * scale, lq_BCHW.shape[-1] * scale))

    def model(lq_BCHW: torch.Tensor, pair) -> torch.Tensor:
        return restore_image(method, net, lq_BCHW, scale=scale, seed=seeds[pair.stem], sampler=None, steps=None,
                             tile=None, overlap=32, max_memory_gb=None, progress=False)

    scores = [score_pairs(pairs, protocol, ["psnr", "ssim"], device=device, weights_dir=None, restore=fn)
              for fn in (bicubic, model)]
    return scores[0].means(), scores[1].means(), len(scores[1].rows)


def classical_baseline(kind: str, hqs: list[np.ndarray], lqs: list[np.ndarray], *, protocol: Protocol) -> float:
    """Mean PSNR of a classical restorer on the validation pairs: OpenCV non-local means with h set to the
    noise level estimated from the lq itself (blind, as the model is), or bicubic upsampling."""
    metrics = ImageMetrics(device=torch.device("cpu"), protocol=protocol)
    scores = []
    for hq, lq in zip(hqs, lqs):
        hq_BCHW = to_model(torch.from_numpy(hq[None]))
        if kind == "nlm":
            sigma = noise_sigma(lq)
            out = cv2.fastNlMeansDenoisingColored(lq, None, h=sigma, hColor=sigma, templateWindowSize=7,
                                                  searchWindowSize=21)
            out_BCHW = to_model(torch.from_numpy(out[None]))
        elif kind == "bicubic":
            out_BCHW = upsample_input(to_model(torch.from_numpy(lq[None])), hq_BCHW.shape[-2:])
        else:
            raise ValueError(f"baseline must be 'nlm' or 'bicubic', got {kind!r}")
        scores.append(metrics(out_BCHW, hq_BCHW)["psnr"])
    return float(np.mean(scores))


def noise_sigma(rgb_HWC: np.ndarray) -> float:
    """Gaussian noise std of a uint8 image on the 0-255 scale, Immerkaer's estimator (CVIU 1996): the mean
    absolute response to a Laplacian difference mask, which cancels smooth image content, per channel."""
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    h, w = rgb_HWC.shape[:2]
    sigmas = []
    for c in range(rgb_HWC.shape[2]):
        response = cv2.filter2D(rgb_HWC[:, :, c].astype(np.float64), -1, mask)[1:-1, 1:-1]
        sigmas.append(math.sqrt(math.pi / 2) * np.abs(response).sum() / (6 * (w - 2) * (h - 2)))
    return float(np.mean(sigmas))


def table(results: list[QualityResult]) -> str:
    """The README table: method, task, input, baseline, output, gain, minutes, command."""
    rows = ["| method | task | input PSNR / SSIM | classical baseline | output PSNR / SSIM | gain | minutes | command |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        bench = BENCHES[r.name]
        kind = {"nlm": "NLM", "bicubic": "bicubic", "telea": "Telea"}.get(bench.baseline, "")
        base = "-" if r.baseline_psnr is None else f"{r.baseline_psnr:.2f} dB ({kind})"
        rows.append(f"| {bench.method} | {bench.task} | {r.lq_psnr:.2f} / {r.lq_ssim:.3f} | {base} | "
                    f"{r.psnr:.2f} / {r.ssim:.3f} | {r.gain:+.2f} dB | {r.minutes:.1f} | "
                    f"`python -m bench.quality --method {r.name}` |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", required=True, choices=[*BENCHES, "osediff", "diffir-realsr", "all"])
    parser.add_argument("--drealsr", type=Path, help="diffir-realsr: DRealSR's folder (test_LR/, test_HR/), not shipped")
    parser.add_argument("--gan", metavar="VGG19", help="diffir-realsr: add the GAN stage after S2, its perceptual loss "
                        "on this VGG19 file ('' for torch.hub's vgg19-dcbb9e9d.pth, 'random' for untrained features)")
    parser.add_argument("--minutes", type=float, help="scale the steps to about this many minutes on the 2-core machine")
    parser.add_argument("--threads", type=int, help="torch intra-op threads per training (default: one per CPU the "
                        "recipe books, 2; 1 to run two benches side by side on 2 cores)")
    parser.add_argument("--storage-path", default="runs", help="runs and the MLflow store (experiment quality)")
    parser.add_argument("--mlflow-uri")
    args = parser.parse_args(argv)
    options = {"minutes": args.minutes, "storage_path": args.storage_path, "mlflow_uri": args.mlflow_uri,
               "torch_threads": args.threads}
    names = list(BENCHES) if args.method == "all" else [n for n in [args.method] if n in BENCHES]
    results = [run_bench(n, **options) for n in names]
    learning = run_osediff(**options) if args.method in ("osediff", "all") else None
    real = None
    if args.method == "diffir-realsr" or (args.method == "all" and args.drealsr is not None):
        if args.drealsr is None:
            parser.error("--method diffir-realsr needs --drealsr DIR (DRealSR's test_LR/ and test_HR/)")
        real = run_realsr(args.drealsr, **options, gan_vgg19=args.gan)
    if results:
        print(table(results))
    if learning is not None:
        print(learning.line())
    for r in results:
        if r.baseline_psnr is not None:
            print(f"{r.name}: classical baseline ({BENCHES[r.name].baseline}) {r.baseline_psnr:.2f} dB")
    for r in results:
        print(r.start_line())
    for r in results:
        print(r.line(), flush=True)
    if real is not None:
        print(f"{real.synthetic.line()} (synthetic Real-ESRGAN degradations)")
        print(real.line(), flush=True)


if __name__ == "__main__":
    main()
