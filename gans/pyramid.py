"""Gaussian and Laplacian image pyramids (Burt and Adelson 1983), as LAPGAN uses them (Denton et al. 2015, section 3).

Pure functions of image batches [N, C, H, W]; every list they take or return runs coarse to fine (index 0 the
coarsest, the last at the input's size), the order of ``GeneratorOutput.scales``. The paper's operators: ``d``
"blurs and decimates" an image to half its side, ``u`` "smooths and expands" it to twice its side; the real band of a
level is h_k = I_k - u(d(I_k)), and an image is rebuilt from its coarsest image and its bands by I_k = u(I_{k-1}) + h_k.
"""

from itertools import pairwise

import torch.nn.functional as F
from torch import Tensor

__all__ = ["downsample", "gaussian_pyramid", "laplacian_pyramid", "pyramid_sides", "reconstruct", "upsample"]


def downsample(x: Tensor) -> Tensor:
    """The paper's d: [N, C, H, W] -> [N, C, H / 2, W / 2]. Antialiased bilinear resampling, which at a factor of 2 is
    a separable [1, 3, 3, 1] / 8 blur and a decimation (the weights renormalised at the border), close to Burt and
    Adelson's 5-tap Gaussian; values stay within the input's range."""
    return F.interpolate(x, size=(x.shape[-2] // 2, x.shape[-1] // 2), mode="bilinear", antialias=True,
                         align_corners=False)


def upsample(x: Tensor) -> Tensor:
    """The paper's u: [N, C, H, W] -> [N, C, 2H, 2W], bilinear interpolation (weights 1/4 and 3/4; the reference code
    used Torch7's bilinear ``image.scale`` for both operators); values stay within the input's range."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def pyramid_sides(image_size: int, levels: int) -> list[int]:
    """The image sides of a ``levels``-level pyramid over ``image_size``, coarse to fine (32, 3 -> [8, 16, 32]).

    Raises:
        ValueError: fewer than one level, or a side that does not halve evenly down to a coarsest side >= 1.
    """
    if levels < 1:
        raise ValueError(f"levels={levels} must be at least 1")
    coarsest, rest = divmod(image_size, 2 ** (levels - 1))
    if rest or coarsest < 1:
        raise ValueError(f"image_size={image_size} cannot be halved {levels - 1} times: a {levels}-level pyramid "
                         f"needs a multiple of {2 ** (levels - 1)}")
    return [coarsest * 2**k for k in range(levels)]


def gaussian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """The images I_0 (coarsest) ... I_{levels-1} = ``x`` of the Gaussian pyramid of ``x`` [N, C, S, S], each the
    ``downsample`` of the next: ``levels`` tensors [N, C, S / 2^(levels-1-k), ...], coarse to fine.

    Raises:
        ValueError: a side of ``x`` that cannot be halved ``levels - 1`` times.
    """
    for side in x.shape[-2:]:
        pyramid_sides(side, levels)
    images = [x]
    for _ in range(levels - 1):
        images.insert(0, downsample(images[0]))
    return images


def laplacian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """The Laplacian pyramid of ``x`` [N, C, S, S]: the coarsest image I_0, then the bands h_k = I_k - u(I_{k-1})
    for k = 1 ... levels - 1 (h_{levels-1} at the size of ``x``), coarse to fine. Bands of images in [-1, 1] lie in
    [-2, 2]; ``reconstruct`` inverts it."""
    images = gaussian_pyramid(x, levels)
    return [images[0]] + [fine - upsample(coarse) for coarse, fine in pairwise(images)]


def reconstruct(pyramid: list[Tensor]) -> Tensor:
    """The image of a Laplacian pyramid [I_0, h_1, ..., h_K] (coarse to fine): I_k = u(I_{k-1}) + h_k, returning I_K.
    Exact in real arithmetic for any ``u``; in floating point each level adds one rounding of a sum and of the
    subtraction that made its band (see ``tests/test_lapgan.py``)."""
    image = pyramid[0]
    for band in pyramid[1:]:
        image = upsample(image) + band
    return image
