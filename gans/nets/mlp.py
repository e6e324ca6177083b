"""Fully connected networks: the generator and maxout discriminator of the original GAN (Goodfellow et al. 2014),
for images (flattened) or low-dimensional points, and an MLP auto-encoder for BEGAN's discriminator on points."""

import itertools
import math
from typing import Literal

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from gans.nets.layers import minibatch_layer


class Maxout(nn.Module):
    """Maxout unit (Goodfellow et al. 2013): the maximum over ``pieces`` linear pieces, [N, in] -> [N, out]."""

    def __init__(self, in_features: int, out_features: int, pieces: int = 5) -> None:
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).view(-1, self.out_features, self.pieces).amax(dim=2)


class MLPGenerator(nn.Module):
    """z [N, latent_dim] -> sample [N, *out_shape]: fully connected ReLU layers.

    Args:
        latent_dim: size of z.
        out_shape: shape of one sample: ``(C, H, W)`` for images, ``(d,)`` for points.
        hidden: widths of the hidden layers (1200, 1200 in the paper's MNIST model).
        batch_norm: BatchNorm after each hidden layer (as in the PacGAN/VEEGAN 2-D experiments).
        tanh: squash the output to [-1, 1] (images); points are left unbounded.
    """

    def __init__(
        self,
        latent_dim: int = 100,
        out_shape: tuple[int, ...] = (1, 28, 28),
        hidden: tuple[int, ...] = (1200, 1200),
        batch_norm: bool = False,
        tanh: bool = True,
    ) -> None:
        super().__init__()
        self.out_shape = tuple(out_shape)
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden:
            layers += [nn.Linear(width, h, bias=not batch_norm)]
            layers += [nn.BatchNorm1d(h)] if batch_norm else []
            layers += [nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, math.prod(self.out_shape)))
        if tanh:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, *self.out_shape)


class MLPDiscriminator(nn.Module):
    """sample [N, *in_shape] -> one logit per sample, [N]: maxout hidden layers with dropout (the paper's MNIST
    discriminator: 240 units of 5 pieces, twice; dropout 0.2 on the input and 0.5 on the hidden units).

    Args:
        in_shape: shape of one input sample (``(m * C, H, W)`` or ``(m * d,)`` when PacGAN packs ``m`` samples).
        hidden: widths of the hidden layers.
        pieces: linear pieces per maxout unit; 1 gives LeakyReLU(0.2) units instead.
        input_dropout: dropout probability on the input.
        dropout: dropout probability on the hidden units.
        spectral_norm: spectral normalisation (Miyato et al.) of every linear layer.
        minibatch: a minibatch layer before the output: ``"stddev"``, ``"discrimination"`` or ``None``.
    """

    def __init__(
        self,
        in_shape: tuple[int, ...] = (1, 28, 28),
        hidden: tuple[int, ...] = (240, 240),
        pieces: int = 5,
        input_dropout: float = 0.2,
        dropout: float = 0.5,
        spectral_norm: bool = False,
        minibatch: Literal["stddev", "discrimination"] | None = None,
    ) -> None:
        super().__init__()
        sn = _spectral_norm if spectral_norm else (lambda m: m)
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(input_dropout)]
        width = math.prod(in_shape)
        for h in hidden:
            if pieces > 1:
                unit = Maxout(width, h, pieces)
                unit.linear = sn(unit.linear)
                layers += [unit]
            else:
                layers += [sn(nn.Linear(width, h)), nn.LeakyReLU(0.2, inplace=True)]
            layers += [nn.Dropout(dropout)]
            width = h
        layer, width = minibatch_layer(minibatch, width)
        layers += [layer, sn(nn.Linear(width, 1))]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten()


class MLPAutoencoder(nn.Module):
    """BEGAN's discriminator for points: an MLP encoder to an ``embedding``-sized code and an MLP decoder back,
    [N, *shape] -> reconstruction [N, *shape] (ELU units, as in the paper's convolutional version).

    Args:
        shape: shape of one sample.
        hidden: widths of the encoder's hidden layers (the decoder mirrors them).
        embedding: size of the code h.
    """

    def __init__(self, shape: tuple[int, ...] = (2,), hidden: tuple[int, ...] = (128, 128), embedding: int = 64) -> None:
        super().__init__()
        self.shape = tuple(shape)
        widths = [math.prod(self.shape), *hidden, embedding, *reversed(hidden), math.prod(self.shape)]
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if i not in (len(hidden), len(widths) - 2):  # the code and the output are linear
                layers.append(nn.ELU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).view(-1, *self.shape)
