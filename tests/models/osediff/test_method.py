"""One OSEDiff training step and restore on a tiny random SD, on the CPU."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.osediff.config import OSEDiffConfig
from models.osediff.method import OSEDiff, to_8bit_grid, upsample_test
from models.osediff.method import adapters_disabled
from models.osediff.net import OSEDiffNet

P = 32  # hq 32 x 32, lq 8 x 8


def _batch(seed: int, num: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(num, 3, P, P, generator=g) * 2 - 1, torch.rand(num, 3, P // 4, P // 4, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def method(tiny_sd_dir: Path) -> OSEDiff:
    return OSEDiff(OSEDiffConfig(sd_path=str(tiny_sd_dir), prompt="a photo"))


@pytest.fixture(scope="module")
def built(method: OSEDiff) -> tuple[OSEDiffNet, OSEDiffNet, dict]:
    """Two nets built once per module (a build takes seconds); tests reset them to the initial adapters."""
    first = method.build()
    return first, method.build(), {k: v.clone() for k, v in first.state_dict().items()}


@pytest.fixture()
def net(built) -> OSEDiffNet:
    first, _, init = built
    first.load_state_dict(init)
    return first


@pytest.fixture()
def fresh(built) -> OSEDiffNet:
    _, second, init = built
    second.load_state_dict(init)
    return second


def _step(method: OSEDiff, net, seed: int) -> dict[str, float]:
    optimizer = torch.optim.AdamW(method.param_groups(net), lr=1e-3)
    hq, lq = _batch(seed)
    loss, logs = method.loss(net, hq, lq, step=0, generator=torch.Generator().manual_seed(seed))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return logs


def test_training_step_changes_only_lora_and_conv_in_and_updates_fake_score(method: OSEDiff, net: OSEDiffNet):
    net.train()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    logs = _step(method, net, seed=0)
    assert set(logs) == {"loss", "loss_l2", "loss_lpips", "loss_vsd", "loss_fake"}
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert logs["loss_vsd"] > 0 and logs["loss_fake"] > 0 and logs["loss_lpips"] > 0
    changed = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "nothing was updated"
    assert all("lora_" in n or n.startswith("unet.conv_in.") for n in changed), sorted(changed)[:5]
    assert any(n.startswith("score_unet.") for n in changed), "fake-score LoRA was not updated"
    assert any(n.startswith("vae.encoder.") for n in changed) and "unet.conv_in.base_layer.weight" in changed
    assert not net.lpips.training and not net.text_encoder.training


@pytest.mark.parametrize("adapters", ["official", "all"])
def test_fake_score_trains_the_mid_block_adapter_officially_and_all_three_on_request(tiny_sd_dir: Path, adapters):
    method = OSEDiff(OSEDiffConfig(sd_path=str(tiny_sd_dir), prompt="a photo", fake_score_adapters=adapters))
    net = method.build().train()
    # The official regulariser UNet: three add_adapter calls and no set_adapter, so only default_others is active.
    active = {"official": {"default_others"}, "all": {"default_encoder", "default_decoder", "default_others"}}
    assert set(net.score_unet.active_adapters()) == active[adapters]
    trainable = {n for n, p in net.score_unet.named_parameters() if p.requires_grad}
    assert {n.split(".lora_")[1].split(".")[1] for n in trainable} == active[adapters]
    before = {n: p.detach().clone() for n, p in net.score_unet.named_parameters()}
    _step(method, net, seed=1)
    changed = {n for n, p in net.score_unet.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable  # which modules receive gradients
    assert {n.split(".lora_")[1].split(".")[1] for n in changed if ".lora_B." in n} == active[adapters]
    assert set(net.unet.active_adapters()) == active["all"]  # the generator always trains all three


def test_fake_score_starts_equal_to_the_frozen_sd_unet(net: OSEDiffNet):
    g = torch.Generator().manual_seed(0)
    zt, c = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 77, 32, generator=g)
    t = torch.tensor([20, 900])
    with torch.no_grad():
        fake = net.score_unet(zt, t, encoder_hidden_states=c).sample
        with adapters_disabled(net.score_unet):
            real = net.score_unet(zt, t, encoder_hidden_states=c).sample
    assert torch.equal(fake, real)  # LoRA B starts at zero


def test_same_seed_gives_the_same_loss_and_restoration(method: OSEDiff, net: OSEDiffNet):
    hq, lq = _batch(3)
    losses = [method.loss(net, hq, lq, step=0, generator=torch.Generator().manual_seed(7))[1] for _ in range(2)]
    assert losses[0] == losses[1]
    outs = [method.restore(net, lq, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(outs[0], outs[1])
    other = method.restore(net, lq, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(outs[0], other)  # the VAE posterior is sampled, as officially


def test_restore_upsamples_x4_in_range_for_odd_sizes(method: OSEDiff, net: OSEDiffNet):
    lq = torch.rand(1, 3, 5, 7) * 2 - 1
    out = method.restore(net, lq, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 20, 28) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1


def test_test_time_upsampling_matches_pil_bicubic():
    lq = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    # PIL's float mode (no 8-bit clamping between its two separable passes), channel by channel.
    pil = [np.asarray(Image.fromarray(ch.numpy(), mode="F").resize((24, 24), Image.BICUBIC)) for ch in lq[0]]
    expected = to_8bit_grid(torch.from_numpy(np.stack(pil))[None])
    assert torch.allclose(upsample_test(lq, scale=4), expected, atol=1e-6)


def test_state_dict_holds_only_trainable_tensors_and_round_trips(
    method: OSEDiff, net: OSEDiffNet, fresh: OSEDiffNet, tmp_path: Path
):
    _step(method, net, seed=1)
    state = net.state_dict()
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert set(state) == trainable
    torch.save(state, tmp_path / "state.pt")
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    lq = _batch(2)[1]
    a = method.restore(net, lq, generator=torch.Generator().manual_seed(0))
    b = method.restore(fresh, lq, generator=torch.Generator().manual_seed(0))
    loaded = fresh.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in state.items())
    assert torch.allclose(a, b, atol=1e-5)  # two module instances may differ in the last float bit
    with pytest.raises(RuntimeError, match="Unexpected key"):
        fresh.load_state_dict(state | {"vae.decoder.bogus": torch.zeros(1)})


def test_exported_adapters_reload_into_a_fresh_net_and_check_placement(
    method: OSEDiff, net: OSEDiffNet, fresh: OSEDiffNet, tmp_path: Path
):
    _step(method, net, seed=2)
    folder = method.export_adapters(net, tmp_path / "adapters")
    assert sorted(p.name for p in folder.iterdir()) == ["adapters.json", "adapters.safetensors"]
    trained, untrained = net.state_dict(), fresh.state_dict()
    assert not all(torch.equal(v, untrained[k]) for k, v in trained.items())
    method.import_adapters(fresh, folder)
    imported = fresh.state_dict()
    assert all(torch.equal(v, imported[k]) for k, v in trained.items())
    json_file = folder / "adapters.json"
    json_file.write_text(json_file.read_text().replace('"lora_rank": 4', '"lora_rank": 8'))
    with pytest.raises(ValueError, match="lora_rank"):
        method.import_adapters(fresh, folder)


def test_prompt_file_without_keys_fails_in_loss(tiny_sd_dir: Path, net: OSEDiffNet, tmp_path: Path):
    (tmp_path / "p.tsv").write_text("a\tcat\nb\tdog\n")
    method = OSEDiff(OSEDiffConfig(sd_path=str(tiny_sd_dir), prompt_file=str(tmp_path / "p.tsv")))
    hq, lq = _batch(0)
    with pytest.raises(ValueError, match="needs the batch keys"):
        method.loss(net, hq, lq, step=0, generator=torch.Generator().manual_seed(0))
    loss, _ = method.loss(net, hq, lq, step=0, generator=torch.Generator().manual_seed(0), keys=["a", "b"])
    assert torch.isfinite(loss)


def test_tiled_restore_matches_the_colour_statistics_of_the_whole_image(method: OSEDiff, net: OSEDiffNet):
    from pipelines.restore import restore_image

    # Small amplitude (AdaIN output stays inside [-1, 1]) and two halves of different colour across tiles.
    g = torch.Generator().manual_seed(0)
    lq = 0.2 * torch.nn.functional.interpolate(torch.rand(1, 3, 3, 3, generator=g) * 2 - 1, size=(48, 48),
                                               mode="bicubic", align_corners=False)
    lq[..., 24:] += 0.3
    out = restore_image(method, net.eval(), lq, scale=4, seed=0, sampler=None, steps=None, tile=24, overlap=8,
                        max_memory_gb=None, progress=False)
    up = upsample_test(lq, scale=4)
    # One colour fix against the whole upsampled lq (per tile, the means are off by ~1e-2).
    torch.testing.assert_close(out.mean(dim=(2, 3)), up.mean(dim=(2, 3)), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(dim=(2, 3)), up.std(dim=(2, 3)), atol=1e-4, rtol=0)


def test_tiled_restore_tags_the_whole_image_once(tiny_sd_dir: Path, tmp_path: Path):
    from transformers import ViTConfig, ViTForImageClassification

    from pipelines.restore import restore_image

    labels = {0: "cat", 1: "sky"}
    tagger_config = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=32, id2label=labels, label2id={v: k for k, v in labels.items()})
    ViTForImageClassification(tagger_config).save_pretrained(tmp_path / "tagger")
    method = OSEDiff(OSEDiffConfig(sd_path=str(tiny_sd_dir), tagger_path=str(tmp_path / "tagger")))
    net = method.build().eval()
    seen = []
    net.tagger.register_forward_hook(lambda module, inputs, output: seen.append(tuple(inputs[0].shape)))
    lq = torch.rand(1, 3, 48, 40) * 2 - 1
    out = restore_image(method, net, lq, scale=4, seed=0, sampler=None, steps=None, tile=24, overlap=8,
                        max_memory_gb=None, progress=False)
    assert out.shape == (1, 3, 192, 160)
    assert seen == [(1, 3, 192, 160)]  # one call on the whole upsampled lq, none per tile


def test_training_tags_the_gt_with_the_training_tagger_and_restore_the_lq_with_the_test_tagger(
        tiny_sd_dir: Path, tmp_path: Path, caplog):
    from tests.models.osediff.test_prompts import save_tagger

    ram = save_tagger(tmp_path / "ram", {0: "cat", 1: "sky"}, confident={0, 1})
    dape = save_tagger(tmp_path / "dape", {0: "dog", 1: "grass"}, confident={1})
    method = OSEDiff(OSEDiffConfig(sd_path=str(tiny_sd_dir), tagger_path=str(ram), test_tagger_path=str(dape),
                                   prompt="high quality"))
    net = method.build()
    seen = {"ram": [], "dape": []}
    net.tagger.register_forward_hook(lambda module, inputs, output: seen["ram"].append(inputs[0].clone()))
    net.test_tagger.register_forward_hook(lambda module, inputs, output: seen["dape"].append(inputs[0].clone()))
    hq, lq = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 16, 16) * 2 - 1
    # train_osediff.py: the GT's RAM tags alone; test_osediff.py: the LQ's DAPE tags, "tags, prompt,".
    assert method.prompts(net, hq, None, training=True) == ["cat, sky"]
    assert method.image_prompts(net, lq) == ["grass, high quality,"]
    assert torch.equal(seen["ram"][0], hq) and seen["dape"][0].shape == (1, 3, 64, 64) and not seen["ram"][1:]
    method.loss(net, hq, lq, step=0, generator=torch.Generator().manual_seed(0))
    assert len(seen["ram"]) == 2 and torch.equal(seen["ram"][1], hq) and len(seen["dape"]) == 1
    # One tagger for both when test_tagger_path is unset; no fallback warning with a tagger.
    caplog.clear()
    with caplog.at_level("WARNING", logger="models.osediff.method"):
        same = OSEDiff(OSEDiffConfig(sd_path=str(tiny_sd_dir), tagger_path=str(ram)))
    assert same.config.prompt_source == "tagger"
    assert not [r for r in caplog.records if r.name == "models.osediff.method"], caplog.text


def test_a_fixed_prompt_is_a_warned_fallback(tiny_sd_dir: Path, caplog):
    with caplog.at_level("WARNING", logger="models.osediff.method"):
        method = OSEDiff(OSEDiffConfig(sd_path=str(tiny_sd_dir)))
    assert method.config.prompt_source == "fixed"
    assert "fixed prompt '' for every image (fallback: set method.tagger_path" in caplog.text
    with pytest.raises(ValueError, match="test_tagger_path needs tagger_path"):
        OSEDiffConfig(sd_path=str(tiny_sd_dir), test_tagger_path="dape")
