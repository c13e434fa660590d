"""MSGD as a RestorationMethod: warm start, ramped denoising loss, seeded sampling and sample averaging."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from models.msgd import configs
from models.msgd.method import MSGD, MSGDConfig


def _pairs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    hq = F.interpolate(torch.rand(2, 3, 4, 4, generator=g), size=16, mode="bilinear", align_corners=False) * 2 - 1
    return hq, F.avg_pool2d(hq, 5, 1, 2, count_include_pad=False)


def _train(method: MSGD, net: torch.nn.Module, *, steps: int, first_step: int = 0):
    hq, lq = _pairs()
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


def test_warm_start_trains_only_the_guidance_network():
    torch.manual_seed(0)
    method = MSGD(configs.tiny(warmup_steps=1000))
    net = method.build()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    losses, logs = _train(method, net, steps=15)
    assert all(log["diffusion_weight"] == 0.0 and "diffusion" not in log for log in logs)
    assert _falls(losses), losses
    changed = {k.split(".")[0] for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"guidance"}


def test_denoising_loss_is_ramped_in_after_the_warm_start():
    method = MSGD(configs.tiny(warmup_steps=10, ramp_steps=4))
    assert [method.diffusion_weight(s) for s in (0, 9, 10, 11, 13, 100)] == [0.0, 0.0, 0.25, 0.5, 1.0, 1.0]


def test_joint_training_loss_falls():
    torch.manual_seed(0)
    method = MSGD(configs.tiny(warmup_steps=0, ramp_steps=0))
    losses, logs = _train(method, method.build(), steps=20)
    assert set(logs[0]) == {"loss", "guidance", "diffusion_weight", "diffusion"}
    assert _falls(losses), losses


def test_guidance_noise_reaches_the_predicted_noise():
    torch.manual_seed(0)
    net = MSGD(configs.tiny()).build()
    hq, lq = _pairs()
    t = torch.tensor([10, 50])
    noise_a = [torch.randn(2, 1, 8, 8), torch.randn(2, 1, 4, 4)]
    noise_b = [torch.randn(2, 1, 8, 8), torch.randn(2, 1, 4, 4)]
    cond = net.condition(lq)
    eps_a = net.unet(hq, t, cond, net.guidance(cond, noise_a)[0])
    eps_b = net.unet(hq, t, cond, net.guidance(cond, noise_b)[0])
    assert not torch.allclose(eps_a, eps_b)


def test_seeded_loss_and_restore_are_deterministic():
    torch.manual_seed(0)
    method = MSGD(configs.tiny(warmup_steps=0))
    net = method.build()
    hq, lq = _pairs()
    loss_a, _ = method.loss(net, hq, lq, step=5, generator=torch.Generator().manual_seed(7))
    loss_b, _ = method.loss(net, hq, lq, step=5, generator=torch.Generator().manual_seed(7))
    assert loss_a.item() == loss_b.item()
    out_a = method.restore(net, lq, generator=torch.Generator().manual_seed(7))
    out_b = method.restore(net, lq, generator=torch.Generator().manual_seed(7))
    assert torch.equal(out_a, out_b)
    assert not torch.equal(out_a, method.restore(net, lq, generator=torch.Generator().manual_seed(8)))


def test_sample_averaging_is_the_mean_of_consecutive_samples():
    torch.manual_seed(0)
    method = MSGD(dataclasses.replace(configs.tiny(), num_samples_averaged=3))
    net = method.build()
    _, lq = _pairs()
    averaged = method.restore(net, lq, generator=torch.Generator().manual_seed(4))
    generator = torch.Generator().manual_seed(4)
    samples = [method.sample(net, lq, generator=generator) for _ in range(3)]
    torch.testing.assert_close(averaged, sum(samples) / 3)


def test_restore_pads_and_crops_and_stays_in_range():
    method = MSGD(configs.tiny())
    out = method.restore(method.build(), torch.zeros(1, 3, 13, 10), generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 13, 10)
    assert out.abs().max() <= 1.0


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="scales"):
        MSGDConfig(unet=configs.tiny().unet)  # default guidance scales (1, 2, 3) need 4 UNet levels
    with pytest.raises(ValueError, match="diffusion_loss"):
        MSGDConfig(diffusion_loss="l3")
