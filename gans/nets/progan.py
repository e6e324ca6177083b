"""ProGAN's networks (Karras et al. 2018, "Progressive Growing of GANs", table 2 and appendix A), following the
official code's ``networks.py``: all blocks up to the target resolution exist from the start (as in the official
code), and a growth state (the current resolution and the fade-in weight ``alpha``) says which of them run.

At resolution ``r`` with ``alpha < 1`` the newest block is faded in (figure 2 of the paper): G's output is
``lerp(upsample(toRGB_{r/2}(x_{r/2})), toRGB_r(block_r(x_{r/2})), alpha)`` and D's features entering the
``r/2`` block are ``lerp(fromRGB_{r/2}(downsample(image)), block_r(fromRGB_r(image)), alpha)``. At ``alpha = 0``
each network computes exactly what it computed at the previous resolution (``torch.lerp`` returns its start then).
Blocks above the current resolution get no gradient, so Adam creates their state only when they start training,
and the state of the trained ones is kept. (The official code clears the optimizers' state at every fade and
stabilization, ``reset_opt_for_new_lod``: ``callbacks.ProgressiveGrowing(reset_optimizer_state=True)``.)

The growth state is two buffers (saved in checkpoints and safetensors exports, copied to an EMA generator) mirrored in
Python numbers, so a forward pass never reads a device tensor.
"""

import math

import torch
from torch import Tensor, nn

from gans.errors import ConfigurationError
from gans.nets.equalized import EqualizedConv2d, EqualizedLinear, PixelNorm, downsample, upsample
from gans.nets.layers import MinibatchStdDev


def progan_channels(resolution: int, fmap_base: int = 8192, fmap_max: int = 512, fmap_decay: float = 1.0) -> int:
    """The paper's feature maps at ``resolution`` (the official ``nf(log2(resolution) - 1)``): with the defaults,
    512 up to 32x32, then 256, 128, 64, 32 and 16 at 1024x1024 (table 2)."""
    stage = int(math.log2(resolution)) - 1
    return min(int(fmap_base / 2.0 ** (stage * fmap_decay)), fmap_max)


def progressive_resolutions(image_size: int) -> tuple[int, ...]:
    """The resolutions of a progressive or multi-scale network up to ``image_size``: 4, 8, ..., ``image_size``.

    Raises:
        ConfigurationError: ``image_size`` is not a power of two >= 4.
    """
    if image_size < 4 or image_size & (image_size - 1):
        raise ConfigurationError(f"image_size={image_size} must be a power of two >= 4 for a progressive network")
    return tuple(2**k for k in range(2, int(math.log2(image_size)) + 1))


def _mirror_growth(network: "Growing", incompatible_keys: object) -> None:
    network.level, network.alpha = int(network.level_state), float(network.alpha_state)


class Growing(nn.Module):
    """A network whose growth state (``resolution``, ``alpha``) selects the blocks it runs; see the module docstring.

    Args:
        image_size: the target resolution, a power of two >= 4; the network starts there (a trained network).
    """

    def __init__(self, image_size: int) -> None:
        super().__init__()
        #: The resolutions the network can run at, 4 to ``image_size``, coarse to fine.
        self.resolutions = progressive_resolutions(image_size)
        self.register_buffer("level_state", torch.tensor(len(self.resolutions) - 1))  # index in resolutions
        self.register_buffer("alpha_state", torch.tensor(1.0))
        self.level, self.alpha = len(self.resolutions) - 1, 1.0
        self.register_load_state_dict_post_hook(_mirror_growth)  # a function, not a lambda: modules are pickled

    @property
    def resolution(self) -> int:
        """The resolution the network runs at."""
        return self.resolutions[self.level]

    def grow(self, resolution: int, alpha: float = 1.0) -> None:
        """Runs at ``resolution`` from now on, its newest block weighted ``alpha`` in [0, 1] (1: faded in).

        Raises:
            ConfigurationError: a resolution the network does not have, or ``alpha`` outside [0, 1].
        """
        if resolution not in self.resolutions:
            raise ConfigurationError(f"resolution={resolution} is not one of {type(self).__name__}'s {self.resolutions}")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigurationError(f"alpha={alpha} must be in [0, 1]")
        self.level, self.alpha = self.resolutions.index(resolution), float(alpha)
        self.level_state.fill_(self.level)
        self.alpha_state.fill_(self.alpha)

    @property
    def fading(self) -> bool:
        """Whether the newest block is being faded in (``alpha < 1`` above 4x4)."""
        return self.level > 0 and self.alpha < 1.0


class ProGANGenerator(Growing):
    """ProGAN's generator: z [N, latent_dim] -> images [N, channels, r, r] at the current resolution ``r``, linear
    (no tanh: the paper's toRGB is a 1x1 convolution).

    z is pixel-normalised (the latent on a hypersphere), a dense layer makes the 4x4 features, and every block is
    nearest-neighbour upsampling and two 3x3 convolutions, each followed by LeakyReLU(0.2) and pixel norm, with the
    equalized learning rate everywhere.

    Args:
        latent_dim: size of z (512 in the paper).
        channels: image channels.
        image_size: target resolution, a power of two >= 4.
        fmap_base: the official channel formula's base: ``min(fmap_base / 2^stage, fmap_max)`` feature maps.
        fmap_max: the most feature maps of a block (512 in the paper).
    """

    def __init__(self, latent_dim: int, channels: int, image_size: int, fmap_base: int = 8192,
                 fmap_max: int = 512) -> None:
        super().__init__(image_size)
        width = [progan_channels(r, fmap_base, fmap_max) for r in self.resolutions]
        act = nn.LeakyReLU(0.2)
        self.normalize_z = PixelNorm()
        # The official Dense layer's gain sqrt(2)/4 ("to match the original Theano implementation"), its bias per
        # channel of the 4x4 map, not per unit.
        self.dense = EqualizedLinear(latent_dim, width[0] * 16, gain=math.sqrt(2) / 4, bias=False)
        self.dense_bias = nn.Parameter(torch.zeros(width[0]))
        self.blocks = nn.ModuleList([nn.Sequential(act, PixelNorm(), EqualizedConv2d(width[0], width[0], 3), act,
                                                   PixelNorm())])
        for i in range(1, len(self.resolutions)):
            self.blocks.append(nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                EqualizedConv2d(width[i - 1], width[i], 3), act, PixelNorm(),
                EqualizedConv2d(width[i], width[i], 3), act, PixelNorm(),
            ))
        self.to_rgb = nn.ModuleList([EqualizedConv2d(w, channels, 1, gain=1.0) for w in width])

    def forward(self, z: Tensor) -> Tensor:
        x = self.dense(self.normalize_z(z)).view(z.shape[0], -1, 4, 4) + self.dense_bias.view(1, -1, 1, 1)
        previous = x
        for block in self.blocks[: self.level + 1]:
            previous, x = x, block(x)
        image = self.to_rgb[self.level](x)  # [N, C, r, r]
        if self.fading:
            return torch.lerp(upsample(self.to_rgb[self.level - 1](previous)), image, self.alpha)
        return image


class ProGANDiscriminator(Growing):
    """ProGAN's discriminator (critic): images [N, channels, r, r] at the current resolution -> scores [N].

    fromRGB is a 1x1 convolution with LeakyReLU(0.2); every block above 4x4 is two 3x3 convolutions with
    LeakyReLU(0.2) and 2x2 average pooling; the 4x4 block is minibatch standard deviation, a 3x3 convolution and two
    dense layers (the last linear, gain 1); equalized learning rate everywhere, no normalisation (the WGAN-GP penalty
    is per sample).

    Args:
        channels: image channels (times PacGAN's ``pack``).
        image_size: target resolution, a power of two >= 4.
        fmap_base: the official channel formula's base.
        fmap_max: the most feature maps of a block (512 in the paper).
        mbstd_group_size: samples per minibatch-stddev group (4 in the official code); 0 or 1 leaves the layer out
            (the official ``mbstd_group_size > 1``).
    """

    def __init__(self, channels: int, image_size: int, fmap_base: int = 8192, fmap_max: int = 512,
                 mbstd_group_size: int = 4) -> None:
        super().__init__(image_size)
        width = [progan_channels(r, fmap_base, fmap_max) for r in self.resolutions]
        act = nn.LeakyReLU(0.2)
        self.from_rgb = nn.ModuleList([nn.Sequential(EqualizedConv2d(channels, w, 1), act) for w in width])
        self.blocks = nn.ModuleList([nn.Sequential(
            MinibatchStdDev(mbstd_group_size) if mbstd_group_size > 1 else nn.Identity(),
            EqualizedConv2d(width[0] + (mbstd_group_size > 1), width[0], 3), act, nn.Flatten(),
            EqualizedLinear(width[0] * 16, progan_channels(2, fmap_base, fmap_max), gain=math.sqrt(2)), act,
            EqualizedLinear(progan_channels(2, fmap_base, fmap_max), 1, gain=1.0),
        )])
        for i in range(1, len(self.resolutions)):
            self.blocks.append(self.down_block(width[i], width[i - 1], self.resolutions[i]))

    def down_block(self, in_channels: int, out_channels: int, resolution: int) -> nn.Module:
        """The block at ``resolution`` above 4x4: [N, in_channels, r, r] -> [N, out_channels, r/2, r/2]; ProGAN's is
        two 3x3 convolutions with LeakyReLU(0.2), then 2x2 average pooling (StyleGAN's discriminator blurs first)."""
        act = nn.LeakyReLU(0.2)
        return nn.Sequential(
            EqualizedConv2d(in_channels, in_channels, 3), act,
            EqualizedConv2d(in_channels, out_channels, 3), act,
            nn.AvgPool2d(2),
        )

    def forward(self, image: Tensor) -> Tensor:
        if image.shape[-1] != self.resolution:
            raise ValueError(
                f"{type(self).__name__} runs at {self.resolution}x{self.resolution} and got images of shape "
                f"{tuple(image.shape[1:])}"
            )
        x = self.blocks[self.level](self.from_rgb[self.level](image))  # [N, width[level - 1], r/2, r/2] above 4x4
        if self.fading:
            x = torch.lerp(self.from_rgb[self.level - 1](downsample(image)), x, self.alpha)
        for block in reversed(self.blocks[: self.level]):
            x = block(x)
        return x.view(-1)
