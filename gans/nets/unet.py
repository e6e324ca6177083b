"""Pix2Pix's U-Net generator (Isola et al. 2017, appendix 6.1.1; the ``unet_256``/``unet_128`` of the authors'
PyTorch code).

An encoder of stride-2 4x4 convolutions down to 1x1 and a mirrored decoder of stride-2 4x4 transposed convolutions,
with a skip connection that concatenates each encoder level's input to the decoder output of the same resolution.
Widths double from ``features`` up to ``8 * features`` and stay there; the decoder blocks at that width (all but the
innermost) carry dropout 0.5, which is the model's only noise (the paper gives it no z). Block by block, outermost
first, for ``num_downs = 8`` and ``features = 64``: C64-C128-C256-C512-C512-C512-C512-C512 and
CD512-CD512-CD512-C512-C256-C128-C64 (the paper's notation); no norm on the first encoder layer nor on the innermost
one (a 1x1 map), tanh on the output.
"""

import torch
from torch import Tensor, nn

from gans.errors import ConfigurationError
from gans.nets.patchgan import Norm, init_normal, norm_layer

# The paper's widest level is 8 * features; deeper levels keep that width.
_MAX_MULTIPLIER = 8


class UNetBlock(nn.Module):
    """One level of the U-Net: ``x -> cat(x, up(inner(down(x))))``, or ``up(inner(down(x)))`` at the outermost
    level, which has no skip of its own (its input is the source image).

    Args:
        outer_channels: channels of the level's input and of its decoder output (the image channels at the outermost
            level's output).
        inner_channels: channels after the level's downsampling convolution.
        inner: the next level down, ``None`` for the innermost level.
        in_channels: channels of the input when they differ from ``outer_channels`` (the source channels at the
            outermost level).
        outermost: the first level: no norm or activation before its convolution, tanh after the decoder.
        norm: ``"batch"``, ``"instance"`` or ``"none"``.
        dropout: dropout probability after the decoder's norm; 0 for none.
    """

    def __init__(
        self,
        outer_channels: int,
        inner_channels: int,
        inner: "UNetBlock | None" = None,
        in_channels: int | None = None,
        outermost: bool = False,
        norm: Norm = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        in_channels = outer_channels if in_channels is None else in_channels
        # The reference's rule: batch norm's own shift makes a conv bias redundant; its instance norm has none (no
        # affine parameters), so the convolutions keep theirs.
        bias = norm != "batch"
        down_conv = nn.Conv2d(in_channels, inner_channels, 4, 2, 1, bias=bias)
        # The levels below return their input concatenated with their output: twice the channels.
        up_in = inner_channels if inner is None else 2 * inner_channels
        if outermost:
            down: list[nn.Module] = [down_conv]
            up: list[nn.Module] = [nn.ReLU(True), nn.ConvTranspose2d(up_in, outer_channels, 4, 2, 1), nn.Tanh()]
        else:
            down = [nn.LeakyReLU(0.2, True), down_conv]
            # The innermost map is 1x1 at the default depth: normalising it would zero it (instance norm).
            if inner is not None:
                down.append(norm_layer(norm, inner_channels))
            up = [
                nn.ReLU(True),
                nn.ConvTranspose2d(up_in, outer_channels, 4, 2, 1, bias=bias),
                norm_layer(norm, outer_channels),
            ]
            if dropout:
                up.append(nn.Dropout(dropout))
        middle = [] if inner is None else [inner]
        self.model = nn.Sequential(*down, *middle, *up)

    def forward(self, x: Tensor) -> Tensor:
        # x: [N, in_channels, H, W]
        if self.outermost:
            return self.model(x)  # [N, outer_channels, H, W]
        return torch.cat([x, self.model(x)], 1)  # [N, in_channels + outer_channels, H, W]


class UNetGenerator(nn.Module):
    """source [N, source_channels, S, S] -> image [N, channels, S, S] in [-1, 1].

    Args:
        source_channels: channels of the input image.
        channels: channels of the output image.
        image_size: side of the square images; a multiple of ``2**num_downs``.
        features: width of the outermost level (the reference's ``ngf``); level ``i`` has
            ``features * min(2**i, 8)`` channels.
        num_downs: number of stride-2 downsamplings, >= 2; ``None`` for ``log2(image_size)``, which reaches a 1x1
            bottleneck as the paper (8 for ``unet_256``, 7 for ``unet_128``).
        norm: ``"batch"`` (the paper, with batch statistics at test time too), ``"instance"`` or ``"none"``.
        dropout: dropout probability in the decoder levels of width ``8 * features`` below the innermost one (the
            reference's ``num_downs - 5`` levels); the paper's 0.5 is the generator's only noise. 0 for none.
    """

    def __init__(
        self,
        source_channels: int = 3,
        channels: int = 3,
        image_size: int = 256,
        features: int = 64,
        num_downs: int | None = None,
        norm: Norm = "batch",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if image_size < 4:
            raise ConfigurationError(f"image_size={image_size} is invalid; expected at least 4")
        if num_downs is None:
            num_downs = image_size.bit_length() - 1  # floor(log2): 1x1 at the bottleneck for a power of two
        if num_downs < 2:
            raise ConfigurationError(f"num_downs={num_downs} is invalid; expected an integer >= 2")
        if image_size % 2**num_downs:
            raise ConfigurationError(
                f"image_size={image_size} is not supported by a U-Net of {num_downs} downsamplings; expected a "
                f"multiple of {2**num_downs} (or set the generator's num_downs: image_size must be a multiple of "
                "2**num_downs)"
            )
        if norm not in ("batch", "instance", "none"):
            raise ConfigurationError(f"norm={norm!r}; expected 'batch', 'instance' or 'none'")
        if not 0 <= dropout < 1:
            raise ConfigurationError(f"dropout={dropout} is invalid; expected a probability in [0, 1)")
        self.source_channels, self.channels, self.image_size, self.num_downs = (
            source_channels,
            channels,
            image_size,
            num_downs,
        )
        widths = [features * min(2**level, _MAX_MULTIPLIER) for level in range(num_downs)]
        block: UNetBlock | None = None
        # Built from the innermost level outwards, each level wrapping the one below.
        for level in range(num_downs - 1, 0, -1):
            at_max = widths[level - 1] == widths[level] == features * _MAX_MULTIPLIER
            level_dropout = dropout if at_max and block is not None else 0.0
            block = UNetBlock(widths[level - 1], widths[level], block, norm=norm, dropout=level_dropout)
        self.model = UNetBlock(channels, widths[0], block, in_channels=source_channels, outermost=True, norm=norm)
        init_normal(self)

    def forward(self, source: Tensor) -> Tensor:
        return self.model(source)  # [N, channels, S, S]
