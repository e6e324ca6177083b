"""BEGAN's networks (Berthelot et al. 2017, figure 1): a decoder used as the generator, and an auto-encoder (an
encoder and a decoder of the same layout) as the discriminator. 3x3 convolutions with ELU, two per resolution,
nearest-neighbour upsampling, subsampling by strided convolution with channels growing linearly (n, 2n, 3n, ...);
no batch normalisation, no dropout."""

import math

from torch import Tensor, nn

from gans.errors import ConfigurationError


def _num_doublings(image_size: int) -> int:
    n = math.log2(image_size) - 3  # the networks work from an 8x8 map
    if image_size < 8 or not n.is_integer():
        raise ConfigurationError(
            f"image_size={image_size} is not supported by the BEGAN networks; expected a power of two >= 8"
        )
    return int(n)


def _conv_elu(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, stride, 1), nn.ELU()]


class BEGANDecoder(nn.Module):
    """h [N, embedding] -> image [N, channels, image_size, image_size]: dense to 8 x 8 x n, then per resolution two
    conv3x3-ELU and a 2x upsampling, a final conv3x3 to the image (no output non-linearity, as in the paper).

    Args:
        embedding: size of h (and of z for the generator; 64 in the paper).
        channels: image channels.
        image_size: output side, a power of two >= 8.
        features: n, channels of every layer (64 in the paper).
    """

    def __init__(self, embedding: int = 64, channels: int = 1, image_size: int = 32, features: int = 64) -> None:
        super().__init__()
        self.features = features
        self.dense = nn.Linear(embedding, 8 * 8 * features)
        layers: list[nn.Module] = []
        for _ in range(_num_doublings(image_size)):
            layers += [*_conv_elu(features, features), *_conv_elu(features, features), nn.Upsample(scale_factor=2)]
        layers += [*_conv_elu(features, features), *_conv_elu(features, features)]
        layers.append(nn.Conv2d(features, channels, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, h: Tensor) -> Tensor:
        return self.net(self.dense(h).view(-1, self.features, 8, 8))


class BEGANEncoder(nn.Module):
    """image -> h [N, embedding]: conv3x3-ELU to n channels, then per resolution two conv3x3-ELU and a stride-2
    conv3x3-ELU that adds n channels, two conv3x3-ELU at 8x8, dense to h."""

    def __init__(self, embedding: int = 64, channels: int = 1, image_size: int = 32, features: int = 64) -> None:
        super().__init__()
        layers = _conv_elu(channels, features)
        width = features
        for _ in range(_num_doublings(image_size)):
            layers += [*_conv_elu(width, width), *_conv_elu(width, width), *_conv_elu(width, width + features, 2)]
            width += features
        layers += [*_conv_elu(width, width), *_conv_elu(width, width), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        self.dense = nn.Linear(8 * 8 * width, embedding)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(self.net(x))


class BEGANAutoencoder(nn.Module):
    """BEGAN's discriminator: image [N, C, H, W] -> its reconstruction [N, C, H, W]."""

    def __init__(self, channels: int = 1, image_size: int = 32, embedding: int = 64, features: int = 64) -> None:
        super().__init__()
        self.encoder = BEGANEncoder(embedding, channels, image_size, features)
        self.decoder = BEGANDecoder(embedding, channels, image_size, features)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))
