"""Official-layout Refusion weights (random, built here in the official key layout) import and restore exactly."""

import re

import cv2
import numpy as np
import pytest
import torch

from models.nets.nafnet import TINY_NAFNET, ConditionalNAFNet
from models.processes.irsde import IRSDE
from models.sampling import sample
from pipelines import cli, import_weights, restore

# Ours -> the official ConditionalNAFNet's names (its time_mlp has the weightless sinusoidal embedding at index 0).
TO_OFFICIAL = ((r"^time_mlp\.0\.", "time_mlp.1."), (r"^time_mlp\.2\.", "time_mlp.3."), (r"^middle\.", "middle_blks."))


def official_state(net: ConditionalNAFNet, *, prefix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    for key, value in net.state_dict().items():
        for pattern, replacement in TO_OFFICIAL:
            key = re.sub(pattern, replacement, key)
        out[prefix + key] = value.clone()
    return out


@pytest.fixture
def official(tmp_path):
    torch.manual_seed(0)
    reference = ConditionalNAFNet(TINY_NAFNET)  # plays the official net: [0, 1] inputs
    for p in reference.parameters():  # beta/gamma start at 0 (identity blocks): make every block count
        p.data.normal_(0, 0.05)
    reference.ending.bias.data.mul_(5e-3)
    reference.ending.weight.data.mul_(5e-3)  # a small predicted noise, so the restored image is not all clamped
    path = tmp_path / "official.pth"
    torch.save(official_state(reference, prefix="module."), path)  # as a DDP-wrapped save would name them
    return reference, path


def test_imported_net_predicts_the_official_noise_on_our_range(official, tmp_path):
    reference, path = official
    out = import_weights.main(["--method", "refusion", "--official", str(path), "--out", str(tmp_path / "ckpt"),
                               "--set", "method.T=6"])
    method, net, config = restore.load_model(out, device=torch.device("cpu"))
    assert config.method.net.width == 8 and config.method.net.enc_blocks == (1, 1) and config.method.net.zero_one_inputs
    g = torch.Generator().manual_seed(1)
    x01, lq01 = torch.rand(2, 3, 20, 28, generator=g), torch.rand(2, 3, 20, 28, generator=g)
    t_B = torch.tensor([1, 5])
    with torch.no_grad():
        expected = reference(x01, t_B, lq01)  # the official computation, in [0, 1]
        got = net.denoiser(x01 * 2 - 1, t_B, lq01 * 2 - 1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)

    # The whole restore: our [-1, 1] posterior chain with the imported weights equals the [0, 1] chain with lambda
    # on the [0, 1] scale and the official net, mapped to [-1, 1].
    process01 = IRSDE(max_sigma=config.method.max_sigma, T=6, schedule=config.method.schedule,
                      eps=config.method.eps, data_range=1.0)
    with torch.no_grad():
        ours = method.restore(net, lq01 * 2 - 1, generator=None, num_steps=6, mode="posterior", temperature=0.0)
        theirs = sample(reference, process01, lq01, num_steps=6, mode="posterior", generator=None, temperature=0.0)
    assert 0.01 < (ours - (lq01 * 2 - 1)).abs().mean() and (ours.abs() < 1).float().mean() > 0.9  # not saturated
    torch.testing.assert_close(ours, theirs.clamp(0, 1) * 2 - 1, rtol=0, atol=1e-4)

    # restore.py uses the imported folder directly.
    cv2.imwrite(str(tmp_path / "in.png"), (lq01[0].permute(1, 2, 0).numpy()[..., ::-1] * 255).astype(np.uint8))
    written = restore.main(["--checkpoint", str(out), "--input", str(tmp_path / "in.png"),
                            "--output", str(tmp_path / "out"), "--no-progress", "--steps", "3"]).written
    assert cv2.imread(str(written[0])).shape == (20, 28, 3)


def test_bad_files_are_refused_with_one_line(tmp_path, official):
    _, path = official
    pickled = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a pickled module: weights_only refuses it
    with pytest.raises(cli.UserError, match=r"--official .*module.pth: not a weights-only torch file"):
        import_weights.main(["--method", "refusion", "--official", str(pickled), "--out", str(tmp_path / "a")])
    with pytest.raises(cli.UserError, match="no such file"):
        import_weights.main(["--method", "refusion", "--official", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "b")])
    partial = tmp_path / "partial.pth"
    state = torch.load(path, weights_only=True)
    state.pop("module.ending.weight")
    torch.save(state, partial)
    with pytest.raises(cli.UserError, match=r"do not fit ConditionalNAFNet .*missing \['denoiser.ending.weight'\]"):
        import_weights.main(["--method", "refusion", "--official", str(partial), "--out", str(tmp_path / "c")])
    assert not (tmp_path / "c").exists()


# --- DiffIR: a tiny stage-2 net in the official DiffIRS2 layout (BasicSR params_ema, duplicates, buffers) ---

def _diffir_to_official(key: str, *, num_res_blocks: int) -> str:
    """Our DiffIRNet key -> the official DiffIRS2 (G / condition / denoise) or DiffIRS1 (E.) name."""
    top, _, rest = key.partition(".")
    if top == "dirformer":
        single = {"patch_embed.": "patch_embed.proj.", "tail.0.": "tail.0.0.", "tail.2.": "tail.0.2.",
                  "tail.4.": "tail.1."}
        for ours, theirs in single.items():
            if rest.startswith(ours):
                rest = theirs + rest.removeprefix(ours)
                break
        rest = re.sub(r"^enc(\d)\.", r"encoder_level\1.", rest)
        rest = re.sub(r"^dec(\d)\.", r"decoder_level\1.", rest)
        rest = re.sub(r"^down(\d)\.0\.", lambda m: f"down{m[1]}_{int(m[1]) + 1}.body.0.", rest)
        rest = re.sub(r"^up(\d)\.0\.", lambda m: f"up{int(m[1]) + 1}_{m[1]}.body.0.", rest)
        rest = re.sub(r"^reduce(\d)\.", r"reduce_chan_level\1.", rest)
        for ours, theirs in ((r"\.norm(\d)\.", r".norm\1.body."), (r"\.(attn|ffn)\.film\.", r".\1.kernel.0."),
                             (r"\.attn\.qkv_dw\.", ".attn.qkv_dwconv."), (r"\.attn\.proj\.", ".attn.project_out."),
                             (r"\.ffn\.dw\.", ".ffn.dwconv.")):
            rest = re.sub(ours, theirs, rest)
        return f"G.{rest}"
    if top in ("cpen_s2", "cpen_s1"):
        part, _, tail = rest.partition(".")
        if part in ("head", "body", "tail"):
            index, _, tail = tail.partition(".")
            i = {"head": 0, "body": int(index) + 2, "tail": int(index) + num_res_blocks + 2}[part]
            rest = f"E.{i}.{tail}"
        return f"condition.{rest}" if top == "cpen_s2" else f"E.{rest}"
    index, _, tail = rest.removeprefix("mlp.").partition(".")
    return f"denoise.resmlp.0.{tail}" if index == "0" else f"denoise.resmlp.{int(index) // 2 + 1}.resmlp.0.{tail}"


@pytest.fixture
def official_diffir(tmp_path):
    """(method and reference net playing the official one on [0, 1] images, DiffIRS2 file, DiffIRS1 file)."""
    import dataclasses

    from models.diffir import DiffIR
    from models.diffir.configs import tiny

    base = tiny(stage=2, scale=4)  # the SR FFN factor of the official ymls: widths are int(C * 2.2)
    config = dataclasses.replace(base, dirformer=dataclasses.replace(base.dirformer, ffn_expansion=2.2))
    torch.manual_seed(0)
    reference_method = DiffIR(config)
    reference = reference_method.build().eval()
    for p in reference.parameters():
        p.data.normal_(0, 0.05)
    n = config.cpen.num_res_blocks
    state = {_diffir_to_official(k, num_res_blocks=n): v.clone() for k, v in reference.state_dict().items()}
    stage2 = {k: v for k, v in state.items() if not k.startswith("E.")}
    # The official DDPM registers denoise and condition a second time, and keeps its schedule as buffers.
    stage2 |= {f"diffusion.model.{k.removeprefix('denoise.')}": v for k, v in stage2.items() if k.startswith("denoise.")}
    stage2 |= {f"diffusion.condition.{k.removeprefix('condition.')}": v for k, v in stage2.items()
               if k.startswith("condition.")}
    stage2["diffusion.betas"] = reference_method.process.betas.float()
    stage2["diffusion.alphas_cumprod"] = torch.cumprod(1 - reference_method.process.betas.float(), 0)
    torch.save({"params": stage2, "params_ema": stage2}, tmp_path / "DiffIRS2.pth")
    torch.save({"params_ema": {k: v for k, v in state.items() if k.startswith("E.")}}, tmp_path / "DiffIRS1.pth")
    return reference_method, reference, tmp_path / "DiffIRS2.pth", tmp_path / "DiffIRS1.pth"


def test_diffir_stage2_imports_and_restores_as_the_official_net_on_zero_one_images(official_diffir, tmp_path):
    reference_method, reference, s2, s1 = official_diffir
    out = import_weights.main(["--method", "diffir", "--official", str(s2), "--teacher", str(s1),
                               "--out", str(tmp_path / "ckpt")])
    method, net, config = restore.load_model(out, device=torch.device("cpu"))
    assert config.method.zero_one_inputs and config.method.dirformer.heads == (1, 1, 2, 2)
    assert config.method.cpen.num_feats == 16 and config.method.dirformer.num_refinement_blocks == 1
    lq01 = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eps = torch.randn(1, 64, generator=torch.Generator().manual_seed(2))
        expected, _, _ = reference_method.run(reference, lq01, eps_BD=eps)  # the official computation: [0, 1] in and out
        got = method.restore(net, lq01 * 2 - 1, generator=torch.Generator().manual_seed(2))
    assert got.shape == (1, 3, 64, 96) and 0.05 < expected.std()
    torch.testing.assert_close(got, expected * 2 - 1, rtol=0, atol=1e-4)
    for name in ("cpen_s1", "cpen_s2", "denoiser"):  # the teacher came from the stage-1 file
        for key, value in getattr(reference, name).state_dict().items():
            torch.testing.assert_close(getattr(net, name).state_dict()[key], value, rtol=0, atol=0)

    cv2.imwrite(str(tmp_path / "in.png"), (lq01[0].permute(1, 2, 0).numpy()[..., ::-1] * 255).astype(np.uint8))
    written = restore.main(["--checkpoint", str(out), "--input", str(tmp_path / "in.png"),
                            "--output", str(tmp_path / "out"), "--no-progress"]).written
    assert cv2.imread(str(written[0])).shape == (64, 96, 3)


def test_diffir_files_that_do_not_fit_are_refused_with_one_line(official_diffir, tmp_path):
    _, _, s2, s1 = official_diffir
    state = torch.load(s2, weights_only=True)["params_ema"]
    broken = dict(state, **{"diffusion.model.resmlp.0.bias": state["denoise.resmlp.0.bias"] + 1})
    torch.save({"params_ema": broken}, tmp_path / "twin.pth")
    with pytest.raises(cli.UserError, match=r"diffusion.model.resmlp.0.bias is not a copy of denoise.resmlp.0.bias"):
        import_weights.main(["--method", "diffir", "--official", str(tmp_path / "twin.pth"), "--out", str(tmp_path / "a")])
    with pytest.raises(cli.UserError, match=r"--official .*DiffIRS1.pth: no G.patch_embed.proj.weight"):
        import_weights.main(["--method", "diffir", "--official", str(s1), "--out", str(tmp_path / "b")])
    narrow = state["denoise.resmlp.0.weight"][:, :-1]  # and its DDPM copy, so only the shape is wrong
    resized = dict(state, **{"denoise.resmlp.0.weight": narrow, "diffusion.model.resmlp.0.weight": narrow})
    torch.save({"params_ema": resized}, tmp_path / "resized.pth")
    with pytest.raises(cli.UserError, match=r"do not fit DiffIR stage 2 .*size mismatch for denoiser.mlp.0.weight"):
        import_weights.main(["--method", "diffir", "--official", str(tmp_path / "resized.pth"), "--out", str(tmp_path / "c")])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


# --- OSEDiff: an osediff.pkl as the official save_model writes it, from a tiny random SD ---

@pytest.fixture
def official_osediff(tmp_path):
    from models.osediff import OSEDiff
    from pipelines.recipes import RECIPES

    torch.manual_seed(0)
    reference = OSEDiff(RECIPES["osediff_tiny"]().method).build().eval()
    with torch.no_grad():  # LoRA B starts at zero: give every adapter and conv_in a visible effect
        for name, p in reference.named_parameters():
            if p.requires_grad and not name.startswith("score_unet."):
                p.add_(torch.randn_like(p) * 0.02)
    state = reference.state_dict()
    targets = reference.lora_targets
    pkl = {"vae_lora_encoder_modules": [*targets["vae"]["default_encoder"], targets["vae"]["default_encoder"][0]],
           **{f"unet_lora_{part}_modules": list(targets["unet"][f"default_{part}"])
              for part in ("encoder", "decoder", "others")},
           "rank_unet": 4, "rank_vae": 4,
           "state_dict_unet": {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")},
           "state_dict_vae": {k.removeprefix("vae."): v for k, v in state.items() if k.startswith("vae.")}}
    assert "conv_in.base_layer.weight" in pkl["state_dict_unet"]
    torch.save(pkl, tmp_path / "osediff.pkl")
    return reference, pkl, tmp_path / "osediff.pkl"


def test_osediff_pkl_imports_and_restores_as_the_reference(official_osediff, tmp_path):
    from models.osediff import OSEDiff

    reference, _, path = official_osediff
    out = import_weights.main(["--method", "osediff", "--recipe", "osediff_tiny", "--official", str(path),
                               "--out", str(tmp_path / "ckpt")])
    method, net, config = restore.load_model(out, device=torch.device("cpu"))
    assert config.method.lora_rank == 4 and config.method.lora_alpha == 8.0
    lq = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        expected = OSEDiff(config.method).restore(reference, lq, generator=torch.Generator().manual_seed(3))
        got = method.restore(net, lq, generator=torch.Generator().manual_seed(3))
        blank = OSEDiff(config.method).restore(OSEDiff(config.method).build().eval(), lq,
                                               generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert (got - blank).abs().max() > 1e-3  # the imported adapters changed the output


def test_osediff_files_that_do_not_fit_are_refused_with_one_line(official_osediff, tmp_path):
    _, pkl, _ = official_osediff
    cases = {"ranks": dict(pkl, rank_vae=8), "targets": dict(pkl, unet_lora_others_modules=pkl["unet_lora_others_modules"][1:]),
             "lists": {k: v for k, v in pkl.items() if k != "rank_unet"}}
    expected = {"ranks": "rank_unet 4 != rank_vae 8", "targets": "unet adapter default_others: the file wraps",
                "lists": r"missing \['rank_unet'\]"}
    for name, bad in cases.items():
        torch.save(bad, tmp_path / f"{name}.pkl")
        with pytest.raises(cli.UserError, match=expected[name]):
            import_weights.main(["--method", "osediff", "--recipe", "osediff_tiny", "--official",
                                 str(tmp_path / f"{name}.pkl"), "--out", str(tmp_path / name)])
        assert not (tmp_path / name).exists()


# --- IR-SDE: the official ConditionalUNet layout (positional downs/ups, Residual(PreNorm(...)) wrappers) ---

def _unet_to_official(key: str) -> str:
    """Our ConditionalUNet key -> the official DenoisingUNet_arch.ConditionalUNet name."""
    for ours, theirs in ((r"^intro\.", "init_conv."), (r"^time_mlp\.2\.", "time_mlp.3."), (r"^time_mlp\.0\.", "time_mlp.1."),
                         (r"^mid(\d)\.", r"mid_block\1."), (r"^final_res\.", "final_res_block."), (r"^ending\.", "final_conv."),
                         (r"\.time_proj\.", ".mlp.1."), (r"\.conv(\d)\.", r".block\1.proj."), (r"\.skip\.", ".res_conv."),
                         (r"(attn)\.norm\.", r"\1.fn.norm."), (r"(attn)\.to_qkv\.", r"\1.fn.fn.to_qkv."),
                         (r"(attn)\.to_out\.", r"\1.fn.fn.to_out.0."), (r"(attn)\.out_norm\.", r"\1.fn.fn.to_out.1."),
                         (r"^(downs|ups)\.(\d+)\.res1\.", r"\1.\2.0."), (r"^(downs|ups)\.(\d+)\.res2\.", r"\1.\2.1."),
                         (r"^(downs|ups)\.(\d+)\.attn\.", r"\1.\2.2."), (r"^downs\.(\d+)\.down\.", r"downs.\1.3.")):
        key = re.sub(ours, theirs, key)
    return key  # ups.{i}.up.*: Sequential(nn.Upsample, conv) or, outermost, a plain conv (the test maps it)


def test_irsde_unet_imports_and_predicts_the_official_noise(tmp_path):
    from models.nets.cond_unet import ConditionalUNet, CondUNetConfig

    config = CondUNetConfig(width=8, depth=2, attn_heads=2, attn_head_dim=4)
    torch.manual_seed(0)
    reference = ConditionalUNet(config).eval()  # plays the official net: [0, 1] inputs
    for p in reference.parameters():
        p.data.add_(torch.randn_like(p) * 0.05)
    outermost = len(reference.ups) - 1
    state = {}
    for key, value in reference.state_dict().items():
        official_key = _unet_to_official(key)
        if m := re.match(r"^ups\.(\d+)\.up\.(.*)$", key):
            official_key = f"ups.{m[1]}.3.{m[2]}" if int(m[1]) == outermost else f"ups.{m[1]}.3.1.{m[2]}"
        state[official_key] = value.clone()
    assert "ups.0.3.1.weight" in state and "downs.0.2.fn.fn.to_out.1.g" in state and "mid_attn.fn.norm.g" in state
    torch.save(state, tmp_path / "irsde.pth")
    # the official depth-4 U-Net attends with 4 heads of 32; this tiny one with 2 of 4
    out = import_weights.main(["--method", "irsde", "--official", str(tmp_path / "irsde.pth"),
                               "--out", str(tmp_path / "ckpt"), "--set", "method.net.attn_heads=2",
                               "--set", "method.net.attn_head_dim=4", "--set", "method.T=6"])
    method, net, config_out = restore.load_model(out, device=torch.device("cpu"))
    assert isinstance(net.denoiser, ConditionalUNet) and config_out.method.net.zero_one_inputs
    assert config_out.method.max_sigma == 10.0  # irsde_deblurring's process
    g = torch.Generator().manual_seed(1)
    x01, lq01 = torch.rand(2, 3, 20, 28, generator=g), torch.rand(2, 3, 20, 28, generator=g)
    t_B = torch.tensor([1, 5])
    with torch.no_grad():
        expected = reference(x01, t_B, lq01)
        got = net.denoiser(x01 * 2 - 1, t_B, lq01 * 2 - 1)
    assert expected.abs().mean() > 0.01
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
