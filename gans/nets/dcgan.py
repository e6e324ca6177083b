"""DCGAN generator and discriminator (Radford et al. 2016), for square images of any power-of-two size >= 8.

The generator projects z to a 4x4 map and doubles the resolution with strided transposed convolutions (kernel 4,
stride 2), halving the channels each time; the discriminator mirrors it with strided convolutions. At 64x64 with
64 base features this is exactly the network of the paper; at 32x32 it has one block less at each end.
"""

import math
from typing import Literal

from torch import Tensor, nn

from gans.errors import ConfigurationError
from gans.nets.layers import MinibatchDiscrimination, minibatch_layer


def _num_blocks(image_size: int) -> int:
    """Number of resolution doublings between the 4x4 base and ``image_size``."""
    blocks = math.log2(image_size) - 2
    if image_size < 8 or not blocks.is_integer():
        raise ConfigurationError(
            f"image_size={image_size} is not supported by the DCGAN networks; expected a power of two >= 8"
        )
    return int(blocks)


def dcgan_init(module: nn.Module) -> None:
    """The paper's initialisation: conv weights ~ N(0, 0.02); BatchNorm scale ~ N(1, 0.02), bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """z [N, latent_dim] -> image [N, channels, image_size, image_size] in [-1, 1].

    Args:
        latent_dim: size of z.
        channels: image channels (1 for MNIST, 3 for RGB).
        image_size: output side, a power of two >= 8.
        features: channels of the last hidden block; the 4x4 block has ``features * 2**(blocks - 1)``.
    """

    def __init__(self, latent_dim: int = 100, channels: int = 1, image_size: int = 32, features: int = 64) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        blocks = _num_blocks(image_size)
        width = features * 2 ** (blocks - 1)
        # BatchNorm after every layer but the output (the paper), so no conv bias.
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, width, 4, 1, 0, bias=False),  # [N, width, 4, 4]
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        for _ in range(blocks - 1):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(inplace=True),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """image [N, channels, image_size, image_size] -> one logit per image, [N].

    Args:
        channels: image channels.
        image_size: input side, a power of two >= 8.
        features: channels of the first block, doubled at each downsampling.
        norm: normalisation of the hidden blocks: ``"batch"`` (DCGAN), ``"layer"`` (per-sample over C, H, W, the
            drop-in the WGAN-GP paper recommends for a critic) or ``None``. The first block never has one (paper).
        minibatch: a minibatch layer on the last 4x4 features: ``"stddev"`` (an extra feature map before the output
            convolution, as in ProGAN), ``"discrimination"`` (on the flattened features, then a linear output, as in
            Salimans et al.) or ``None``.
    """

    def __init__(
        self,
        channels: int = 1,
        image_size: int = 32,
        features: int = 64,
        norm: Literal["batch", "layer"] | None = "batch",
        minibatch: Literal["stddev", "discrimination"] | None = None,
    ) -> None:
        super().__init__()
        norms = {"batch": nn.BatchNorm2d, "layer": lambda c: nn.GroupNorm(1, c), None: None}
        if norm not in norms:
            raise ConfigurationError(f"norm={norm!r} is not supported; expected 'batch', 'layer' or None")
        blocks = _num_blocks(image_size)
        width = features
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(blocks - 1):
            layers.append(nn.Conv2d(width, width * 2, 4, 2, 1, bias=norm is None))
            if norm is not None:
                layers.append(norms[norm](width * 2))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            width *= 2
        # [N, width, 4, 4] here
        if minibatch == "discrimination":
            layers += [nn.Flatten(), MinibatchDiscrimination(width * 16)]
            layers.append(nn.Linear(width * 16 + layers[-1].num_kernels, 1))
        else:
            layer, width = minibatch_layer(minibatch, width)
            layers += [layer, nn.Conv2d(width, 1, 4, 1, 0)]  # [N, 1, 1, 1]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten()
