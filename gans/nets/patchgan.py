"""PatchGAN discriminators (Isola et al. 2017; multi-scale: Wang et al. 2018, Park et al. 2019): fully convolutional
critics that score every overlapping patch of their input, so they judge texture and leave the layout to the L1
(or feature-matching) term.

``PatchDiscriminator`` is pix2pix's ``NLayerDiscriminator``: ``n_layers`` strided 4x4 convolutions, one with stride 1,
and a 4x4 convolution to one channel of scores; with the defaults (3 layers, padding 1) each score sees a 70x70 patch
(:func:`receptive_field` computes it from the layers). pix2pixHD's and SPADE's variant pads by 2
(``padding=2``) and returns its intermediate activations for the feature-matching loss; SPADE's adds spectral norm.
``MultiscaleDiscriminator`` runs ``num_d`` of them on the input average-pooled by 2 each time (pix2pixHD: 3, SPADE: 2).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from gans.errors import ConfigurationError, check_at_least

Norm = Literal["batch", "instance", "none"]


def receptive_field(layers: Iterable[nn.Module]) -> int:
    """The side of the input patch one output pixel of a chain of layers sees: ``1 + sum_l (k_l - 1) * prod_{m<l}
    s_m`` over the convolutions and poolings in order (others, such as activations and norms, do not widen it).

    Args:
        layers: the modules in the order the input goes through them (``module.modules()`` of a sequential network).
    """
    field, jump = 1, 1
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            kernel, stride = layer.kernel_size, layer.stride
            kernel = kernel[0] if isinstance(kernel, tuple) else kernel
            stride = stride[0] if isinstance(stride, tuple) else stride
            dilation = layer.dilation if isinstance(layer, nn.Conv2d) else 1
            dilation = dilation[0] if isinstance(dilation, tuple) else dilation
            field += (kernel - 1) * dilation * jump
            jump *= stride
    return field


def norm_layer(norm: Norm, channels: int) -> nn.Module:
    """pix2pix's normalisation choices: BatchNorm (affine, running statistics), InstanceNorm (no affine parameters,
    no running statistics, as ``--norm instance``), or none."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "none":
        return nn.Identity()
    raise ConfigurationError(f"norm={norm!r}; expected 'batch', 'instance' or 'none'")


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """pix2pix's and pix2pixHD's initialisation (``init_type="normal"``, gain 0.02): convolution weights N(0, std),
    biases 0, BatchNorm scales N(1, std) and shifts 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def init_xavier(module: nn.Module, gain: float = 0.02) -> None:
    """The reference's initialization (``init_type="xavier"``, ``init_variance=0.02``): Xavier-normal weights of gain
    0.02 and zero biases in every convolution. A spectrally normalized convolution keeps PyTorch's default weights:
    the reference initializes the normalized ``weight`` its old ``spectral_norm`` recomputes from the untouched
    ``weight_orig`` at the next forward pass, so only its bias becomes zero."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if not parametrize.is_parametrized(m, "weight"):
                nn.init.xavier_normal_(m.weight, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class PatchDiscriminator(nn.Module):
    """PatchGAN: images [N, channels, H, W] to a map of patch scores (logits) [N, 1, H', W'].

    Args:
        channels: input channels (a conditional discriminator sees source and image stacked: their sum).
        image_size: the input side; only checked (the network is fully convolutional).
        features: channels of the first convolution (pix2pix's ``ndf``, 64), doubling per strided layer up to 8x.
        n_layers: strided convolutions (3: the 70x70 PatchGAN; 1: the 16x16 one; pix2pixHD's ``n_layers_D`` 3,
            SPADE's ``n_layers_D`` 4 is 3 here: SPADE counts the stride-1 layer).
        norm: normalisation after every convolution but the first and the last (``"batch"`` for pix2pix's batches
            of more than one, ``"instance"`` for CycleGAN, pix2pixHD and pix2pix at batch 1, ``"none"``).
        padding: of every 4x4 convolution: 1 in pix2pix and CycleGAN, 2 in pix2pixHD and SPADE.
        spectral_norm: spectral normalisation of the middle convolutions, which then have no bias (SPADE's
            ``spectralinstance``).
        init: ``"normal"``, N(0, 0.02) weights (pix2pix, CycleGAN, pix2pixHD), or ``"xavier"``, Xavier-normal of gain
            0.02 (SPADE, which initialises its discriminators as its generator).

    Raises:
        ConfigurationError: a size below 1, an unknown ``norm``, or an input too small for the layers.
    """

    def __init__(
        self,
        channels: int,
        image_size: int | None = None,
        features: int = 64,
        n_layers: int = 3,
        norm: Norm = "batch",
        padding: int = 1,
        spectral_norm: bool = False,
        init: Literal["normal", "xavier"] = "normal",
    ) -> None:
        super().__init__()
        if init not in ("normal", "xavier"):
            raise ConfigurationError(f"init={init!r}; expected 'normal' or 'xavier'")
        check_at_least(1, "PatchDiscriminator", channels=channels, features=features, n_layers=n_layers)
        check_at_least(0, "PatchDiscriminator", padding=padding)
        # A BatchNorm's shift makes a bias redundant (pix2pix); SPADE drops it before every normalisation.
        bias = norm == "none" or (norm == "instance" and not spectral_norm)

        def conv(c_in: int, c_out: int, stride: int, has_bias: bool) -> nn.Module:
            layer = nn.Conv2d(c_in, c_out, 4, stride, padding, bias=has_bias)
            return nn.utils.parametrizations.spectral_norm(layer) if spectral_norm else layer

        # The first and last convolutions are plain in every reference (SPADE normalises only the middle ones).
        blocks = [nn.Sequential(nn.Conv2d(channels, features, 4, 2, padding), nn.LeakyReLU(0.2, True))]
        width = features
        for n in range(1, n_layers + 1):  # the last of these has stride 1
            out = features * min(2**n, 8)
            blocks.append(nn.Sequential(
                conv(width, out, 2 if n < n_layers else 1, bias), norm_layer(norm, out), nn.LeakyReLU(0.2, True)
            ))
            width = out
        blocks.append(nn.Sequential(nn.Conv2d(width, 1, 4, 1, padding)))
        self.blocks = nn.ModuleList(blocks)
        (init_normal if init == "normal" else init_xavier)(self)
        self.image_size = image_size
        if image_size is not None and self.output_size(image_size) < 1:
            raise ConfigurationError(
                f"image_size={image_size} is too small for a PatchGAN of n_layers={n_layers} and padding={padding}: "
                "its output would be empty; lower n_layers"
            )

    def output_size(self, size: int) -> int:
        """The side of the score map for an input of side ``size``."""
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                size = (size + 2 * layer.padding[0] - layer.kernel_size[0]) // layer.stride[0] + 1
        return size

    @property
    def receptive_field(self) -> int:
        """The side of the patch each score sees (70 for the default 3 layers and padding 1)."""
        return receptive_field(self.modules())

    def features(self, x: Tensor) -> list[Tensor]:
        """The output of every block, [N, C_l, H_l, W_l]; the last is the score map [N, 1, H', W'] (pix2pixHD's
        ``getIntermFeat``: the feature-matching loss compares the others)."""
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x  # [N, 1, H', W']


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs of the same architecture on the input at full, half, quarter ... resolution (each scale
    average-pooled 3x3 with stride 2 from the previous, padding not counted), pix2pixHD's and SPADE's: the coarse ones
    see the global layout, the fine one the details.

    Args:
        channels: input channels.
        image_size: the input side (checked for the coarsest scale).
        num_d: discriminators (3 in pix2pixHD, 2 in SPADE).
        features: ``ndf`` of each (64).
        n_layers: strided convolutions of each (3 in both papers; see :class:`PatchDiscriminator`).
        norm: ``"instance"`` in both papers.
        padding: 2 in both papers.
        spectral_norm: SPADE's spectral normalisation.
        init: ``"normal"`` (pix2pixHD) or ``"xavier"`` (SPADE): see :class:`PatchDiscriminator`.

    Raises:
        ConfigurationError: ``num_d`` below 1, or a coarsest scale too small for its layers.
    """

    def __init__(
        self,
        channels: int,
        image_size: int | None = None,
        num_d: int = 3,
        features: int = 64,
        n_layers: int = 3,
        norm: Norm = "instance",
        padding: int = 2,
        spectral_norm: bool = False,
        init: Literal["normal", "xavier"] = "normal",
    ) -> None:
        super().__init__()
        check_at_least(1, "MultiscaleDiscriminator", num_d=num_d)
        sizes = [None if image_size is None else -(-image_size // 2**k) for k in range(num_d)]
        self.discriminators = nn.ModuleList(
            PatchDiscriminator(channels, size, features, n_layers, norm, padding, spectral_norm, init) for size in sizes
        )

    @staticmethod
    def downsample(x: Tensor) -> Tensor:
        """The next coarser scale: 3x3 average pooling, stride 2, padding 1 not counted (pix2pixHD's ``AvgPool2d``)."""
        return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)

    def features(self, x: Tensor) -> list[list[Tensor]]:
        """Per scale, fine to coarse, every block's output (:meth:`PatchDiscriminator.features`)."""
        outputs = []
        for k, discriminator in enumerate(self.discriminators):
            if k:
                x = self.downsample(x)
            outputs.append(discriminator.features(x))
        return outputs

    def forward(self, x: Tensor) -> list[Tensor]:
        """Per scale, fine to coarse, the score map [N, 1, H_k, W_k]."""
        return [features[-1] for features in self.features(x)]
