"""Filtered resampling of StyleGAN2 in plain PyTorch: the ``upfirdn2d`` and ``conv2d_resample`` operations of NVIDIA's
stylegan2-ada-pytorch (``torch_utils/ops``), computed as their reference paths compute them (so that the networks
reproduce the official outputs), without the CUDA extension.

Upsampling inserts ``up - 1`` zeros after every pixel and low-pass filters the result with a FIR filter (StyleGAN's
[1, 3, 3, 1] binomial, normalised, times ``up ** 2`` so that a constant image keeps its value); downsampling filters
and keeps every ``down``-th pixel (Karras et al. 2019, section 3.1 and appendix; Zhang 2019, "Making convolutional
networks shift-invariant again"). A convolution with resampling runs as one strided or transposed convolution plus one
depthwise filtering, padding only once.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Padding = int | Sequence[int]


def setup_filter(f: Sequence[float] | Tensor | None, normalize: bool = True) -> Tensor:
    """A FIR filter as the resampling functions take it (the official ``setup_filter``): a 1-D list of taps becomes
    the 2-D outer product [taps, taps] (kept 1-D, separable, from 8 taps on, as the official one keeps it), divided
    by its sum.

    Args:
        f: the taps ([1, 3, 3, 1] for StyleGAN2), a 2-D filter, or ``None`` for the identity [1].
        normalize: divide by the sum, so that a constant signal keeps its value.

    Returns:
        A float32 filter [taps, taps] (or [taps] when separable).
    """
    f = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32)
    if f.ndim == 0:
        f = f.reshape(1)
    if f.ndim == 1 and f.numel() < 8:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    return f


def _pads(padding: Padding) -> list[int]:
    """[x_before, x_after, y_before, y_after] from one number, [x, y] or the four."""
    if isinstance(padding, int):
        return [padding] * 4
    padding = [int(p) for p in padding]
    return [padding[0], padding[0], padding[1], padding[1]] if len(padding) == 2 else padding


def _filter_size(f: Tensor | None) -> tuple[int, int]:
    """(width, height) of a 1-D or 2-D filter; (1, 1) for none."""
    return (1, 1) if f is None else (f.shape[-1], f.shape[0])


def upfirdn2d(x: Tensor, f: Tensor | None, up: int = 1, down: int = 1, padding: Padding = 0,
              flip_filter: bool = False, gain: float = 1.0) -> Tensor:
    """Upsample by zero insertion, pad, FIR-filter and downsample every channel: [N, C, H, W] -> [N, C, H', W'] with
    ``H' = (H * up + pad_y - taps) // down + 1`` (the official ``upfirdn2d``).

    Args:
        x: images [N, C, H, W].
        f: a filter from :func:`setup_filter` (float32), or ``None`` for the identity.
        up: upsampling factor.
        down: downsampling factor.
        padding: zeros added around the upsampled image (negative values crop): one number, [x, y] or [x_before,
            x_after, y_before, y_after].
        flip_filter: ``False`` convolves with ``f``, ``True`` correlates.
        gain: multiplies the filter (``up ** 2`` keeps the mean of a zero-inserted image).

    Returns:
        The filtered images, same dtype as ``x``.
    """
    n, c, h, w = x.shape
    if up > 1:  # zero insertion: every pixel followed by up - 1 zeros in both directions
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, _pads(padding))  # a negative pad crops
    if f is None:
        f = torch.ones(1, 1, device=x.device)
    if f.ndim == 1:
        f = torch.outer(f, f)
    f = (f * gain).to(x.dtype)
    if not flip_filter:  # conv2d correlates; a convolution takes the flipped filter
        f = f.flip([0, 1])
    # A strided depthwise convolution equals the full one followed by keeping every down-th pixel.
    return F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c, stride=down)


def upsample2d(x: Tensor, f: Tensor | None, up: int = 2) -> Tensor:
    """Filtered upsampling [N, C, H, W] -> [N, C, H * up, W * up] (the official ``upsample2d``), the generator's
    skip connections between the ToRGB outputs."""
    fw, fh = _filter_size(f)
    pads = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=pads, gain=up**2)


def downsample2d(x: Tensor, f: Tensor | None, down: int = 2) -> Tensor:
    """Filtered downsampling [N, C, H, W] -> [N, C, H / down, W / down] (the official ``downsample2d``), the skip
    discriminator's image path."""
    fw, fh = _filter_size(f)
    pads = [(fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2]
    return upfirdn2d(x, f, down=down, padding=pads)


def _conv(x: Tensor, w: Tensor, stride: int = 1, padding: Sequence[int] = (0, 0), groups: int = 1,
          transpose: bool = False, flip_weight: bool = True) -> Tensor:
    if not flip_weight:  # conv2d correlates: a true convolution flips the kernel
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=list(padding), groups=groups)
    return F.conv2d(x, w, stride=stride, padding=list(padding), groups=groups)


def conv2d_resample(x: Tensor, w: Tensor, f: Tensor | None = None, up: int = 1, down: int = 1,
                    padding: Padding = 0, groups: int = 1, flip_weight: bool = True) -> Tensor:
    """A 2-D convolution with filtered up- or downsampling, padding once (the official ``conv2d_resample``):
    [N, C_in, H, W] -> [N, C_out, H * up / down, W * up / down] for "same" padding ``kernel // 2``.

    Args:
        x: [N, C_in, H, W].
        w: weights [C_out, C_in / groups, kh, kw], of the dtype of ``x``.
        f: the low-pass filter of the resampling (:func:`setup_filter`), ``None`` for none.
        up: upsampling factor (a transposed convolution of stride ``up``, then the filter).
        down: downsampling factor (the filter, then a convolution of stride ``down``).
        padding: padding with respect to the upsampled image, as in :func:`upfirdn2d`.
        groups: convolution groups (the fused modulated convolution uses one per sample).
        flip_weight: ``True`` correlates with ``w`` (``F.conv2d``), ``False`` convolves.

    Returns:
        [N, C_out, H', W'].
    """
    out_channels, in_per_group, kh, kw = w.shape
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _pads(padding)
    if up > 1:  # the filter's own padding, as upsample2d's
        px0, px1, py0, py1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2

    if kw == 1 and kh == 1 and down > 1 and up == 1:  # a 1x1 convolution commutes with the filter: filter first
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1])
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:  # ... and convolve the fewer pixels before upsampling
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up**2)
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1])
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:
        # The transposed convolution does the zero insertion and the convolution in one; its weight is [C_in,
        # C_out / groups, kh, kw], per group.
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
            w = w.reshape(groups * in_per_group, out_channels // groups, kh, kw)
        px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
        pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)  # cropping the transposed conv can do itself
        x = _conv(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up**2)
        return upfirdn2d(x, f, down=down) if down > 1 else x
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    x = upfirdn2d(x, None, padding=[px0, px1, py0, py1])
    return _conv(x, w, groups=groups, flip_weight=flip_weight)
