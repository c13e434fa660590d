"""Run configs of the quality benchmark (bench/quality.py): every method at a size that learns on a 2-core CPU.

Each takes the checkpoint directory of the stage before it (None for a first stage). All of them train on the
bundled photos less the two held-out ones (`data.val_images=2`) and validate on centred 256^2 crops of those.
The settings were chosen on training curves of these held-out crops' PSNR only as a whole (no per-image tuning);
the paper recipes are in pipelines/recipes.py.
"""

import dataclasses

from degradations import BicubicConfig, GaussianNoiseConfig, MaskConfig, MotionBlurConfig, RealESRGANConfig
from models.diffir import configs as diffir_configs
from models.diffir.gan import GANConfig
from models.msgd import configs as msgd_configs
from models.nets.latent_unet import TINY_UNET
from models.refusion import LatentAutoencoderConfig, latent_refusion_tiny
from pipelines.data import DataConfig
from pipelines.optim import OptimConfig
from pipelines.recipes import ExperimentConfig, demo, osediff_tiny


def _cpu(name: str, method, data: DataConfig, *, lr: float, num_steps: int, batch_size: int = 8) -> ExperimentConfig:
    """The demo's loop settings (Adam + cosine, short EMA, 2 threads) around another method and task."""
    base = demo()
    return dataclasses.replace(
        base, name=name, method=method, data=data,
        optim=OptimConfig(name="adam", lr=lr, scheduler="cosine", eta_min=lr / 400),
        train=dataclasses.replace(base.train, num_steps=num_steps, batch_size=batch_size),
    )


def _photos(degradation, *, patch_size: int = 48, crop_margin: int = 0) -> DataConfig:
    return DataConfig(degradation=degradation, patch_size=patch_size, crop_margin=crop_margin, num_cpu_workers=1,
                      rows_per_task=32, val_images=2, val_patch_size=256)


NOISE = GaussianNoiseConfig(sigma_range=(10.0, 30.0))
BLUR = MotionBlurConfig()


def refusion_denoise(previous: str | None = None) -> ExperimentConfig:
    """The demo recipe, trained longer."""
    return dataclasses.replace(demo(), name="refusion_denoise",
                               train=dataclasses.replace(demo().train, num_steps=1600))


def refusion_deblur(previous: str | None = None) -> ExperimentConfig:
    """Pixel Refusion on synthetic camera-shake blur: a three-level NAFNet (the blur needs the receptive
    field) and the paper's T=100 (T=10 and T=50 did worse here)."""
    net = dataclasses.replace(demo().method.net, enc_blocks=(1, 1, 1), dec_blocks=(1, 1, 1))
    method = dataclasses.replace(demo().method, net=net, T=100)
    return _cpu("refusion_deblur", method, _photos(BLUR, patch_size=64, crop_margin=16), lr=2e-3, num_steps=1500)


def refusion_inpaint(previous: str | None = None) -> ExperimentConfig:
    """The demo's Refusion filling free-form strokes and boxes (white, as the official inpainting) on 64^2 crops."""
    data = dataclasses.replace(demo().data, degradation=MaskConfig(), patch_size=64)
    method = dataclasses.replace(demo().method, max_sigma=50.0)  # inpainting/options/train/refusion.yml
    return dataclasses.replace(demo(), name="refusion_inpaint", method=method, data=data,
                               train=dataclasses.replace(demo().train, num_steps=1600))


INPAINT_DATA = _photos(MaskConfig(fill=0.0, hole_channel=True), patch_size=64)  # LaMa's zeroed holes + mask


def diffir_inpaint_s1(previous: str | None = None) -> ExperimentConfig:
    """DiffIR inpainting stage 1 with LaMa's losses (known-pixel L1 x10, GAN + R1, feature matching, ResNet PL; the
    ResNet50 is random here, no ADE20k file) on 64^2 crops of the photos; needs the GT, so no validation."""
    config = _cpu("diffir_inpaint_s1", diffir_configs.tiny_inpainting(stage=1), INPAINT_DATA, lr=2e-3,
                  num_steps=400, batch_size=6)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, num_val_images=0, grad_clip=1.0))


def diffir_inpaint_s2(previous: str | None) -> ExperimentConfig:
    """DiffIR inpainting stage 2 from stage 1: CPEN_S2 + the prior denoiser with everything else, jointly."""
    config = _cpu("diffir_inpaint_s2", diffir_configs.tiny_inpainting(stage=2, init_from=previous), INPAINT_DATA,
                  lr=1e-3, num_steps=300, batch_size=6)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, grad_clip=1.0))


def latent_autoencoder_denoise(previous: str | None = None) -> ExperimentConfig:
    """Latent Refusion stage 1: the tiny 8x compressor pretrained on noisy/clean pairs (lq/hq swapped half the time)."""
    return _cpu("latent_ae_denoise", LatentAutoencoderConfig(net=TINY_UNET), _photos(NOISE, patch_size=64), lr=2e-3,
                num_steps=600)


def latent_refusion_denoise(previous: str | None) -> ExperimentConfig:
    """Latent Refusion stage 2: the IR-SDE in the frozen compressor's latent space (the demo's process)."""
    method = dataclasses.replace(latent_refusion_tiny(autoencoder_path=previous), T=10, max_sigma=30.0,
                                 sampler="posterior")
    return _cpu("latent_refusion_denoise", method, _photos(NOISE, patch_size=64), lr=4e-3, num_steps=800)


def _diffir_tiny_sr(**kw):
    """diffir_configs.tiny at x4 with a DIRformer of width 16 (width 8 gained +0.2 dB over bicubic here)."""
    config = diffir_configs.tiny(scale=4, **kw)
    return dataclasses.replace(config, dirformer=dataclasses.replace(config.dirformer, dim=16))


SR_DATA = _photos(BicubicConfig(scale=4), patch_size=96)
# Real-ESRGAN's second-order degradation (its defaults, x4) on 96^2 HQ crops with a 32 px margin for the kernels.
REAL_SR_DATA = _photos(RealESRGANConfig(), patch_size=96, crop_margin=32)


def diffir_realsr_s1(previous: str | None = None) -> ExperimentConfig:
    """DiffIR stage 1 on x4 SR with Real-ESRGAN's synthetic degradations (blur, noise, JPEG, twice), for the
    real-world test on DRealSR (bench/quality.py --method diffir-realsr)."""
    return dataclasses.replace(diffir_sr_s1(), name="diffir_realsr_s1", data=REAL_SR_DATA)


def diffir_realsr_s2(previous: str | None) -> ExperimentConfig:
    """DiffIR stage 2 from diffir_realsr_s1, on the same synthetic degradations."""
    return dataclasses.replace(diffir_sr_s2(previous), name="diffir_realsr_s2", data=REAL_SR_DATA)


def diffir_realsr_gan(previous: str | None, *, vgg19_path: str = "") -> ExperimentConfig:
    """DiffIR's GAN stage from diffir_realsr_s2 (the paper's real-world SR model): the official loss weights and
    discriminator at 32 features, G and D Adam at the same lr as the official (1e-4 each), scaled x2 for the CPU."""
    method = dataclasses.replace(_diffir_tiny_sr(stage=2, init_from=previous, prior_only_steps=0),
                                 gan=GANConfig(disc_num_feat=32, disc_lr=2e-4, vgg19_path=vgg19_path))
    return _cpu("diffir_realsr_gan", method, REAL_SR_DATA, lr=2e-4, num_steps=300, batch_size=6)


def diffir_sr_s1(previous: str | None = None) -> ExperimentConfig:
    """DiffIR stage 1 on x4 bicubic SR: CPEN_S1 sees the GT and the DIRformer learns to use its prior."""
    config = _cpu("diffir_sr_s1", _diffir_tiny_sr(stage=1), SR_DATA, lr=2e-3, num_steps=2000, batch_size=6)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, num_val_images=0))  # needs the GT


def diffir_sr_s2(previous: str | None) -> ExperimentConfig:
    """DiffIR stage 2 from stage 1: the prior-only phase (CPEN_S2 + denoiser), then joint training."""
    method = _diffir_tiny_sr(stage=2, init_from=previous, prior_only_steps=150)
    return _cpu("diffir_sr_s2", method, SR_DATA, lr=1e-3, num_steps=600, batch_size=6)


def msgd_deblur(previous: str | None = None) -> ExperimentConfig:
    """MSGD on synthetic camera-shake blur: regression warm start of the guidance net, then the ramped icDPM loss.
    UNet base 16, cosine schedule, 20 ancestral steps and the paper's sample averaging (4 samples)."""
    tiny = msgd_configs.tiny(warmup_steps=300, ramp_steps=200)
    method = dataclasses.replace(tiny, schedule="cosine", num_sampling_steps=20, num_samples_averaged=4,
                                 unet=dataclasses.replace(tiny.unet, base_channels=16))
    return _cpu("msgd_deblur", method, _photos(BLUR, patch_size=64, crop_margin=16), lr=1e-3, num_steps=1500)


def osediff_tiny_sr(previous: str | None = None) -> ExperimentConfig:
    """OSEDiff on a tiny random SD, x4 bicubic SR: its losses and held-out PSNR move, but a random SD cannot
    restore; real quality needs the SD 2.1-base weights and a GPU (recipe osediff_sd21)."""
    base = osediff_tiny()
    data = _photos(BicubicConfig(scale=4), patch_size=64)
    data = dataclasses.replace(data, val_patch_size=128)
    return dataclasses.replace(base, name="osediff_tiny_sr", data=data,
                               train=dataclasses.replace(base.train, num_steps=200, batch_size=2, val_every=50,
                                                         ckpt_every=50, log_every=5, num_val_images=2),
                               scaling=demo().scaling)


def rescale_phases(config: ExperimentConfig, factor: float) -> ExperimentConfig:
    """Scale a phased method's phase lengths with its num_steps (DiffIR's prior-only steps, MSGD's warm start)."""
    method = config.method
    if getattr(method, "kind", None) == "diffir" and method.stage == 2:
        method = dataclasses.replace(method, prior_only_steps=round(method.prior_only_steps * factor))
    elif getattr(method, "kind", None) == "msgd":
        method = dataclasses.replace(method, warmup_steps=round(method.warmup_steps * factor),
                                     ramp_steps=max(1, round(method.ramp_steps * factor)))
    return dataclasses.replace(config, method=method)

