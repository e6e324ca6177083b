"""MSG-GAN's networks (Karnewar and Wang 2020, "MSG-GAN: Multi-Scale Gradients for Generative Adversarial Networks",
figure 2, the paper's MSG-ProGAN): ProGAN's generator and discriminator at their final size, without growing, joined
at every resolution. G turns its features after each block into an image (a toRGB 1x1 convolution), so it makes the
image at 4x4, 8x8, ..., S x S at once; D takes all of them and combines each with its own features at the matching
resolution, so its gradient reaches every block of G directly (the "multi-scale gradients").

The ProGAN parts (Karras et al. 2018): equalized learning rate everywhere, pixel norm after every convolution of G,
LeakyReLU(0.2), nearest-neighbour upsampling and 2x2 average pooling, minibatch standard deviation before D's last
block, the paper's widths (``gans.nets.progan.progan_channels``). The pyramids are tuples of images coarse to fine,
``(x_4, x_8, ..., x_S)``, each [N, C, r, r].
"""

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from gans.errors import ConfigurationError
from gans.nets.equalized import EqualizedConv2d, EqualizedLinear, PixelNorm, upsample
from gans.nets.layers import MinibatchStdDev
from gans.nets.progan import progan_channels, progressive_resolutions

Combine = Literal["simple", "lin_cat", "cat_lin"]


def conv_act(in_channels: int, out_channels: int, pixel_norm: bool) -> list[nn.Module]:
    """A 3x3 equalized convolution and LeakyReLU(0.2), then pixel norm in the generator."""
    layers = [EqualizedConv2d(in_channels, out_channels, 3), nn.LeakyReLU(0.2)]
    return [*layers, PixelNorm()] if pixel_norm else layers


class MSGGenerator(nn.Module):
    """MSG-GAN's generator: z [N, latent_dim] -> the images at every resolution, a tuple coarse to fine of
    [N, channels, r, r] for r = 4, 8, ..., ``image_size``; linear outputs (toRGB is a 1x1 convolution, no tanh, as in
    ProGAN: the images live in [-1, 1] because the reals do).

    z is pixel-normalised (put on the sphere of radius sqrt(latent_dim)), a dense layer makes the 4x4 features and a
    3x3 convolution follows; every further block is nearest-neighbour upsampling and two 3x3 convolutions. Each block
    has its toRGB, all of them used at every step (the generator of ProGAN at its final resolution, keeping every
    toRGB instead of the last).

    Args:
        latent_dim: size of z (512 in the paper).
        channels: image channels.
        image_size: the finest resolution, a power of two >= 4.
        fmap_max: the most feature maps of a block (512 in the paper), as ProGAN's.
        fmap_base: the width formula's base (``gans.nets.progan.progan_channels``).
    """

    def __init__(self, latent_dim: int, channels: int, image_size: int, fmap_max: int = 512,
                 fmap_base: int = 8192) -> None:
        super().__init__()
        self.sides = progressive_resolutions(image_size)
        width = [progan_channels(side, fmap_base, fmap_max) for side in self.sides]
        self.normalize_z = PixelNorm()
        # The official ProGAN's gain sqrt(2)/4 for the latent's dense layer (it divides the 4x4 map's fan-in by 16).
        self.dense = EqualizedLinear(latent_dim, width[0] * 16, gain=math.sqrt(2) / 4)
        first = nn.Sequential(nn.LeakyReLU(0.2), PixelNorm(), *conv_act(width[0], width[0], True))  # 4x4
        self.blocks = nn.ModuleList([first])
        self.blocks.extend(
            nn.Sequential(*conv_act(width[i - 1], width[i], True), *conv_act(width[i], width[i], True))
            for i in range(1, len(width))
        )
        self.to_rgb = nn.ModuleList(EqualizedConv2d(w, channels, 1, gain=1.0) for w in width)

    def forward(self, z: Tensor) -> tuple[Tensor, ...]:
        x = self.dense(self.normalize_z(z)).view(z.shape[0], -1, 4, 4)  # [N, width[0], 4, 4]
        images = []
        for i, (block, to_rgb) in enumerate(zip(self.blocks, self.to_rgb, strict=True)):
            x = block(upsample(x) if i else x)  # [N, width[i], side, side]
            images.append(to_rgb(x))
        return tuple(images)


class ScaleCombine(nn.Module):
    """The paper's combine function phi, joining the image ``x`` [N, C, r, r] of one scale with D's
    features ``o`` [N, F, r, r] at that resolution, ``r'`` a 1x1 convolution:

    - ``"simple"``: phi_simple(x, o) = [x; o], channel concatenation: [N, C + F, r, r] (MSG-ProGAN's);
    - ``"lin_cat"``: phi_lin_cat(x, o) = [r'(x); o], r': C -> F: [N, 2F, r, r];
    - ``"cat_lin"``: phi_cat_lin(x, o) = r'([x; o]), r': C + F -> F: [N, F, r, r] (MSG-StyleGAN's).

    Args:
        kind: ``"simple"``, ``"lin_cat"`` or ``"cat_lin"``.
        channels: C, the image channels.
        features: F, the feature maps of D at this resolution.

    Raises:
        ConfigurationError: an unknown ``kind``.
    """

    def __init__(self, kind: Combine, channels: int, features: int) -> None:
        super().__init__()
        if kind not in ("simple", "lin_cat", "cat_lin"):
            raise ConfigurationError(f"combine={kind!r} is not one of MSG-GAN's 'simple', 'lin_cat', 'cat_lin'")
        self.kind = kind
        # r' with the authors' code's default He gain sqrt(2) (msg-stylegan's conv2d), though no activation follows.
        self.linear = {
            "simple": None,
            "lin_cat": EqualizedConv2d(channels, features, 1),
            "cat_lin": EqualizedConv2d(channels + features, features, 1),
        }[kind]
        #: The channels of the combined output.
        self.out_channels = {"simple": channels + features, "lin_cat": 2 * features, "cat_lin": features}[kind]

    def forward(self, x: Tensor, o: Tensor) -> Tensor:
        if self.kind == "lin_cat":
            return torch.cat([self.linear(x), o], dim=1)
        joined = torch.cat([x, o], dim=1)
        return joined if self.linear is None else self.linear(joined)


class MSGDiscriminator(nn.Module):
    """MSG-GAN's discriminator: the images at every resolution, coarse to fine (``MSGGenerator``'s output, or a real
    image's average-pooled pyramid) -> scores [N].

    The finest image goes through fromRGB (a 1x1 convolution and LeakyReLU) into ProGAN's blocks (two 3x3 convolutions
    with LeakyReLU, then 2x2 average pooling); before each coarser block the image of that resolution is combined with
    the features (``ScaleCombine``); the 4x4 block is minibatch standard deviation, a 3x3 convolution and two dense
    layers, the last linear. No normalisation layer. Minibatch standard deviation only before the 4x4 block, as the
    authors' PyTorch BMSG-GAN (their MSG-StyleGAN code applies it before every block).

    Args:
        channels: image channels (times PacGAN's ``pack``: each scale is packed alike).
        image_size: the finest resolution, a power of two >= 4.
        fmap_max: the most feature maps of a block (512 in the paper), as ProGAN's.
        fmap_base: the width formula's base (``gans.nets.progan.progan_channels``).
        combine: the combine function at every coarser scale: ``"simple"`` (the paper's for MSG-ProGAN), ``"lin_cat"``
            or ``"cat_lin"`` (``ScaleCombine``).
        mbstd_group_size: samples per minibatch-stddev group (4, ProGAN's).
    """

    def __init__(self, channels: int, image_size: int, fmap_max: int = 512, fmap_base: int = 8192,
                 combine: Combine = "simple", mbstd_group_size: int = 4) -> None:
        super().__init__()
        self.sides = progressive_resolutions(image_size)
        width = [progan_channels(side, fmap_base, fmap_max) for side in self.sides]
        self.from_rgb = nn.Sequential(EqualizedConv2d(channels, width[-1], 1), nn.LeakyReLU(0.2))
        #: ``combines[i]`` joins the image of ``sides[i]`` with the features entering block i, for all but the finest.
        self.combines = nn.ModuleList(ScaleCombine(combine, channels, w) for w in width[:-1])
        inputs = [c.out_channels for c in self.combines] + [width[-1]]
        self.blocks = nn.ModuleList([nn.Sequential(
            MinibatchStdDev(mbstd_group_size), *conv_act(inputs[0] + 1, width[0], False), nn.Flatten(),
            EqualizedLinear(width[0] * 16, width[0], gain=math.sqrt(2)), nn.LeakyReLU(0.2),
            EqualizedLinear(width[0], 1),
        )])
        self.blocks.extend(
            nn.Sequential(*conv_act(inputs[i], width[i], False), *conv_act(width[i], width[i - 1], False),
                          nn.AvgPool2d(2))
            for i in range(1, len(width))
        )

    def forward(self, images: Sequence[Tensor]) -> Tensor:
        shapes = [tuple(x.shape[-2:]) for x in images]
        if shapes != [(side, side) for side in self.sides]:
            raise ValueError(
                f"{type(self).__name__} takes images of sides {list(self.sides)}, coarse to fine; got shapes {shapes}"
            )
        x = self.from_rgb(images[-1])  # [N, width[-1], S, S]
        for i in reversed(range(len(self.sides))):
            if i < len(self.combines):
                x = self.combines[i](images[i], x)
            x = self.blocks[i](x)  # [N, width[i - 1], side / 2, side / 2]; the 4x4 block: [N, 1]
        return x.view(-1)
