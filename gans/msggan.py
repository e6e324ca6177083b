"""MSG-GAN (Karnewar and Wang 2020, "MSG-GAN: Multi-Scale Gradients for Generative Adversarial Networks"): one
generator whose outputs at every resolution feed the matching layers of one discriminator, trained at all
resolutions at once, an alternative to progressive growing without its schedule."""

from collections.abc import Callable, Sequence

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from gans.base import GAN
from gans.losses import RELATIVISTIC_LOSSES
from gans.nets import ImageDiscriminator, ImageGenerator
from gans.nets.equalized import downsample
from gans.nets.layers import pack as pack_samples
from gans.outputs import GeneratorOutput

#: The paper's Adam for both networks, learning rate 0.003 and betas (0, 0.99), also the defaults of the authors'
#: BMSG-GAN train.py: ProGAN's betas with a 3x higher rate, the same for every data set.
MSG_ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.003, "betas": (0.0, 0.99)}}
#: ProGAN's generator at its final size with a toRGB after every block; 512 feature maps at most.
MSG_GENERATOR = {"class_path": "gans.nets.MSGGenerator", "init_args": {"fmap_max": 512}}
#: ProGAN's discriminator taking an image at every block; the paper's phi_simple for MSG-ProGAN.
MSG_DISCRIMINATOR = {"class_path": "gans.nets.MSGDiscriminator", "init_args": {"fmap_max": 512, "combine": "simple"}}

Pyramid = Sequence[Tensor]


class MSGGAN(GAN):
    """The paper's MSG-ProGAN: ProGAN's networks (equalized learning rate, pixel norm in G, minibatch
    standard deviation in D, its widths) without growing; G's images at 4x4, 8x8, ..., S x S (``GeneratorOutput.scales``
    and ``images``) go to the D blocks of those resolutions through the combine function (``gans.nets.ScaleCombine``:
    phi_simple by default); real images are shown to D as their average-pooled pyramid, as in the authors' code.

    Loss: the relativistic average hinge loss (``relativistic_hinge``, the paper's for MSG-ProGAN), whose generator
    loss scores the real batch as well; any name of ``gans.losses.ADVERSARIAL_LOSSES`` works too. Adam(0.003, betas
    (0, 0.99)) for both networks, one D step per G step. The authors' code samples from an EMA of G with decay 0.999:
    ``callbacks.GeneratorEMA(decay=0.999)``, which the configs set.

    R1/R2 (``r1_gamma``, ``r2_gamma``, lazily with ``reg_every``; not in the MSG-ProGAN setup, MSG-StyleGAN uses R1)
    penalise the gradient with respect to the whole pyramid D sees, ``||grad_(x_4, ..., x_S) D||^2`` summed over the
    scales, each scale an input of its own (for the reals, the pooled images, not the full-size one). The authors'
    MSG-StyleGAN code differs: it differentiates with respect to the full-size real image, whose gradient also
    flows through its pooled copies.

    Args:
        latent_dim: size of z (512 in the paper).
        channels: image channels.
        image_size: the finest resolution, a power of two >= 4; the pyramid is 4, 8, ..., ``image_size``.
        generator: ``factory(latent_dim, channels, image_size)`` returning the images at every resolution, a tuple
            coarse to fine: ``gans.nets.MSGGenerator`` by default (``fmap_max``, ``fmap_base``).
        discriminator: ``factory(channels * pack, image_size)`` scoring such a tuple: ``gans.nets.MSGDiscriminator``
            by default (``fmap_max``, ``fmap_base``, ``combine``: ``"simple"``, ``"lin_cat"`` or ``"cat_lin"``).
        loss: ``relativistic_hinge`` or a name of ``gans.losses.ADVERSARIAL_LOSSES``.
        g_optimizer: generator optimizer.
        d_optimizer: discriminator optimizer.
        **kwargs: the rest of :class:`gans.base.GAN`'s arguments (``pack`` packs every scale alike, ``r1_gamma``).
    """

    def __init__(
        self,
        latent_dim: int = 512,
        channels: int = 3,
        image_size: int = 128,
        generator: ImageGenerator = MSG_GENERATOR,
        discriminator: ImageDiscriminator = MSG_DISCRIMINATOR,
        loss: str = "relativistic_hinge",
        g_optimizer: OptimizerCallable = MSG_ADAM,
        d_optimizer: OptimizerCallable = MSG_ADAM,
        **kwargs,
    ) -> None:
        relativistic = loss in RELATIVISTIC_LOSSES
        # The base knows only losses whose generator part takes D's fake scores alone: it gets the hinge pair, replaced
        # below (the saved hyperparameters keep this class's own `loss`).
        super().__init__(latent_dim=latent_dim, loss="hinge" if relativistic else loss, g_optimizer=g_optimizer,
                         d_optimizer=d_optimizer, **kwargs)
        #: Whether the loss is relativistic: G's loss then scores the real batch too.
        self.relativistic = relativistic
        if relativistic:
            self.d_adversarial, self.g_adversarial = RELATIVISTIC_LOSSES[loss]
        self.generator = self.build_network("generator", generator, latent_dim, channels, image_size)
        self.discriminator = self.build_discriminator(discriminator, channels, image_size)

    def decode(self, network: nn.Module, z: Tensor, **cond: Tensor) -> GeneratorOutput:
        """G's images at every resolution: ``images`` the finest [N, C, S, S], ``scales`` the others, coarse to fine."""
        *scales, images = network(z)
        return GeneratorOutput(images=images, scales=tuple(scales))

    def pyramid(self, x: Tensor | GeneratorOutput | Pyramid) -> tuple[Tensor, ...]:
        """What D sees of ``x``, coarse to fine: a generator's output at all its scales, a tuple as it is, and a batch
        of images [N, C, S, S] (real ones) with its 2x2-average-pooled copies down to 4x4, [N, C, 4, 4] first."""
        if isinstance(x, GeneratorOutput):
            return (*x.scales, x.images)
        if not isinstance(x, Tensor):
            return tuple(x)
        levels = [x]
        while levels[-1].shape[-1] > 4:
            levels.append(downsample(levels[-1]))
        return tuple(reversed(levels))

    def critic(
        self, x: Tensor | GeneratorOutput | Pyramid, discriminator: Callable | None = None, **cond: Tensor
    ) -> Tensor:
        """D's scores [N / pack] of the pyramid of ``x`` (``pyramid``), every scale packed alike."""
        return (discriminator or self.discriminator)([pack_samples(level, self.pack) for level in self.pyramid(x)])

    def _scored(self, x: Tensor | GeneratorOutput, leaf: bool, **cond: Tensor) -> tuple[Tensor | None, Tensor]:
        """D's scores of ``x``'s pyramid, detached from G, and with ``leaf`` the input an R1/R2 penalty differentiates:
        the whole pyramid as one tensor [N, sum of C * r * r], which D reads through views, so that one backward gives
        the gradient at every scale."""
        levels = self.pyramid(x)
        if not leaf:
            return None, self.critic(tuple(level.detach() for level in levels), **cond)
        joined = torch.cat([level.detach().flatten(1) for level in levels], dim=1).requires_grad_(True)
        parts = joined.split([level[0].numel() for level in levels], dim=1)
        return joined, self.critic(tuple(p.view_as(level) for p, level in zip(parts, levels, strict=True)), **cond)

    def d_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        """The base's discriminator objective on the real pyramid and G's (not a pyramid pooled from G's finest)."""
        regularize = self.reg_every == 1
        real_leaf, d_real = self._scored(real, regularize and self.r1_gamma > 0, **cond)
        fake_leaf, d_fake = self._scored(fake, regularize and self.r2_gamma > 0, **cond)
        terms = {"d_loss": self.d_adversarial(d_real, d_fake), "d_real": d_real.detach().mean(),
                 "d_fake": d_fake.detach().mean(), "d_real_sign": d_real.detach().sign().mean()}
        if regularize:
            terms = self._add_penalties(terms, "d_loss", real_leaf, fake_leaf, d_real, d_fake, gain=1)
        return terms

    def d_reg_loss(self, real: Tensor, fake: GeneratorOutput | None, **cond: Tensor) -> dict[str, Tensor]:
        """The lazy ``D_reg`` phase on the pyramids: R1/R2 alone, times ``reg_every``."""
        real_leaf, d_real = self._scored(real, True, **cond) if self.r1_gamma > 0 else (None, None)
        fake_leaf, d_fake = self._scored(fake, True, **cond) if fake is not None else (None, None)
        terms = {"d_reg": torch.zeros((), device=real.device)}
        return self._add_penalties(terms, "d_reg", real_leaf, fake_leaf, d_real, d_fake, gain=self.reg_every)

    def g_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        """The generator objective on G's pyramid; a relativistic loss compares it with D's scores of the real batch,
        constants for G (D is frozen in this phase)."""
        d_fake = self.critic(fake, **cond)
        if not self.relativistic:
            return {"g_loss": self.g_adversarial(d_fake)}
        with torch.no_grad():
            d_real = self.critic(real, **cond)
        return {"g_loss": self.g_adversarial(d_real, d_fake)}

    def evaluation_terms(self, real: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """The base's validation terms with D scoring G's own pyramid of each fresh sample."""
        n = real.shape[0] // self.pack * self.pack  # a last, smaller batch is cut to whole packs
        real, cond = real[:n], {name: c[:n] for name, c in cond.items()}
        d_real, d_fake = self.critic(real, **cond), self.critic(self.sample_output(n, **cond), **cond)
        return {"d_loss": self.d_adversarial(d_real, d_fake), "d_real": d_real.mean(), "d_fake": d_fake.mean()}
