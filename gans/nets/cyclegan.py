"""CycleGAN's ResNet translation generator (Zhu et al. 2017, appendix 7.2; Johnson et al. 2016's style-transfer
network): c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-3 with a tanh.

Reflection padding before every 3x3 convolution of the residual blocks and around the 7x7 convolutions keeps the
borders free of the artefacts zero padding makes; instance normalisation (no affine parameters, no running
statistics) follows every convolution but the last, so the convolutions carry biases, as in the authors' code. With
``features`` 64 and 9 blocks on RGB the network has 11,378,179 parameters, the "11.378 M" the authors' code prints.
"""

from torch import Tensor, nn

from gans.errors import ConfigurationError
from gans.nets.patchgan import Norm, init_normal, norm_layer

#: Stride-2 downsamplings (and as many upsamplings) of the network: the residual blocks run at a quarter of the side.
DOWNSAMPLINGS = 2


class ResnetBlock(nn.Module):
    """x + (reflection pad 1, conv3x3, norm, ReLU, [dropout 0.5], reflection pad 1, conv3x3, norm)(x).

    Args:
        channels: input and output channels.
        norm: ``"instance"``, ``"batch"`` or ``"none"``.
        dropout: a dropout of 0.5 between the two convolutions.
    """

    def __init__(self, channels: int, norm: Norm = "instance", dropout: bool = False) -> None:
        super().__init__()
        bias = norm != "batch"  # a batch norm's shift makes the bias redundant; an instance norm has none
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            norm_layer(norm, channels),
            nn.ReLU(inplace=True),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm_layer(norm, channels)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class ResnetTranslator(nn.Module):
    """source [N, source_channels, H, W] -> image [N, channels, H, W] in [-1, 1], H and W multiples of 4.

    Args:
        source_channels: channels of the input images.
        channels: channels of the output images.
        image_size: the training images' side; it chooses the paper's number of residual blocks when ``n_blocks`` is
            ``None``.
        features: channels of the first convolution (``ngf``), doubled by each downsampling.
        n_blocks: residual blocks at a quarter of the side; ``None``: 9 for images of 256 and more, 6 below (the
            paper's 6 for 128x128 and 9 for 256x256).
        norm: ``"instance"`` (the paper), ``"batch"`` or ``"none"``.
        dropout: dropout of 0.5 inside each residual block (off in CycleGAN, the authors' ``--no_dropout``).

    Raises:
        ConfigurationError: ``image_size`` is not a multiple of 4, ``features`` below 1, ``n_blocks`` below 0, or an
            unknown ``norm``.
    """

    def __init__(
        self,
        source_channels: int = 3,
        channels: int = 3,
        image_size: int = 256,
        features: int = 64,
        n_blocks: int | None = None,
        norm: Norm = "instance",
        dropout: bool = False,
    ) -> None:
        super().__init__()
        if image_size < 4 or image_size % 2**DOWNSAMPLINGS:
            raise ConfigurationError(
                f"image_size={image_size} is not supported by ResnetTranslator: its {DOWNSAMPLINGS} stride-2 "
                f"downsamplings need a multiple of {2**DOWNSAMPLINGS}"
            )
        if n_blocks is None:
            n_blocks = 9 if image_size >= 256 else 6
        if features < 1 or n_blocks < 0:
            raise ConfigurationError(f"features={features} must be >= 1 and n_blocks={n_blocks} >= 0")
        self.n_blocks = n_blocks
        bias = norm != "batch"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(source_channels, features, 7, bias=bias),
            norm_layer(norm, features),
            nn.ReLU(inplace=True),
        ]
        width = features
        for _ in range(DOWNSAMPLINGS):
            layers += [
                nn.Conv2d(width, width * 2, 3, stride=2, padding=1, bias=bias),
                norm_layer(norm, width * 2),
                nn.ReLU(inplace=True),
            ]
            width *= 2
        layers += [ResnetBlock(width, norm, dropout) for _ in range(n_blocks)]
        for _ in range(DOWNSAMPLINGS):
            # output_padding 1: exactly twice the side (a 3x3 kernel with padding 1 would give 2s - 1).
            layers += [
                nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                norm_layer(norm, width // 2),
                nn.ReLU(inplace=True),
            ]
            width //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        # The authors' init_type "normal": N(0, 0.02) weights, zero biases, batch-norm scales N(1, 0.02).
        init_normal(self)

    def forward(self, source: Tensor) -> Tensor:
        return self.net(source)
