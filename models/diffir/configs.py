"""DiffIR method configs: the official RealSR x4 and GoPro deblurring networks (arXiv 2303.09472), and tiny ones.

Training lengths, optimisers and data live in the run recipes (pipelines/recipes.py); these only pick the net.
"""

import dataclasses

from models.diffir.cpen import CPENConfig
from models.diffir.dirformer import DIRformerConfig
from models.diffir.lama import LamaConfig
from models.diffir.method import DiffIRConfig
from models.diffir.prior import PriorDenoiserConfig


def sr4x(*, stage: int, init_from: str = "") -> DiffIRConfig:
    """RealSR x4 (Real-ESRGAN degradations): dim 64, blocks [13,1,1,1], 13 refinement, ffn 2.2, BiasFree LN."""
    return DiffIRConfig(
        stage=stage, scale=4, init_from=init_from,
        dirformer=DIRformerConfig(dim=64, num_blocks=(13, 1, 1, 1), num_refinement_blocks=13, ffn_expansion=2.2,
                                  layer_norm_bias=False),
        cpen=CPENConfig(num_feats=64, num_res_blocks=9),
        prior_only_steps=100_000,
    )


def deblur(*, stage: int, init_from: str = "") -> DiffIRConfig:
    """GoPro motion deblurring: dim 48, blocks [3,5,6,6], 4 refinement, ffn 2.0, WithBias LN, 5 CPEN blocks."""
    return DiffIRConfig(
        stage=stage, scale=1, init_from=init_from,
        dirformer=DIRformerConfig(dim=48, num_blocks=(3, 5, 6, 6), num_refinement_blocks=4, ffn_expansion=2.0,
                                  layer_norm_bias=True),
        cpen=CPENConfig(num_feats=64, num_res_blocks=5),
        prior_only_steps=100_000,
    )


def inpainting(*, stage: int, init_from: str = "") -> DiffIRConfig:
    """CelebA-HQ / Places inpainting (generator/DiffIRS{1,2}-celeba.yaml): masked image + mask in (4 channels), dim 52,
    blocks [1,1,1,9], no refinement, ffn 1.8, WithBias LN, 5 CPEN blocks; LaMa's losses and discriminator, and no
    prior-only phase (the LaMa trainer trains stage 2 jointly from its first step). Stage 2 starts from stage 1's
    raw net: LaMa keeps no generator average (average_generator off), so its checkpoint holds only that."""
    return DiffIRConfig(
        stage=stage, scale=1, init_from=init_from, in_channels=4, init_weights="net",
        dirformer=DIRformerConfig(dim=52, num_blocks=(1, 1, 1, 9), num_refinement_blocks=0, ffn_expansion=1.8,
                                  layer_norm_bias=True),
        cpen=CPENConfig(num_feats=64, num_res_blocks=5),
        prior_only_steps=0,
        lama=LamaConfig(),
    )


def tiny(*, stage: int, scale: int = 4, init_from: str = "", prior_only_steps: int = 2) -> DiffIRConfig:
    """A CPU-sized net with every part of the real one (prior size 64), for tests and the debug recipe."""
    return DiffIRConfig(
        stage=stage, scale=scale, init_from=init_from,
        dirformer=DIRformerConfig(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2),
                                  ffn_expansion=2.0, layer_norm_bias=scale == 1),
        cpen=CPENConfig(num_feats=16, num_res_blocks=1),
        denoiser=PriorDenoiserConfig(num_layers=1, time_dim=8),
        prior_only_steps=prior_only_steps,
    )


def tiny_inpainting(*, stage: int, init_from: str = "", lama: LamaConfig | None = None) -> DiffIRConfig:
    """tiny() fed the masked image and its hole mask, with LaMa's losses (random ResNet50 features unless
    lama.resnet_pl_path names the ADE20k file) and a 3-layer, 32-feature discriminator."""
    lama = lama or LamaConfig(disc_ndf=32, disc_layers=3, resnet_pl_path="random")
    return dataclasses.replace(tiny(stage=stage, scale=1, init_from=init_from, prior_only_steps=0), in_channels=4,
                               lama=lama)
