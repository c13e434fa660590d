"""Refusion method: loss, frozen autoencoder, SR upsampling, restore shapes and a tiny overfit on CPU."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from models.nets.latent_unet import TINY_UNET, LatentUNet
from models.nets.nafnet import TINY_NAFNET
from models.refusion import Refusion, RefusionConfig, latent_refusion_tiny, refusion_tiny


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR for [-1, 1] data (peak-to-peak 2)."""
    return float(10 * torch.log10(4.0 / F.mse_loss(x, ref)))


def smooth_pairs(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    hq = F.interpolate(torch.rand(n, 3, 4, 4, generator=g) * 2 - 1, size=(size, size), mode="bicubic",
                       align_corners=False).clamp(-1, 1)
    lq = (0.5 * hq + 0.05 * torch.randn(hq.shape, generator=g)).clamp(-1, 1)
    return hq, lq


def test_process_uses_the_config_and_signed_data_range() -> None:
    method = Refusion(dataclasses.replace(refusion_tiny(), max_sigma=30, T=40))
    assert method.process.T == 40 and method.process.lam == pytest.approx(2 * 30 / 255)


def test_loss_is_a_differentiable_scalar_with_logs() -> None:
    method = Refusion(refusion_tiny())
    net = method.build()
    hq, lq = smooth_pairs(2, 16)
    loss, logs = method.loss(net, hq, lq, step=0, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert loss.ndim == 0 and set(logs) == {"loss", "noise_l1"}
    assert all(p.grad is not None for p in method.param_groups(net)[0]["params"])


@pytest.mark.parametrize("upsample", ["bicubic", "nearest"])
def test_sr_restore_outputs_hq_size(upsample: str) -> None:
    method = Refusion(dataclasses.replace(refusion_tiny(), scale=4, upsample=upsample, T=4))
    net = method.build()
    hq, _ = smooth_pairs(1, 32)
    lq = F.avg_pool2d(hq, 4)
    loss, _ = method.loss(net, hq, lq, step=0, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    out = method.restore(net, lq, generator=torch.Generator().manual_seed(0))
    assert out.shape == hq.shape and float(out.abs().max()) <= 1.0


def test_latent_refusion_freezes_the_autoencoder_and_restores_full_size() -> None:
    autoencoder = LatentUNet(TINY_UNET)
    method = Refusion(latent_refusion_tiny(), autoencoder=autoencoder)
    net = method.build()
    trainable = {id(p) for p in method.param_groups(net)[0]["params"]}
    assert not any(p.requires_grad for p in net.autoencoder.parameters())
    assert trainable == {id(p) for p in net.denoiser.parameters()}
    hq, lq = smooth_pairs(2, 32)
    loss, _ = method.loss(net, hq, lq, step=0, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is None for p in net.autoencoder.parameters())
    out = method.restore(net, lq[:, :, :30, :27], generator=torch.Generator().manual_seed(0), num_steps=3)
    assert out.shape == (2, 3, 30, 27)


def test_latent_diffusion_math_stays_float32_under_bf16_autocast() -> None:
    # A bf16 latent would round x_t and the matching target to 2^-8, far above the residual the L1 measures.
    method = Refusion(latent_refusion_tiny(), autoencoder=LatentUNet(TINY_UNET))
    net = method.build()
    hq, lq = smooth_pairs(2, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, _ = method._to_diffusion_space(net, hq)
        loss, _ = method.loss(net, hq, lq, step=0, generator=torch.Generator().manual_seed(0))
        out = method.restore(net, lq, generator=torch.Generator().manual_seed(0), num_steps=2)
    assert z.dtype == torch.float32 and loss.dtype == torch.float32
    assert out.shape == hq.shape and torch.isfinite(out).all()


def test_latent_refusion_without_autoencoder_is_refused() -> None:
    with pytest.raises(ValueError, match="pretrained autoencoder"):
        Refusion(dataclasses.replace(latent_refusion_tiny(), autoencoder_path=None))


def test_config_rejects_wrong_latent_channels_and_bad_sampler() -> None:
    with pytest.raises(ValueError, match="embed_dim"):
        RefusionConfig(net=TINY_NAFNET, latent=TINY_UNET)
    with pytest.raises(ValueError, match="sampler"):
        RefusionConfig(sampler="ddim")


def test_config_round_trips_through_a_dict_with_either_denoiser() -> None:
    from models.nets.cond_unet import TINY_UNET_DENOISER
    from pipelines.config_dict import from_dict, to_dict

    for config in (latent_refusion_tiny("/ckpt/ae"), RefusionConfig(net=TINY_UNET_DENOISER, max_sigma=10.0)):
        assert from_dict(RefusionConfig, to_dict(config)) == config
    legacy = to_dict(refusion_tiny())  # written before the U-Net joined: its net names no kind
    legacy["net"].pop("kind")
    assert from_dict(RefusionConfig, legacy) == refusion_tiny()


def test_irsde_unet_denoiser_trains_one_step_and_predicts_noise_of_the_input_shape() -> None:
    from models.nets.cond_unet import TINY_UNET_DENOISER, ConditionalUNet

    method = Refusion(RefusionConfig(net=TINY_UNET_DENOISER, max_sigma=10.0, T=20))
    net = method.build()
    assert isinstance(net.denoiser, ConditionalUNet)
    g = torch.Generator().manual_seed(0)
    hq = torch.rand(2, 3, 20, 28, generator=g) * 2 - 1  # not a multiple of 2^depth: padded and cropped back
    lq = hq + 0.1 * torch.randn(hq.shape, generator=g)
    loss, _ = method.loss(net, hq, lq, step=0, generator=g)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in net.denoiser.parameters())
    out = method.restore(net, lq, generator=g, num_steps=3)
    assert out.shape == hq.shape and torch.isfinite(out).all()


def test_tiny_model_overfits_a_few_pairs_and_beats_the_lq() -> None:
    torch.manual_seed(0)
    hq, lq = smooth_pairs(4, 16)
    method = Refusion(RefusionConfig(net=dataclasses.replace(TINY_NAFNET, width=16), T=20, sampler="posterior"))
    net = method.build()
    optimizer = torch.optim.Adam(method.param_groups(net), lr=5e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for step in range(200):
        loss, logs = method.loss(net, hq, lq, step=step, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(logs["loss"])
    assert sum(losses[-20:]) < 0.75 * sum(losses[:20])
    out = method.restore(net, lq, generator=torch.Generator().manual_seed(1))
    assert psnr(out, hq) > psnr(lq, hq) + 2.0
