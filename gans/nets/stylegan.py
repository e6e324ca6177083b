"""StyleGAN's networks (Karras et al. 2019, "A Style-Based Generator Architecture for Generative Adversarial
Networks"), following the official TensorFlow code (NVlabs/stylegan, ``training/networks_stylegan.py``: ``G_style``,
``G_synthesis``, ``D_basic``).

The generator is the mapping network z -> w (``gans.nets.style.MappingNetwork``, shared with StyleGAN2) and the
synthesis network: a learned constant 4x4 input, then per resolution two 3x3 convolutions, each followed by the
official "layer epilogue": per-pixel noise times a learned per-channel scale (zero at first), bias, LeakyReLU(0.2),
instance normalisation and the style of that layer (AdaIN: a learned affine map of w gives a scale and a bias per
channel). Upsampling is nearest-neighbour followed by the [1, 2, 1] binomial blur (section 2 of the paper: bilinear
resampling as a second-order binomial low-pass filter after each upsampling and before each downsampling, after Zhang
2019), the upsampling fused into one transposed convolution from 128x128 on as the official ``fused_scale="auto"``.
The discriminator is ProGAN's with the same blur before each downsampling convolution.

Both grow as ProGAN's (``gans.nets.progan.Growing``): every block exists from the start and the growth state
(resolution, alpha) selects the blocks that run, so ``callbacks.ProgressiveGrowing`` drives them unchanged; at
``alpha = 0`` each computes exactly what it computed at the previous resolution. Equalized learning rate and
minibatch standard deviation are ProGAN's (``gans.nets.equalized``, ``gans.nets.layers.MinibatchStdDev``).
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gans.nets.equalized import EqualizedConv2d, EqualizedLinear, upsample
from gans.nets.progan import Growing, ProGANDiscriminator, progan_channels
from gans.nets.resample import setup_filter, upfirdn2d
from gans.nets.style import MappingNetwork
from gans.nets.stylegan2 import check_noise_mode
from gans.outputs import GeneratorOutput

NoiseMode = Literal["random", "const", "none"]
FusedScale = bool | Literal["auto"]

#: The official ``blur_filter=[1, 2, 1]``: its 2-D outer product, normalised to sum 1.
_BINOMIAL = setup_filter([1.0, 2.0, 1.0])


def blur(x: Tensor) -> Tensor:
    """The [1, 2, 1] x [1, 2, 1] / 16 low-pass filter on every channel, zero-padded to the same size (the official
    ``blur2d``): [N, C, H, W] -> [N, C, H, W]."""
    return upfirdn2d(x, _BINOMIAL.to(x.device), padding=1)


def instance_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Each channel of each sample normalised to zero mean and unit variance over its pixels (the official
    ``instance_norm``, epsilon 1e-8): [N, C, H, W] -> same shape."""
    x = x - x.mean(dim=(2, 3), keepdim=True)
    return x * torch.rsqrt(x.square().mean(dim=(2, 3), keepdim=True) + eps)


def _resolve_fused(fused_scale: FusedScale, resolution: int) -> bool:
    # The official "auto": fuse resampling into the convolution where the larger side is 128 or more (less memory).
    return resolution >= 128 if fused_scale == "auto" else bool(fused_scale)


def _summed_taps(weight: Tensor) -> Tensor:
    """A 3x3 kernel [O, I, 3, 3] as the 4x4 kernel of its four 1-pixel shifts summed, which a stride-2 convolution
    applies as the 3x3 one on a 2x-resampled image (the official fused ``upscale2d_conv2d``/``conv2d_downscale2d``)."""
    w = F.pad(weight, (1, 1, 1, 1))
    return w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]


class UpConv2d(EqualizedConv2d):
    """Nearest-neighbour 2x upsampling then a 3x3 equalized convolution without bias, [N, in, H, W] -> [N, out, 2H,
    2W]; ``fused`` computes the same as one transposed convolution of the summed 4x4 kernel (faster at large sizes).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        fused: one transposed convolution instead of upsampling and convolving.
    """

    def __init__(self, in_channels: int, out_channels: int, fused: bool) -> None:
        # No bias: StyleGAN adds it after the blur and the noise (the layer epilogue).
        super().__init__(in_channels, out_channels, 3, bias=False)
        self.fused = fused

    def forward(self, x: Tensor) -> Tensor:
        if not self.fused:
            return super().forward(upsample(x))
        # The transposed convolution applies its kernel flipped, with in/out swapped: [I, O, 4, 4].
        kernel = _summed_taps(self.weight * self.weight_gain).flip(2, 3).transpose(0, 1)
        return F.conv_transpose2d(x, kernel, stride=2, padding=1)


class DownConv2d(EqualizedConv2d):
    """A 3x3 equalized convolution with bias then 2x2 average pooling, [N, in, H, W] -> [N, out, H/2, W/2];
    ``fused`` computes the same as one stride-2 convolution of the summed 4x4 kernel divided by 4.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        fused: one strided convolution instead of convolving and pooling.
    """

    def __init__(self, in_channels: int, out_channels: int, fused: bool) -> None:
        super().__init__(in_channels, out_channels, 3)
        self.fused = fused

    def forward(self, x: Tensor) -> Tensor:
        if not self.fused:
            return F.avg_pool2d(super().forward(x), 2)  # pooling commutes with the bias
        kernel = _summed_taps(self.weight * self.weight_gain) * 0.25
        return F.conv2d(x, kernel, self.bias, stride=2, padding=1)


class AdaIN(nn.Module):
    """Adaptive instance normalization (section 2 of the paper): each channel normalised over its pixels, then scaled
    and shifted by the style ``y = A(w)``: ``AdaIN(x, y) = y_s * (x - mu(x)) / sigma(x) + y_b``; [N, C, H, W] and
    w [N, w_dim] -> [N, C, H, W].

    ``A`` is an equalized dense layer (gain 1) giving 2C numbers; as in the official ``style_mod`` the scale is
    ``1 + A(w)_s`` (the same as its bias starting at 1, StyleGAN2's ``bias_init=1``), so a fresh network passes the
    normalised features through.

    Args:
        channels: C.
        w_dim: size of w.
    """

    def __init__(self, channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = EqualizedLinear(w_dim, 2 * channels, gain=1.0)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        style = self.affine(w).view(x.shape[0], 2, x.shape[1], 1, 1)  # [N, (scale, bias), C, 1, 1]
        return instance_norm(x) * (style[:, 0] + 1) + style[:, 1]


class NoiseInput(nn.Module):
    """Per-pixel noise (section 3.2 of the paper): one N(0, 1) image per sample, broadcast to every channel with a
    learned per-channel scale, zero at first; [N, C, H, W] -> same shape.

    Noise modes: ``"random"`` draws new noise at every call (training), ``"const"`` uses the fixed noise image
    ``noise_const`` drawn when the layer was made (the official ``randomize_noise=False``: reproducible samples),
    ``"none"`` adds nothing.

    Args:
        channels: C.
        resolution: the side of the feature maps.
    """

    def __init__(self, channels: int, resolution: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: Tensor, noise_mode: NoiseMode = "random") -> Tensor:
        if noise_mode == "none":
            return x
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        elif noise_mode == "const":
            noise = self.noise_const.to(x.dtype)
        else:
            check_noise_mode(noise_mode)  # raises
        return x + noise * self.weight.view(1, -1, 1, 1)


class StyleLayer(nn.Module):
    """The official layer epilogue after a convolution (or the constant input): noise, bias, LeakyReLU(0.2), AdaIN.

    Args:
        channels: feature maps.
        w_dim: size of w.
        resolution: side of the feature maps.
    """

    def __init__(self, channels: int, w_dim: int, resolution: int) -> None:
        super().__init__()
        self.noise = NoiseInput(channels, resolution)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.adain = AdaIN(channels, w_dim)

    def forward(self, x: Tensor, w: Tensor, noise_mode: NoiseMode = "random") -> Tensor:
        x = self.noise(x, noise_mode) + self.bias.view(1, -1, 1, 1)
        return self.adain(F.leaky_relu(x, 0.2), w)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: two style layers, [N, in, r/2, r/2] and two ws -> [N, out, r, r].
    At 4x4 the input is the learned constant (all ones at first) and only the second layer has a convolution; above,
    the first convolution upsamples and is blurred.

    Args:
        in_channels: channels of the input (of the constant at 4x4).
        out_channels: feature maps of the block.
        w_dim: size of w.
        resolution: r.
        fused_scale: fuse the upsampling into the convolution (``"auto"``: from 128x128 on).
        blur_filter: blur after upsampling (the official ``[1, 2, 1]``); False leaves it out.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 fused_scale: FusedScale = "auto", blur_filter: bool = True) -> None:
        super().__init__()
        self.resolution, self.blur_filter = resolution, blur_filter
        if resolution == 4:
            self.const = nn.Parameter(torch.ones(1, out_channels, 4, 4))
            self.conv0 = None
        else:
            self.conv0 = UpConv2d(in_channels, out_channels, _resolve_fused(fused_scale, resolution))
        self.layer0 = StyleLayer(out_channels, w_dim, resolution)
        self.conv1 = EqualizedConv2d(out_channels, out_channels, 3, bias=False)
        self.layer1 = StyleLayer(out_channels, w_dim, resolution)

    def forward(self, x: Tensor | None, ws: Tensor, noise_mode: NoiseMode = "random") -> Tensor:
        if self.conv0 is None:
            x = self.const.expand(ws.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x)
            x = blur(x) if self.blur_filter else x
        x = self.layer0(x, ws[:, 0], noise_mode)
        return self.layer1(self.conv1(x), ws[:, 1], noise_mode)


class StyleGANSynthesis(Growing):
    """StyleGAN's synthesis network: ws [N, num_ws, w_dim] -> images [N, channels, r, r] at the current resolution
    ``r``, linear (toRGB is a 1x1 convolution with bias).

    Layer ``2k`` and ``2k + 1`` (the block at 4 * 2^k) take ``ws[:, 2k]`` and ``ws[:, 2k + 1]``; ``num_ws`` is
    ``2 * log2(image_size) - 2`` (18 at 1024x1024), and at a lower resolution only the first ``2 * (level + 1)`` are
    read. Widths follow the official formula (``progan_channels``): 512 up to 32x32, halving above with the defaults.

    Args:
        w_dim: size of w (512 in the paper).
        channels: image channels.
        image_size: the target resolution, a power of two >= 4.
        fmap_base: the channel formula's base.
        fmap_max: the most feature maps of a block.
        fused_scale: fuse upsampling and convolution (``"auto"``: from 128x128 on, as the official code).
        blur_filter: blur after each upsampling (the paper's); False leaves it out.
    """

    def __init__(self, w_dim: int, channels: int, image_size: int, fmap_base: int = 8192, fmap_max: int = 512,
                 fused_scale: FusedScale = "auto", blur_filter: bool = True) -> None:
        super().__init__(image_size)
        self.w_dim = w_dim
        width = [progan_channels(r, fmap_base, fmap_max) for r in self.resolutions]
        self.num_ws = 2 * len(self.resolutions)
        self.blocks = nn.ModuleList(
            SynthesisBlock(width[max(i - 1, 0)], width[i], w_dim, r, fused_scale, blur_filter)
            for i, r in enumerate(self.resolutions)
        )
        self.to_rgb = nn.ModuleList([EqualizedConv2d(w, channels, 1, gain=1.0) for w in width])

    @property
    def num_ws_used(self) -> int:
        """The ws the current resolution reads (the blocks that run, the fading one included)."""
        return 2 * (self.level + 1)

    def forward(self, ws: Tensor, noise_mode: NoiseMode = "random") -> Tensor:
        if ws.dim() != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"expected ws of shape [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        x = previous = None
        for i, block in enumerate(self.blocks[: self.level + 1]):
            previous, x = x, block(x, ws[:, 2 * i : 2 * i + 2], noise_mode)
        image = self.to_rgb[self.level](x)  # [N, C, r, r]
        if self.fading:
            return torch.lerp(upsample(self.to_rgb[self.level - 1](previous)), image, self.alpha)
        return image


class StyleGANGenerator(nn.Module):
    """StyleGAN's generator: z [N, latent_dim] -> ``GeneratorOutput(images [N, channels, r, r], ws [N, num_ws,
    w_dim])``, the mapping network (``mapping``, 8 equalized dense layers with learning-rate multiplier 0.01 after the
    pixel norm of z, and the tracked mean ``w_avg``) and the synthesis network (``synthesis``).

    It grows with its synthesis network (``grow``, ``resolution``, ``alpha``, ``resolutions``): the mapping network
    has no resolution.

    Args:
        latent_dim: size of z (512 in the paper).
        channels: image channels.
        image_size: the target resolution, a power of two >= 4.
        w_dim: size of w and width of the mapping layers; ``None``: ``latent_dim`` (both 512 in the paper).
        mapping_layers: dense layers of the mapping network (8).
        mapping_lr_multiplier: their learning-rate multiplier (0.01).
        w_avg_beta: decay of the tracked mean of w per training forward (0.995).
        fmap_base: the synthesis network's channel formula base.
        fmap_max: the most feature maps of a synthesis block.
        fused_scale: fuse upsampling and convolution (``"auto"``: from 128x128 on).
        blur_filter: blur after each upsampling.
    """

    def __init__(self, latent_dim: int, channels: int, image_size: int, w_dim: int | None = None,
                 mapping_layers: int = 8, mapping_lr_multiplier: float = 0.01, w_avg_beta: float = 0.995,
                 fmap_base: int = 8192, fmap_max: int = 512, fused_scale: FusedScale = "auto",
                 blur_filter: bool = True) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = latent_dim, 0, w_dim or latent_dim
        self.synthesis = StyleGANSynthesis(self.w_dim, channels, image_size, fmap_base, fmap_max, fused_scale,
                                           blur_filter)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(latent_dim, 0, self.w_dim, self.num_ws, num_layers=mapping_layers,
                                      lr_multiplier=mapping_lr_multiplier, w_avg_beta=w_avg_beta)

    @property
    def resolutions(self) -> tuple[int, ...]:
        """The resolutions the generator can run at, 4 to ``image_size``."""
        return self.synthesis.resolutions

    @property
    def resolution(self) -> int:
        """The resolution of the images it makes now."""
        return self.synthesis.resolution

    @property
    def alpha(self) -> float:
        """The fade-in weight of the newest synthesis block."""
        return self.synthesis.alpha

    def grow(self, resolution: int, alpha: float = 1.0) -> None:
        """Runs the synthesis network at ``resolution``, its newest block weighted ``alpha`` (see ``Growing.grow``)."""
        self.synthesis.grow(resolution, alpha)

    def forward(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: NoiseMode = "random",
                update_emas: bool = False) -> GeneratorOutput:
        """Images and their (truncated) ws for latents z [N, latent_dim]; ``truncation_psi`` < 1 pulls the ws of the
        first ``truncation_cutoff`` layers (all when ``None``) towards ``w_avg``; ``update_emas`` updates ``w_avg``
        with this batch (training)."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return GeneratorOutput(self.synthesis(ws, noise_mode=noise_mode), ws=ws)


class StyleGANDiscriminator(ProGANDiscriminator):
    """StyleGAN's discriminator (the official ``D_basic``): ProGAN's (fromRGB, two 3x3 convolutions per resolution,
    minibatch standard deviation, 3x3 convolution and two dense layers at 4x4, equalized learning rate) with the
    [1, 2, 1] blur before each downsampling convolution, the downsampling fused into it from 128x128 on; images
    [N, channels, r, r] -> scores [N].

    Args:
        channels: image channels (times PacGAN's ``pack``).
        image_size: target resolution, a power of two >= 4.
        fmap_base: the channel formula's base.
        fmap_max: the most feature maps of a block (512 in the paper).
        mbstd_group_size: samples per minibatch-stddev group (4); 0 or 1 leaves the layer out.
        fused_scale: fuse convolution and downsampling (``"auto"``: for inputs of 128x128 and more).
        blur_filter: blur before each downsampling.
    """

    def __init__(self, channels: int, image_size: int, fmap_base: int = 8192, fmap_max: int = 512,
                 mbstd_group_size: int = 4, fused_scale: FusedScale = "auto", blur_filter: bool = True) -> None:
        # Set before nn.Module's __init__ (plain values are allowed there): ProGAN's __init__ builds the blocks
        # through down_block, which reads them.
        self.fused_scale, self.blur_filter = fused_scale, blur_filter
        super().__init__(channels, image_size, fmap_base, fmap_max, mbstd_group_size)

    def down_block(self, in_channels: int, out_channels: int, resolution: int) -> nn.Module:
        """A 3x3 convolution, LeakyReLU(0.2), blur, a downsampling 3x3 convolution, LeakyReLU(0.2)."""
        return nn.Sequential(
            EqualizedConv2d(in_channels, in_channels, 3), nn.LeakyReLU(0.2),
            Blur() if self.blur_filter else nn.Identity(),
            DownConv2d(in_channels, out_channels, _resolve_fused(self.fused_scale, resolution)), nn.LeakyReLU(0.2),
        )


class Blur(nn.Module):
    """:func:`blur` as a module, for ``nn.Sequential``."""

    def forward(self, x: Tensor) -> Tensor:
        return blur(x)
