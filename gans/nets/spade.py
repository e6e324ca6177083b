"""SPADE (Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive Normalization"): the normalization
whose scale and bias are maps computed from the label map, the residual block built on it and the generator of
NVlabs/SPADE (``models/networks/normalization.py``, ``architecture.py``, ``generator.py``), without the optional
image encoder (the VAE variant)."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as spectral

from gans.errors import ConfigurationError, check_at_least
from gans.nets.patchgan import init_xavier

ParamFreeNorm = Literal["batch", "instance"]
Upsampling = Literal["normal", "more", "most"]

#: The reference's upsamplings per ``num_upsampling_layers``: the label map enters at image_size / 2**count.
UPSAMPLINGS = {"normal": 5, "more": 6, "most": 7}


def param_free_norm(norm: ParamFreeNorm, channels: int) -> nn.Module:
    """The normalization without learned scale and bias that SPADE modulates: BatchNorm (running statistics for
    evaluation; the reference's default is its synchronized BatchNorm, plain here, one set of statistics per process)
    or InstanceNorm."""
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=False)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    raise ConfigurationError(f"norm={norm!r}; expected 'batch' or 'instance'")


class SPADE(nn.Module):
    """Spatially-adaptive normalization: ``norm(x) * (1 + gamma) + beta`` with gamma and beta [N, C, H, W] computed
    from the label map resized (nearest) to x's size by a shared 3x3 convolution to ``embedding`` channels, ReLU, and
    one 3x3 convolution each (the reference's ``spade<norm>3x3``).

    Args:
        channels: channels of the normalized activations (the reference's ``norm_nc``).
        label_channels: channels of the label map: its one-hot classes (plus the reference's optional instance-edge
            channel), or an image's channels.
        norm: the parameter-free normalization, ``"batch"`` (the reference's default) or ``"instance"``.
        kernel_size: of the three convolutions (3).
        embedding: channels of the shared embedding (128, fixed in the reference).

    Raises:
        ConfigurationError: an unknown ``norm``, a size below 1 or an even ``kernel_size``.
    """

    def __init__(self, channels: int, label_channels: int, norm: ParamFreeNorm = "batch", kernel_size: int = 3,
                 embedding: int = 128) -> None:
        super().__init__()
        check_at_least(1, "SPADE", channels=channels, label_channels=label_channels, kernel_size=kernel_size,
                       embedding=embedding)
        if kernel_size % 2 == 0:
            raise ConfigurationError(f"kernel_size={kernel_size}: SPADE's convolutions keep the size, an odd kernel")
        self.norm = param_free_norm(norm, channels)
        pad = kernel_size // 2
        self.shared = nn.Sequential(nn.Conv2d(label_channels, embedding, kernel_size, padding=pad), nn.ReLU())
        self.gamma = nn.Conv2d(embedding, channels, kernel_size, padding=pad)
        self.beta = nn.Conv2d(embedding, channels, kernel_size, padding=pad)

    def modulation(self, segmap: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """gamma and beta [N, C, H, W] of the label map ``segmap`` [N, label_channels, H', W'] at ``size`` (H, W)."""
        # Nearest: the classes stay one-hot at every scale.
        actv = self.shared(F.interpolate(segmap, size=size, mode="nearest"))
        return self.gamma(actv), self.beta(actv)

    def forward(self, x: Tensor, segmap: Tensor) -> Tensor:
        gamma, beta = self.modulation(segmap, x.shape[-2:])
        return self.norm(x) * (1 + gamma) + beta


class SPADEResnetBlock(nn.Module):
    """The residual block of the SPADE generator: SPADE, leaky ReLU (0.2), 3x3 convolution, twice; the shortcut is
    SPADE and a 1x1 convolution without bias when the channels change (identity otherwise). The middle width is
    ``min(in, out)``; the convolutions are spectrally normalized (the reference's ``spectral`` in ``norm_G``).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        label_channels: channels of the label map.
        norm: SPADE's parameter-free normalization.
        spectral_norm: spectral normalization of the three convolutions.
        kernel_size: of SPADE's convolutions.
        embedding: channels of SPADE's shared embedding.
    """

    def __init__(self, in_channels: int, out_channels: int, label_channels: int, norm: ParamFreeNorm = "batch",
                 spectral_norm: bool = True, kernel_size: int = 3, embedding: int = 128) -> None:
        super().__init__()
        middle = min(in_channels, out_channels)
        sn = spectral if spectral_norm else (lambda layer: layer)
        self.conv_0 = sn(nn.Conv2d(in_channels, middle, 3, padding=1))
        self.conv_1 = sn(nn.Conv2d(middle, out_channels, 3, padding=1))
        self.norm_0 = SPADE(in_channels, label_channels, norm, kernel_size, embedding)
        self.norm_1 = SPADE(middle, label_channels, norm, kernel_size, embedding)
        self.learned_shortcut = in_channels != out_channels
        if self.learned_shortcut:
            self.conv_s = sn(nn.Conv2d(in_channels, out_channels, 1, bias=False))
            self.norm_s = SPADE(in_channels, label_channels, norm, kernel_size, embedding)

    def forward(self, x: Tensor, segmap: Tensor) -> Tensor:
        shortcut = self.conv_s(self.norm_s(x, segmap)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, segmap), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, segmap), 0.2))
        return shortcut + dx


def num_upsamplings(image_size: int, mode: Upsampling) -> int:
    """The generator's upsamplings for an image side: the reference's count for ``mode`` (5, 6, 7), or fewer, as many
    as 2 divides ``image_size`` (8: 3, entering at 1x1; 48: 4, at 3x3; the reference would make 32 of 48).

    Raises:
        ConfigurationError: an unknown ``mode`` or an ``image_size`` below 1.
    """
    if mode not in UPSAMPLINGS:
        raise ConfigurationError(f"num_upsampling_layers={mode!r}; expected one of {', '.join(map(repr, UPSAMPLINGS))}")
    check_at_least(1, image_size=image_size)
    count = 0
    while count < UPSAMPLINGS[mode] and image_size % 2 ** (count + 1) == 0:
        count += 1
    return count


class SPADEGenerator(nn.Module):
    """The SPADE generator without encoder: label map [N, source_channels, H, W] -> image [N, channels, H, W] in
    [-1, 1]. The label map, downsampled (nearest) to H / 2**u, goes through a 3x3 convolution to ``16 * features``
    channels, then the reference's SPADE residual blocks (``head_0``, ``G_middle_0``, ``G_middle_1`` at ``16 *
    features``, ``up_0`` .. ``up_3`` halving to ``features``, and ``up_4`` to ``features / 2`` for ``"most"``) with a
    2x nearest upsampling before ``G_middle_0``, before ``G_middle_1`` (``"more"`` and ``"most"``) and before every
    ``up_*`` block, then leaky ReLU, a 3x3 convolution to ``channels`` and tanh. Each block sees the whole label map,
    resized to its resolution by its SPADE layers.

    An image side that 2**u of the reference does not divide (a smaller one) drops the first upsamplings
    (:func:`num_upsamplings`): the blocks are the same (so is the parameter count), the first ones run at the entry
    size. The size is taken from the input, so any H and W that 2**u divides work (the reference fixes H from its crop
    and ``aspect_ratio``).

    Args:
        source_channels: channels of the label map (the reference's ``semantic_nc``: classes, plus one for a
            "don't care" class and one for instance edges when used).
        channels: image channels (3).
        image_size: image side; sets the upsamplings with ``num_upsampling_layers``.
        features: the reference's ``ngf`` (64); the blocks have 16, 8, 4, 2, 1 times as many channels.
        num_upsampling_layers: ``"normal"`` (5 upsamplings), ``"more"`` (6; the reference's cityscapes setting)
            or ``"most"`` (7, with the extra block ``up_4``).
        norm: SPADE's parameter-free normalization, ``"batch"`` (the reference's ``spectralspadesyncbatch3x3``) or
            ``"instance"`` (``spectralspadeinstance3x3``).
        spectral_norm: spectral normalization of the residual blocks' convolutions (on in the reference).
        kernel_size: of SPADE's convolutions (3).
        embedding: channels of every SPADE's shared embedding (128, fixed in the reference); its convolutions run at
            every block's resolution and dominate the cost at high resolution (a CPU run may take fewer).

    Raises:
        ConfigurationError: a size below 1, an unknown mode or normalization.
    """

    def __init__(
        self,
        source_channels: int,
        channels: int = 3,
        image_size: int = 256,
        features: int = 64,
        num_upsampling_layers: Upsampling = "normal",
        norm: ParamFreeNorm = "batch",
        spectral_norm: bool = True,
        kernel_size: int = 3,
        embedding: int = 128,
    ) -> None:
        super().__init__()
        check_at_least(1, "SPADEGenerator", source_channels=source_channels, channels=channels, features=features)
        self.num_up = num_upsamplings(image_size, num_upsampling_layers)
        nf = features
        self.fc = nn.Conv2d(source_channels, 16 * nf, 3, padding=1)
        widths = [16 * nf, 16 * nf, 16 * nf, 16 * nf, 8 * nf, 4 * nf, 2 * nf, nf]
        names = ["head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3"]
        # Whether the reference upsamples before each block.
        ups = [False, True, num_upsampling_layers != "normal", True, True, True, True]
        if num_upsampling_layers == "most":
            widths, names, ups = widths + [nf // 2], names + ["up_4"], ups + [True]
        if widths[-1] < 1:
            raise ConfigurationError(f"features={features}: 'most' halves it in its last block; use at least 2")
        self.blocks = nn.ModuleDict({
            name: SPADEResnetBlock(widths[i], widths[i + 1], source_channels, norm, spectral_norm, kernel_size, embedding)
            for i, name in enumerate(names)
        })
        # A smaller image skips the first upsamplings (count - num_up of them).
        skip = sum(ups) - self.num_up
        self.upsample_before = []
        for up in ups:
            self.upsample_before.append(up and skip <= 0)
            skip -= up
        self.conv_img = nn.Conv2d(widths[-1], channels, 3, padding=1)
        init_xavier(self)

    def forward(self, segmap: Tensor) -> Tensor:
        height, width = segmap.shape[-2:]
        scale = 2**self.num_up
        if height % scale or width % scale:
            raise ValueError(
                f"SPADEGenerator upsamples {self.num_up} times: the label map's size ({height}x{width}) must be a "
                f"multiple of {scale}"
            )
        x = self.fc(F.interpolate(segmap, size=(height // scale, width // scale), mode="nearest"))
        for up, block in zip(self.upsample_before, self.blocks.values(), strict=True):
            if up:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(x, segmap)
        return self.conv_img(F.leaky_relu(x, 0.2)).tanh()  # [N, channels, H, W]
