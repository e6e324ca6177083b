"""GAN variants as PyTorch Lightning modules."""

from gans.base import GAN
from gans.dcgan import DCGAN
from gans.wgan_gp import WGANGP

__all__ = ["DCGAN", "GAN", "WGANGP"]
