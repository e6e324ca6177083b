"""The layers of the progressive and style-based networks (ProGAN, MSG-GAN, StyleGAN): the equalized learning rate
and pixelwise feature normalization of Karras et al. 2018 (section 4), and the resampling between resolutions.

Equalized learning rate (section 4.1): weights are drawn from N(0, 1) and scaled at run time by He's constant
``gain / sqrt(fan_in)`` instead of at initialisation. Adam's update is invariant to a weight's scale, so with the
constant outside the parameter every layer learns at the same speed whatever its fan-in. ``lr_multiplier`` is
StyleGAN's extension (its mapping network learns 100 times slower): the parameter is stored divided by it and the
run-time gain multiplied by it, as the official ``FullyConnectedLayer`` does (its bias too is multiplied by it at run
time), so Adam's step on them shrinks by that factor.

StyleGAN2's layers (the official ``bias_act``) add the bias, apply the activation and multiply by the activation's
gain *after* it (``sqrt(2)`` for (leaky) ReLU, :func:`bias_act`), optionally clamping the result; ``EqualizedLinear``
does so when given an ``activation``.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gans.errors import ConfigurationError

# name -> (function, default gain): the activations of the official stylegan2-ada-pytorch ``bias_act`` with its
# gains, which keep the output's second moment that of the input for N(0, 1) pre-activations.
ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], float]] = {
    "linear": (lambda x: x, 1.0),
    "relu": (F.relu, math.sqrt(2)),
    "lrelu": (lambda x: F.leaky_relu(x, 0.2), math.sqrt(2)),
    "tanh": (torch.tanh, 1.0),
    "sigmoid": (torch.sigmoid, 1.0),
    "elu": (F.elu, 1.0),
    "selu": (F.selu, 1.0),
    "softplus": (F.softplus, 1.0),
    "swish": (F.silu, math.sqrt(2)),
}


def check_activation(activation: str) -> None:
    """Refuses an activation name that :data:`ACTIVATIONS` lacks.

    Raises:
        ConfigurationError: ``activation`` is not one of the official names.
    """
    if activation not in ACTIVATIONS:
        raise ConfigurationError(f"activation={activation!r} is not an activation; expected one of {list(ACTIVATIONS)}")


def bias_act(x: Tensor, bias: Tensor | None = None, activation: str = "linear", gain: float = 1.0,
             clamp: float | None = None) -> Tensor:
    """The official ``bias_act`` in plain PyTorch: ``clamp(act(x + bias) * act_gain * gain, -clamp, clamp)``.

    Args:
        x: activations [N, C, ...].
        bias: [C], added along dimension 1, or ``None``.
        activation: a name of :data:`ACTIVATIONS`.
        gain: multiplies the activation's default gain (StyleGAN2's residual branches pass ``sqrt(0.5)``).
        clamp: clamps the output to ``[-clamp, clamp]`` (the official ``conv_clamp``, against fp16 overflow), or
            ``None``.

    Returns:
        A tensor of the shape of ``x``.
    """
    if bias is not None:
        x = x + bias.to(x.dtype).reshape(-1, *([1] * (x.dim() - 2)))
    function, act_gain = ACTIVATIONS[activation]
    x = function(x)
    gain = act_gain * gain
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


class EqualizedLinear(nn.Module):
    """A fully connected layer with the equalized learning rate: [N, in_features] -> [N, out_features].

    Args:
        in_features: input size (the fan-in).
        out_features: output size.
        gain: He's gain of the run-time scale: ``sqrt(2)`` before a (leaky) ReLU, 1 for a linear output (ProGAN's
            last layers), ``sqrt(2) / 4`` for ProGAN's first generator layer.
        bias: learn a bias (initialised to ``bias_init``).
        lr_multiplier: learning-rate multiplier of the weight and bias (StyleGAN's mapping network: 0.01).
        bias_init: initial value of the bias parameter; the bias the layer adds starts at ``bias_init *
            lr_multiplier``, as in the official code.
        activation: a name of :data:`ACTIVATIONS`, applied after the bias and multiplied by its gain (the official
            ``FullyConnectedLayer``); ``"linear"`` (the default) applies none.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        gain: float = 1.0,
        bias: bool = True,
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
        activation: str = "linear",
    ) -> None:
        super().__init__()
        check_activation(activation)
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = gain * lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight.to(x.dtype) * self.weight_gain
        bias = self.bias.to(x.dtype) * self.bias_gain if self.bias is not None else None
        if self.activation == "linear":
            return F.linear(x, weight, bias)
        return bias_act(F.linear(x, weight), bias, self.activation)

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        act = f", activation={self.activation}" if self.activation != "linear" else ""
        return f"{in_features}, {out_features}, weight_gain={self.weight_gain:.4g}, bias={self.bias is not None}{act}"


class EqualizedConv2d(nn.Module):
    """A 2-D convolution with the equalized learning rate, stride 1 and "same" padding: [N, in_channels, H, W] ->
    [N, out_channels, H, W].

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd side of the square kernel (3 for ProGAN's blocks, 1 for its toRGB/fromRGB layers).
        gain: He's gain of the run-time scale ``gain / sqrt(in_channels * kernel_size ** 2)``.
        bias: learn a bias (initialised to zero).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gain: float = math.sqrt(2),
                 bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = gain / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.weight.shape[-1] // 2)

    def extra_repr(self) -> str:
        out_channels, in_channels, k, _ = self.weight.shape
        return f"{in_channels}, {out_channels}, kernel_size={k}, weight_gain={self.weight_gain:.4g}"


class PixelNorm(nn.Module):
    """Pixelwise feature normalization (Karras et al. 2018, section 4.2): each pixel's feature vector divided by its
    root mean square over the channels, ``x / sqrt(mean_c(x^2) + eps)``; [N, C, ...] -> same shape. Applied to z
    (the latent on the hypersphere of radius sqrt(C)) and after every convolution of ProGAN's generator."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + self.eps)


def upsample(x: Tensor) -> Tensor:
    """Nearest-neighbour upsampling by 2 (ProGAN's): [N, C, H, W] -> [N, C, 2H, 2W], every pixel repeated 2x2."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


def downsample(x: Tensor) -> Tensor:
    """2x2 average pooling (ProGAN's): [N, C, H, W] -> [N, C, H/2, W/2]."""
    return F.avg_pool2d(x, 2)


def resize_to(x: Tensor, size: int) -> Tensor:
    """Images [N, C, S, S] at side ``size``, a power-of-two multiple or fraction of ``S``: average pooling down (the
    mean of each block, which ProGAN's real images get) or nearest-neighbour up (its upscaled outputs)."""
    side = x.shape[-1]
    if size < side:
        return F.avg_pool2d(x, side // size)
    if size > side:
        return F.interpolate(x, scale_factor=size // side, mode="nearest")
    return x
