"""StyleGAN2's generator and discriminator (Karras et al. 2020, "Analyzing and Improving the Image Quality of
StyleGAN"), equal to NVIDIA's stylegan2-ada-pytorch ``training/networks.py`` in plain PyTorch.

Same constructor arguments, submodule and state-dict names (``mapping``, ``synthesis.b4.const``,
``synthesis.b8.conv0.affine.weight``, ``b32.fromrgb``, ``b4.fc``, ...), so an official snapshot's ``init_kwargs``
build these one to one and its state dicts load with ``strict=True``; the computation follows the official reference
(non-CUDA) path, so the outputs agree to float32 rounding.

The generator (section 2 of the paper): a learned 4x4 constant, then per resolution a block of two 3x3 modulated
convolutions (the first upsampling by 2 with the [1, 3, 3, 1] filter) whose styles come from per-layer affine maps of
w, with weight demodulation instead of AdaIN's normalisation (section 2.2), per-pixel noise and bias added outside the
style block; ToRGB outputs summed over resolutions ("skip", figure 7b, the default), or only the last one ("orig"),
or residual blocks ("resnet"). The discriminator: blocks of two 3x3 convolutions halving the resolution, residual by
default (figure 7c), then the epilogue at 4x4 with minibatch standard deviation, a convolution and two dense layers;
a label enters through a mapping network whose output is projected onto the last layer (Miyato and Koyama 2018).
Widths ``min(channel_base / resolution, channel_max)``. The ``num_fp16_res`` highest resolutions run in float16 on
CUDA (clamped to ``conv_clamp``), float32 elsewhere.
"""

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from gans.errors import ConfigurationError
from gans.nets.equalized import EqualizedLinear, bias_act, check_activation
from gans.nets.layers import MinibatchStdDev
from gans.nets.resample import conv2d_resample, downsample2d, setup_filter, upsample2d
from gans.nets.style import MappingNetwork
from gans.outputs import GeneratorOutput

ARCHITECTURES = ("orig", "skip", "resnet")
NOISE_MODES = ("const", "random", "none")


def check_noise_mode(noise_mode: str) -> None:
    """Raises ``ConfigurationError`` naming ``noise_mode`` unless it is one of :data:`NOISE_MODES`."""
    if noise_mode not in NOISE_MODES:
        raise ConfigurationError(f"noise_mode={noise_mode!r} is not one of {', '.join(NOISE_MODES)}")


def check_architecture(architecture: str) -> None:
    """Refuses an architecture the official networks do not have.

    Raises:
        ConfigurationError: ``architecture`` is not 'orig', 'skip' or 'resnet'.
    """
    if architecture not in ARCHITECTURES:
        raise ConfigurationError(f"architecture={architecture!r} is not one of {list(ARCHITECTURES)}")


def block_dtype(use_fp16: bool, force_fp32: bool, device: torch.device) -> torch.dtype:
    """float16 for a block configured so (``num_fp16_res``) on CUDA; float32 otherwise (CPU convolutions in
    float16 are slow or missing, and ``force_fp32`` asks for full precision)."""
    return torch.float16 if use_fp16 and not force_fp32 and device.type == "cuda" else torch.float32


def layer_bias_act(x: Tensor, bias: Tensor | None, activation: str, gain: float, conv_clamp: float | None) -> Tensor:
    """The end of the official convolution layers: :func:`gans.nets.equalized.bias_act` with ``gain`` (``sqrt(0.5)``
    on residual branches) scaling the clamp as well as the output."""
    return bias_act(x, bias, activation, gain=gain, clamp=conv_clamp * gain if conv_clamp is not None else None)


def conv_repr(weight: Tensor, **details) -> str:
    """``in, out, kernel_size=k, key=value, ...``: the layers' ``extra_repr``."""
    out_channels, in_channels, k, _ = weight.shape
    return ", ".join([f"{in_channels}, {out_channels}, kernel_size={k}", *(f"{key}={value}" for key, value in
                                                                          details.items())])


def demodulation_coefficients(weight: Tensor, styles: Tensor) -> Tensor:
    """``1 / sqrt(sum_ikk (s_i w_oikk)^2 + 1e-8)`` per sample and output channel, [N, O], computed as ``sum_i s_i^2
    sum_kk w_oikk^2``: a [N, I] x [I, O] product instead of the official [N, O, I, kh, kw] modulated weights (300 MB
    a layer at 512 channels and batch 32), equal up to rounding. In float32 even under autocast: the sums of squares
    overflow float16."""
    with torch.autocast(styles.device.type, enabled=False):
        return (styles.float().square() @ weight.float().square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()


def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    noise: Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    resample_filter: Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
) -> Tensor:
    """StyleGAN2's modulated convolution (section 2.2): each input channel's weights scaled by the sample's style,
    ``w'_oikk = s_i * w_oikk``, and with ``demodulate`` each output channel divided by the norm of its modulated
    weights, ``w''_oikk = w'_oikk / sqrt(sum_ikk w'_oikk^2 + 1e-8)``, so that unit-variance inputs give unit-variance
    outputs. [N, I, H, W] -> [N, O, H * up / down, W * up / down].

    Args:
        x: [N, I, H, W].
        weight: [O, I, kh, kw].
        styles: [N, I].
        noise: added to the output (after demodulation), broadcastable to it; ``None`` for none.
        up: upsampling factor (:func:`gans.nets.resample.conv2d_resample`).
        down: downsampling factor.
        padding: padding of the convolution.
        resample_filter: the resampling filter.
        demodulate: apply weight demodulation (the ToRGB layers do not).
        flip_weight: ``True`` correlates (``F.conv2d``), ``False`` convolves (the official upsampling layers).
        fused_modconv: one grouped convolution with per-sample weights (groups = N); ``False`` scales the
            activations before and after a shared convolution instead (the official training path: cheaper weight
            gradients for large batches). Both compute the same.

    Returns:
        [N, O, H', W'].
    """
    batch = x.shape[0]
    in_channels, kh, kw = weight.shape[1:]
    if x.dtype == torch.float16 and demodulate:  # pre-normalised so that the modulated weights cannot overflow
        weight = weight * (1 / math.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3],
                                                                                keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    if not fused_modconv:
        dcoefs = demodulation_coefficients(weight, styles) if demodulate else None
        x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, down=down, padding=padding,
                            flip_weight=flip_weight)
        if demodulate and noise is not None:
            return torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(batch, -1, 1, 1))
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch, -1, 1, 1)
        return x + noise.to(x.dtype) if noise is not None else x
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)  # [N, O, I, kh, kw]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(batch, -1, 1, 1, 1)
    # the batch as the groups of one convolution: [1, N * I, H, W] with weights [N * O, I, kh, kw]
    x = conv2d_resample(x.reshape(1, -1, *x.shape[2:]), w.reshape(-1, in_channels, kh, kw).to(x.dtype),
                        resample_filter, up=up, down=down, padding=padding, groups=batch, flip_weight=flip_weight)
    x = x.reshape(batch, -1, *x.shape[2:])
    return x + noise.to(x.dtype) if noise is not None else x


class Conv2dLayer(nn.Module):
    """A convolution with the equalized learning rate, optional filtered up/downsampling, bias, activation and
    clamping (the official ``Conv2dLayer``): [N, in_channels, H, W] -> [N, out_channels, H * up / down, ...].

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: side of the square kernel ("same" padding ``kernel_size // 2``).
        bias: learn a bias (initialised to zero).
        activation: a name of :data:`gans.nets.equalized.ACTIVATIONS`, with its gain.
        up: upsampling factor.
        down: downsampling factor.
        resample_filter: the resampling filter's taps.
        conv_clamp: clamps the output to ``[-conv_clamp, conv_clamp]``, ``None`` for no clamping.
        channels_last: store the weight channels-last (the official fp16 layout).
        trainable: ``False`` registers the weight and bias as buffers (Freeze-D's frozen layers), under the same
            names.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1,
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None,
                 channels_last: bool = False, trainable: bool = True) -> None:
        super().__init__()
        check_activation(activation)
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn(out_channels, in_channels, kernel_size, kernel_size).to(memory_format=memory_format)
        bias_value = torch.zeros(out_channels) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias_value) if bias else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias_value)

    def forward(self, x: Tensor, gain: float = 1) -> Tensor:
        """``gain`` scales the output and the clamp (``sqrt(0.5)`` on the residual branches)."""
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample(x, w, self.resample_filter, up=self.up, down=self.down, padding=self.padding,
                            flip_weight=self.up == 1)
        return layer_bias_act(x, self.bias, self.activation, gain, self.conv_clamp)

    def extra_repr(self) -> str:
        return conv_repr(self.weight, activation=self.activation, up=self.up, down=self.down)


class SynthesisLayer(nn.Module):
    """One modulated convolution of the synthesis network with its noise, bias and activation (the official
    ``SynthesisLayer``): x [N, in_channels, R / up, R / up], w [N, w_dim] -> [N, out_channels, R, R].

    Args:
        in_channels: input channels.
        out_channels: output channels.
        w_dim: size of w.
        resolution: the output's side R.
        kernel_size: side of the kernel.
        up: upsampling factor (2 for a block's first layer).
        use_noise: add per-pixel noise, scaled by the learned ``noise_strength`` (initially 0).
        activation: a name of :data:`gans.nets.equalized.ACTIVATIONS`.
        resample_filter: the upsampling filter's taps.
        conv_clamp: clamps the output, ``None`` for none.
        channels_last: store the weight channels-last.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None,
                 channels_last: bool = False) -> None:
        super().__init__()
        check_activation(activation)
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1)  # styles start at 1: the plain convolution
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(
            torch.randn(out_channels, in_channels, kernel_size, kernel_size).to(memory_format=memory_format)
        )
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random", fused_modconv: bool = True,
                gain: float = 1) -> Tensor:
        """``noise_mode``: fresh noise per call ("random"), the fixed ``noise_const`` ("const") or none ("none")."""
        styles = self.affine(w)  # [N, in_channels]
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=self.up == 1,
                             fused_modconv=fused_modconv)
        return layer_bias_act(x, self.bias, self.activation, gain, self.conv_clamp)

    def extra_repr(self) -> str:
        return conv_repr(self.weight, resolution=self.resolution, up=self.up, noise=self.use_noise,
                         activation=self.activation)


class ToRGBLayer(nn.Module):
    """A modulated 1x1 convolution without demodulation to the image channels (the official ``ToRGBLayer``):
    x [N, in_channels, R, R], w [N, w_dim] -> [N, out_channels, R, R].

    Args:
        in_channels: input channels.
        out_channels: image channels.
        w_dim: size of w.
        kernel_size: side of the kernel (1).
        conv_clamp: clamps the output, ``None`` for none.
        channels_last: store the weight channels-last.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None, channels_last: bool = False) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(
            torch.randn(out_channels, in_channels, kernel_size, kernel_size).to(memory_format=memory_format)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: Tensor, w: Tensor, fused_modconv: bool = True) -> Tensor:
        styles = self.affine(w) * self.weight_gain  # the equalized learning rate, through the styles
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias, clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return conv_repr(self.weight)


class SynthesisBlock(nn.Module):
    """The synthesis network's block at one resolution (the official ``SynthesisBlock``): the learned constant or an
    upsampling layer, a second layer, and the ToRGB output. x [N, in_channels, R/2, R/2] (``None`` for the first
    block), img [N, img_channels, R/2, R/2] or ``None``, ws [N, num_conv + num_torgb, w_dim] -> x [N, out_channels,
    R, R], img [N, img_channels, R, R] (float32).

    Args:
        in_channels: input channels, 0 for the first block (the 4x4 constant).
        out_channels: output channels.
        w_dim: size of w.
        resolution: the block's side R.
        img_channels: image channels.
        is_last: the last block (has a ToRGB in every architecture).
        architecture: 'orig', 'skip' or 'resnet'.
        resample_filter: the upsampling filter's taps.
        conv_clamp: clamps the convolutions' outputs, ``None`` for none.
        use_fp16: run in float16 (on CUDA).
        fp16_channels_last: channels-last layout in float16.
        **layer_kwargs: :class:`SynthesisLayer` arguments (``kernel_size``, ``use_noise``, ``activation``).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: float | None = None, use_fp16: bool = False, fp16_channels_last: bool = False,
                 **layer_kwargs) -> None:
        super().__init__()
        check_architecture(architecture)
        self.in_channels, self.w_dim, self.resolution, self.img_channels = in_channels, w_dim, resolution, img_channels
        self.is_last, self.architecture, self.use_fp16 = is_last, architecture, use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = self.num_torgb = 0
        common = {"w_dim": w_dim, "resolution": resolution, "conv_clamp": conv_clamp,
                  "channels_last": self.channels_last}
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, resample_filter=resample_filter, **common,
                                        **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **common, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    def forward(self, x: Tensor | None, img: Tensor | None, ws: Tensor, force_fp32: bool = False,
                fused_modconv: bool | None = None, noise_mode: str = "random") -> tuple[Tensor, Tensor | None]:
        """``fused_modconv=None``: fused in evaluation (and for a single sample in float16), as the official
        default; training takes the non-fused path."""
        w_iter = iter(ws.unbind(dim=1))
        dtype = block_dtype(self.use_fp16, force_fp32, ws.device)
        memory_format = torch.channels_last if self.channels_last and dtype == torch.float16 else \
            torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = not self.training and (dtype == torch.float32 or ws.shape[0] == 1)
        layer_kwargs = {"fused_modconv": fused_modconv, "noise_mode": noise_mode}
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            x = self.conv1(x, next(w_iter), **layer_kwargs)
        elif self.architecture == "resnet":
            x = x.to(dtype=dtype, memory_format=memory_format)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), **layer_kwargs)
            x = y + self.conv1(x, next(w_iter), gain=math.sqrt(0.5), **layer_kwargs)
        else:
            x = x.to(dtype=dtype, memory_format=memory_format)
            x = self.conv0(x, next(w_iter), **layer_kwargs)
            x = self.conv1(x, next(w_iter), **layer_kwargs)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """StyleGAN2's synthesis network (the official ``SynthesisNetwork``): ws [N, num_ws, w_dim] -> images [N,
    img_channels, img_resolution, img_resolution].

    Blocks ``b4``, ``b8``, ... ``b{img_resolution}`` of ``min(channel_base // R, channel_max)`` channels; block R
    takes ws ``[k, k + num_conv + num_torgb)`` where ``k`` counts the convolutions before it, so consecutive blocks
    share one w between a ToRGB and the next block's first convolution, and ``num_ws = 2 log2(R) - 2`` (18 at 1024).

    Args:
        w_dim: size of w.
        img_resolution: the output's side, a power of 2 >= 4.
        img_channels: image channels.
        channel_base: the channel formula's numerator.
        channel_max: the largest number of channels.
        num_fp16_res: the number of highest resolutions in float16 (from 8x8 on at most).
        **block_kwargs: :class:`SynthesisBlock` and :class:`SynthesisLayer` arguments (``architecture``,
            ``conv_clamp``, ``resample_filter``, ``fp16_channels_last``, ``use_noise``, ``activation``, ...).

    Raises:
        ConfigurationError: ``img_resolution`` is not a power of 2 >= 4.
    """

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, **block_kwargs) -> None:
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ConfigurationError(f"img_resolution={img_resolution} is invalid; expected a power of 2 >= 4")
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=is_last, use_fp16=res >= fp16_resolution,
                                   **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            self.add_module(f"b{res}", block)

    def forward(self, ws: Tensor, noise_mode: str = "random", force_fp32: bool = False,
                fused_modconv: bool | None = None) -> Tensor:
        """Images from per-layer latents.

        Args:
            ws: [N, num_ws, w_dim].
            noise_mode: 'random' (fresh noise), 'const' (the stored ``noise_const`` maps, reproducible) or 'none'.
            force_fp32: float32 everywhere.
            fused_modconv: see :class:`SynthesisBlock`.

        Returns:
            [N, img_channels, img_resolution, img_resolution], float32.

        Raises:
            ConfigurationError: an unknown ``noise_mode``.
        """
        check_noise_mode(noise_mode)
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, force_fp32=force_fp32, fused_modconv=fused_modconv,
                           noise_mode=noise_mode)
        return img


class StyleGAN2Generator(nn.Module):
    """StyleGAN2's generator (the official ``Generator``): z [N, z_dim], c [N, c_dim] -> images [N, img_channels,
    img_resolution, img_resolution] with their ``ws``.

    ``mapping(z, c, ...)`` -> ws and ``synthesis(ws, ...)`` -> images are its two halves, for the editing tools
    (projection into W, style mixing, interpolation); ``w_avg`` is the tracked mean w that truncation pulls towards.

    Args:
        z_dim: size of z.
        c_dim: size of the label c, 0 for an unconditional generator.
        w_dim: size of w.
        img_resolution: image side, a power of 2 >= 4.
        img_channels: image channels.
        mapping_kwargs: :class:`gans.nets.style.MappingNetwork` arguments (``num_layers``, ``lr_multiplier``,
            ``w_avg_beta``, ...).
        synthesis_kwargs: :class:`SynthesisNetwork` arguments (``channel_base``, ``channel_max``,
            ``num_fp16_res``, ``conv_clamp``, ``architecture``, ...).
    """

    # The *_kwargs are dict[str, Any], not a bare dict: jsonargparse then reads a command-line value
    # (--...synthesis_kwargs.channel_base=512) as YAML, a number, where a bare dict would keep the string "512".
    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict[str, Any] | None = None,
                 synthesis_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **(synthesis_kwargs or {}))
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **(mapping_kwargs or {}))

    @property
    def w_avg(self) -> Tensor:
        """The tracked mean w [w_dim] (the mapping network's running average)."""
        return self.mapping.w_avg

    def forward(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, noise_mode: str = "random", update_emas: bool = False,
                **synthesis_kwargs) -> GeneratorOutput:
        """Images from latents.

        Args:
            z: [N, z_dim].
            c: [N, c_dim] labels, ``None`` when ``c_dim`` is 0.
            truncation_psi: truncation towards ``w_avg``, 1 for none.
            truncation_cutoff: truncate only the first this many layers, ``None`` for all.
            noise_mode: 'random', 'const' or 'none'.
            update_emas: update ``w_avg`` from this batch (training).
            **synthesis_kwargs: ``force_fp32``, ``fused_modconv``.

        Returns:
            ``GeneratorOutput(images [N, img_channels, R, R], ws [N, num_ws, w_dim])``.
        """
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return GeneratorOutput(images=self.synthesis(ws, noise_mode=noise_mode, **synthesis_kwargs), ws=ws)


class DiscriminatorBlock(nn.Module):
    """The discriminator's block at one resolution (the official ``DiscriminatorBlock``): x [N, in_channels, R, R]
    (``None`` for the first block), img [N, img_channels, R, R] or ``None`` -> x [N, out_channels, R/2, R/2], img at
    R/2 (skip architecture) or ``None``.

    Args:
        in_channels: input channels, 0 for the first block (which reads the image through ``fromrgb``).
        tmp_channels: channels of the first convolution (equal to ``in_channels`` unless 0).
        out_channels: output channels.
        resolution: the block's input side R.
        img_channels: image channels.
        first_layer_idx: the index of the block's first layer, for ``freeze_layers``.
        architecture: 'orig', 'skip' or 'resnet'.
        activation: a name of :data:`gans.nets.equalized.ACTIVATIONS`.
        resample_filter: the downsampling filter's taps.
        conv_clamp: clamps the convolutions' outputs, ``None`` for none.
        use_fp16: run in float16 (on CUDA).
        fp16_channels_last: channels-last layout in float16.
        freeze_layers: Freeze-D (Mo et al. 2020): the layers with an index below it are not trained.

    Raises:
        ConfigurationError: ``in_channels`` neither 0 nor ``tmp_channels``.
    """

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 first_layer_idx: int, architecture: str = "resnet", activation: str = "lrelu",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None,
                 use_fp16: bool = False, fp16_channels_last: bool = False, freeze_layers: int = 0) -> None:
        if in_channels not in (0, tmp_channels):
            raise ConfigurationError(f"in_channels={in_channels} is invalid; expected 0 or tmp_channels={tmp_channels}")
        check_architecture(architecture)
        super().__init__()
        self.in_channels, self.resolution, self.img_channels = in_channels, resolution, img_channels
        self.first_layer_idx, self.architecture, self.use_fp16 = first_layer_idx, architecture, use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_layers = 0

        def layer(*args, **kwargs) -> Conv2dLayer:
            trainable = first_layer_idx + self.num_layers >= freeze_layers
            self.num_layers += 1
            return Conv2dLayer(*args, trainable=trainable, channels_last=self.channels_last, **kwargs)

        if in_channels == 0 or architecture == "skip":
            self.fromrgb = layer(img_channels, tmp_channels, kernel_size=1, activation=activation,
                                 conv_clamp=conv_clamp)
        self.conv0 = layer(tmp_channels, tmp_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp)
        self.conv1 = layer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
                           resample_filter=resample_filter, conv_clamp=conv_clamp)
        if architecture == "resnet":
            self.skip = layer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                              resample_filter=resample_filter)

    def forward(self, x: Tensor | None, img: Tensor | None, force_fp32: bool = False) -> tuple[Tensor, Tensor | None]:
        dtype = block_dtype(self.use_fp16, force_fp32, (x if x is not None else img).device)
        memory_format = torch.channels_last if self.channels_last and dtype == torch.float16 else \
            torch.contiguous_format
        if x is not None:
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == "skip":
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = y + self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        else:
            x = self.conv1(self.conv0(x))
        return x, img


class DiscriminatorEpilogue(nn.Module):
    """The discriminator's last block at 4x4 (the official ``DiscriminatorEpilogue``): x [N, in_channels, R, R], img
    (skip architecture), cmap [N, cmap_dim] (conditional) -> scores [N, 1].

    Minibatch standard deviation, a 3x3 convolution, a dense layer and the output layer; with labels the output is
    ``cmap_dim`` features whose dot product with the mapped label, divided by ``sqrt(cmap_dim)``, is the score (the
    projection discriminator).

    Args:
        in_channels: input channels.
        cmap_dim: size of the mapped label, 0 for an unconditional discriminator.
        resolution: the side R (4).
        img_channels: image channels.
        architecture: 'orig', 'skip' or 'resnet'.
        mbstd_group_size: samples per minibatch-stddev group, ``None`` for the whole batch.
        mbstd_num_channels: the minibatch-stddev statistics (channel groups), 0 for no such layer.
        activation: a name of :data:`gans.nets.equalized.ACTIVATIONS`.
        conv_clamp: clamps the convolution's output, ``None`` for none.
    """

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 architecture: str = "resnet", mbstd_group_size: int | None = 4, mbstd_num_channels: int = 1,
                 activation: str = "lrelu", conv_clamp: float | None = None) -> None:
        check_architecture(architecture)
        super().__init__()
        self.in_channels, self.cmap_dim, self.resolution = in_channels, cmap_dim, resolution
        self.img_channels, self.architecture = img_channels, architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdDev(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = EqualizedLinear(in_channels * resolution**2, in_channels, activation=activation)
        self.out = EqualizedLinear(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: Tensor, img: Tensor | None, cmap: Tensor | None, force_fp32: bool = False) -> Tensor:
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(dtype=torch.float32, memory_format=torch.contiguous_format))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2's discriminator (the official ``Discriminator``): images [N, img_channels, R, R], labels [N, c_dim]
    -> scores [N, 1].

    Blocks ``b{R}`` .. ``b8`` (residual by default) and the epilogue ``b4``; with ``c_dim > 0`` a
    :class:`gans.nets.style.MappingNetwork` ``mapping`` (no latent, no mean w) maps the label for the projection.

    Args:
        c_dim: size of the label, 0 for an unconditional discriminator.
        img_resolution: image side, a power of 2 >= 4.
        img_channels: image channels.
        architecture: 'orig', 'skip' or 'resnet'.
        channel_base: the channel formula's numerator: ``min(channel_base // R, channel_max)`` channels at R.
        channel_max: the largest number of channels.
        num_fp16_res: the number of highest resolutions in float16 (on CUDA).
        conv_clamp: clamps the convolutions' outputs, ``None`` for none.
        cmap_dim: size of the mapped label, ``None`` for the 4x4 block's channels.
        block_kwargs: :class:`DiscriminatorBlock` arguments (``activation``, ``freeze_layers``, ...).
        mapping_kwargs: :class:`gans.nets.style.MappingNetwork` arguments.
        epilogue_kwargs: :class:`DiscriminatorEpilogue` arguments (``mbstd_group_size``, ``mbstd_num_channels``).

    Raises:
        ConfigurationError: ``img_resolution`` is not a power of 2 >= 8.
    """

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int, architecture: str = "resnet",
                 channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 0,
                 conv_clamp: float | None = None, cmap_dim: int | None = None,
                 block_kwargs: dict[str, Any] | None = None, mapping_kwargs: dict[str, Any] | None = None,
                 epilogue_kwargs: dict[str, Any] | None = None) -> None:
        if img_resolution < 8 or img_resolution & (img_resolution - 1):
            raise ConfigurationError(f"img_resolution={img_resolution} is invalid; expected a power of 2 >= 8")
        super().__init__()
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(self.img_resolution_log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in [*self.block_resolutions, 4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        cmap_dim = 0 if c_dim == 0 else channels[4] if cmap_dim is None else cmap_dim
        common = {"img_channels": img_channels, "architecture": architecture, "conv_clamp": conv_clamp}
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(channels[res] if res < img_resolution else 0, channels[res], channels[res // 2],
                                       resolution=res, first_layer_idx=layer_idx, use_fp16=res >= fp16_resolution,
                                       **(block_kwargs or {}), **common)
            self.add_module(f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **(mapping_kwargs or {}))
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4, **(epilogue_kwargs or {}),
                                        **common)

    def forward(self, img: Tensor, c: Tensor | None = None, force_fp32: bool = False) -> Tensor:
        """Scores [N, 1] of images [N, img_channels, R, R] with labels [N, c_dim] (``None`` when ``c_dim`` is 0)."""
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)


__all__ = [
    "Conv2dLayer",
    "DiscriminatorBlock",
    "DiscriminatorEpilogue",
    "StyleGAN2Discriminator",
    "StyleGAN2Generator",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGBLayer",
    "modulated_conv2d",
]
