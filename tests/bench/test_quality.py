"""Every method learns to restore: a shortened bench/quality.py run per method gains PSNR on held-out photos.

Each trains through the real pipeline (Ray Train local mode, Ray Data, MLflow) for a fraction of its bench
budget and asserts a positive gain over the input on the two held-out photos, which it never trained on.
"""

import pytest

from bench.quality import BENCHES, run_bench, run_osediff

# Minutes of the full bench each test runs (the steps are scaled by minutes / bench minutes).
SHORT = {"refusion-denoise": 0.9, "refusion-deblur": 1.0, "latent-refusion": 1.0, "diffir-sr": 1.0,
         "msgd-deblur": 1.0}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHORT))
def test_a_short_run_restores_held_out_photos_better_than_their_input(name, tmp_path, ray_local):
    result = run_bench(name, minutes=SHORT[name], storage_path=str(tmp_path))
    assert result.num_images == 2
    assert result.gain > 0, result.line()
    assert result.line().startswith(f"{name}: input ") and "held-out images" in result.line()


def test_every_bench_has_a_short_test():
    assert set(SHORT) == set(BENCHES)


@pytest.mark.slow
def test_osediff_losses_fall_and_held_out_psnr_rises_from_step_0(tmp_path, ray_local):
    result = run_osediff(minutes=1.0, storage_path=str(tmp_path))
    first, last = result.losses["loss_l2"]
    assert last < first, result.line()
    assert result.psnr_end > result.psnr_start, result.line()
