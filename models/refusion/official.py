"""The authors' released Refusion / IR-SDE ConditionalNAFNet weights (github.com/Algolzw/image-restoration-sde,
`DenoisingNAFNet_arch.ConditionalNAFNet`, arXiv 2304.08291) in our module names.

The layout is read from the official model definition (facts only): `time_mlp.{1,3}` (index 0 there is the
sinusoidal embedding, which has no weights; ours are `time_mlp.{0,2}`) and `middle_blks.*` (ours: `middle.*`);
every other key has our name. Widths and depths are read off the tensors. The official net sees [0, 1] images
and ours [-1, 1]: the imported config sets `zero_one_inputs`, which maps xt and lq back to [0, 1] before the
first layer. The predicted noise needs no change, because the process scales lambda with the data range.
"""

import re

import torch

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


def rename_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official ConditionalNAFNet state_dict in our names (under the method's `denoiser.`)."""
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in OFFICIAL_RENAMES:
            key = re.sub(pattern, replacement, key)
        renamed[f"denoiser.{key}"] = value
    return renamed
