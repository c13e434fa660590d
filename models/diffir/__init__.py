"""DiffIR (arXiv 2303.09472): CPEN, DIRformer, the prior diffusion, and the two-stage method."""

from models.diffir.method import DiffIR, DiffIRConfig

__all__ = ["DiffIR", "DiffIRConfig"]
