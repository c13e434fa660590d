"""The LaMa inpainting losses: masked L1, the pix2pixHD discriminator, the ResNet50-dilated perceptual loss, and
one backward that trains generator and discriminator apart."""

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.diffir.lama import (
    RESNET_PL_FILE,
    LamaConfig,
    NLayerDiscriminator,
    ResNet50Dilated,
    lama_adversarial,
    masked_l1,
    resnet_pl_loss,
)


class LinearDisc(nn.Module):
    """logits = w . x + b at every pixel, so grad_x logits.sum() is w everywhere."""

    def __init__(self, w: tuple[float, ...], b: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(len(w), 1, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(w).view(1, -1, 1, 1))
            self.conv.bias.fill_(b)

    def forward(self, x_BCHW: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        logits = self.conv(x_BCHW)
        return logits, [logits]


@pytest.fixture(scope="module")
def resnet() -> ResNet50Dilated:
    torch.manual_seed(0)
    return ResNet50Dilated(None)


def test_discriminator_returns_logits_and_the_n_layers_plus_one_block_outputs():
    disc = NLayerDiscriminator(3, ndf=8, n_layers=4)
    logits, features = disc(torch.randn(2, 3, 64, 64))
    # k4 s2 p2 maps 64 -> 33 -> 17 -> 9 -> 5, then k4 s1 p2 adds one pixel per block: 6, 7.
    assert logits.shape == (2, 1, 7, 7)
    assert [f.shape[1:] for f in features] == [(8, 33, 33), (16, 17, 17), (32, 9, 9), (64, 5, 5), (128, 6, 6)]
    assert [name for name, _ in disc.named_children()] == [f"model{i}" for i in range(6)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in disc.modules()) == 4  # none on the first and logit convs


def test_discriminator_caps_its_width_at_512():
    disc = NLayerDiscriminator(3, ndf=64, n_layers=4)
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 512, 1]


@pytest.mark.parametrize("field, value", [("weight_known", -1.0), ("weight_missing", -1.0),
                                          ("adversarial_weight", -0.1), ("gp_coef", -1e-3),
                                          ("feature_matching_weight", -1.0), ("resnet_pl_weight", -1.0),
                                          ("disc_ndf", 0), ("disc_layers", 0), ("disc_lr", 0.0)])
def test_lama_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"lama.{field} must be"):
        LamaConfig(**{field: value})


def test_resnet_pl_file_defaults_to_torch_home_and_names_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    expected = tmp_path / "th" / "ade20k" / "ade20k-resnet50dilated-ppm_deepsup" / "encoder_epoch_20.pth"
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(expected))} is missing.*method.lama.resnet_pl_path"):
        LamaConfig().resnet_pl_file()
    with pytest.raises(FileNotFoundError, match="ADE20k ResNet50-dilated encoder of the MIT CSAIL"):
        LamaConfig(resnet_pl_path=str(tmp_path / "nope.pth")).resnet_pl_file()
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"")
    assert LamaConfig().resnet_pl_file() == expected == tmp_path / "th" / RESNET_PL_FILE
    assert LamaConfig(resnet_pl_path="random").resnet_pl_file() is None


def test_resnet50_dilated_has_the_official_encoder_keys(resnet):
    keys = set(resnet.state_dict())
    assert {"conv3.weight", "bn3.running_mean", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_var",
            "layer4.2.conv3.weight", "layer3.5.bn2.weight"} <= keys
    assert not any(k.startswith(("fc.", "mean", "std")) for k in keys)
    assert "layer4.3.conv1.weight" not in keys and "layer1.1.downsample.0.weight" not in keys
    assert sum(p.numel() for p in resnet.parameters()) == 23_631_808  # resnet50 less fc, with the 3-conv stem


def test_resnet50_dilated_keeps_output_stride_8_and_dilates_layer3_and_layer4(resnet):
    outputs = resnet(torch.zeros(1, 3, 64, 64))
    assert [o.shape[1:] for o in outputs] == [(256, 16, 16), (512, 8, 8), (1024, 8, 8), (2048, 8, 8)]
    assert (resnet.layer3[0].conv2.dilation, resnet.layer3[1].conv2.dilation) == ((1, 1), (2, 2))
    assert (resnet.layer4[0].conv2.dilation, resnet.layer4[2].conv2.padding) == ((2, 2), (4, 4))
    assert resnet.layer4[0].downsample[0].stride == (1, 1) and resnet.layer2[0].conv2.stride == (2, 2)


def test_resnet50_dilated_loads_a_saved_state_dict_and_stays_frozen(resnet, tmp_path):
    torch.save(resnet.state_dict(), tmp_path / "encoder_epoch_20.pth")
    torch.manual_seed(1)
    loaded = ResNet50Dilated(LamaConfig(resnet_pl_path=str(tmp_path / "encoder_epoch_20.pth")).resnet_pl_file())
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert all(torch.equal(a, b) for a, b in zip(loaded(x), resnet(x)))
    torch.manual_seed(1)
    assert not torch.equal(ResNet50Dilated(None)(x)[-1], resnet(x)[-1])  # so the load did the work
    loaded.train()
    assert not loaded.training and not any(m.training for m in loaded.modules())
    assert not any(p.requires_grad for p in loaded.parameters())


def test_resnet_pl_loss_is_zero_on_identical_images_and_reaches_out_only(resnet):
    torch.manual_seed(2)
    hq = torch.rand(1, 3, 64, 64) * 2 - 1
    assert resnet_pl_loss(resnet, hq, hq).item() == 0.0
    out = (hq + 0.1 * torch.randn_like(hq)).requires_grad_(True)
    loss = resnet_pl_loss(resnet, out, hq)
    loss.backward()
    assert loss.item() > 0 and out.grad.abs().sum() > 0
    assert all(p.grad is None for p in resnet.parameters())


def test_masked_l1_ignores_holes_and_weights_known_pixels_in_lamas_0_1_units():
    out = torch.zeros(1, 1, 2, 2)
    hq = torch.tensor([[[[1.0, -2.0], [3.0, 4.0]]]])
    hole = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert masked_l1(out, hq, hole, weight_known=10.0, weight_missing=0.0).item() == pytest.approx(22.5 / 2)
    assert masked_l1(out, hq, hole, weight_known=10.0, weight_missing=1.0).item() == pytest.approx(22.75 / 2)
    changed_hole = hq.clone()
    changed_hole[..., 0, 0] = 100.0
    assert masked_l1(out, changed_hole, hole, weight_known=10.0, weight_missing=0.0).item() == pytest.approx(22.5 / 2)


def test_masked_l1_broadcasts_the_mask_over_channels():
    out, hq = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    hole = torch.zeros(2, 1, 4, 4)
    hole[:, :, :2] = 1  # the top half is missing
    assert masked_l1(out, hq, hole, weight_known=2.0, weight_missing=0.0).item() == pytest.approx(0.5)


def _tiny_inputs(seed: int = 0):
    torch.manual_seed(seed)
    out = torch.randn(2, 3, 32, 32, requires_grad=True)
    hq = torch.randn(2, 3, 32, 32)
    hole = (torch.rand(2, 1, 32, 32) > 0.5).float()
    return out, hq, hole


def test_generator_terms_leave_the_discriminator_alone_and_disc_terms_leave_the_generator():
    disc = NLayerDiscriminator(3, ndf=8, n_layers=2)
    out, hq, hole = _tiny_inputs()
    losses = lama_adversarial(disc, out, hq, hole, gp_coef=0.001)
    assert all(p.requires_grad for p in disc.parameters())
    params = list(disc.parameters())
    g_terms = 10 * losses["adv_g"] + 100 * losses["feature_matching"]
    d_terms = losses["d_real"] + losses["d_gp"] + losses["d_fake"]
    assert all(g is None for g in torch.autograd.grad(g_terms, params, retain_graph=True, allow_unused=True))
    assert torch.autograd.grad(d_terms, out, retain_graph=True, allow_unused=True) == (None,)
    (g_out,) = torch.autograd.grad(g_terms, out, retain_graph=True)
    d_params = torch.autograd.grad(d_terms, params, retain_graph=True)
    assert g_out.abs().sum() > 0 and all(g.abs().sum() > 0 for g in d_params)
    (g_terms + d_terms).backward()  # one backward gives each net its own step's gradient
    assert torch.allclose(out.grad, g_out) and all(torch.allclose(p.grad, g) for p, g in zip(params, d_params))


def test_feature_matching_is_zero_when_out_is_hq_and_the_gp_reaches_disc_weights():
    disc = NLayerDiscriminator(3, ndf=8, n_layers=2)
    _, hq, hole = _tiny_inputs()
    losses = lama_adversarial(disc, hq.clone().requires_grad_(True), hq, hole, gp_coef=1.0)
    assert losses["feature_matching"].item() == 0.0
    grads = torch.autograd.grad(losses["d_gp"], list(disc.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_r1_penalty_equals_the_hand_value_for_a_linear_disc_on_lamas_0_1_images():
    w, gp_coef = (0.5, -1.0, 2.0), 0.01
    out, hq, hole = _tiny_inputs()
    losses = lama_adversarial(LinearDisc(w, 0.3), out, hq, hole, gp_coef=gp_coef)
    # grad_x sum(logits) is w at every pixel of our [-1, 1] x, 2 w for LaMa's y = (x + 1) / 2: H W |2 w|^2.
    expected = gp_coef * 32 * 32 * sum((2 * v) ** 2 for v in w)
    assert losses["d_gp"].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("hole_value, sign", [(1.0, 1.0), (0.0, -1.0)])
def test_d_fake_counts_holes_as_fake_and_known_pixels_as_real(hole_value, sign):
    disc = LinearDisc((0.5, -1.0, 2.0), 0.3)
    out, hq, _ = _tiny_inputs()
    hole = torch.full((2, 1, 32, 32), hole_value)
    losses = lama_adversarial(disc, out, hq, hole, gp_coef=0.001)
    logits = disc(out.detach())[0]
    assert torch.allclose(losses["d_fake"], F.softplus(sign * logits).mean())
    assert torch.allclose(losses["d_real"], F.softplus(-disc(hq)[0]).mean())
    assert torch.allclose(losses["adv_g"], F.softplus(-logits).mean())  # unmasked


def test_d_fake_resizes_the_hole_mask_to_the_logit_grid():
    disc = NLayerDiscriminator(3, ndf=8, n_layers=2)  # 32 -> 17 -> 9 -> 10 -> 11 logits
    out, hq, _ = _tiny_inputs()
    hole = torch.zeros(2, 1, 32, 32)
    hole[..., 16:] = 1  # the right half is missing
    losses = lama_adversarial(disc, out, hq, hole, gp_coef=0.001)
    logits = disc(out.detach())[0]  # BatchNorm in train mode: batch statistics, the same as inside
    m = F.interpolate(hole, size=(11, 11), mode="nearest")
    assert logits.shape[-2:] == (11, 11) and 0 < m.mean() < 1
    expected = (m * F.softplus(logits) + (1 - m) * F.softplus(-logits)).mean()
    assert torch.allclose(losses["d_fake"], expected)


def test_losses_run_in_float32_under_bfloat16_autocast(resnet):
    disc = NLayerDiscriminator(3, ndf=8, n_layers=2)
    out, hq, hole = _tiny_inputs()
    plain = lama_adversarial(disc, out, hq, hole, gp_coef=0.001)
    plain_pl = resnet_pl_loss(resnet, out, hq)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = lama_adversarial(disc, out.bfloat16(), hq.bfloat16(), hole.bfloat16(), gp_coef=0.001)
        mixed_pl = resnet_pl_loss(resnet, out, hq)
    assert all(v.dtype == torch.float32 and v.ndim == 0 for v in mixed.values())
    assert mixed_pl.dtype == torch.float32 and torch.equal(mixed_pl, plain_pl)
    # bfloat16 inputs round the images, but D itself ran in float32: the terms stay close.
    assert all(torch.allclose(mixed[k], plain[k], rtol=0.05, atol=1e-3) for k in plain)
