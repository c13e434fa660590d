"""Progressive patch/batch phases: which phase a step is in, and the aligned crop of the phase's rows."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from pipelines.progressive import PatchPhase, crop_to_phase, phase_index, phases
from pipelines.recipes import diffir_deblur_s1, diffir_deblur_s2, diffir_debug

# DiffIR's GoPro deblurring (train_DiffIRS1.yml / train_DiffIRS2.yml): per-GPU batch and patch per phase.
OFFICIAL_BATCH = (8, 4, 2, 2, 1, 1)
OFFICIAL_PATCH = (192, 256, 320, 384, 464, 512)


def test_phase_index_follows_the_official_milestones():
    schedule = phases(num_steps=(92_000, 80_000, 38_000), batch_sizes=(8, 4, 2), patch_sizes=(192, 256, 320))
    # The official trainer's 1-based iteration i is in the first group whose cumulative end is >= i.
    assert [phase_index(schedule, s) for s in (0, 91_999, 92_000, 171_999, 172_000, 209_999)] == [0, 0, 1, 1, 2, 2]
    assert phase_index(schedule, 10**9) == 2  # past the end: the last phase


def test_crop_takes_the_phase_rows_and_one_aligned_crop():
    torch.manual_seed(0)
    lq = torch.rand(4, 3, 16, 16)
    hq = F.interpolate(lq, scale_factor=4, mode="nearest")  # hq pixel (y, x) comes from lq pixel (y//4, x//4)
    phase = PatchPhase(num_steps=1, batch_size=2, patch_size=32)
    hq_c, lq_c = crop_to_phase(hq, lq, phase, scale=4, generator=torch.Generator().manual_seed(5))
    assert hq_c.shape == (2, 3, 32, 32) and lq_c.shape == (2, 3, 8, 8)
    assert torch.equal(hq_c, F.interpolate(lq_c, scale_factor=4, mode="nearest"))
    again = crop_to_phase(hq, lq, phase, scale=4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(again[0], hq_c)
    offsets = {tuple(crop_to_phase(hq, lq, phase, scale=4, generator=torch.Generator().manual_seed(s))[1][0, 0, 0, :2]
                     .tolist()) for s in range(8)}
    assert len(offsets) > 1  # the offset is drawn, not fixed
    full = PatchPhase(num_steps=1, batch_size=4, patch_size=64)
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    assert torch.equal(crop_to_phase(hq, lq, full, scale=4, generator=generator)[0], hq)
    assert torch.equal(generator.get_state(), state)  # nothing to crop: nothing drawn


@pytest.mark.parametrize("recipe, steps", [(diffir_deblur_s1, (92_000, 80_000, 38_000, 33_000, 33_000, 24_000)),
                                           (diffir_deblur_s2, (150_000, 60_000, 50_000, 60_000, 40_000, 40_000))])
def test_diffir_deblur_recipes_train_with_the_official_progressive_phases(recipe, steps):
    config = recipe()
    schedule = config.train.progressive
    assert tuple(p.num_steps for p in schedule) == steps and sum(steps) == config.train.num_steps
    assert tuple(p.batch_size for p in schedule) == OFFICIAL_BATCH
    assert tuple(p.patch_size for p in schedule) == OFFICIAL_PATCH
    assert config.data.patch_size == 512 and config.train.batch_size == 8  # the stream carries the largest phase
    assert config.data.val_patch_size == 256


@pytest.mark.parametrize("phase, message", [
    (PatchPhase(num_steps=1, batch_size=9, patch_size=16), "batch_size 9 > train.batch_size 4"),
    (PatchPhase(num_steps=1, batch_size=1, patch_size=96), "patch_size 96 > data.patch_size 64"),
])
def test_a_phase_larger_than_the_stream_is_rejected(phase, message):
    config = diffir_debug()
    train = dataclasses.replace(config.train, batch_size=4, progressive=(phase,))
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(config, train=train)


def test_a_log_window_across_a_phase_change_counts_each_steps_own_batch():
    from pipelines.loop import Window

    window = Window()
    for samples in (8, 8, 4):  # two steps of the last phase's 8 rows, one of the next phase's 4
        window.add({"loss": 1.0}, samples=samples, data_s=0.5, step_s=2.0)
    metrics = window.metrics()
    assert metrics["train/samples_per_s"] == pytest.approx(20 / 6)
    assert metrics["train/data_wait_frac"] == pytest.approx(0.25) and metrics["train/loss"] == 1.0
