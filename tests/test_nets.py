"""Shapes and initialisation of the networks."""

import pytest
import torch

from gans.nets import DCGANDiscriminator, DCGANGenerator


@pytest.mark.parametrize("image_size,channels", [(8, 1), (32, 1), (64, 3)])
def test_dcgan_shapes(image_size, channels):
    g = DCGANGenerator(latent_dim=16, channels=channels, image_size=image_size, features=8)
    d = DCGANDiscriminator(channels=channels, image_size=image_size, features=8)
    images = g(torch.randn(5, 16))
    assert images.shape == (5, channels, image_size, image_size)
    assert images.abs().max() <= 1.0  # Tanh output
    assert d(images).shape == (5,)


def test_dcgan_64_is_the_paper_network():
    g = DCGANGenerator(latent_dim=100, channels=3, image_size=64, features=64)
    convs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [512, 256, 128, 64, 3]
    d = DCGANDiscriminator(channels=3, image_size=64, features=64)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    # BatchNorm everywhere but the generator output and the discriminator input (the paper).
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules()) == 4
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules()) == 3
    assert sum(isinstance(m, torch.nn.LeakyReLU) and m.negative_slope == 0.2 for m in d.modules()) == 4


def test_dcgan_init_std():
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=100, image_size=64, features=64)
    weight = g.net[0].weight  # 100 x 512 x 4 x 4 values
    assert weight.mean().abs() < 1e-3
    assert weight.std().item() == pytest.approx(0.02, rel=0.02)


@pytest.mark.parametrize("norm,layer", [(None, None), ("layer", torch.nn.GroupNorm), ("batch", torch.nn.BatchNorm2d)])
def test_discriminator_norms(norm, layer):
    d = DCGANDiscriminator(image_size=32, features=8, norm=norm)
    norms = [m for m in d.modules() if isinstance(m, (torch.nn.GroupNorm, torch.nn.BatchNorm2d))]
    assert all(isinstance(m, layer) for m in norms) and (len(norms) == 2) == (layer is not None)
    assert d(torch.randn(3, 1, 32, 32)).shape == (3,)


@pytest.mark.parametrize("image_size", [4, 28, 48])
def test_unsupported_image_size(image_size):
    with pytest.raises(ValueError, match=f"image_size={image_size}.*power of two"):
        DCGANGenerator(image_size=image_size)


def test_unknown_norm():
    with pytest.raises(ValueError, match="norm='instance'"):
        DCGANDiscriminator(norm="instance")
