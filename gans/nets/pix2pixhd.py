"""Pix2PixHD's coarse-to-fine generator (Wang et al. 2018, section 3.2): the global generator G1 and the local
enhancer G2 that wraps it.

The layers follow the reference code (NVIDIA/pix2pixHD, ``models/networks.py``: ``GlobalGenerator``,
``LocalEnhancer``, ``ResnetBlock``) and its defaults (``options/base_options.py``: ``ngf`` 64,
``n_downsample_global`` 4, ``n_blocks_global`` 9, ``n_blocks_local`` 3, ``n_local_enhancers`` 1, ``norm``
instance; the 1024p scripts train the enhancer with ``--ngf 32``, which makes G1 64 wide inside it):

- G1: reflection pad 3, 7x7 conv, then ``n_downsampling`` 3x3 stride-2 convolutions doubling the width, ``n_blocks``
  residual blocks, as many 3x3 stride-2 transposed convolutions halving it, reflection pad 3, 7x7 conv to the image,
  tanh; every hidden convolution followed by the norm and a ReLU;
- G2: a front end on the full-resolution input (reflection pad 3, 7x7 conv, one 3x3 stride-2 conv), whose output is
  added to the last feature map of G1 (G1 without its output layers) run on the input downsampled 2x, then
  ``n_blocks_local`` residual blocks, a transposed convolution back to full size and the output layers.

Weights are initialised as pix2pix's and pix2pixHD's (``gans.nets.patchgan.init_normal``: N(0, 0.02); the
reference leaves the biases at PyTorch's default, they start at 0 here).

The number of downsamplings of G1 is derived from the image size when not given: the paper's 4, fewer when the
image is too small to keep at least 2x2 pixels at the bottom (instance norm needs more than one).
"""

from torch import Tensor, nn

from gans.errors import ConfigurationError
from gans.nets.patchgan import Norm, init_normal, norm_layer

__all__ = ["GlobalGenerator", "LocalEnhancer", "ResidualBlock", "downsamplings"]

def downsamplings(image_size: int, requested: int | None, cap: int, argument: str = "n_downsampling") -> int:
    """The number of stride-2 downsamplings for images of side ``image_size``: ``requested``, checked, or the largest
    count up to ``cap`` that divides the side evenly and leaves at least 2x2 pixels.

    Args:
        image_size: the side of the images the network runs on.
        requested: the count the user asked for; None derives it.
        cap: the paper's count, the most a derived count may be.
        argument: the argument named in the message.

    Returns:
        The count.

    Raises:
        ConfigurationError: ``requested`` is negative, or the side is not divisible by 2 ** requested into at least
            2 pixels.
    """
    if requested is None:
        n = 0
        while n < cap and image_size % 2 ** (n + 1) == 0 and image_size // 2 ** (n + 1) >= 2:
            n += 1
        return n
    if requested < 0 or image_size % 2**requested or image_size // 2**requested < 2:
        raise ConfigurationError(
            f"{argument}={requested} does not fit images of side {image_size}: the side must be divisible by "
            f"2 ** {argument} into at least 2 pixels"
        )
    return requested


class ResidualBlock(nn.Module):
    """x + (reflection pad 1, 3x3 conv, norm, ReLU, reflection pad 1, 3x3 conv, norm)(x), [N, C, H, W] -> same."""

    def __init__(self, channels: int, norm: Norm = "instance") -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), norm_layer(norm, channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), norm_layer(norm, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


def _in_layers(in_channels: int, features: int, norm: Norm) -> list[nn.Module]:
    return [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, features, 7), norm_layer(norm, features), nn.ReLU(True)]


def _down(features: int, norm: Norm) -> list[nn.Module]:
    return [nn.Conv2d(features, 2 * features, 3, 2, 1), norm_layer(norm, 2 * features), nn.ReLU(True)]


def _up(features: int, norm: Norm) -> list[nn.Module]:
    """[N, 2 * features, S, S] -> [N, features, 2S, 2S]."""
    return [nn.ConvTranspose2d(2 * features, features, 3, 2, 1, output_padding=1), norm_layer(norm, features), nn.ReLU(True)]


def _out_layers(features: int, channels: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(features, channels, 7), nn.Tanh())


class GlobalGenerator(nn.Module):
    """G1: source [N, source_channels, S, S] -> image [N, channels, S, S] in [-1, 1].

    ``body`` is everything up to the last feature map (what the local enhancer keeps), ``head`` the output layers.

    Args:
        source_channels: channels of the input (one-hot classes, plus one for the instance-boundary map).
        channels: channels of the output image.
        image_size: side of the images it runs on (decides the default ``n_downsampling``).
        features: width of the first layer (the reference's ``ngf``, 64).
        n_downsampling: stride-2 convolutions (the reference's ``n_downsample_global``, 4); None: 4, or fewer for
            images too small for 4.
        n_blocks: residual blocks at the bottom (9).
        norm: ``"instance"`` (the reference's default, without affine parameters), ``"batch"`` or ``"none"``.

    Raises:
        ConfigurationError: ``n_downsampling`` does not fit ``image_size``, or ``features``/``n_blocks`` out of range.
    """

    def __init__(
        self,
        source_channels: int,
        channels: int,
        image_size: int,
        features: int = 64,
        n_downsampling: int | None = None,
        n_blocks: int = 9,
        norm: Norm = "instance",
    ) -> None:
        super().__init__()
        if features < 1 or n_blocks < 0:
            raise ConfigurationError(f"features={features} must be >= 1 and n_blocks={n_blocks} >= 0")
        self.n_downsampling = downsamplings(image_size, n_downsampling, cap=4)
        layers = _in_layers(source_channels, features, norm)
        for i in range(self.n_downsampling):
            layers += _down(features * 2**i, norm)
        bottom = features * 2**self.n_downsampling
        layers += [ResidualBlock(bottom, norm) for _ in range(n_blocks)]
        for i in reversed(range(self.n_downsampling)):
            layers += _up(features * 2**i, norm)
        self.body = nn.Sequential(*layers)  # [N, features, S, S]
        self.head = _out_layers(features, channels)
        init_normal(self)

    def forward(self, source: Tensor) -> Tensor:
        return self.head(self.body(source))


class _Enhancer(nn.Module):
    """One local enhancer: ``front`` on the input at its scale, [N, C_in, S, S] -> [N, 2w, S/2, S/2], to be added to
    the coarser generator's last feature map; ``back`` from the sum to [N, w, S, S]."""

    def __init__(self, source_channels: int, width: int, n_blocks: int, norm: Norm) -> None:
        super().__init__()
        self.front = nn.Sequential(*_in_layers(source_channels, width, norm), *_down(width, norm))
        self.back = nn.Sequential(*[ResidualBlock(2 * width, norm) for _ in range(n_blocks)], *_up(width, norm))


class LocalEnhancer(nn.Module):
    """G = {G1, G2}: source [N, source_channels, S, S] -> image [N, channels, S, S] in [-1, 1].

    G1 (``global_body``, the global generator without its output layers, ``features * 2 ** n_local_enhancers``
    wide) runs on the input downsampled ``n_local_enhancers`` times (3x3 average pooling, stride 2, as the
    reference); each enhancer, coarse to fine, adds its front end's features of the input at its scale to the coarser
    output and refines the sum; the finest one ends with the output layers (``head``).

    Args:
        source_channels: channels of the input.
        channels: channels of the output image.
        image_size: side of the full-resolution images (decides G1's default ``n_downsampling``).
        features: width of the finest enhancer (the reference's ``ngf`` with ``--netG local``, 32).
        n_downsampling: G1's stride-2 convolutions (4); None: 4, or fewer for images too small for 4.
        n_blocks: G1's residual blocks (9).
        n_local_enhancers: enhancers, each doubling the resolution (1).
        n_blocks_local: residual blocks of each enhancer (3).
        norm: ``"instance"``, ``"batch"`` or ``"none"``.

    Raises:
        ConfigurationError: a size out of range, or ``image_size`` not divisible by 2 ** ``n_local_enhancers``.
    """

    def __init__(
        self,
        source_channels: int,
        channels: int,
        image_size: int,
        features: int = 32,
        n_downsampling: int | None = None,
        n_blocks: int = 9,
        n_local_enhancers: int = 1,
        n_blocks_local: int = 3,
        norm: Norm = "instance",
    ) -> None:
        super().__init__()
        if n_local_enhancers < 1 or n_blocks_local < 0:
            raise ConfigurationError(
                f"n_local_enhancers={n_local_enhancers} must be >= 1 and n_blocks_local={n_blocks_local} >= 0"
            )
        coarse_size = image_size // 2**n_local_enhancers
        if image_size % 2**n_local_enhancers or coarse_size < 4:
            # 4: the global generator's 7x7 reflection padding needs more than 3 pixels.
            raise ConfigurationError(
                f"n_local_enhancers={n_local_enhancers} does not fit images of side {image_size}: each enhancer halves "
                "it, and the global generator needs a side of at least 4"
            )
        self.n_local_enhancers = n_local_enhancers
        coarse = GlobalGenerator(
            source_channels, channels, coarse_size, features * 2**n_local_enhancers, n_downsampling, n_blocks, norm
        )
        self.global_body = coarse.body
        self.enhancers = nn.ModuleList(
            _Enhancer(source_channels, features * 2 ** (n_local_enhancers - n), n_blocks_local, norm)
            for n in range(1, n_local_enhancers + 1)
        )
        self.head = _out_layers(features, channels)
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        init_normal(self)

    def global_parameters(self) -> list[nn.Parameter]:
        """G1's parameters: what the paper keeps fixed while the enhancer alone is trained first."""
        return list(self.global_body.parameters())

    def load_global_generator(self, state: dict[str, Tensor]) -> None:
        """Loads G1 from the state dict of a trained ``GlobalGenerator`` (its ``body``; the output layers, which
        G1 loses inside the enhancer, are dropped).

        Args:
            state: ``GlobalGenerator.state_dict()``.

        Raises:
            ConfigurationError: the state dict is not that of a global generator of this shape.
        """
        body = {key[len("body."):]: value for key, value in state.items() if key.startswith("body.")}
        try:
            self.global_body.load_state_dict(body)
        except RuntimeError as err:
            raise ConfigurationError(
                "the global generator's weights do not fit the local enhancer's G1 (it is features * 2 ** "
                f"n_local_enhancers wide, with the same n_downsampling and n_blocks): {err}"
            ) from err

    def forward(self, source: Tensor) -> Tensor:
        pyramid = [source]  # fine to coarse
        for _ in range(self.n_local_enhancers):
            pyramid.append(self.downsample(pyramid[-1]))
        x = self.global_body(pyramid[-1])
        for enhancer, level in zip(self.enhancers, reversed(pyramid[:-1]), strict=True):
            x = enhancer.back(enhancer.front(level) + x)
        return self.head(x)

