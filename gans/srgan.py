"""SRGAN (Ledig et al. 2017): single-image super-resolution by a residual generator trained on a content loss plus
1e-3 times a non-saturating adversarial loss, after a first stage of the generator alone on the pixel MSE.

The two stages are the schedule's windows (``gans.phases``): for the first ``pretrain_steps`` iterations the phase
``G_pre`` trains the generator alone on the pixel MSE (the paper's SRResNet-MSE, 10^6 iterations, with which SRGAN is
initialised), then D and G alternate on the base's phases. ``max_steps`` counts the iterations of both stages, each
one a generator step.

The source is the low-resolution image, ``scale`` times smaller than the target; the discriminator judges
high-resolution images alone (SRGAN's is unconditional).
"""

import dataclasses
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from gans.base import GAN
from gans.errors import ConfigurationError, check_at_least
from gans.nets import ImageDiscriminator, SuperResolutionGenerator
from gans.nets.srgan import upsampling_steps
from gans.outputs import GeneratorOutput
from gans.perceptual import VGGLoss
from gans.phases import Phase
from gans.translation import Translation, psnr, to_unit

#: The paper's optimizer for both networks: Adam with lr 1e-4, beta1 0.9.
SRGAN_ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-4, "betas": (0.9, 0.999)}}
#: The paper's networks: 64 features, 16 residual blocks.
SRGAN_GENERATOR = {"class_path": "gans.nets.SRResNet", "init_args": {"features": 64, "n_blocks": 16}}
SRGAN_DISCRIMINATOR = {"class_path": "gans.nets.SRDiscriminator", "init_args": {"features": 64}}
#: The VGG19 activation of each content loss (the paper's phi_{i,j}, after the j-th convolution's ReLU of block i).
VGG_LAYERS = {"vgg22": "relu2_2", "vgg54": "relu5_4"}
#: ITU-R BT.601 luma from RGB in [0, 1] to [16, 235] / 255 (MATLAB's rgb2ycbcr, what SR papers measure PSNR on).
Y_WEIGHTS = (65.481 / 255, 128.553 / 255, 24.966 / 255)


def luma(images: Tensor) -> Tensor:
    """The Y channel of RGB images [N, 3, H, W] in [0, 1], as MATLAB's ``rgb2ycbcr``: [N, 1, H, W] in
    [16/255, 235/255]; a one-channel image is returned as it is."""
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor(Y_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True) + 16 / 255


class SRGAN(Translation):
    """SRGAN: the SRResNet generator and SRGAN's discriminator, trained on a content loss plus ``adversarial_weight``
    times the non-saturating GAN loss, after ``pretrain_steps`` iterations of the generator alone on the pixel MSE.

    Args:
        channels: channels of the images (linked from the data module).
        source_channels: channels of the low-resolution inputs (linked); ``None``: as ``channels``.
        image_size: side of the high-resolution images (linked from the data module's crops; 96 in the paper).
        scale: the upscaling factor (4): the sources are ``image_size / scale`` wide; it must match the data module's
            ``scale``.
        content_loss: ``"mse"`` (the pixel MSE on images in [-1, 1], SRGAN-MSE), ``"vgg22"`` or ``"vgg54"`` (the MSE of
            VGG19's relu2_2 or relu5_4 feature maps rescaled by 1/12.75, SRGAN-VGG22 and SRGAN-VGG54, the paper's
            best perceptual result). The pixel MSE is the default because it needs no pretrained weights.
        vgg_weights: VGG19's weights for a VGG content loss: ``"imagenet"`` (torchvision's, downloaded once into the
            torch hub cache) or a path to a saved ``torchvision.models.vgg19`` state dict; loaded when fitting starts.
        adversarial_weight: weight of the generator's adversarial loss (1e-3).
        pretrain_steps: iterations of the first stage, the generator alone on the pixel MSE (10^6 in the paper, the
            SRResNet-MSE SRGAN starts from); 0 starts with the adversarial stage.
        y_metrics: validation and test also log ``psnr_y`` and ``ssim_y``, on the luma (Y of YCbCr) of images with
            ``scale`` pixels cut from each border, as the paper reports them (the base's ``psnr``/``ssim`` are on all
            channels of the whole images).
        generator: the generator, ``factory(source_channels, channels, image_size, scale)``: by default SRResNet
            (64 features, 16 residual blocks).
        discriminator: the discriminator, ``factory(channels, image_size)``: by default SRGAN's.
        g_optimizer: generator optimizer (Adam 1e-4, betas (0.9, 0.999), in both stages).
        d_optimizer: discriminator optimizer (the same). The paper's drop to 1e-5 for the second half of the
            adversarial stage is a ``MultiStepLR`` scheduler in ``configs/srgan_div2k.yaml``.
        latent_dim: 0, the only value a translation model takes (it has no z); in the signature so that the command
            line, which reads the base's arguments through ``**kwargs``, does not fill in the base's default of 100.
        pack: 1, the only value a translation model takes (images are judged one by one); likewise.
        **kwargs: the rest of :class:`gans.translation.Translation`'s and :class:`gans.base.GAN`'s arguments
            (``num_fixed``, ``loss`` (``non_saturating``), ``n_critic`` (1), schedulers, ...).

    Raises:
        ConfigurationError: an unknown content loss, a negative weight or stage length, a scale that is not a power
            of two or does not divide ``image_size``, ``y_metrics`` on images too small for the border crop, or
            ``latent_dim`` other than 0 or ``pack`` other than 1.
    """

    def __init__(
        self,
        channels: int = 3,
        source_channels: int | None = None,
        image_size: int = 96,
        scale: int = 4,
        content_loss: Literal["mse", "vgg22", "vgg54"] = "mse",
        vgg_weights: str = "imagenet",
        adversarial_weight: float = 1e-3,
        pretrain_steps: int = 1_000_000,
        y_metrics: bool = False,
        generator: SuperResolutionGenerator = SRGAN_GENERATOR,
        discriminator: ImageDiscriminator = SRGAN_DISCRIMINATOR,
        g_optimizer: OptimizerCallable = SRGAN_ADAM,
        d_optimizer: OptimizerCallable = SRGAN_ADAM,
        latent_dim: int = 0,
        pack: int = 1,
        **kwargs: Any,
    ) -> None:
        if content_loss not in ("mse", *VGG_LAYERS):
            raise ConfigurationError(f"content_loss={content_loss!r}; expected 'mse', 'vgg22' or 'vgg54'")
        if adversarial_weight < 0:
            raise ConfigurationError(f"adversarial_weight={adversarial_weight} must be >= 0")
        check_at_least(0, pretrain_steps=pretrain_steps)
        upsampling_steps(scale)
        if image_size % scale:
            raise ConfigurationError(f"scale={scale} does not divide image_size={image_size}")
        if y_metrics and image_size <= 2 * scale:
            raise ConfigurationError(
                f"y_metrics=True cuts scale={scale} pixels from each border, which leaves nothing of "
                f"image_size={image_size}"
            )
        super().__init__(channels=channels, source_channels=source_channels, image_size=image_size,
                         g_optimizer=g_optimizer, d_optimizer=d_optimizer, latent_dim=latent_dim, pack=pack, **kwargs)
        self.scale, self.content_loss, self.adversarial_weight = scale, content_loss, adversarial_weight
        self.pretrain_steps, self.y_metrics = pretrain_steps, y_metrics
        self.generator = self.build_network(
            "generator", generator, self.source_channels, channels, image_size, scale
        )
        self.discriminator = self.build_discriminator(discriminator, channels, image_size)
        # Not a submodule: VGG19's 80 MB stay out of checkpoints and DDP (gans.perceptual).
        self.vgg = VGGLoss.srgan(VGG_LAYERS[content_loss], vgg_weights) if content_loss in VGG_LAYERS else None

    # ----------------------------------------------------------------------------------------------------------
    # The schedule: the pre-training stage, then the base's phases
    # ----------------------------------------------------------------------------------------------------------

    def phases(self) -> tuple[Phase, ...]:
        """``G_pre`` (the generator alone on the pixel MSE, completing the iterations) during the first
        ``pretrain_steps`` iterations, then the base's D and G phases."""
        stage = self.pretrain_steps
        adversarial = tuple(
            dataclasses.replace(p, start=p.start + stage, end=None if p.end is None else p.end + stage)
            for p in super().phases()
        )
        if not stage:
            return adversarial
        pretrain = Phase("G_pre", "g", "pretrain_loss", "content", fake="graph", iteration=True, end=stage)
        return (pretrain, *adversarial)

    # ----------------------------------------------------------------------------------------------------------
    # Losses
    # ----------------------------------------------------------------------------------------------------------

    def content(self, fake: Tensor, real: Tensor) -> Tensor:
        """The content loss of generated images against their targets, both [N, C, H, W] in [-1, 1]: the pixel MSE, or
        the MSE of VGG19 feature maps rescaled by 1/12.75 (``content_loss``)."""
        if self.vgg is None:
            return F.mse_loss(fake, real)
        return self.vgg(fake, real)

    def pretrain_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        """The first stage (SRResNet-MSE): the pixel MSE alone, whatever ``content_loss``."""
        return {"content": F.mse_loss(fake.images, real)}

    def g_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        """The perceptual loss (eq. 3): content + ``adversarial_weight`` * -log D(G(lr))."""
        content = self.content(fake.images, real)
        adversarial = self.g_adversarial(self.critic(fake))
        return {"g_loss": content + self.adversarial_weight * adversarial, "content": content.detach(),
                "g_adversarial": adversarial.detach()}

    def critic(self, x: Tensor | GeneratorOutput, discriminator: Any = None, source: Tensor | None = None,
               **cond: Tensor) -> Tensor:
        """SRGAN's discriminator judges high-resolution images alone: scores [N], whatever the source."""
        return GAN.critic(self, x, discriminator)

    # ----------------------------------------------------------------------------------------------------------
    # Sources, evaluation, and the checks of a run
    # ----------------------------------------------------------------------------------------------------------

    def random_source(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` random low-resolution sources, [n, source_channels, image_size / scale, image_size / scale] in [-1, 1]
        (shape checks and smoke tests only)."""
        side = self.image_size // self.scale
        return (torch.rand(n, self.source_channels, side, side, generator=generator) * 2 - 1).to(self.device)

    def show_source(self, source: Tensor) -> Tensor:
        """The low-resolution source upscaled ``scale`` times by bicubic interpolation for the grids: the baseline the
        output is to beat, next to it."""
        upscaled = F.interpolate(source.float(), scale_factor=self.scale, mode="bicubic", align_corners=False)
        return upscaled.clamp(-1.0, 1.0)

    def evaluation_terms(self, real: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """The base's L1, PSNR, SSIM and D's scores; with ``y_metrics``, PSNR and SSIM on the luma with ``scale``
        pixels cut from each border (the paper's measure) as ``psnr_y`` and ``ssim_y``."""
        terms = super().evaluation_terms(real, **cond)
        if self.y_metrics:
            # Sampled again (the base keeps its translations to itself): in eval mode SRResNet is deterministic.
            crop = (..., slice(self.scale, -self.scale), slice(self.scale, -self.scale))
            fake_y, real_y = luma(to_unit(self.sample(**cond)))[crop], luma(to_unit(real))[crop]
            terms["psnr_y"] = psnr(fake_y, real_y)
            terms["ssim_y"] = structural_similarity_index_measure(fake_y, real_y, data_range=1.0)
        return terms

    def setup(self, stage: str) -> None:
        super().setup(stage)
        source_shape = getattr(self.trainer.datamodule, "source_shape", None)
        if source_shape is not None and source_shape[-1] * self.scale != self.image_size:
            raise ConfigurationError(
                f"scale={self.scale}: the data module makes {source_shape[-1]}-pixel sources of {self.image_size}-pixel "
                f"images, an upscaling by {self.image_size / source_shape[-1]:g}; set the model's scale to the data "
                "module's"
            )
        if stage == "fit" and self.vgg is not None:
            self.vgg.build()  # missing weights stop the run now, not at the first adversarial step
