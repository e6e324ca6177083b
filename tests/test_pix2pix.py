"""Pix2Pix (Isola et al. 2017): the U-Net generator, the 70x70 PatchGAN, the objective, test-time noise, training."""

import pytest
import torch
from torch import nn

from gans.errors import ConfigurationError
from gans.nets.unet import UNetGenerator

# ---------------------------------------------------------------------------------------------------------------
# U-Net
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [8, 32, 64, 256])
def test_unet_shapes(size):
    g = UNetGenerator(source_channels=3, channels=2, image_size=size, features=2)
    assert g.num_downs == size.bit_length() - 1  # log2: a 1x1 bottleneck
    out = g(torch.randn(2, 3, size, size))
    assert out.shape == (2, 2, size, size)
    assert out.abs().max() <= 1  # tanh


def test_unet_shallower_than_the_bottleneck_takes_any_multiple():
    g = UNetGenerator(1, 1, image_size=48, features=4, num_downs=4)
    assert g(torch.randn(1, 1, 48, 48)).shape == (1, 1, 48, 48)
    # 48 is no power of two: the default depth log2(48) cannot halve it down to 1x1.
    with pytest.raises(ConfigurationError, match="image_size=48"):
        UNetGenerator(1, 1, image_size=48)
    with pytest.raises(ConfigurationError, match="num_downs=1"):
        UNetGenerator(1, 1, image_size=8, num_downs=1)


def test_unet_skips_carry_the_input():
    # The decoder sees each encoder level's input: an output pixel depends on its own input pixel through the
    # outermost skip, even where the bottleneck carries nothing of it.
    g = UNetGenerator(1, 1, image_size=16, features=4, dropout=0.0).eval()
    x = torch.randn(1, 1, 16, 16, requires_grad=True)
    g(x)[0, 0, 5, 5].backward()
    assert x.grad[0, 0, 5, 5] != 0


def test_unet_256_parameter_count_is_the_reference():
    # The authors' unet_256 (ngf 64, batch norm, RGB to RGB): pix2pix prints "[Network G] Total number of parameters :
    # 54.414 M" for facades. Counted by hand from their UnetSkipConnectionBlock (no conv bias before a batch norm,
    # none on the innermost map's missing norm, the outermost transposed conv with its bias):
    down_convs = 16 * (3 * 64 + 64 * 128 + 128 * 256 + 256 * 512 + 4 * 512 * 512)
    down_norms = 2 * (128 + 256 + 4 * 512)  # every encoder level but the outermost and the innermost
    up_convs = 16 * (512 * 512 + 3 * 1024 * 512 + 1024 * 256 + 512 * 128 + 256 * 64 + 128 * 3) + 3
    up_norms = 2 * (4 * 512 + 256 + 128 + 64)
    expected = down_convs + down_norms + up_convs + up_norms
    assert expected == 54_413_955  # 54.414 M
    g = UNetGenerator(3, 3, image_size=256, features=64)
    assert g.num_downs == 8
    assert sum(p.numel() for p in g.parameters()) == expected
    # unet_128 is the same network one level shallower (its 7 downsamplings).
    assert UNetGenerator(3, 3, image_size=128).num_downs == 7


def test_unet_dropout_and_bias_follow_the_reference():
    g = UNetGenerator(3, 3, image_size=256, features=4)
    dropouts = [m for m in g.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 8 - 5 and all(m.p == 0.5 for m in dropouts)  # the num_downs - 5 inner 8x blocks
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    # Batch norm: only the output layer keeps a bias; instance norm (no affine shift): every convolution does.
    assert [m.bias is not None for m in convs].count(True) == 1
    instance = UNetGenerator(3, 3, image_size=256, features=4, norm="instance")
    assert all(m.bias is not None for m in instance.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in instance.modules())


def test_unet_init_is_normal_002():
    g = UNetGenerator(3, 3, image_size=64, features=64)
    weights = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(weights.std().item() - 0.02) < 1e-3 and abs(weights.mean().item()) < 1e-3
    scales = torch.cat([m.weight for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(scales.mean().item() - 1) < 0.01 and 0.01 < scales.std().item() < 0.03
