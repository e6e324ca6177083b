"""LAPGAN's networks (Denton et al. 2015): a generator and a discriminator per level of a Laplacian pyramid.

Level 0 is the coarsest (the paper numbers the levels the other way: its G_K is our level 0, its G_0 our finest);
every list here runs coarse to fine, as ``GeneratorOutput.scales`` does. The defaults are the paper's CIFAR-10/STL
models (section 4), with the layer details of its reference code (facebook/eyescream, ``cifar/scripts``):

- level 0, a plain GAN on the coarsest image: G_0 and D_0 fully connected, two hidden layers, 1200 units in G
  (ReLU and a tanh output here; the reference code's G_0 has ReLU then sigmoid hidden units and a linear output),
  600 with dropout in D, weights ~ N(0, 0.05) in G and N(0, 0.005) in D (``reference_init``); z_0 a 100-d vector
  uniform in [-1, 1];
- every finer level k, a conditional GAN on the band h_k given the low-pass image l_k = u(I_{k-1}): G_k a 3-layer
  convnet (128 maps, 7x7, 7x7, 5x5 kernels, ReLU, linear output) on l_k with the noise z_k as one more colour plane;
  D_k a 2-layer convnet (128 maps, 5x5 kernels, the second with stride 2, ReLU, dropout, a linear logit) on h + l_k,
  the band "explicitly added" to l_k before its first layer, as the paper does.

The reference code's discriminator convolutions are unpadded; here they keep the size (padding), so that the same
networks run at every level down to 4x4. Its sigmoid output and binary cross-entropy are the logit and the
``non_saturating`` loss here.
"""

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from gans.errors import ConfigurationError
from gans.nets.mlp import MLPGenerator
from gans.outputs import GeneratorOutput
from gans.pyramid import gaussian_pyramid, pyramid_sides, upsample

#: ``factory(latent_dim, channels, image_size, levels)`` -> a generator of the whole pyramid (``LaplacianGenerator``).
PyramidGenerator = Callable[[int, int, int, int], nn.Module]
#: ``factory(channels * pack, image_size, levels)`` -> one discriminator per level (``LaplacianDiscriminator``).
PyramidDiscriminator = Callable[[int, int, int], nn.Module]


def reference_init(module: nn.Module, std: float) -> None:
    """The reference code's initialisation of the coarsest level's fully connected layers: weights ~ N(0, std), biases
    0 (``cifar/scripts/train_cifar.lua``: 0.05 in G, 0.005 in D). With PyTorch's default (that of Torch7 too) G_0's
    output hardly depends on z_0 at first (its spread over z is a tenth of the data's), and in our Fashion-MNIST runs
    it collapsed to one image within 1,500 steps, with SGD and with Adam; with these it kept its samples apart. The
    convolutional levels keep the default, as the reference code does."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, std)
            nn.init.zeros_(layer.bias)


def checked_sides(image_size: int, levels: int) -> list[int]:
    """``gans.pyramid.pyramid_sides``, its error a ``ConfigurationError`` naming the value."""
    try:
        return pyramid_sides(image_size, levels)
    except ValueError as err:
        raise ConfigurationError(str(err)) from err


class BandGenerator(nn.Module):
    """G_k of a conditional level: (l_k [N, C, S, S], z_k [N, 1, S, S]) -> the band h_k [N, C, S, S], unbounded (a
    band of images in [-1, 1] lies in [-2, 2]; the paper's output layer is linear).

    Args:
        channels: image channels.
        features: feature maps of the two hidden layers (128 in the paper's CIFAR-10 model).
    """

    def __init__(self, channels: int = 1, features: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels + 1, features, 7, padding=3),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, features, 7, padding=3),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, channels, 5, padding=2),
        )

    def forward(self, low: Tensor, noise: Tensor) -> Tensor:
        return self.net(torch.cat([low, noise], dim=1))


class BandDiscriminator(nn.Module):
    """D_k of a conditional level: an image at the level's side, h + l_k [N, C, S, S] -> one logit per image, [N].

    Args:
        channels: image channels (times PacGAN's ``pack``).
        image_size: the level's side S, even.
        features: feature maps of both layers (128).
        dropout: dropout probability before the logit (0.5, the reference code's ``nn.Dropout()``).
    """

    def __init__(self, channels: int = 1, image_size: int = 16, features: int = 128, dropout: float = 0.5) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, features, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, features, 5, stride=2, padding=2),  # [N, features, S / 2, S / 2]
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(features * (image_size // 2) ** 2, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten()


class CoarseDiscriminator(nn.Module):
    """D_0: the coarsest image [N, C, S, S] -> one logit per image, [N]; fully connected ReLU layers, each followed by
    dropout (the paper's D_K).

    Args:
        channels: image channels (times PacGAN's ``pack``).
        image_size: the coarsest side S.
        hidden: widths of the hidden layers (600, 600).
        dropout: dropout probability after each hidden layer (0.5).
    """

    def __init__(
        self, channels: int = 1, image_size: int = 8, hidden: Sequence[int] = (600, 600), dropout: float = 0.5
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = channels * image_size**2
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        reference_init(self, 0.005)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten()


class LaplacianGenerator(nn.Module):
    """The sampling chain of a LAPGAN: z [N, z_dim] -> ``GeneratorOutput`` with ``images`` [N, C, S, S] in about
    [-1, 1] (the finest level, unclamped) and ``scales``, the coarser images I_0 ... I_{levels-2}. I_0 = G_0(z_0), then
    I_k = u(I_{k-1}) + G_k(u(I_{k-1}), z_k) up to the finest.

    ``z`` holds all the chain's noise, so that a latent vector decides a sample: z_0 (``latent_dim`` values) then one
    noise plane [1, S_k, S_k] per conditional level, flattened (``latent_shapes``, ``split``).

    Args:
        latent_dim: size of z_0 (100 in the paper).
        channels: image channels.
        image_size: side S of the finest level.
        levels: levels of the pyramid, the coarsest included (3 for 32x32: 8, 16, 32).
        hidden: widths of G_0's hidden layers (1200, 1200).
        features: feature maps of each G_k (128).
    """

    def __init__(
        self, latent_dim: int, channels: int, image_size: int, levels: int, hidden: Sequence[int] = (1200, 1200),
        features: int = 128,
    ) -> None:
        super().__init__()
        sides = checked_sides(image_size, levels)
        # tanh: the coarsest image is an image in [-1, 1] (the reference code's normalised pixels had no bound).
        coarse = MLPGenerator(latent_dim, (channels, sides[0], sides[0]), tuple(hidden), batch_norm=False, tanh=True)
        reference_init(coarse, 0.05)
        #: G_0, G_1, ...: coarse to fine.
        self.levels = nn.ModuleList([coarse, *(BandGenerator(channels, features) for _ in sides[1:])])
        self.latent_shapes: list[tuple[int, ...]] = [(latent_dim,), *((1, side, side) for side in sides[1:])]
        self.z_dim = sum(math.prod(shape) for shape in self.latent_shapes)

    def split(self, z: Tensor) -> list[Tensor]:
        """z [N, z_dim] -> [z_0 [N, latent_dim], z_1 [N, 1, S_1, S_1], ...], coarse to fine.

        Raises:
            ValueError: ``z`` of another width.
        """
        if z.shape[-1] != self.z_dim:
            raise ValueError(f"z has {z.shape[-1]} values per sample; this LAPGAN's chain takes {self.z_dim} "
                             f"(z_0 and one noise plane per level: {self.latent_shapes})")
        parts = z.split([math.prod(shape) for shape in self.latent_shapes], dim=1)
        return [part.reshape(-1, *shape) for part, shape in zip(parts, self.latent_shapes, strict=True)]

    def level(self, k: int, noise: Tensor, low: Tensor | None = None) -> Tensor:
        """The image of level ``k`` [N, C, S_k, S_k]: G_0(z_0) for the coarsest, l_k + G_k(l_k, z_k) for a finer one,
        given its low-pass image ``low`` = l_k (an upsampled real image in training, the chain's when sampling)."""
        if k == 0:
            return self.levels[0](noise)
        return low + self.levels[k](low, noise)

    def forward(self, z: Tensor) -> GeneratorOutput:
        noises = self.split(z)
        images = [self.level(0, noises[0])]
        for k in range(1, len(self.levels)):
            images.append(self.level(k, noises[k], upsample(images[-1])))
        return GeneratorOutput(images=images[-1], scales=tuple(images[:-1]))


class LaplacianDiscriminator(nn.Module):
    """One discriminator per level, ``levels[k]``: D_0 judges the coarsest image, D_k an image of level k, h + l_k
    (``levels[k](x)``: [N, C, S_k, S_k] -> logits [N]). Called on a whole pyramid, the images of every level coarse to
    fine [I_0, ..., I_{levels-1}], or on images [N, C, S, S], whose Gaussian pyramid it takes, it returns the mean of
    the levels' logits, [N] (what ``GAN.critic`` gives; training scores each level apart).

    Args:
        channels: image channels (times PacGAN's ``pack``).
        image_size: side S of the finest level.
        levels: levels of the pyramid, the coarsest included.
        hidden: widths of D_0's hidden layers (600, 600).
        features: feature maps of each D_k (128).
        dropout: dropout probability of every level's discriminator (0.5).
    """

    def __init__(
        self, channels: int, image_size: int, levels: int, hidden: Sequence[int] = (600, 600), features: int = 128,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        sides = checked_sides(image_size, levels)
        self.num_levels = levels
        #: D_0, D_1, ...: coarse to fine.
        self.levels = nn.ModuleList([
            CoarseDiscriminator(channels, sides[0], hidden, dropout),
            *(BandDiscriminator(channels, side, features, dropout) for side in sides[1:]),
        ])

    def forward(self, x: Tensor | Sequence[Tensor]) -> Tensor:
        images = gaussian_pyramid(x, self.num_levels) if isinstance(x, Tensor) else x
        return torch.stack([d(image) for d, image in zip(self.levels, images, strict=True)]).mean(0)
