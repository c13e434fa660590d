"""DiffIR's inpainting model: the 4-channel input (masked image + hole mask), the official net sizes, LaMa's
losses in both stages, and restoring that fills only the holes."""

import dataclasses

import pytest
import torch

from models.diffir import configs
from models.diffir.lama import LamaConfig
from models.diffir.method import DiffIR, DiffIRConfig
from models.method import hole_mask
from tests.models.diffir.test_gan import adversarial_steps

RANDOM_PL = LamaConfig(disc_ndf=8, disc_layers=2, resnet_pl_path="random")


def _masked_pairs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """hq 2x3x32x32 in [-1, 1] and its lq: a zeroed box hole ([0, 1] 0 is -1 here) plus the hole channel."""
    g = torch.Generator().manual_seed(seed)
    hq = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    hole = torch.zeros(2, 1, 32, 32)
    hole[:, :, 8:20, 4:16] = 1
    return hq, torch.cat([torch.where(hole.bool(), -1.0, hq), hole * 2 - 1], dim=1)


def test_the_official_inpainting_net_takes_the_masked_image_and_mask_and_adds_no_residual():
    config = configs.inpainting(stage=2)
    assert (config.in_channels, config.scale, config.prior_only_steps) == (4, 1, 0)
    assert config.dirformer.dim == 52 and config.dirformer.num_blocks == (1, 1, 1, 9)
    assert config.dirformer.num_refinement_blocks == 0 and config.lama == LamaConfig()
    net = DiffIR(configs.tiny_inpainting(stage=2, lama=RANDOM_PL)).build()
    # The official CPENs: PixelUnshuffle_4 of the 4-channel input (64), plus PixelUnshuffle_4 of the GT (48) in S1.
    assert net.cpen_s1.head[0].in_channels == 112 and net.cpen_s2.head[0].in_channels == 64
    assert net.dirformer.patch_embed.in_channels == 4 and not net.dirformer.residual
    z = torch.zeros(1, 64)
    with torch.no_grad():
        for p in net.dirformer.parameters():
            p.zero_()
        assert torch.equal(net.dirformer(torch.ones(1, 4, 16, 16), z), torch.zeros(1, 3, 16, 16))  # no + input


@pytest.mark.parametrize("stage", [1, 2])
def test_both_stages_train_on_lama_losses_and_the_discriminator_has_its_own_lr(stage):
    torch.manual_seed(0)
    method = DiffIR(configs.tiny_inpainting(stage=stage, lama=RANDOM_PL))
    net = method.build()
    hq, lq = _masked_pairs()
    before, logs = adversarial_steps(method, net, hq, lq, steps=2, disc_lr=RANDOM_PL.disc_lr)
    expected = {"loss", "l1_known", "resnet_pl", "adv_g", "feature_matching", "d_real", "d_gp", "d_fake"}
    assert set(logs) == expected | ({"l1_prior"} if stage == 2 else set())
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    weights = {"resnet_pl": 30.0, "adv_g": 10.0, "feature_matching": 100.0}
    assert logs["loss"] == pytest.approx(sum(weights.get(k, 1.0) * v for k, v in logs.items() if k != "loss"),
                                         rel=1e-4)
    changed = {k.split(".")[0] for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == ({"cpen_s1", "dirformer", "discriminator"} if stage == 1
                       else {"cpen_s2", "denoiser", "dirformer", "discriminator"})  # the teacher stays frozen
    assert net.state_dict().keys() == before.keys()  # the ResNet50 is not part of the saved weights
    assert method.unaveraged_prefixes == ("discriminator.",)


def test_a_zero_resnet_pl_weight_skips_the_resnet50_and_needs_no_ade20k_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # the default ADE20k file, under torch's home, is absent
    lama = LamaConfig(disc_ndf=8, disc_layers=2, resnet_pl_weight=0.0)
    method = DiffIR(configs.tiny_inpainting(stage=1, lama=lama))
    net = method.build()
    hq, lq = _masked_pairs()
    _, logs = adversarial_steps(method, net, hq, lq, steps=1, disc_lr=lama.disc_lr)
    assert "resnet_pl" not in logs and "l1_known" in logs and method.resnet_pl is None
    weighted = DiffIR(configs.tiny_inpainting(stage=1, lama=dataclasses.replace(lama, resnet_pl_weight=30.0)))
    with pytest.raises(FileNotFoundError, match="method.lama.resnet_pl_path"):  # with a weight, the file is needed
        weighted.loss(net, hq, lq, step=0, generator=torch.Generator().manual_seed(1))


def test_restoring_fills_only_the_holes():
    method = DiffIR(configs.tiny_inpainting(stage=2, lama=RANDOM_PL))
    net = method.build()
    hq, lq = _masked_pairs()
    out = method.restore(net, lq, generator=torch.Generator().manual_seed(0))
    hole = hole_mask(lq).bool().expand(-1, 3, -1, -1)
    assert out.shape == hq.shape
    assert torch.equal(out[~hole], lq[:, :3][~hole])  # the known pixels are the input's
    assert not torch.equal(out[hole], lq[:, :3][hole])  # the holes are the net's


@pytest.mark.parametrize("changes, match", [
    ({"in_channels": 4, "scale": 4}, "in_channels"),
    ({"in_channels": 3, "lama": RANDOM_PL}, "lama"),
    ({"in_channels": 4, "lama": RANDOM_PL, "stage": 2, "prior_only_steps": 5}, "prior_only_steps"),
])
def test_inpainting_configs_that_cannot_work_are_refused(changes, match):
    base = dataclasses.replace(configs.tiny(stage=1, scale=1), in_channels=3)
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(base, **changes)
    assert isinstance(base, DiffIRConfig)


def test_stage2_starts_from_a_stage1_run_that_kept_no_ema_as_the_recipes(tmp_path):
    import json

    from pipelines.checkpoints import build_method
    from pipelines.recipes import diffir_inpaint_s1, diffir_inpaint_s2

    assert diffir_inpaint_s1().train.ema is False  # LaMa keeps no generator average
    assert diffir_inpaint_s2().method.init_weights == "net"
    torch.manual_seed(0)
    stage1 = DiffIR(configs.tiny_inpainting(stage=1, lama=RANDOM_PL)).build()
    torch.save({"net": stage1.state_dict(), "ema": None, "step": 10}, tmp_path / "state.pt")
    (tmp_path / "config.json").write_text(json.dumps({"method": {"kind": "diffir", "stage": 1}}))
    config = dataclasses.replace(configs.tiny_inpainting(stage=2, init_from=str(tmp_path), lama=RANDOM_PL),
                                 init_weights="net")
    net = build_method(config).build()
    for name in ("cpen_s1", "dirformer"):
        loaded, expected = getattr(net, name).state_dict(), getattr(stage1, name).state_dict()
        assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    with pytest.raises(ValueError, match="no 'ema' weights"):
        build_method(dataclasses.replace(config, init_weights="ema"))


def test_a_run_whose_data_and_net_disagree_on_the_hole_channel_is_refused():
    from degradations import MaskConfig
    from pipelines.recipes import diffir_inpaint_s1, refusion_inpainting

    r = diffir_inpaint_s1()
    with pytest.raises(ValueError, match="lq has 3 channels .* the method takes 4"):
        dataclasses.replace(r, data=dataclasses.replace(r.data, degradation=MaskConfig(fill=0.0)))
    r = refusion_inpainting()
    with pytest.raises(ValueError, match="lq has 4 channels .* the method takes 3"):
        dataclasses.replace(r, data=dataclasses.replace(r.data, degradation=MaskConfig(hole_channel=True)))


def test_an_official_inpainting_generator_is_refused_with_the_reason():
    from models.diffir.official import official_config

    state = {"G.patch_embed.proj.weight": torch.zeros(52, 4, 3, 3), "condition.E.0.weight": torch.zeros(64, 64, 3, 3),
             "G.output.weight": torch.zeros(3, 104, 3, 3)}
    with pytest.raises(ValueError, match="4 input channels: the inpainting generator"):
        official_config(state)
