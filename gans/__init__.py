"""GAN variants as PyTorch Lightning modules."""

from gans.base import GAN
from gans.began import BEGAN
from gans.cyclegan import CycleGAN
from gans.dcgan import DCGAN
from gans.distributed import GANDDPStrategy
from gans.lapgan import LAPGAN
from gans.loading import load_gan
from gans.lsgan import LSGAN
from gans.mlpgan import MLPGAN
from gans.msggan import MSGGAN
from gans.outputs import GeneratorOutput
from gans.phases import Phase
from gans.pix2pix import Pix2Pix
from gans.pix2pixhd import Pix2PixHD
from gans.progan import ProGAN
from gans.sngan import SNGAN
from gans.spade import GauGAN
from gans.srgan import SRGAN
from gans.stylegan import StyleGAN
from gans.stylegan2 import StyleGAN2
from gans.unrolled import UnrolledGAN
from gans.wgan import WGAN
from gans.wgan_gp import WGANGP

__all__ = [
    "BEGAN",
    "DCGAN",
    "GAN",
    "LAPGAN",
    "LSGAN",
    "MLPGAN",
    "MSGGAN",
    "SNGAN",
    "SRGAN",
    "WGAN",
    "WGANGP",
    "CycleGAN",
    "GANDDPStrategy",
    "GauGAN",
    "GeneratorOutput",
    "Phase",
    "Pix2Pix",
    "Pix2PixHD",
    "ProGAN",
    "StyleGAN",
    "StyleGAN2",
    "UnrolledGAN",
    "load_gan",
]
