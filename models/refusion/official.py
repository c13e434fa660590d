"""The authors' released Refusion / IR-SDE weights (github.com/Algolzw/image-restoration-sde, arXiv 2304.08291 and
2301.11699) in our module names: `DenoisingNAFNet_arch.ConditionalNAFNet` and `DenoisingUNet_arch.ConditionalUNet`.

The layouts are read from the official model definitions (facts only). NAFNet: `time_mlp.{1,3}` (index 0 there is
the sinusoidal embedding, which has no weights; ours are `time_mlp.{0,2}`) and `middle_blks.*` (ours: `middle.*`);
every other key has our name. U-Net: positional `downs.{i}.{0..3}` / `ups.{i}.{0..3}` (two ResBlocks, the
Residual(PreNorm(LinearAttention)) wrapper, the resampling conv) become named parts (UNET_RENAMES). Widths and
depths are read off the tensors. The official nets see [0, 1] images and ours [-1, 1]: the imported config sets
`zero_one_inputs`, which maps xt and lq back to [0, 1] before the first layer. The predicted noise needs no
change, because the process scales lambda with the data range.
"""

import re

import torch

from models.nets.cond_unet import CondUNetConfig
from models.nets.nafnet import NAFNetConfig

OFFICIAL_RENAMES = ((r"^time_mlp\.1\.", "time_mlp.0."), (r"^time_mlp\.3\.", "time_mlp.2."), (r"^middle_blks\.", "middle."))


def official_nafnet_config(state: dict[str, torch.Tensor], *, global_skip: bool) -> NAFNetConfig:
    """Width, channels and block counts of an official ConditionalNAFNet state_dict."""
    if "intro.weight" not in state:
        raise ValueError("no intro.weight: not a ConditionalNAFNet state_dict")

    def blocks(prefix: str) -> list[int]:
        found: dict[int, set[int]] = {}
        for key in state:
            if m := re.match(rf"^{prefix}\.(\d+)\.(\d+)\.", key):
                found.setdefault(int(m[1]), set()).add(int(m[2]))
        return [len(found[i]) for i in sorted(found)]

    middle = {int(m[1]) for key in state if (m := re.match(r"^middle_blks\.(\d+)\.", key))}
    width, in_channels = state["intro.weight"].shape[:2]
    return NAFNetConfig(img_channels=in_channels // 2, width=width, enc_blocks=tuple(blocks("encoders")),
                        middle_blocks=len(middle), dec_blocks=tuple(blocks("decoders")), global_skip=global_skip,
                        zero_one_inputs=True)


def rename_official(state: dict[str, torch.Tensor], renames=OFFICIAL_RENAMES) -> dict[str, torch.Tensor]:
    """An official ConditionalNAFNet (or, with UNET_RENAMES, ConditionalUNet) state_dict in our names, under the
    method's `denoiser.`."""
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in renames:
            key = re.sub(pattern, replacement, key)
        renamed[f"denoiser.{key}"] = value
    return renamed


UNET_RENAMES = (
    (r"^init_conv\.", "intro."),
    (r"^time_mlp\.1\.", "time_mlp.0."),
    (r"^time_mlp\.3\.", "time_mlp.2."),
    (r"^(downs|ups)\.(\d+)\.0\.", r"\1.\2.res1."),
    (r"^(downs|ups)\.(\d+)\.1\.", r"\1.\2.res2."),
    (r"^(downs|ups)\.(\d+)\.2\.", r"\1.\2.attn."),
    (r"^downs\.(\d+)\.3\.", r"downs.\1.down."),
    (r"^ups\.(\d+)\.3\.1\.", r"ups.\1.up."),  # Sequential(nn.Upsample, conv)
    (r"^ups\.(\d+)\.3\.", r"ups.\1.up."),  # the outermost level: a plain conv
    (r"^mid_block(\d)\.", r"mid\1."),
    (r"^final_res_block\.", "final_res."),
    (r"^final_conv\.", "ending."),
    (r"\.fn\.norm\.", ".norm."),  # Residual(PreNorm(norm, fn=LinearAttention))
    (r"\.fn\.fn\.to_qkv\.", ".to_qkv."),
    (r"\.fn\.fn\.to_out\.0\.", ".to_out."),
    (r"\.fn\.fn\.to_out\.1\.", ".out_norm."),
    (r"\.mlp\.1\.", ".time_proj."),  # ResBlock: Sequential(SiLU, Linear)
    (r"\.block(\d)\.proj\.", r".conv\1."),
    (r"\.res_conv\.", ".skip."),
)


def official_unet_config(state: dict[str, torch.Tensor]) -> CondUNetConfig:
    """Width, channels and depth of an official ConditionalUNet state_dict (attention: 4 heads of 32, fixed there)."""
    if "init_conv.weight" not in state or "final_conv.weight" not in state:
        raise ValueError("no init_conv.weight / final_conv.weight: not a ConditionalUNet state_dict")
    width, in_channels = state["init_conv.weight"].shape[:2]
    depth = len({m[1] for key in state if (m := re.match(r"^downs\.(\d+)\.", key))})
    return CondUNetConfig(img_channels=in_channels // 2, width=width, depth=depth, zero_one_inputs=True)

