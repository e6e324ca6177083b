"""Plain ``nn.Module`` networks: no Lightning, no losses.

A variant takes its networks as factories (a ``class_path``/``init_args`` spec on the command line), called with the
sizes the variant derives from its own arguments, so that any network with the same call fits:

- ``ImageGenerator``: ``factory(latent_dim, channels, image_size)`` -> z [N, latent_dim] to images [N, C, S, S];
- ``ImageDiscriminator``: ``factory(channels, image_size)`` -> images to scores [N] (``channels`` already multiplied by
  PacGAN's ``pack``);
- ``PyramidGenerator`` / ``PyramidDiscriminator``: ``factory(latent_dim, channels, image_size, levels)`` /
  ``factory(channels, image_size, levels)`` for LAPGAN's networks of every level of a Laplacian pyramid;
- ``TranslationGenerator``: ``factory(source_channels, channels, image_size)`` -> sources [N, source_channels, H, W]
  to images [N, channels, H, W] (the translation variants; a PatchGAN is an ``ImageDiscriminator`` of the source and
  image channels together, its scores a map [N, 1, H', W']);
- ``SuperResolutionGenerator``: ``factory(source_channels, channels, image_size, scale)`` -> low-resolution sources
  [N, source_channels, H / scale, W / scale] to images [N, channels, H, W] (SRGAN's ``SRResNet``);
- ``VectorGenerator`` / ``VectorDiscriminator``: ``factory(latent_dim, shape)`` / ``factory(shape)`` for the MLP
  networks of any sample shape (images or 2-D points).
"""

from collections.abc import Callable

from torch import nn

from gans.nets.began import BEGANAutoencoder, BEGANDecoder, BEGANEncoder
from gans.nets.cyclegan import ResnetTranslator
from gans.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from gans.nets.equalized import EqualizedConv2d, EqualizedLinear, PixelNorm
from gans.nets.lapgan import (
    BandDiscriminator,
    BandGenerator,
    CoarseDiscriminator,
    LaplacianDiscriminator,
    LaplacianGenerator,
    PyramidDiscriminator,
    PyramidGenerator,
)
from gans.nets.layers import MinibatchDiscrimination, MinibatchStdDev, pack
from gans.nets.mlp import Maxout, MLPAutoencoder, MLPDiscriminator, MLPGenerator
from gans.nets.msggan import MSGDiscriminator, MSGGenerator, ScaleCombine
from gans.nets.patchgan import MultiscaleDiscriminator, PatchDiscriminator
from gans.nets.pix2pixhd import GlobalGenerator, LocalEnhancer
from gans.nets.progan import ProGANDiscriminator, ProGANGenerator
from gans.nets.resnet import ResNetDiscriminator, ResNetGenerator
from gans.nets.spade import SPADE, SPADEGenerator, SPADEResnetBlock
from gans.nets.srgan import SRDiscriminator, SRResNet
from gans.nets.style import MappingNetwork, mix_styles, truncate
from gans.nets.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator, SynthesisNetwork
from gans.nets.unet import UNetGenerator

ImageGenerator = Callable[[int, int, int], nn.Module]
ImageDiscriminator = Callable[[int, int], nn.Module]
TranslationGenerator = Callable[[int, int, int], nn.Module]
SuperResolutionGenerator = Callable[[int, int, int, int], nn.Module]
VectorGenerator = Callable[[int, tuple[int, ...]], nn.Module]
VectorDiscriminator = Callable[[tuple[int, ...]], nn.Module]

__all__ = [
    "SPADE",
    "BEGANAutoencoder",
    "BEGANDecoder",
    "BEGANEncoder",
    "BandDiscriminator",
    "BandGenerator",
    "CoarseDiscriminator",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "EqualizedConv2d",
    "EqualizedLinear",
    "GlobalGenerator",
    "ImageDiscriminator",
    "ImageGenerator",
    "LaplacianDiscriminator",
    "LaplacianGenerator",
    "LocalEnhancer",
    "MLPAutoencoder",
    "MLPDiscriminator",
    "MLPGenerator",
    "MSGDiscriminator",
    "MSGGenerator",
    "MappingNetwork",
    "Maxout",
    "MinibatchDiscrimination",
    "MinibatchStdDev",
    "MultiscaleDiscriminator",
    "PatchDiscriminator",
    "PixelNorm",
    "ProGANDiscriminator",
    "ProGANGenerator",
    "PyramidDiscriminator",
    "PyramidGenerator",
    "ResNetDiscriminator",
    "ResNetGenerator",
    "ResnetTranslator",
    "SPADEGenerator",
    "SPADEResnetBlock",
    "SRDiscriminator",
    "SRResNet",
    "ScaleCombine",
    "StyleGAN2Discriminator",
    "StyleGAN2Generator",
    "SuperResolutionGenerator",
    "SynthesisNetwork",
    "TranslationGenerator",
    "UNetGenerator",
    "VectorDiscriminator",
    "VectorGenerator",
    "mix_styles",
    "pack",
    "truncate",
]
