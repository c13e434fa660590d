"""Refusion (arXiv 2304.08291) on IR-SDE (arXiv 2301.11699): process, configs and methods."""

from models.processes.irsde import IRSDE
from models.refusion.autoencoder import LatentAutoencoder, latent_pretraining_loss
from models.refusion.config import (
    LatentAutoencoderConfig,
    RefusionConfig,
    latent_refusion_tiny,
    refusion_tiny,
)
from models.refusion.method import Refusion, RefusionNet, autoencoder_from, upsample_lq

__all__ = [
    "IRSDE", "LatentAutoencoder", "LatentAutoencoderConfig", "Refusion", "RefusionConfig", "RefusionNet",
    "autoencoder_from", "latent_pretraining_loss", "latent_refusion_tiny", "refusion_tiny", "upsample_lq",
]
