"""Multiscale Structure Guided Diffusion for deblurring (arXiv 2212.01789): icDPM UNet, guidance, method."""

from models.msgd.method import MSGD, MSGDConfig

__all__ = ["MSGD", "MSGDConfig"]
