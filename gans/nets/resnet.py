"""The ResNet generator and discriminator of SNGAN for 32x32 images (Miyato et al. 2018, appendix B, Table 4; the
networks of Gulrajani et al.'s CIFAR-10 ResNet). Every layer of the discriminator is spectrally normalised."""

import math

from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from gans.errors import ConfigurationError


def _init(module: nn.Module, gain: float) -> nn.Module:
    # The authors' Chainer code: Xavier-uniform, gain sqrt(2) in the residual branches, 1 in shortcuts and dense.
    nn.init.xavier_uniform_(module.weight, gain)
    nn.init.zeros_(module.bias)
    return module


def _num_upsamplings(image_size: int) -> int:
    n = math.log2(image_size) - 2
    if image_size < 8 or not n.is_integer():
        raise ConfigurationError(
            f"image_size={image_size} is not supported by the ResNet networks; expected a power of two >= 8"
        )
    return int(n)


class GBlock(nn.Module):
    """Generator residual block: BN, ReLU, 2x nearest upsampling, conv3x3, BN, ReLU, conv3x3; shortcut:
    upsampling and conv1x1."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(channels), nn.BatchNorm2d(channels)
        self.conv1 = _init(nn.Conv2d(channels, channels, 3, 1, 1), math.sqrt(2))
        self.conv2 = _init(nn.Conv2d(channels, channels, 3, 1, 1), math.sqrt(2))
        self.shortcut = _init(nn.Conv2d(channels, channels, 1), 1.0)

    def forward(self, x: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2)
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))


class DBlock(nn.Module):
    """Discriminator residual block: (ReLU,) conv3x3, ReLU, conv3x3, (2x2 average pooling); shortcut: conv1x1 and
    pooling when the shape changes. The first block of the network (``first=True``) has no leading ReLU and pools
    before its shortcut convolution (the "optimized" block of the paper's code)."""

    def __init__(self, in_channels: int, out_channels: int, down: bool, first: bool = False) -> None:
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = spectral_norm(_init(nn.Conv2d(in_channels, out_channels, 3, 1, 1), math.sqrt(2)))
        self.conv2 = spectral_norm(_init(nn.Conv2d(out_channels, out_channels, 3, 1, 1), math.sqrt(2)))
        self.learned_shortcut = down or in_channels != out_channels
        if self.learned_shortcut:
            self.shortcut = spectral_norm(_init(nn.Conv2d(in_channels, out_channels, 1), 1.0))

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.learned_shortcut:
            if self.first:  # pool first: the 1x1 convolution then runs on a quarter of the pixels
                s = self.shortcut(F.avg_pool2d(s, 2) if self.down else s)
            else:
                s = self.shortcut(s)
                s = F.avg_pool2d(s, 2) if self.down else s
        return h + s


class ResNetGenerator(nn.Module):
    """z [N, latent_dim] -> image [N, channels, image_size, image_size]: dense to 4x4, one up-block per doubling
    (three for 32x32), BN, ReLU, conv3x3, Tanh.

    Args:
        latent_dim: size of z (128 in the paper).
        channels: image channels.
        image_size: output side, a power of two >= 8 (32 in the paper).
        features: channels of every block (256 in the paper).
    """

    def __init__(self, latent_dim: int = 128, channels: int = 3, image_size: int = 32, features: int = 256) -> None:
        super().__init__()
        self.features = features
        self.dense = _init(nn.Linear(latent_dim, 4 * 4 * features), 1.0)
        self.blocks = nn.Sequential(*[GBlock(features) for _ in range(_num_upsamplings(image_size))])
        self.out = nn.Sequential(
            nn.BatchNorm2d(features), nn.ReLU(), _init(nn.Conv2d(features, channels, 3, 1, 1), 1.0), nn.Tanh()
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.out(self.blocks(self.dense(z).view(-1, self.features, 4, 4)))


class ResNetDiscriminator(nn.Module):
    """image [N, channels, image_size, image_size] -> one logit per image, [N]: down-blocks to 8x8, two blocks at
    8x8, ReLU, global sum pooling, dense (for 32x32: down, down, plain, plain, as in Table 4).

    Args:
        channels: image channels (times PacGAN's pack).
        image_size: input side, a power of two >= 8.
        features: channels of every block (128 in the paper).
    """

    def __init__(self, channels: int = 3, image_size: int = 32, features: int = 128) -> None:
        super().__init__()
        downs = _num_upsamplings(image_size) - 1  # to 8x8
        blocks = [DBlock(channels, features, down=downs > 0, first=True)]
        blocks += [DBlock(features, features, down=True) for _ in range(downs - 1)]
        blocks += [DBlock(features, features, down=False) for _ in range(2)]
        self.blocks = nn.Sequential(*blocks)
        self.dense = spectral_norm(_init(nn.Linear(features, 1), 1.0))

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # [N, features]: global sum pooling
        return self.dense(h).flatten()
