"""DiffIR method configs: the official RealSR x4 and GoPro deblurring networks (arXiv 2303.09472), and tiny ones.

Training lengths, optimisers and data live in the run recipes (pipelines/recipes.py); these only pick the net.
"""

from models.diffir.cpen import CPENConfig
from models.diffir.dirformer import DIRformerConfig
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
