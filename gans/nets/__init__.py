"""Plain ``nn.Module`` networks: no Lightning, no losses."""

from gans.nets.dcgan import DCGANDiscriminator, DCGANGenerator

__all__ = ["DCGANDiscriminator", "DCGANGenerator"]
