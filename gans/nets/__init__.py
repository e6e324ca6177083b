"""Plain ``nn.Module`` networks: no Lightning, no losses."""

from gans.nets.began import BEGANAutoencoder, BEGANDecoder, BEGANEncoder
from gans.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from gans.nets.layers import MinibatchDiscrimination, MinibatchStdDev, pack
from gans.nets.mlp import Maxout, MLPAutoencoder, MLPDiscriminator, MLPGenerator
from gans.nets.resnet import ResNetDiscriminator, ResNetGenerator

__all__ = [
    "BEGANAutoencoder", "BEGANDecoder", "BEGANEncoder", "DCGANDiscriminator", "DCGANGenerator", "MLPAutoencoder",
    "MLPDiscriminator", "MLPGenerator", "Maxout", "MinibatchDiscrimination", "MinibatchStdDev", "ResNetDiscriminator",
    "ResNetGenerator", "pack",
]
