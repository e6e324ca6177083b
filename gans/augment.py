"""Differentiable augmentation of everything the discriminator sees, real and fake.

Two published pipelines, in plain PyTorch:

- :class:`AugmentPipe`: the adaptive discriminator augmentation (ADA) pipeline of Karras et al. 2020, "Training
  Generative Adversarial Networks with Limited Data", with the official stylegan2-ada-pytorch argument names,
  probability multipliers and presets (:data:`PRESETS`: ``blit``, ``geom``, ``color``, ``filter``, ``noise``,
  ``cutout``, ``bg``, ``bgc`` (the paper's default), ``bgcf``, ``bgcfn``, ``bgcfnc``). Each transform is applied to a
  sample with probability ``multiplier * p``; ``p`` is a buffer that ``callbacks.ADA`` adjusts during training.
  Geometric transforms compose one matrix per sample and resample once, as the official code: reflection padding,
  2x upsampling with the ``sym6`` wavelet low-pass, bilinear ``grid_sample``, downsampling with the same filter.
- :class:`DiffAugment`: DiffAugment of Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
  Training", policies ``color`` (brightness, saturation, contrast), ``translation`` (up to 1/8 of the image, zero
  fill) and ``cutout`` (a square of half the image side), applied to every sample.

Both are differentiable with respect to the images (gradients reach the generator through them) and draw one random
transform per sample, shared by all its channels.
"""

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gans.errors import ConfigurationError
from gans.nets.resample import setup_filter, upfirdn2d

__all__ = ["DIFFAUGMENT_POLICIES", "PRESETS", "AugmentPipe", "DiffAugment"]

# Low-pass filters of the Daubechies symlet wavelets (PyWavelets' coefficients, as in the official code): sym6 for the
# geometric resampling, sym2 for the image-space filter bank.
_SYM2 = [-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025]
_SYM6 = [
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633, 0.4910559419267466,
    0.787641141030194, 0.3379294217276218, -0.07263752278646252, -0.021060292512300564, 0.04472490177066578,
    0.0017677118642428036, -0.007800708325034148,
]

_BLIT = {"xflip": 1, "rotate90": 1, "xint": 1}
_GEOM = {"scale": 1, "rotate": 1, "aniso": 1, "xfrac": 1}
_COLOR = {"brightness": 1, "contrast": 1, "lumaflip": 1, "hue": 1, "saturation": 1}

#: The official ``--augpipe`` presets (stylegan2-ada-pytorch ``train.py``): the probability multipliers they set to 1.
PRESETS: dict[str, dict[str, float]] = {
    "blit": _BLIT,
    "geom": _GEOM,
    "color": _COLOR,
    "filter": {"imgfilter": 1},
    "noise": {"noise": 1},
    "cutout": {"cutout": 1},
    "bg": {**_BLIT, **_GEOM},
    "bgc": {**_BLIT, **_GEOM, **_COLOR},
    "bgcf": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1},
    "bgcfn": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1, "noise": 1},
    "bgcfnc": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1, "noise": 1, "cutout": 1},
}

#: The multipliers whose transforms change colors (they mix or shift channels, so they need RGB or grayscale).
COLOR_TRANSFORMS = ("brightness", "contrast", "lumaflip", "hue", "saturation")


# ----------------------------------------------------------------------------------------------------------------------
# Homogeneous transformation matrices, batched: every entry is a number or a tensor [N] (one value per sample).
# ----------------------------------------------------------------------------------------------------------------------

def _matrix(*rows: Sequence[float | Tensor], device: torch.device) -> Tensor:
    """A matrix [R, K] of numbers, or [N, R, K] when some entries are tensors [N] (the others broadcast)."""
    like = next((e for row in rows for e in row if isinstance(e, Tensor)), None)
    if like is None:
        return torch.tensor(np.asarray(rows, dtype=np.float32), device=device)
    entries = [e if isinstance(e, Tensor) else torch.full_like(like, float(e)) for row in rows for e in row]
    return torch.stack(entries, dim=-1).reshape(*like.shape, len(rows), len(rows[0]))


def _translate2d(tx, ty, device: torch.device) -> Tensor:
    return _matrix([1, 0, tx], [0, 1, ty], [0, 0, 1], device=device)


def _scale2d(sx, sy, device: torch.device) -> Tensor:
    return _matrix([sx, 0, 0], [0, sy, 0], [0, 0, 1], device=device)


def _rotate2d(theta: Tensor, device: torch.device) -> Tensor:
    cos, sin = torch.cos(theta), torch.sin(theta)
    return _matrix([cos, -sin, 0], [sin, cos, 0], [0, 0, 1], device=device)


def _rotate3d(axis: Tensor, theta: Tensor) -> Tensor:
    """Rotation by ``theta`` [N] about the unit ``axis`` (Rodrigues), homogeneous [N, 4, 4]."""
    x, y, z = axis[0], axis[1], axis[2]
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return _matrix(
        [x * x * cc + c, x * y * cc - z * s, x * z * cc + y * s, 0],
        [y * x * cc + z * s, y * y * cc + c, y * z * cc - x * s, 0],
        [z * x * cc - y * s, z * y * cc + x * s, z * z * cc + c, 0],
        [0, 0, 0, 1],
        device=theta.device,
    )


def _separable(x: Tensor, taps: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0), gain: float = 1.0,
               flip_filter: bool = False) -> Tensor:
    """The official ``upfirdn2d`` of a separable filter as its CUDA path runs it: along the rows, then the columns
    (two 1-D passes of ``taps`` instead of one 2-D pass of ``taps ** 2``), with ``pad`` on both axes and ``gain``
    overall."""
    row, column = taps[None, :], taps[:, None]
    x = upfirdn2d(x, row, up=up, padding=[pad[0], pad[1], 0, 0], flip_filter=flip_filter, gain=gain ** 0.5)
    return upfirdn2d(x, column, down=down, padding=[0, 0, pad[0], pad[1]], flip_filter=flip_filter, gain=gain ** 0.5)


def _filter_bank() -> np.ndarray:
    """The official bank of 4 band-pass filters [4, taps] built from sym2 by repeated upsampling, whose rows sum to
    the identity filter: band 0 the lowest octave, band 3 the highest."""
    lo = np.asarray(_SYM2)
    hi = lo * (-1.0) ** np.arange(lo.size)  # H(-z)
    lo2 = np.convolve(lo, lo[::-1]) / 2  # H(z) H(1/z) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.eye(4, 1)
    for band in range(1, 4):
        interleaved = np.dstack([bank, np.zeros_like(bank)]).reshape(bank.shape[0], -1)[:, :-1]
        bank = np.stack([np.convolve(row, lo2) for row in interleaved])
        start = (bank.shape[1] - hi2.size) // 2
        bank[band, start:start + hi2.size] += hi2
    return bank


class AugmentPipe(nn.Module):
    """ADA's augmentation pipeline (Karras et al. 2020), equal to the official ``training.augment.AugmentPipe``:
    the same arguments, the same random draws in the same order (so a seed gives the official result), the same
    resampling. Every transform is off by default; its probability multiplier set to 1 turns it on, with probability
    ``multiplier * p`` per sample. :data:`PRESETS` gives the official pipelines (``AugmentPipe(**PRESETS["bgc"])``).

    Unlike the official code, a batch none of whose samples drew a geometric transform (or an image filter) skips
    the resampling (the official runs it, an identity up to float rounding), so the pipeline is exactly the identity
    at ``p = 0``. As in the official code, the blits (flips, quarter turns, integer translations) go through the same
    resampling as the other geometric transforms: an integer translation is exact, but since ``sym6`` is not a
    symmetric filter a flip or quarter turn also shifts the phase of the frequencies near Nyquist.

    Args:
        xflip: probability multiplier of the x-flip.
        rotate90: of rotations by a multiple of 90 degrees.
        xint: of integer translation.
        xint_max: range of the integer translation, relative to the image size (0.125).
        scale: of isotropic scaling.
        rotate: of arbitrary rotation (applied before and after the anisotropic scaling, each with the probability
            that makes either happen with ``rotate * p``).
        aniso: of anisotropic scaling.
        xfrac: of fractional translation.
        scale_std: log2 standard deviation of the isotropic scaling (0.2).
        rotate_max: range of the arbitrary rotation, 1 = a full circle.
        aniso_std: log2 standard deviation of the anisotropic scaling (0.2).
        xfrac_std: standard deviation of the fractional translation, relative to the image size (0.125).
        brightness: of brightness (an added constant).
        contrast: of contrast (scaling about 0).
        lumaflip: of the luma flip (a Householder reflection of the color about the luma axis).
        hue: of hue rotation about the luma axis (RGB only).
        saturation: of saturation (RGB only).
        brightness_std: standard deviation of the brightness (0.2).
        contrast_std: log2 standard deviation of the contrast (0.5).
        hue_max: range of the hue rotation, 1 = a full circle.
        saturation_std: log2 standard deviation of the saturation (1).
        imgfilter: of image-space filtering (amplifying frequency bands).
        imgfilter_bands: probability multipliers of the 4 bands, lowest first.
        imgfilter_std: log2 standard deviation of a band's amplification (1).
        noise: of additive Gaussian noise.
        cutout: of cutout (a zeroed rectangle).
        noise_std: standard deviation of the noise (0.1).
        cutout_size: side of the cutout rectangle, relative to the image size (0.5).

    Raises:
        ConfigurationError: a negative multiplier, or ``imgfilter_bands`` not of 4 values.
    """

    def __init__(
        self,
        xflip: float = 0, rotate90: float = 0, xint: float = 0, xint_max: float = 0.125,
        scale: float = 0, rotate: float = 0, aniso: float = 0, xfrac: float = 0,
        scale_std: float = 0.2, rotate_max: float = 1, aniso_std: float = 0.2, xfrac_std: float = 0.125,
        brightness: float = 0, contrast: float = 0, lumaflip: float = 0, hue: float = 0, saturation: float = 0,
        brightness_std: float = 0.2, contrast_std: float = 0.5, hue_max: float = 1, saturation_std: float = 1,
        imgfilter: float = 0, imgfilter_bands: Sequence[float] = (1, 1, 1, 1), imgfilter_std: float = 1,
        noise: float = 0, cutout: float = 0, noise_std: float = 0.1, cutout_size: float = 0.5,
    ) -> None:
        super().__init__()
        multipliers = {
            "xflip": xflip, "rotate90": rotate90, "xint": xint, "scale": scale, "rotate": rotate, "aniso": aniso,
            "xfrac": xfrac, "brightness": brightness, "contrast": contrast, "lumaflip": lumaflip, "hue": hue,
            "saturation": saturation, "imgfilter": imgfilter, "noise": noise, "cutout": cutout,
        }
        for name, value in multipliers.items():
            if value < 0:
                raise ConfigurationError(f"{name}={value} is a probability multiplier: expected >= 0")
            setattr(self, name, float(value))
        if len(imgfilter_bands) != 4:
            raise ConfigurationError(f"imgfilter_bands={list(imgfilter_bands)}: expected 4 multipliers, lowest first")
        self.xint_max, self.scale_std, self.rotate_max = float(xint_max), float(scale_std), float(rotate_max)
        self.aniso_std, self.xfrac_std = float(aniso_std), float(xfrac_std)
        self.brightness_std, self.contrast_std = float(brightness_std), float(contrast_std)
        self.hue_max, self.saturation_std = float(hue_max), float(saturation_std)
        self.imgfilter_bands, self.imgfilter_std = [float(b) for b in imgfilter_bands], float(imgfilter_std)
        self.noise_std, self.cutout_size = float(noise_std), float(cutout_size)
        # The overall probability: a buffer, so that it follows the module's device and is in its state dict.
        self.register_buffer("p", torch.ones([]))
        self.register_buffer("Hz_geom", setup_filter(_SYM6))  # the official name: 12 taps, separable, unit DC gain
        self.register_buffer("Hz_fbank", torch.tensor(_filter_bank(), dtype=torch.float32))

    def changes_color(self) -> bool:
        """Whether a color transform is on (they need RGB or grayscale images)."""
        return any(getattr(self, name) > 0 for name in COLOR_TRANSFORMS)

    def _gate(self, value: Tensor, probability: Tensor | float, identity: float) -> Tensor:
        """``value`` where a uniform draw per sample is below ``probability``, ``identity`` elsewhere."""
        draw = torch.rand([value.shape[0]] + [1] * (value.dim() - 1), device=value.device)
        return torch.where(draw < probability, value, torch.full_like(value, identity))

    def forward(self, images: Tensor, debug_percentile: float | None = None) -> Tensor:
        """Augments a batch of images [N, C, H, W] (C = 1 or 3 when a color transform is on).

        Args:
            images: the batch.
            debug_percentile: the official debugging aid: every transform that is on takes the value at this
                percentile (in [0, 1]) of its distribution, for every sample, instead of a random one (the
                probabilities are ignored; the post-rotation is off).

        Returns:
            The augmented batch, of the shape and dtype of ``images``.

        Raises:
            ValueError: a color transform on images of neither 1 nor 3 channels, or the image filter on images smaller
                than ``min_size()``.
        """
        if images.dim() != 4:
            raise ValueError(f"AugmentPipe takes images [N, C, H, W], not a tensor of shape {tuple(images.shape)}")
        if min(images.shape[2:]) < self.min_size():
            raise ValueError(f"AugmentPipe's image filter needs images of at least {self.min_size()} pixels a side")
        debug = None if debug_percentile is None else torch.tensor(debug_percentile, device=images.device)
        # In float32 whatever the input (fp16/bf16) and outside the autocast of mixed precision (the discriminator's
        # pre-hook runs inside it), which would compute the matrices and resampling convolutions in half precision:
        # sampling positions need float32's.
        dtype, images = images.dtype, images.float()
        with torch.autocast(images.device.type, enabled=False):
            inverse, moved = self._geometric(images, debug)
            if moved:
                images = self._resample(images, inverse)
            images = self._color(images, debug)
            images = self._image_filter(images, debug)
            images = self._corruptions(images, debug)
        return images.to(dtype)

    def min_size(self) -> int:
        """The smallest image side the pipeline takes: the image filter reflects the image at its borders by half its
        filter's length (21 pixels); the other transforms take any size."""
        return self.Hz_fbank.shape[1] // 2 + 1 if self.imgfilter > 0 else 1

    # ------------------------------------------------------------------------------------------------------------------
    # Geometric transforms: one inverse matrix per sample (output pixel -> input pixel), then one resampling.
    # ------------------------------------------------------------------------------------------------------------------

    def _geometric(self, images: Tensor, debug: Tensor | None) -> tuple[Tensor | None, bool]:
        """The inverse transforms [N, 3, 3] of the geometric transforms (``None``: all off) and whether any sample
        drew one that is not the identity."""
        n, _, height, width = images.shape
        device, p = images.device, self.p
        inverse: Tensor | None = None

        def then(m: Tensor) -> None:
            nonlocal inverse
            inverse = m if inverse is None else inverse @ m

        def scale_inv(sx: Tensor, sy: Tensor | float) -> Tensor:
            return _scale2d(1 / sx, 1 / sy, device)

        if self.xflip > 0:
            i = self._gate(torch.floor(torch.rand([n], device=device) * 2), self.xflip * p, 0)
            if debug is not None:
                i = torch.full_like(i, torch.floor(debug * 2))
            then(scale_inv(1 - 2 * i, 1))
        if self.rotate90 > 0:
            i = self._gate(torch.floor(torch.rand([n], device=device) * 4), self.rotate90 * p, 0)
            if debug is not None:
                i = torch.full_like(i, torch.floor(debug * 4))
            then(_rotate2d(-(-np.pi / 2 * i), device))
        if self.xint > 0:
            t = self._gate((torch.rand([n, 2], device=device) * 2 - 1) * self.xint_max, self.xint * p, 0)
            if debug is not None:
                t = torch.full_like(t, (debug * 2 - 1) * self.xint_max)
            then(_translate2d(-torch.round(t[:, 0] * width), -torch.round(t[:, 1] * height), device))
        if self.scale > 0:
            s = self._gate(torch.exp2(torch.randn([n], device=device) * self.scale_std), self.scale * p, 1)
            if debug is not None:
                s = torch.full_like(s, torch.exp2(torch.erfinv(debug * 2 - 1) * self.scale_std))
            then(scale_inv(s, s))
        # Two rotations, each with p_rot, so that P(pre or post) = rotate * p.
        p_rot = 1 - torch.sqrt((1 - self.rotate * p).clamp(0, 1))
        if self.rotate > 0:
            theta = self._gate((torch.rand([n], device=device) * 2 - 1) * np.pi * self.rotate_max, p_rot, 0)
            if debug is not None:
                theta = torch.full_like(theta, (debug * 2 - 1) * np.pi * self.rotate_max)
            then(_rotate2d(theta, device))  # before the anisotropic scaling
        if self.aniso > 0:
            s = self._gate(torch.exp2(torch.randn([n], device=device) * self.aniso_std), self.aniso * p, 1)
            if debug is not None:
                s = torch.full_like(s, torch.exp2(torch.erfinv(debug * 2 - 1) * self.aniso_std))
            then(scale_inv(s, 1 / s))
        if self.rotate > 0:
            theta = self._gate((torch.rand([n], device=device) * 2 - 1) * np.pi * self.rotate_max, p_rot, 0)
            if debug is not None:
                theta = torch.zeros_like(theta)
            then(_rotate2d(theta, device))  # after the anisotropic scaling
        if self.xfrac > 0:
            t = self._gate(torch.randn([n, 2], device=device) * self.xfrac_std, self.xfrac * p, 0)
            if debug is not None:
                t = torch.full_like(t, torch.erfinv(debug * 2 - 1) * self.xfrac_std)
            then(_translate2d(-t[:, 0] * width, -t[:, 1] * height, device))
        if inverse is None:
            return None, False
        moved = bool((inverse != torch.eye(3, device=device)).any())
        return inverse, moved

    def _resample(self, images: Tensor, inverse: Tensor) -> Tensor:
        """Applies the inverse transforms [N, 3, 3] (in pixels, about the image center) to ``images``: reflection
        padding wide enough for every transformed corner, 2x upsampling, bilinear sampling, 2x downsampling."""
        n, c, height, width = images.shape
        device = images.device
        taps = self.Hz_geom.shape[0]
        margin_pad = taps // 4  # the official Hz_pad: the filter's support at the output resolution
        cx, cy = (width - 1) / 2, (height - 1) / 2
        corners = _matrix([-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1], device=device)  # [4, xyz]
        corners = inverse @ corners.t()  # [N, xyz, 4]
        reach = corners[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, N * 4]
        margin = torch.cat([-reach, reach]).max(dim=1).values  # [x0, y0, x1, y1]
        margin = margin + torch.tensor([margin_pad * 2 - cx, margin_pad * 2 - cy] * 2, device=device)
        margin = margin.clamp(min=0).minimum(torch.tensor([width - 1, height - 1] * 2, device=device))
        mx0, my0, mx1, my1 = (int(m) for m in margin.ceil().tolist())
        images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
        inverse = _translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, device) @ inverse

        images = _separable(images, self.Hz_geom, up=2, pad=((taps + 1) // 2, (taps - 2) // 2), gain=4)
        inverse = _scale2d(2, 2, device) @ inverse @ _scale2d(1 / 2, 1 / 2, device)
        inverse = _translate2d(-0.5, -0.5, device) @ inverse @ _translate2d(0.5, 0.5, device)

        # affine_grid works in [-1, 1] coordinates: from the output's pixels to the padded, upsampled input's.
        shape = [n, c, (height + margin_pad * 2) * 2, (width + margin_pad * 2) * 2]
        to_unit = _scale2d(2 / images.shape[3], 2 / images.shape[2], device)
        from_unit = _scale2d(1 / (2 / shape[3]), 1 / (2 / shape[2]), device)
        inverse = to_unit @ inverse @ from_unit
        grid = F.affine_grid(inverse[:, :2, :], shape, align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

        crop = -margin_pad * 2
        pad = (crop + (taps - 1) // 2, crop + (taps - 2) // 2)
        return _separable(images, self.Hz_geom, down=2, pad=pad, flip_filter=True)

    # ------------------------------------------------------------------------------------------------------------------
    # Color transforms: one homogeneous 4x4 matrix per sample acting on (r, g, b, 1).
    # ------------------------------------------------------------------------------------------------------------------

    def _color(self, images: Tensor, debug: Tensor | None) -> Tensor:
        n, c, height, width = images.shape
        device, p = images.device, self.p
        identity = torch.eye(4, device=device)
        color: Tensor | None = None

        def then(m: Tensor) -> None:
            nonlocal color
            color = m if color is None else m @ color

        if self.brightness > 0:
            b = self._gate(torch.randn([n], device=device) * self.brightness_std, self.brightness * p, 0)
            if debug is not None:
                b = torch.full_like(b, torch.erfinv(debug * 2 - 1) * self.brightness_std)
            then(_matrix([1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1], device=device))
        if self.contrast > 0:
            s = self._gate(torch.exp2(torch.randn([n], device=device) * self.contrast_std), self.contrast * p, 1)
            if debug is not None:
                s = torch.full_like(s, torch.exp2(torch.erfinv(debug * 2 - 1) * self.contrast_std))
            then(_matrix([s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1], device=device))
        luma = torch.tensor(np.asarray([1, 1, 1, 0]) / np.sqrt(3), dtype=torch.float32, device=device)
        luma_projection = torch.outer(luma, luma)
        if self.lumaflip > 0:
            i = self._gate(torch.floor(torch.rand([n, 1, 1], device=device) * 2), self.lumaflip * p, 0)
            if debug is not None:
                i = torch.full_like(i, torch.floor(debug * 2))
            then(identity - 2 * luma_projection * i)  # Householder reflection
        if self.hue > 0 and c > 1:
            theta = self._gate((torch.rand([n], device=device) * 2 - 1) * np.pi * self.hue_max, self.hue * p, 0)
            if debug is not None:
                theta = torch.full_like(theta, (debug * 2 - 1) * np.pi * self.hue_max)
            then(_rotate3d(luma, theta))
        if self.saturation > 0 and c > 1:
            s = self._gate(torch.exp2(torch.randn([n, 1, 1], device=device) * self.saturation_std), self.saturation * p, 1)
            if debug is not None:
                s = torch.full_like(s, torch.exp2(torch.erfinv(debug * 2 - 1) * self.saturation_std))
            then(luma_projection + (identity - luma_projection) * s)
        if color is None:
            return images
        flat = images.reshape(n, c, height * width)
        color = color.to(images.dtype)
        if c == 3:
            flat = color[:, :3, :3] @ flat + color[:, :3, 3:]
        elif c == 1:
            # Grayscale as the mean of the three channels of a gray RGB pixel.
            gray = color[:, :3, :].mean(dim=1, keepdim=True)
            flat = flat * gray[:, :, :3].sum(dim=2, keepdim=True) + gray[:, :, 3:]
        else:
            raise ValueError(f"AugmentPipe's color transforms take RGB (3 channels) or L (1) images, not {c} channels")
        return flat.reshape(n, c, height, width)

    # ------------------------------------------------------------------------------------------------------------------
    # Image-space filtering and corruptions.
    # ------------------------------------------------------------------------------------------------------------------

    def _image_filter(self, images: Tensor, debug: Tensor | None) -> Tensor:
        if self.imgfilter <= 0:
            return images
        n, c, height, width = images.shape
        device = images.device
        bands = self.Hz_fbank.shape[0]
        expected_power = torch.tensor(np.array([10, 1, 1, 1]) / 13, dtype=torch.float32, device=device)  # 1/f
        gains = torch.ones([n, bands], device=device)
        chosen = torch.zeros([n], dtype=torch.bool, device=device)
        for band, strength in enumerate(self.imgfilter_bands):
            amplify = torch.exp2(torch.randn([n], device=device) * self.imgfilter_std)
            selected = torch.rand([n], device=device) < self.imgfilter * self.p * strength
            amplify = torch.where(selected, amplify, torch.ones_like(amplify))
            if debug is not None:
                value = torch.exp2(torch.erfinv(debug * 2 - 1) * self.imgfilter_std) if strength > 0 else 1.0
                amplify, selected = torch.full_like(amplify, value), torch.full_like(selected, strength > 0)
            chosen |= selected
            gain = torch.ones([n, bands], device=device)
            gain[:, band] = amplify
            gains = gains * (gain / (expected_power * gain.square()).sum(dim=-1, keepdim=True).sqrt())  # same power
        if not bool(chosen.any()):
            return images
        kernel = (gains @ self.Hz_fbank).to(images.dtype)  # [N, taps]
        kernel = kernel.unsqueeze(1).repeat(1, c, 1).reshape(n * c, 1, -1)  # [N * C, 1, taps]
        half = self.Hz_fbank.shape[1] // 2
        x = F.pad(images.reshape(1, n * c, height, width), [half] * 4, mode="reflect")
        x = F.conv2d(x, kernel.unsqueeze(2), groups=n * c)
        x = F.conv2d(x, kernel.unsqueeze(3), groups=n * c)
        return x.reshape(n, c, height, width)

    def _corruptions(self, images: Tensor, debug: Tensor | None) -> Tensor:
        n, c, height, width = images.shape
        device = images.device
        if self.noise > 0:
            sigma = self._gate(torch.randn([n, 1, 1, 1], device=device).abs() * self.noise_std, self.noise * self.p, 0)
            if debug is not None:
                sigma = torch.full_like(sigma, torch.erfinv(debug) * self.noise_std)
            images = images + torch.randn([n, c, height, width], device=device).to(images.dtype) * sigma
        if self.cutout > 0:
            size = self._gate(torch.full([n, 2, 1, 1, 1], self.cutout_size, device=device), self.cutout * self.p, 0)
            center = torch.rand([n, 2, 1, 1, 1], device=device)
            if debug is not None:
                size, center = torch.full_like(size, self.cutout_size), torch.full_like(center, debug)
            x = (torch.arange(width, device=device).reshape(1, 1, 1, -1) + 0.5) / width
            y = (torch.arange(height, device=device).reshape(1, 1, -1, 1) + 0.5) / height
            outside = ((x - center[:, 0]).abs() >= size[:, 0] / 2) | ((y - center[:, 1]).abs() >= size[:, 1] / 2)
            images = images * outside.to(images.dtype)
        return images


# ----------------------------------------------------------------------------------------------------------------------
# DiffAugment
# ----------------------------------------------------------------------------------------------------------------------

def _brightness(x: Tensor) -> Tensor:
    """Adds U[-0.5, 0.5) per sample."""
    return x + (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def _saturation(x: Tensor) -> Tensor:
    """Scales each pixel's deviation from its channel mean by U[0, 2) per sample."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean


def _contrast(x: Tensor) -> Tensor:
    """Scales the deviation from the sample's mean by U[0.5, 1.5) per sample."""
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def _translation(x: Tensor, ratio: float = 1 / 8) -> Tensor:
    """Moves each sample by whole pixels, up to ``ratio`` of its height and width in each direction (uniform over the
    integers), filling with zeros: output pixel (i, j) is input pixel (i + dy, j + dx). The range is rounded to the
    nearest pixel, as the authors' code (4 pixels at 28x28)."""
    n, _, height, width = x.shape
    max_y, max_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    dy = torch.randint(-max_y, max_y + 1, size=[n, 1], device=x.device)
    dx = torch.randint(-max_x, max_x + 1, size=[n, 1], device=x.device)
    # Indices into the image padded with one zero pixel, pointing at the padding when out of range.
    rows = (torch.arange(height, device=x.device) + dy + 1).clamp(0, height + 1)  # [N, H]
    cols = (torch.arange(width, device=x.device) + dx + 1).clamp(0, width + 1)  # [N, W]
    padded = F.pad(x, [1, 1, 1, 1])
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # [N, H, W, C] -> [N, C, H, W]


def _cutout(x: Tensor, ratio: float = 1 / 2) -> Tensor:
    """Zeroes a rectangle of ``ratio`` of the height and width per sample, centered anywhere in the image (clipped by
    its borders); the sides rounded to the nearest pixel, as the authors' code."""
    n, _, height, width = x.shape
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    # Centers over 0..H (0..H-1 for an odd size), as the authors' code.
    center_y = torch.randint(0, height + (1 - size_y % 2), size=[n, 1, 1], device=x.device)
    center_x = torch.randint(0, width + (1 - size_x % 2), size=[n, 1, 1], device=x.device)
    top, left = center_y - size_y // 2, center_x - size_x // 2
    rows = torch.arange(height, device=x.device).reshape(1, -1, 1)
    cols = torch.arange(width, device=x.device).reshape(1, 1, -1)
    inside = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)  # [N, H, W]
    return x * (~inside).unsqueeze(1).to(x.dtype)


#: DiffAugment's policies and their transforms, in the authors' order.
DIFFAUGMENT_POLICIES = {
    "color": (_brightness, _saturation, _contrast),
    "translation": (_translation,),
    "cutout": (_cutout,),
}


class DiffAugment(nn.Module):
    """DiffAugment (Zhao et al. 2020): the same differentiable random transforms of real and fake images before D.

    Policies (comma-separated, applied in the given order; the paper's choice for few-shot training is
    ``"color,translation,cutout"``, and ``"translation"`` alone for large sets):

    - ``color``: brightness + U[-0.5, 0.5), saturation x U[0, 2) about the pixel's channel mean, contrast
      x U[0.5, 1.5) about the sample's mean (images in [-1, 1]);
    - ``translation``: a shift by up to 1/8 of the image size, by whole pixels, zero fill;
    - ``cutout``: a zeroed square of half the image size at a random center.

    Args:
        policy: the policies, comma-separated; ``""`` is the identity.

    Raises:
        ConfigurationError: an unknown policy.
    """

    def __init__(self, policy: str = "color,translation,cutout") -> None:
        super().__init__()
        self.policy = policy
        self.policies = [name.strip() for name in policy.split(",") if name.strip()]
        unknown = [name for name in self.policies if name not in DIFFAUGMENT_POLICIES]
        if unknown:
            raise ConfigurationError(
                f"policy={policy!r}: unknown {', '.join(map(repr, unknown))}; expected comma-separated names of "
                f"{', '.join(DIFFAUGMENT_POLICIES)}"
            )

    def changes_color(self) -> bool:
        """Whether the ``color`` policy is on."""
        return "color" in self.policies

    def min_size(self) -> int:
        """The smallest image side DiffAugment takes: any."""
        return 1

    def forward(self, x: Tensor) -> Tensor:
        """Augments a batch [N, C, H, W]."""
        for name in self.policies:
            for transform in DIFFAUGMENT_POLICIES[name]:
                x = transform(x)
        return x

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}"

