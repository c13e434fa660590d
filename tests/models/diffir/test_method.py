"""DiffIR as a RestorationMethod: both stages train, stage 2 starts from stage 1, seeded restoration."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from models.diffir import configs
from models.diffir.method import DiffIR, DiffIRConfig
from pipelines.checkpoints import build_method


def _pairs(scale: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth hq (learnable from its lq); lq is hq average-pooled (SR) or box-blurred (deblurring)."""
    g = torch.Generator().manual_seed(seed)
    side = 32 if scale > 1 else 16
    hq = F.interpolate(torch.rand(2, 3, 4, 4, generator=g), size=side, mode="bilinear", align_corners=False) * 2 - 1
    lq = F.avg_pool2d(hq, scale) if scale > 1 else F.avg_pool2d(hq, 5, 1, 2, count_include_pad=False)
    return hq, lq


def _train(method: DiffIR, net: torch.nn.Module, scale: int, *, steps: int, first_step: int = 0):
    """Adam on two fixed pairs; returns the per-step losses and log dicts."""
    hq, lq = _pairs(scale)
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(method.param_groups(net), lr=2e-3)
    generator = torch.Generator().manual_seed(1)
    losses, logs = [], []
    for step in range(first_step, first_step + steps):
        loss, log = method.loss(net, hq, lq, step=step, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        logs.append(log)
    return losses, logs


def _falls(losses: list[float]) -> bool:
    return sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3


@pytest.mark.parametrize("scale", [1, 4])
def test_stage1_l1_falls(scale):
    torch.manual_seed(0)
    method = DiffIR(configs.tiny(stage=1, scale=scale))
    losses, logs = _train(method, method.build(), scale, steps=12)
    assert set(logs[0]) == {"loss", "l1_image"}
    assert _falls(losses), losses


def test_stage2_prior_only_phase_trains_only_cpen_s2_and_denoiser():
    torch.manual_seed(0)
    method = DiffIR(configs.tiny(stage=2, scale=4, prior_only_steps=1000))
    net = method.build()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    losses, logs = _train(method, net, 4, steps=12)
    assert set(logs[0]) == {"loss", "l1_prior"}
    assert _falls(losses), losses
    changed = {k.split(".")[0] for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"cpen_s2", "denoiser"}


def test_stage2_joint_phase_trains_everything_but_the_teacher():
    torch.manual_seed(0)
    method = DiffIR(configs.tiny(stage=2, scale=4, prior_only_steps=5))
    net = method.build()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    losses, logs = _train(method, net, 4, steps=12, first_step=5)
    assert set(logs[0]) == {"loss", "l1_image", "l1_prior"}
    assert _falls(losses), losses
    changed = {k.split(".")[0] for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"cpen_s2", "denoiser", "dirformer"}
    assert not any(p.requires_grad for p in net.cpen_s1.parameters())


@pytest.mark.parametrize("weights", ["ema", "net"])
def test_stage2_loads_stage1_weights(tmp_path, weights):
    torch.manual_seed(0)
    stage1 = DiffIR(configs.tiny(stage=1)).build()
    ema = DiffIR(configs.tiny(stage=1)).build()
    torch.save({"net": stage1.state_dict(), "ema": ema.state_dict(), "step": 10}, tmp_path / "state.pt")
    (tmp_path / "config.json").write_text(json.dumps({"method": "diffir", "stage": 1}))
    source = {"net": stage1, "ema": ema}[weights]
    config = configs.tiny(stage=2, init_from=str(tmp_path))
    net = build_method(dataclasses.replace(config, init_weights=weights)).build()  # reads the folder
    for name in ("cpen_s1", "dirformer"):
        loaded, expected = getattr(net, name).state_dict(), getattr(source, name).state_dict()
        assert loaded.keys() == expected.keys()
        assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_stage2_init_rejects_a_mismatched_architecture(tmp_path):
    stage1 = DiffIR(configs.tiny(stage=1, scale=1)).build()
    weights = stage1.state_dict()
    with pytest.raises(RuntimeError, match="size mismatch"):
        DiffIR(configs.tiny(stage=2, scale=4, init_from="s1"), init=weights).build()


def test_stage2_needs_the_stage1_weights_and_a_saved_ema_when_it_asks_for_one(tmp_path):
    config = configs.tiny(stage=2, init_from=str(tmp_path))
    with pytest.raises(ValueError, match="stage-1 weights"):
        DiffIR(config)  # the method reads no file: the pipelines pass the weights
    with pytest.raises(ValueError, match="stage-1 checkpoint"):
        config.build_method()
    stage1 = DiffIR(configs.tiny(stage=1)).build()
    torch.save({"net": stage1.state_dict(), "ema": None, "step": 10}, tmp_path / "state.pt")
    (tmp_path / "config.json").write_text(json.dumps({"method": {"kind": "diffir", "stage": 1}}))
    with pytest.raises(ValueError, match="holds no 'ema' weights"):
        build_method(config)
    assert build_method(dataclasses.replace(config, init_weights="net")).init is not None
    assert build_method(config, saved_state=True).init is None  # resume/restore: the state has every weight


def test_seeded_loss_and_restore_are_deterministic():
    torch.manual_seed(0)
    method = DiffIR(configs.tiny(stage=2, scale=4, prior_only_steps=0))
    net = method.build()
    hq, lq = _pairs(4)
    loss_a, _ = method.loss(net, hq, lq, step=0, generator=torch.Generator().manual_seed(7))
    loss_b, _ = method.loss(net, hq, lq, step=0, generator=torch.Generator().manual_seed(7))
    assert loss_a.item() == loss_b.item()
    out_a = method.restore(net, lq, generator=torch.Generator().manual_seed(7))
    out_b = method.restore(net, lq, generator=torch.Generator().manual_seed(7))
    out_c = method.restore(net, lq, generator=torch.Generator().manual_seed(8))
    assert torch.equal(out_a, out_b)
    assert not torch.equal(out_a, out_c)


@pytest.mark.parametrize(("scale", "lq_side"), [(1, 30), (2, 13), (4, 11)])
def test_restore_pads_and_crops_to_hq_size(scale, lq_side):
    method = DiffIR(configs.tiny(stage=2, scale=scale))
    out = method.restore(method.build(), torch.zeros(1, 3, lq_side, lq_side), generator=torch.Generator())
    assert out.shape == (1, 3, lq_side * scale, lq_side * scale)


def test_stage1_cannot_restore_without_ground_truth():
    method = DiffIR(configs.tiny(stage=1))
    with pytest.raises(ValueError, match="stage-2"):
        method.restore(method.build(), torch.zeros(1, 3, 8, 8), generator=torch.Generator())


@pytest.mark.parametrize("make", [configs.sr4x, configs.deblur])
def test_paper_configs_restore(make):
    method = DiffIR(make(stage=2))
    out = method.restore(method.build(), torch.zeros(1, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 8 * method.config.scale, 8 * method.config.scale)


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="stage"):
        DiffIRConfig(stage=3)
    with pytest.raises(ValueError, match="scale"):
        DiffIRConfig(scale=3)
    with pytest.raises(ValueError, match="init_from"):
        DiffIRConfig(stage=1, init_from="/somewhere")
