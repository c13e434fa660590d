"""Latent autoencoder pretraining: the loss terms, the lq/hq swap, a brief-training round trip, checkpoints."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from models.nets.latent_unet import TINY_UNET
from models.refusion import LatentAutoencoder, LatentAutoencoderConfig, latent_refusion_tiny
from models.refusion import latent_pretraining_loss
from pipelines.checkpoints import CheckpointError, build_method


def pairs(n: int = 2, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    hq = F.interpolate(torch.rand(n, 3, 8, 8, generator=g) * 2 - 1, size=(size, size), mode="bilinear",
                       align_corners=False)
    return hq, 0.6 * hq + 0.2


def test_loss_is_reconstruction_plus_replacement_plus_weighted_stats() -> None:
    torch.manual_seed(0)
    hq, lq = pairs()
    autoencoder = LatentAutoencoder(LatentAutoencoderConfig(net=TINY_UNET)).build()
    loss, logs = latent_pretraining_loss(autoencoder, hq, lq, reg_weight=0.001)
    assert loss.item() == pytest.approx(logs["rec"] + logs["replace"] + 0.001 * logs["latent_reg"], rel=1e-5)
    z, skips = autoencoder.encode(lq)
    assert logs["rec"] == pytest.approx(F.l1_loss(autoencoder.decode(z, skips), lq).item(), rel=1e-5)


def test_swap_probability_one_exchanges_lq_and_hq() -> None:
    torch.manual_seed(0)
    hq, lq = pairs()
    method = LatentAutoencoder(LatentAutoencoderConfig(net=TINY_UNET, swap_prob=1.0))
    net = method.build()
    _, swapped = method.loss(net, hq, lq, step=0, generator=torch.Generator().manual_seed(0))
    _, direct = latent_pretraining_loss(net, lq, hq, reg_weight=0.001)
    assert swapped == pytest.approx(direct)


def test_a_few_training_steps_lower_both_reconstruction_terms() -> None:
    torch.manual_seed(0)
    hq, lq = pairs(2, 16)
    method = LatentAutoencoder(LatentAutoencoderConfig(net=TINY_UNET, swap_prob=0.0))
    net = method.build()
    optimizer = torch.optim.Adam(method.param_groups(net), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    _, first = method.loss(net, hq, lq, step=0, generator=generator)
    for step in range(4):
        loss, _ = method.loss(net, hq, lq, step=step, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _, last = method.loss(net, hq, lq, step=4, generator=generator)
    assert last["rec"] < first["rec"] and last["replace"] < first["replace"]
    assert method.restore(net, lq, generator=None).shape == lq.shape


def test_refusion_loads_a_pretrained_autoencoder_checkpoint(tmp_path) -> None:
    autoencoder = LatentAutoencoder(LatentAutoencoderConfig(net=TINY_UNET)).build()
    ema = {k: v + 1.0 for k, v in autoencoder.state_dict().items()}
    torch.save({"net": autoencoder.state_dict(), "ema": ema, "step": 3}, tmp_path / "state.pt")
    method_dict = dataclasses.asdict(LatentAutoencoderConfig(net=TINY_UNET))
    (tmp_path / "config.json").write_text(json.dumps({"method": method_dict}))
    net = build_method(latent_refusion_tiny(str(tmp_path))).build()  # the pipelines read the folder
    assert all(torch.equal(net.autoencoder.state_dict()[k], ema[k]) for k in ema)  # the EMA weights
    assert not any(p.requires_grad for p in net.autoencoder.parameters())
    wrong = dataclasses.replace(latent_refusion_tiny(str(tmp_path)), latent=dataclasses.replace(TINY_UNET, ch=8))
    with pytest.raises(ValueError, match="expects"):
        build_method(wrong)
    with pytest.raises(CheckpointError, match="the autoencoder checkpoint"):
        build_method(latent_refusion_tiny(str(tmp_path / "missing")))
    blank = build_method(latent_refusion_tiny(str(tmp_path / "missing")), saved_state=True).build()
    assert blank.autoencoder is not None  # resume/restore: the saved state fills it, no file is read
