"""SRGAN's networks (Ledig et al. 2017, figure 4): the SRResNet generator, with sub-pixel upsampling (Shi et al. 2016),
and the SRGAN discriminator.

- ``SRResNet``: low-resolution images [N, source_channels, H / scale, W / scale] to high-resolution ones [N, channels,
  H, W]: a 9x9 convolution to 64 features with PReLU, ``n_blocks`` (16) residual blocks (3x3 convolution, BN, PReLU,
  3x3 convolution, BN, skip), a 3x3 convolution with BN and a skip over all the blocks, log2(scale) sub-pixel blocks
  (3x3 convolution to 256 features, ``PixelShuffle(2)``, PReLU), and a 9x9 convolution to the image channels. With
  the paper's sizes it has about 1.55M parameters.
- ``SRDiscriminator``: images [N, channels, H, W] to logits [N]: eight 3x3 convolutions of 64, 64, 128, 128, 256, 256,
  512, 512 features with strides 1, 2, 1, 2, ..., LeakyReLU(0.2), BN after all but the first, then a dense layer of
  1024 units, LeakyReLU, a dense layer to one logit (the paper's sigmoid lives in the loss).

The paper's discriminator ends on 96x96 crops with 6x6 maps of 512 features flattened into the dense layer; here an
adaptive average pooling to ``pool`` x ``pool`` (``image_size // 16``, 6 at 96) comes before it, which is the identity
at the paper's size and lets the network judge images of any size.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn

from gans.errors import ConfigurationError, check_at_least


def upsampling_steps(scale: int) -> int:
    """The number of x2 sub-pixel blocks of an upscaling by ``scale``: log2(scale).

    Raises:
        ConfigurationError: ``scale`` is not a power of two of at least 2.
    """
    if scale < 2 or scale & (scale - 1):
        raise ConfigurationError(f"scale={scale}: SRResNet upsamples by x2 sub-pixel blocks, so scale must be 2, 4, 8...")
    return int(math.log2(scale))


class ResidualBlock(nn.Module):
    """SRResNet's residual block: x + BN(conv(PReLU(BN(conv(x))))), 3x3 convolutions keeping ``features`` channels."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1),
            nn.BatchNorm2d(features),
            nn.PReLU(features),
            nn.Conv2d(features, features, 3, padding=1),
            nn.BatchNorm2d(features),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SubPixelBlock(nn.Module):
    """A x2 upsampling by sub-pixel convolution (Shi et al. 2016): a 3x3 convolution to 4 x ``features`` channels whose
    groups of four become the 2x2 pixels of each position (``PixelShuffle(2)``), then PReLU: [N, F, H, W] to
    [N, F, 2H, 2W]."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(features, 4 * features, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.shuffle(self.conv(x)))


class SRResNet(nn.Module):
    """SRGAN's generator: low-resolution images in [-1, 1] to images ``scale`` times larger.

    Args:
        source_channels: channels of the low-resolution input.
        channels: channels of the output images.
        image_size: the side of the output (high-resolution) images: checked to be a multiple of ``scale`` (the
            network is fully convolutional and takes any size).
        scale: the upscaling factor (4), a power of two: log2(scale) sub-pixel blocks.
        features: channels of the trunk (64); the sub-pixel convolutions have four times as many.
        n_blocks: residual blocks (16).
        output: ``"tanh"`` bounds the images to [-1, 1], this library's range of images, as the other generators;
            ``"identity"`` is the paper's linear last layer (its outputs are clamped when sampled).

    Raises:
        ConfigurationError: a size below 1, a scale that is not a power of two, an image size not a multiple of it,
            or an unknown output.
    """

    def __init__(
        self,
        source_channels: int,
        channels: int,
        image_size: int,
        scale: int = 4,
        features: int = 64,
        n_blocks: int = 16,
        output: Literal["tanh", "identity"] = "tanh",
    ) -> None:
        super().__init__()
        check_at_least(1, source_channels=source_channels, channels=channels, image_size=image_size, features=features)
        check_at_least(0, n_blocks=n_blocks)
        steps = upsampling_steps(scale)
        if image_size % scale:
            raise ConfigurationError(f"image_size={image_size} is not a multiple of scale={scale}")
        if output not in ("tanh", "identity"):
            raise ConfigurationError(f"output={output!r}; expected 'tanh' or 'identity'")
        self.scale = scale
        self.head = nn.Sequential(nn.Conv2d(source_channels, features, 9, padding=4), nn.PReLU(features))
        self.blocks = nn.Sequential(*(ResidualBlock(features) for _ in range(n_blocks)))
        self.trunk_end = nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.BatchNorm2d(features))
        self.upsample = nn.Sequential(*(SubPixelBlock(features) for _ in range(steps)))
        self.tail = nn.Conv2d(features, channels, 9, padding=4)
        self.output = nn.Tanh() if output == "tanh" else nn.Identity()

    def forward(self, source: Tensor) -> Tensor:
        x = self.head(source)  # [N, F, h, w]
        x = x + self.trunk_end(self.blocks(x))  # the long skip over all the residual blocks
        return self.output(self.tail(self.upsample(x)))  # [N, C, h * scale, w * scale]


class SRDiscriminator(nn.Module):
    """SRGAN's discriminator: images [N, channels, H, W] to logits [N].

    Args:
        channels: input channels.
        image_size: the side of the input images: sets the default ``pool``.
        features: channels of the first two convolutions (64), doubled every two up to 8x; the dense layer has 16x
            (1024).
        pool: the side of the feature maps the dense layer reads (adaptive average pooling); ``None``:
            ``max(1, image_size // 16)``, 6 at the paper's 96x96 crops, where the pooling changes nothing.

    Raises:
        ConfigurationError: a size below 1.
    """

    def __init__(self, channels: int, image_size: int, features: int = 64, pool: int | None = None) -> None:
        super().__init__()
        pool = max(1, image_size // 16) if pool is None else pool
        check_at_least(1, channels=channels, image_size=image_size, features=features, pool=pool)
        layers: list[nn.Module] = []
        width_in = channels
        for index in range(8):
            width = features * 2 ** (index // 2)
            layers.append(nn.Conv2d(width_in, width, 3, stride=1 + index % 2, padding=1))
            if index:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.LeakyReLU(0.2))
            width_in = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(width_in * pool * pool, 16 * features),
            nn.LeakyReLU(0.2),
            nn.Linear(16 * features, 1),
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.pool(self.features(images))).squeeze(1)  # [N]
