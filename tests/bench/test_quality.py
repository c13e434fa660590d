"""Every method learns: a shortened bench/quality.py run per method, scored on held-out photos it never trained on.

Each trains through the real pipeline (Ray Train local mode, Ray Data, MLflow) for a fraction of its bench
budget, with one validation at the end. The denoisers and the SR model must beat their input. The two
deblurring models do not beat the blurred input at CPU scale (README, "Quality"); their tests assert what
they do show: a held-out PSNR far above the untrained net's.
"""

import math
import os

import pytest

from bench.quality import BENCHES, run_bench, run_osediff, scaled, untrained_hole_psnr
from pipelines.checkpoints import read_config_uri
from pipelines.recipes import ExperimentConfig

# Minutes of the full bench each test runs (its steps are scaled by minutes / bench minutes).
BEATS_INPUT = {"refusion-denoise": 0.8, "latent-refusion": 0.8, "diffir-sr": 1.0, "refusion-inpaint": 0.6,
               "diffir-inpaint": 2.5}
LEARNS = {"refusion-deblur": (0.8, 5.0), "msgd-deblur": (0.6, 0.0)}  # (minutes, dB above the untrained net)
# `make test` runs these on two pytest-xdist workers, one training per core, so one intra-op thread each: 312 s
# against 367 s one at a time at the recipes' two threads. Run alone, a test keeps the recipe's two.
THREADS = 1 if "PYTEST_XDIST_WORKER" in os.environ else None


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BEATS_INPUT))
def test_a_short_run_restores_held_out_photos_better_than_their_input(name, tmp_path, ray_local):
    result = run_bench(name, minutes=BEATS_INPUT[name], storage_path=str(tmp_path), num_validations=1,
                       score_start=False, torch_threads=THREADS)  # the input is the bar here, not the untrained net
    assert result.num_images == 2
    assert result.gain > 0, result.line()
    assert result.line().startswith(f"{name}: input ")
    if name.endswith("-inpaint"):  # and where it has to invent the content
        assert result.holes.gain > 0 and 0.02 < result.holes.hole_fraction < 0.6, result.line()
        if name == "diffir-inpaint":  # any fill beats black holes: inside them it rises above the untrained net
            untrained = untrained_hole_psnr(ExperimentConfig.from_dict(read_config_uri(result.checkpoint)))
            assert result.holes.psnr > untrained + 1.0, f"untrained net {untrained:.2f} dB; {result.line()}"
        assert "inside the holes" in result.line()
    else:
        assert result.holes is None and result.line().endswith("on 2 held-out images")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LEARNS))
def test_a_short_deblurring_run_rises_far_above_the_untrained_net(name, tmp_path, ray_local):
    minutes, rise = LEARNS[name]
    # 128^2 held-out crops: their 100 (Refusion) or 4 x 20 (MSGD) reverse steps cost most of a 256^2 test
    result = run_bench(name, minutes=minutes, storage_path=str(tmp_path), num_validations=1, val_patch_size=128,
                       torch_threads=THREADS)
    assert result.psnr > result.psnr_start + rise, result.start_line()


def test_every_bench_has_a_short_test():
    assert set(BEATS_INPUT) | set(LEARNS) == set(BENCHES)


def test_scaled_sets_the_training_threads_only_when_asked():
    config = BENCHES["refusion-denoise"].stages[0](None)
    assert scaled(config, 0.5).scaling.threads == config.scaling.threads == 2  # one per booked CPU
    one = scaled(config, 0.5, torch_threads=1)
    assert one.scaling.threads == 1 and one.scaling.cpus_per_worker == config.scaling.cpus_per_worker
    assert one.train.num_steps == math.ceil(config.train.num_steps / 2)


@pytest.mark.slow
def test_osediff_losses_fall_and_held_out_psnr_rises_from_step_0(tmp_path, ray_local):
    result = run_osediff(minutes=1.0, storage_path=str(tmp_path), num_validations=1, torch_threads=THREADS)
    first, last = result.losses["loss_l2"]
    assert last < first, result.line()
    assert result.psnr_end > result.psnr_start, result.line()


@pytest.mark.parametrize("sigma", [10.0, 20.0, 30.0])
def test_noise_sigma_estimates_gaussian_noise_on_a_photo(sigma):
    import numpy as np
    import skimage.data

    from bench.quality import noise_sigma

    clean = skimage.data.chelsea().astype(np.float64)
    noisy = np.clip(np.rint(clean + np.random.default_rng(0).normal(0, sigma, clean.shape)), 0, 255).astype(np.uint8)
    assert noise_sigma(noisy) == pytest.approx(sigma, rel=0.1)
    assert noise_sigma(clean.astype(np.uint8)) < 5  # the photo's own texture is not taken for noise


def test_real_pairs_are_scored_for_the_model_and_for_bicubic_by_the_sr_y_protocol(tmp_path):
    import cv2
    import numpy as np
    import skimage.data
    import torch

    from bench import quality_recipes
    from bench.quality import score_real_pairs
    from models.diffir import DiffIR
    from models.metrics import PROTOCOLS, PixelMetrics, to_8bit_grid
    from pipelines.batching import to_model
    from pipelines.checkpoints import write_checkpoint
    from pipelines.evaluate import upsample_input

    config = quality_recipes.diffir_realsr_s2("")  # stage 2, x4; a blank net stands in for a trained one
    torch.manual_seed(0)
    net = DiffIR(config.method).build()
    write_checkpoint(tmp_path / "ckpt", state={"net": net.state_dict(), "ema": None, "optimizer": {}, "scheduler": {},
                                               "step": 1}, config=config.to_dict())
    (tmp_path / "real" / "test_HR").mkdir(parents=True)
    (tmp_path / "real" / "test_LR").mkdir()
    photo = skimage.data.chelsea()[:, :, ::-1]
    for i, (top, left) in enumerate([(0, 0), (100, 200)]):
        hr = np.ascontiguousarray(photo[top:top + 64, left:left + 64])
        cv2.imwrite(str(tmp_path / "real" / "test_HR" / f"p{i}_x1.png"), hr)
        cv2.imwrite(str(tmp_path / "real" / "test_LR" / f"p{i}_x1.png"), cv2.resize(hr, (16, 16), interpolation=cv2.INTER_AREA))
    bicubic, output, num_images = score_real_pairs(tmp_path / "ckpt", tmp_path / "real")
    assert num_images == 2 and set(output) == {"psnr", "ssim"} and np.isfinite(list(output.values())).all()
    pixel, expected = PixelMetrics(PROTOCOLS["sr-y"], device=torch.device("cpu")), []
    for i in range(2):
        read = [to_model(torch.from_numpy(cv2.imread(str(tmp_path / "real" / d / f"p{i}_x1.png"))[None, :, :, ::-1].copy()))
                for d in ("test_LR", "test_HR")]
        expected.append(pixel.per_image(to_8bit_grid(upsample_input(read[0], (64, 64))), to_8bit_grid(read[1]))["psnr"])
    assert bicubic["psnr"] == pytest.approx(float(torch.cat(expected).mean()), abs=1e-4)
