"""DiffIR's S2-GAN stage: the U-Net discriminator, the VGG19 perceptual loss, and one backward that trains
generator and discriminator apart."""

import dataclasses
import json

import pytest
import torch
import torchvision
from torch import nn

from models.diffir import configs
from models.diffir.gan import (
    VGG19_FILE,
    VGG19_LAYERS,
    GANConfig,
    UNetDiscriminatorSN,
    VGG19Features,
    adversarial_losses,
    bce_logits,
)
from models.diffir.method import GENERATOR_PARTS, DiffIR
from pipelines.checkpoints import build_method
from tests.models.diffir.test_method import _pairs

RANDOM_VGG = GANConfig(vgg19_path="random", disc_num_feat=8)


def _gan_config(**changes):
    return dataclasses.replace(configs.tiny(stage=2, scale=4, prior_only_steps=0), gan=RANDOM_VGG, **changes)


def test_discriminator_scores_every_pixel_with_spectral_norm_on_its_inner_convs():
    disc = UNetDiscriminatorSN(3, num_feat=8)
    assert disc(torch.randn(2, 3, 32, 48)).shape == (2, 1, 32, 48)
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    normed = [torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in convs]
    assert normed == [False] + [True] * 8 + [False]  # conv0 and the logit conv are plain, as Real-ESRGAN's


def test_vgg19_features_are_the_official_conv_outputs_before_relu():
    vgg = VGG19Features(None)
    assert [vgg.features[i].out_channels for i in VGG19_LAYERS.values()] == [64, 128, 256, 512, 512]
    assert all(isinstance(vgg.features[i], nn.Conv2d) for i in VGG19_LAYERS.values())
    outputs = vgg(torch.zeros(1, 3, 32, 32))
    assert [o.shape[-1] for o in outputs] == [32, 16, 8, 4, 2]
    assert all((o < 0).any() for o in outputs)  # every layer before its ReLU, as BasicSR's layer names mean
    vgg.train()
    assert not vgg.training and not any(p.requires_grad for p in vgg.parameters())


def test_vgg19_weights_load_from_the_named_file_and_a_missing_one_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match=f"hub/checkpoints/{VGG19_FILE} is missing.*method.gan.vgg19_path"):
        GANConfig().vgg19_file()
    torch.manual_seed(3)
    weights = torchvision.models.vgg19(weights=None).state_dict()
    torch.save(weights, tmp_path / "vgg.pth")
    vgg = VGG19Features(GANConfig(vgg19_path=str(tmp_path / "vgg.pth")).vgg19_file())
    assert torch.equal(vgg.features[34].weight, weights["features.34.weight"])
    assert GANConfig(vgg19_path="random").vgg19_file() is None


def test_the_generator_term_leaves_the_discriminator_alone_and_the_disc_terms_leave_the_generator():
    torch.manual_seed(0)
    disc, out = UNetDiscriminatorSN(3, num_feat=8), torch.randn(2, 3, 16, 16, requires_grad=True)
    hq = torch.randn(2, 3, 16, 16)
    g_gan, d_real, d_fake = adversarial_losses(disc, out, hq)
    (g_gan + d_real + d_fake).backward()
    grads = {n: p.grad.clone() for n, p in disc.named_parameters()}
    out_grad = out.grad.clone()
    # Each part alone, on a copy of the same D (its spectral-norm vectors as they were before the three calls).
    torch.manual_seed(0)
    disc2, out2 = UNetDiscriminatorSN(3, num_feat=8), out.detach().clone().requires_grad_(True)
    disc2.requires_grad_(False)
    bce_logits(disc2(out2), real=True).backward()
    disc2.requires_grad_(True)
    (bce_logits(disc2(hq), real=True) + bce_logits(disc2(out2.detach()), real=False)).backward()
    assert torch.allclose(out_grad, out2.grad)
    assert all(torch.allclose(grads[n], p.grad) for n, p in disc2.named_parameters())
    assert all(p.requires_grad for p in disc.parameters())


def adversarial_steps(method: DiffIR, net: nn.Module, hq: torch.Tensor, lq: torch.Tensor, *, steps: int,
                      disc_lr: float) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Check the two parameter groups (the discriminator's with its own lr), then take `steps` Adam steps on one
    batch; (the weights before, the last step's logs)."""
    groups = method.param_groups(net)
    assert len(groups) == 2 and groups[1]["lr"] == disc_lr
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in net.discriminator.parameters()}
    before = {k: v.clone() for k, v in net.state_dict().items()}
    optimizer = torch.optim.Adam(groups, lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        loss, logs = method.loss(net, hq, lq, step=step, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return before, logs


def test_gan_stage_trains_generator_and_discriminator_with_their_own_lrs_not_the_teacher():
    torch.manual_seed(0)
    method = DiffIR(_gan_config())
    net = method.build()
    hq, lq = _pairs(4)
    before, logs = adversarial_steps(method, net, hq, lq, steps=3, disc_lr=RANDOM_VGG.disc_lr)
    assert set(logs) == {"loss", "l1_image", "l1_prior", "perceptual", "gan_g", "gan_d_real", "gan_d_fake"}
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    changed = {k.split(".")[0] for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"cpen_s2", "denoiser", "dirformer", "discriminator"}
    assert net.state_dict().keys() == before.keys()  # the VGG19 is not part of the saved weights
    out = method.restore(net, lq, generator=torch.Generator().manual_seed(0))
    assert out.shape == hq.shape


def test_gan_stage_starts_from_a_stage2_checkpoint(tmp_path):
    torch.manual_seed(0)
    stage2 = DiffIR(configs.tiny(stage=2, scale=4, prior_only_steps=0)).build()
    torch.save({"net": stage2.state_dict(), "ema": stage2.state_dict(), "step": 10}, tmp_path / "state.pt")
    (tmp_path / "config.json").write_text(json.dumps({"method": {"kind": "diffir", "stage": 2}}))
    config = _gan_config(init_from=str(tmp_path))
    assert config.pretrained_paths() == {"stage2": str(tmp_path)}
    net = build_method(config).build()
    for name in GENERATOR_PARTS:
        loaded, expected = getattr(net, name).state_dict(), getattr(stage2, name).state_dict()
        assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    with pytest.raises(ValueError, match="stage-2 checkpoint"):
        config.build_method()


@pytest.mark.parametrize("changes", [{"stage": 1, "init_from": ""}, {"prior_only_steps": 5}])
def test_gan_stage_needs_a_stage2_net_without_prior_only_phase(changes):
    with pytest.raises(ValueError, match="diffir.gan"):
        _gan_config(**changes)


def test_gan_config_rejects_bad_weights():
    with pytest.raises(ValueError, match="layer_weights needs 5"):
        GANConfig(layer_weights=(1.0,))
    with pytest.raises(ValueError, match="gan.gan_weight"):
        GANConfig(gan_weight=-1.0)


def test_the_ema_averages_the_generator_only_as_basicsr():
    from pipelines.optim import build_ema

    method = DiffIR(_gan_config())
    net = method.build()
    ema = build_ema(net, beta=0.999, every=1, unaveraged_prefixes=method.unaveraged_prefixes)
    names = {n for n, _ in (*net.named_parameters(), *net.named_buffers())}
    disc = {n for n in names if n.startswith("discriminator.")}
    assert disc and ema.param_or_buffer_names_no_ema == disc
    assert DiffIR(configs.tiny(stage=1)).unaveraged_prefixes == ()
