"""The authors' released DiffIR weights (github.com/Zj-BinXia/DiffIR, arXiv 2303.09472) in our module names.

The layout is read from the official `DiffIRS2` / `DiffIRS1` definitions (facts only). BasicSR saves
{"params", "params_ema"}; a stage-2 file holds `G.*` (the DIRformer), `condition.*` (CPEN_S2), `denoise.*`, and
again `diffusion.model.*` / `diffusion.condition.*` (the same modules registered twice by its DDPM) plus twelve
schedule buffers. Ours: `dirformer.*`, `cpen_s2.*`, `denoiser.*`; the schedule lives in a stateless DDPM. The
teacher CPEN_S1 is only in the stage-1 file (`E.*`); restoring never uses it. The official nets work on [0, 1]
images: an imported config sets `zero_one_inputs`.
"""

import dataclasses
import re

import torch

from models.diffir import configs
from models.diffir.cpen import CPENConfig
from models.diffir.method import DiffIRConfig
from models.processes.ddpm import DDPM

# Inside the DIRformer ("G."): official pattern -> ours.
DIRFORMER_RENAMES = (
    (r"^patch_embed\.proj\.", "patch_embed."),
    (r"^encoder_level(\d)\.", r"enc\1."),
    (r"^decoder_level(\d)\.", r"dec\1."),
    (r"^down(\d)_\d\.body\.0\.", r"down\1.0."),  # down1_2 -> down1
    (r"^up(\d)_\d\.body\.0\.", lambda m: f"up{int(m[1]) - 1}.0."),  # up4_3 -> up3
    (r"^reduce_chan_level(\d)\.", r"reduce\1."),
    (r"^tail\.0\.0\.", "tail.0."),  # SR: conv, PixelShuffle, conv | final conv
    (r"^tail\.0\.2\.", "tail.2."),
    (r"^tail\.1\.", "tail.4."),
    (r"^output\.", "tail."),  # deblurring: one conv
    (r"\.norm(\d)\.body\.", r".norm\1."),
    (r"\.(attn|ffn)\.kernel\.0\.", r".\1.film."),
    (r"\.attn\.qkv_dwconv\.", ".attn.qkv_dw."),
    (r"\.attn\.project_out\.", ".attn.proj."),
    (r"\.ffn\.dwconv\.", ".ffn.dw."),
)


def _cpen_key(rest: str, num_res_blocks: int) -> str:
    """`E.{i}.*` of the official CPEN (head conv, LeakyReLU, n ResBlocks, 3 convs with LeakyReLUs) -> ours."""
    if not (m := re.match(r"^E\.(\d+)\.(.*)$", rest)):
        return rest  # mlp.{0,2}.*
    i, tail = int(m[1]), m[2]
    if i == 0:
        return f"head.0.{tail}"
    if 2 <= i <= num_res_blocks + 1:
        return f"body.{i - 2}.{tail}"
    return f"tail.{i - (num_res_blocks + 2)}.{tail}"


def _denoiser_key(rest: str) -> str:
    """`resmlp.0.*` (the first Linear) and `resmlp.{i}.resmlp.0.*` (i >= 2, after a LeakyReLU) -> `mlp.*`."""
    if rest.startswith("resmlp.0."):
        return "mlp.0." + rest.removeprefix("resmlp.0.")
    if not (m := re.match(r"^resmlp\.(\d+)\.resmlp\.0\.(.*)$", rest)):
        raise ValueError(f"denoise.{rest}: not a key of the official prior denoiser")
    return f"mlp.{2 * int(m[1]) - 2}.{m[2]}"


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    return len({m[1] for key in state if (m := re.match(pattern, key))})


def official_config(state: dict[str, torch.Tensor]) -> DiffIRConfig:
    """Our stage-2 config of an official DiffIRS2 state_dict: RealSR x4 / x2 or GoPro deblurring, shapes read off
    the tensors (the FFN expansion, which one width cannot give, from the official ymls: 2.2 SR, 2.0 deblur)."""
    if "G.patch_embed.proj.weight" not in state or "condition.E.0.weight" not in state:
        raise ValueError("no G.patch_embed.proj.weight / condition.E.0.weight: not a DiffIRS2 state_dict")
    dim, in_channels = state["G.patch_embed.proj.weight"].shape[:2]
    if in_channels == 4:
        raise ValueError("G.patch_embed.proj.weight has 4 input channels: the inpainting generator, whose official "
                         "checkpoints are LaMa/Lightning ones, is not imported; train it with diffir_inpaint_s1/_s2")
    if "G.output.weight" in state:
        base = configs.deblur(stage=2)
    elif in_channels in (3, 12):
        base = dataclasses.replace(configs.sr4x(stage=2), scale=4 if in_channels == 3 else 2)
    else:
        raise ValueError(f"G.patch_embed.proj.weight has {in_channels} input channels: the RealSR x1 layout "
                         "(a U-net over PixelUnshuffle(4)) is not one of our DiffIR nets")
    levels = [r"^G\.encoder_level1\.(\d+)\.", r"^G\.encoder_level2\.(\d+)\.", r"^G\.encoder_level3\.(\d+)\.",
              r"^G\.latent\.(\d+)\."]
    heads = tuple(state[f"G.{name}.0.attn.temperature"].shape[0]
                  for name in ("encoder_level1", "encoder_level2", "encoder_level3", "latent"))
    dirformer = dataclasses.replace(
        base.dirformer, dim=dim, num_blocks=tuple(_count(state, p) for p in levels), heads=heads,
        num_refinement_blocks=_count(state, r"^G\.refinement\.(\d+)\."),
        layer_norm_bias="G.encoder_level1.0.norm1.body.bias" in state)
    cpen = CPENConfig(num_feats=state["condition.E.0.weight"].shape[0],
                      num_res_blocks=_count(state, r"^condition\.E\.(\d+)\.body\.0\."))
    denoiser = dataclasses.replace(base.denoiser, num_layers=_count(state, r"^denoise\.resmlp\.(\d+)\.resmlp\.0\."))
    config = dataclasses.replace(base, dirformer=dirformer, cpen=cpen, denoiser=denoiser, init_from="",
                                 zero_one_inputs=True)
    if "diffusion.betas" in state:  # the official schedule must be ours
        betas = DDPM(num_train_steps=config.num_diffusion_steps, beta_start=config.beta_start,
                     beta_end=config.beta_end).betas
        if state["diffusion.betas"].shape != betas.shape or not torch.allclose(
                state["diffusion.betas"].double(), betas.double(), atol=1e-6):
            raise ValueError(f"diffusion.betas {state['diffusion.betas'].tolist()} differ from ours {betas.tolist()}")
    return config


def rename_stage2(state: dict[str, torch.Tensor], *, num_res_blocks: int) -> dict[str, torch.Tensor]:
    """An official DiffIRS2 state_dict in our names (dirformer., cpen_s2., denoiser.); its duplicates dropped."""
    out = {}
    for key, value in state.items():
        top, _, rest = key.partition(".")
        if top == "diffusion":  # the second registration of denoise/condition, and the schedule buffers
            if m := re.match(r"^diffusion\.(model|condition)\.(.*)$", key):
                twin = ("denoise." if m[1] == "model" else "condition.") + m[2]
                if twin not in state or not torch.equal(state[twin], value):
                    raise ValueError(f"{key} is not a copy of {twin}: not one official DiffIRS2 save")
            continue
        if top == "G":
            for pattern, replacement in DIRFORMER_RENAMES:
                rest = re.sub(pattern, replacement, rest)
            out[f"dirformer.{rest}"] = value
        elif top == "condition":
            out[f"cpen_s2.{_cpen_key(rest, num_res_blocks)}"] = value
        elif top == "denoise":
            out[f"denoiser.{_denoiser_key(rest)}"] = value
        else:
            raise ValueError(f"{key}: not a key of the official DiffIRS2")
    return out


def rename_teacher(state_s1: dict[str, torch.Tensor], *, num_res_blocks: int) -> dict[str, torch.Tensor]:
    """The teacher CPEN_S1 (`E.*`) of an official DiffIRS1 state_dict as our `cpen_s1.*`."""
    teacher = {f"cpen_s1.{_cpen_key(key.removeprefix('E.'), num_res_blocks)}": value
               for key, value in state_s1.items() if key.startswith("E.")}
    if not teacher:
        raise ValueError("no E.* keys: not a DiffIRS1 state_dict")
    return teacher
