"""SPADE / GauGAN (Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive Normalization"): images from
label maps by a generator whose normalizations take their scale and bias from the label map
(:class:`gans.nets.SPADEGenerator`), judged by two spectrally normalized PatchGANs at two scales, with the hinge loss,
the discriminator feature-matching loss and the VGG perceptual loss of NVlabs/SPADE (``models/pix2pix_model.py``).

The model is named after the paper's demo, GauGAN, so that :class:`gans.nets.SPADE` stays the name of the
normalization layer, as in the paper and the reference code.
"""


from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from gans.errors import ConfigurationError, check_at_least
from gans.losses import feature_matching
from gans.nets import ImageDiscriminator, TranslationGenerator
from gans.outputs import GeneratorOutput
from gans.perceptual import VGGLoss
from gans.translation import Translation

#: The reference's ``no_TTUR=False`` rates (lr / 2 for G and lr * 2 for D from its lr of 2e-4) and its Adam betas
#: (the options' beta1 0, beta2 0.9; the paper's text says 0.999).
SPADE_G_ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-4, "betas": (0.0, 0.9)}}
SPADE_D_ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 4e-4, "betas": (0.0, 0.9)}}
SPADE_GENERATOR = {"class_path": "gans.nets.SPADEGenerator"}
#: The reference's ``multiscale`` discriminator: 2 PatchGANs, ``n_layers_D`` 4 (3 strided convolutions here, see
#: :class:`gans.nets.patchgan.PatchDiscriminator`), ``spectralinstance`` normalization, padding 2.
SPADE_DISCRIMINATOR = {
    "class_path": "gans.nets.MultiscaleDiscriminator",
    "init_args": {"num_d": 2, "n_layers": 3, "norm": "instance", "padding": 2, "spectral_norm": True, "init": "xavier"},
}


def label_colours(n: int) -> Tensor:
    """A distinct colour per class, uint8 [n, 3]: the reference's ``labelcolormap`` for any count (the PASCAL VOC
    scheme: the bits of class + 1 spread over the high bits of r, g and b, so that class 0 is not black)."""
    ids = torch.arange(1, n + 1)
    colours = torch.zeros(n, 3, dtype=torch.long)
    for j in range(7):
        for c in range(3):
            colours[:, c] |= ((ids >> c) & 1) << (7 - j)
        ids = ids >> 3
    return colours.to(torch.uint8)


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """Class indices int64 [N, 1, H, W] to a one-hot float map [N, num_classes, H, W].

    Raises:
        ConfigurationError: a class outside ``0 .. num_classes-1`` (a data module's classes that the model was not
            built for).
    """
    # Not on the meta device (shapes only: the configs' tests size the networks so), where values cannot be read.
    low, high = (0, 0) if labels.is_meta else (int(labels.min()), int(labels.max()))
    if low < 0 or high >= num_classes:
        raise ConfigurationError(
            f"num_classes={num_classes}: the label map holds class {low if low < 0 else high}, outside the model's "
            f"0..{num_classes - 1}; set the model's num_classes to the data module's", "num_classes",
        )
    one_hot = torch.zeros(labels.shape[0], num_classes, *labels.shape[2:], device=labels.device)
    return one_hot.scatter_(1, labels.long(), 1.0)  # F.one_hot would read the values on the meta device too


class GauGAN(Translation):
    """SPADE's semantic image synthesis: a label map (int64 class indices [N, 1, H, W], one-hot encoded here) to an
    image. G is the SPADE generator (no image encoder: the output is a function of the label map); D is a multi-scale
    PatchGAN shown the one-hot map and the image side by side (the real and the fake pair in one batch, as the
    reference does). The losses are the reference's: per scale the hinge loss averaged over the scales; for G also
    ``lambda_feat`` times the feature-matching loss (the L1 distance of D's intermediate activations on the fake and the
    real pair, summed over layers, averaged over the discriminators) and ``lambda_vgg`` times the VGG19 perceptual loss
    (relu1_1 .. relu5_1 weighted 1/32 .. 1, L1). Adam with the two-time-scale rates 1e-4 (G) and 4e-4 (D), betas
    (0, 0.9).

    A plain image source works too: fed to the networks as it is (an image as a continuous "label map"), or, with
    ``threshold``, cut into a two-class label map. The reference's "don't care" class is a class like any other here
    (count it in ``num_classes``: ADE20K's files hold 150 classes and "unknown" as 0, 151 classes); its instance-edge
    channel is not built (instance maps in the batches are ignored).

    Args:
        channels: channels of the target images.
        source_channels: channels of the source as the data module gives it (linked from its ``source_shape``: the
            class count for label maps); ``None``: ``num_classes``, else ``channels``.
        image_size: side of the images.
        num_classes: classes of a label-map source (35 for cityscapes' label ids, 151 for ADE20K's); ``None``: the
            source is an image. Integer sources are one-hot encoded whatever it says; it sets what
            ``random_source`` draws and how grids colour the sources.
        threshold: an image source becomes a two-class label map, class 1 where its mean over the channels (in
            [-1, 1]) is above ``threshold`` (0 splits the silhouettes set's black outlines from their white ground);
            ``None``: an image source is used as it is.
        generator: ``factory(semantic_channels, channels, image_size)``: :class:`gans.nets.SPADEGenerator` (``ngf``
            64, ``num_upsampling_layers="normal"``, batch-normalized SPADE) by default.
        discriminator: ``factory(semantic_channels + channels, image_size)`` with a ``features(x)`` method returning
            every block's output per scale: :class:`gans.nets.MultiscaleDiscriminator` with SPADE's
            settings by default.
        lambda_feat: weight of the feature-matching loss (10); 0 turns it off.
        lambda_vgg: weight of the VGG perceptual loss (10); 0 turns it off (then no VGG weights are needed).
        vgg_weights: the VGG19 weights (:class:`gans.perceptual.VGGFeatures`): ``"imagenet"`` (torchvision's, from
            its cache or downloaded), a path to a saved state dict, or ``None`` for random weights (tests only). Loaded
            when fitting starts, so that a missing file stops the run before its first step.
        loss: the adversarial loss, applied at every scale (``hinge``).
        g_optimizer: generator optimizer (Adam 1e-4, betas (0, 0.9)).
        d_optimizer: discriminator optimizer (Adam 4e-4, betas (0, 0.9)).
        **kwargs: the rest of :class:`gans.translation.Translation`'s arguments (``num_fixed``, the schedulers, ...).

    Raises:
        ConfigurationError: ``num_classes`` below 2 or with ``threshold``, ``source_channels`` other than
            ``num_classes``, a negative weight, or R1/R2 penalties (not part of this loss).
    """

    def __init__(
        self,
        channels: int = 3,
        source_channels: int | None = None,
        image_size: int = 256,
        num_classes: int | None = None,
        threshold: float | None = None,
        generator: TranslationGenerator = SPADE_GENERATOR,
        discriminator: ImageDiscriminator = SPADE_DISCRIMINATOR,
        lambda_feat: float = 10.0,
        lambda_vgg: float = 10.0,
        vgg_weights: str | None = "imagenet",
        loss: str = "hinge",
        g_optimizer: OptimizerCallable = SPADE_G_ADAM,
        d_optimizer: OptimizerCallable = SPADE_D_ADAM,
        **kwargs: Any,
    ) -> None:
        if num_classes is not None:
            check_at_least(2, num_classes=num_classes)
            if threshold is not None:
                raise ConfigurationError(
                    f"threshold={threshold} cuts an image source into two classes; num_classes={num_classes} says the "
                    "source is a label map already: set one of them"
                )
            if source_channels is not None and source_channels != num_classes:
                raise ConfigurationError(
                    f"source_channels={source_channels}: a label map of num_classes={num_classes} classes is seen as "
                    f"{num_classes} one-hot channels; set both to the data module's class count"
                )
            source_channels = num_classes
        for name, value in (("lambda_feat", lambda_feat), ("lambda_vgg", lambda_vgg)):
            if value < 0:
                raise ConfigurationError(f"{name}={value} must be >= 0 (0 turns the term off)")
        for name in ("r1_gamma", "r2_gamma"):
            if kwargs.get(name, 0):
                raise ConfigurationError(
                    f"{name}={kwargs[name]}: GauGAN's discriminator loss is SPADE's per-scale loss, without the R1/R2 "
                    "penalties"
                )
        super().__init__(
            channels=channels, source_channels=source_channels, image_size=image_size, loss=loss,
            g_optimizer=g_optimizer, d_optimizer=d_optimizer, **kwargs,
        )
        self.num_classes, self.threshold = num_classes, threshold
        self.lambda_feat, self.lambda_vgg = lambda_feat, lambda_vgg
        #: Channels of the map the networks see: one-hot classes, two thresholded classes, or the image's channels.
        self.semantic_channels = 2 if threshold is not None else self.source_channels
        self.generator = self.build_network("generator", generator, self.semantic_channels, channels, image_size)
        self.discriminator = self.build_discriminator(discriminator, self.semantic_channels + channels, image_size)
        # Not a module: the frozen VGG stays out of checkpoints and of DDP.
        self.vgg = VGGLoss.pix2pixhd(vgg_weights) if lambda_vgg > 0 else None

    # ----------------------------------------------------------------------------------------------------------
    # The label map
    # ----------------------------------------------------------------------------------------------------------

    def semantics(self, source: Tensor) -> Tensor:
        """The source as the networks see it, float [N, semantic_channels, H, W]: a label map one-hot, an image
        thresholded into two one-hot classes (``threshold``) or as it is."""
        if not source.is_floating_point():
            return one_hot(source, self.semantic_channels)
        if self.threshold is not None:
            return one_hot((source.mean(dim=1, keepdim=True) > self.threshold).long(), 2)
        return source

    def show_condition(self, source: Tensor) -> Tensor:
        """The one-hot map D sees next to an image (:meth:`semantics`)."""
        return self.semantics(source)

    def show_source(self, source: Tensor) -> Tensor:
        """A label map in the colours of :func:`label_colours`, in [-1, 1] [N, 3, H, W]; an image source as it is."""
        if source.is_floating_point():
            return source
        palette = label_colours(self.semantic_channels).to(source.device).float() / 127.5 - 1  # [K, 3]
        return palette[source[:, 0]].permute(0, 3, 1, 2)

    def random_source(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` random label maps int64 [n, 1, image_size, image_size] of independent uniform classes with
        ``num_classes``; random images otherwise (:meth:`Translation.random_source`)."""
        if self.num_classes is None:
            return super().random_source(n, generator)
        size = (n, 1, self.image_size, self.image_size)
        return torch.randint(self.num_classes, size, generator=generator).to(self.device)

    # ----------------------------------------------------------------------------------------------------------
    # Networks and losses
    # ----------------------------------------------------------------------------------------------------------

    def decode(self, network: nn.Module, z: Tensor, source: Tensor, **cond: Tensor) -> GeneratorOutput:
        """The generator's image for the label map ``source`` (``z`` is empty)."""
        return GeneratorOutput.of(network(self.semantics(source)))

    def discriminate(self, images: Tensor, source: Tensor, discriminator: Any = None) -> list[list[Tensor]]:
        """D's per-scale block outputs (the last the score map) on ``cat[one-hot(source), images]``."""
        network = discriminator or self.discriminator
        return network.features(torch.cat([self.semantics(source), images], dim=1))

    def critic(self, x: Tensor | GeneratorOutput, discriminator: Any = None, source: Tensor | None = None,
               **cond: Tensor) -> Tensor:
        """One score per image, [N]: its patch scores averaged per scale, then over the scales."""
        if source is None:
            raise TypeError(f"{type(self).__name__}.critic needs the label maps of the images (source=...)")
        scales = self.discriminate(GeneratorOutput.images_of(x), source, discriminator)
        return torch.stack([layers[-1].flatten(1).mean(dim=1) for layers in scales]).mean(dim=0)

    def _fake_and_real(self, fake: Tensor, real: Tensor, source: Tensor) -> tuple[list[list[Tensor]], ...]:
        # One forward pass over the fake and the real pairs (the reference's ``discriminate``): one spectral-norm
        # power iteration per step, as there.
        scales = self.discriminate(torch.cat([fake, real]), torch.cat([source, source]))
        n = len(fake)
        return [[t[:n] for t in layers] for layers in scales], [[t[n:] for t in layers] for layers in scales]

    def d_loss(self, real: Tensor, fake: GeneratorOutput, source: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """The adversarial loss of D at every scale, averaged over the scales."""
        d_fake, d_real = self._fake_and_real(fake.images.detach(), real, source)
        losses = [self.d_adversarial(r[-1], f[-1]) for r, f in zip(d_real, d_fake, strict=True)]
        return {
            "d_loss": torch.stack(losses).mean(),
            "d_real": torch.stack([r[-1].detach().mean() for r in d_real]).mean(),
            "d_fake": torch.stack([f[-1].detach().mean() for f in d_fake]).mean(),
        }

    def evaluation_d_terms(self, real: Tensor, fake: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """D's terms on held-out pairs as in training (:meth:`d_loss`: the loss of each scale, not of all scales'
        scores pooled), so that ``val/d_loss`` compares with ``train/d_loss``."""
        return self.d_loss(real, GeneratorOutput(images=fake), **cond)

    def g_loss(self, real: Tensor, fake: GeneratorOutput, source: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """G's adversarial loss averaged over the scales, plus ``lambda_feat`` times feature matching and
        ``lambda_vgg`` times the VGG loss against the real image of the same label map."""
        d_fake, d_real = self._fake_and_real(fake.images, real, source)
        adversarial = torch.stack([self.g_adversarial(f[-1]) for f in d_fake]).mean()
        terms = {"g_adversarial": adversarial}
        if self.lambda_feat > 0:
            terms["g_feature_matching"] = feature_matching(d_real, d_fake)
        if self.vgg is not None:
            terms["g_vgg"] = self.vgg(fake.images, real)
        total = adversarial + self.lambda_feat * terms.get("g_feature_matching", 0) + self.lambda_vgg * terms.get(
            "g_vgg", 0
        )
        return {"g_loss": total, **{name: value.detach() for name, value in terms.items()}}

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.vgg is not None:
            self.vgg.build()  # missing VGG weights stop the run now, not at its first generator step
