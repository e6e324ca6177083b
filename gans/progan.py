"""ProGAN (Karras et al. 2018, "Progressive Growing of GANs for Improved Quality, Stability, and Variation").

The networks (``gans.nets.ProGANGenerator``/``ProGANDiscriminator``) grow from 4x4 to the target resolution; the
schedule of resolutions and fade-in weights comes from ``callbacks.ProgressiveGrowing``, which calls
:meth:`ProGAN.set_growth` before every training batch. Without the callback the model trains at its full resolution
(a ProGAN-architecture WGAN-GP).
"""

from collections.abc import Callable
from functools import partial

from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from gans.errors import ConfigurationError
from gans.losses import DLoss, drift_penalty
from gans.nets import ImageDiscriminator, ImageGenerator
from gans.nets.equalized import downsample, resize_to, upsample
from gans.outputs import GeneratorOutput
from gans.wgan_gp import WGANGP

#: Appendix A.1: Adam with alpha = 0.001, beta1 = 0, beta2 = 0.99, epsilon = 1e-8.
PROGAN_ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3, "betas": (0.0, 0.99), "eps": 1e-8}}
#: Table 2's generator: 512 feature maps up to 32x32, halving above (the official fmap_base 8192, fmap_max 512).
PROGAN_GENERATOR = {"class_path": "gans.nets.ProGANGenerator", "init_args": {"fmap_base": 8192, "fmap_max": 512}}
#: Table 2's discriminator, with the minibatch standard deviation over groups of 4 (the official code's).
PROGAN_DISCRIMINATOR = {
    "class_path": "gans.nets.ProGANDiscriminator",
    "init_args": {"fmap_base": 8192, "fmap_max": 512, "mbstd_group_size": 4},
}


def fade_reals(real: Tensor, resolution: int, alpha: float) -> Tensor:
    """Real images [N, C, S, S] as ProGAN's discriminator sees them at ``resolution`` while its newest block fades in
    with weight ``alpha`` (section 3 of the paper, the official ``process_reals``): 2x2-mean downsampled to
    ``resolution``, then blended with their own upsampled half-resolution version,
    ``lerp(upsample(downsample(x)), x, alpha)``, so real and fake images make the same transition. [N, C, r, r]."""
    real = resize_to(real, resolution)
    if alpha < 1.0 and resolution > 4:
        real = upsample(downsample(real)).lerp(real, alpha)  # exactly the half-resolution version at alpha 0
    return real


def _with_drift(d_adversarial: DLoss, epsilon: float, d_real: Tensor, d_fake: Tensor) -> Tensor:
    return d_adversarial(d_real, d_fake) + epsilon * drift_penalty(d_real)


class Progressive:
    """What a progressively grown GAN adds to ``gans.base.GAN`` (ProGAN, StyleGAN), mixed in before its base: the
    growth surface ``callbacks.ProgressiveGrowing`` drives (``resolutions``, ``set_growth``), a critic that follows the
    generator's growth state, and real images brought to the current resolution and fade (:func:`fade_reals`) in
    ``unpack``, so the discriminator, its penalties and validation all see the current stage. The networks must have
    ``grow(resolution, alpha)``, ``resolution``, ``alpha`` and ``resolutions`` (``gans.nets.progan.Growing``)."""

    def check_growing(self) -> None:
        """Refuses networks that cannot grow; the variant's ``__init__`` calls it once they are built.

        Raises:
            ConfigurationError: the generator or the discriminator has no ``grow``.
        """
        for name in ("generator", "discriminator"):
            network = getattr(self, name)
            if not callable(getattr(network, "grow", None)):
                raise ConfigurationError(
                    f"{name}={type(network).__name__} cannot grow (no grow(resolution, alpha)); "
                    f"{type(self).__name__} needs progressive networks such as its defaults"
                )

    @property
    def resolutions(self) -> tuple[int, ...]:
        """The resolutions the model grows through, 4 to ``image_size``."""
        return self.generator.resolutions

    @property
    def resolution(self) -> int:
        """The current resolution of the generator and the critic."""
        return self.generator.resolution

    @property
    def alpha(self) -> float:
        """The fade-in weight of the newest block, in [0, 1] (1: stable)."""
        return self.generator.alpha

    def set_growth(self, resolution: int, alpha: float) -> None:
        """Runs the generator, its EMA and the critic at ``resolution``, the newest block weighted ``alpha``."""
        for network in (self.generator, self.generator_ema, self.discriminator):
            if network is not None:
                network.grow(resolution, alpha)

    def critic(
        self, x: Tensor | GeneratorOutput, discriminator: Callable | None = None, **cond: Tensor
    ) -> Tensor:
        """The critic's scores at the generator's resolution and alpha (the critic follows the generator, also in a
        model whose generator alone was loaded, from an export)."""
        if (self.discriminator.resolution, self.discriminator.alpha) != (self.resolution, self.alpha):
            self.discriminator.grow(self.resolution, self.alpha)
        return super().critic(x, discriminator, **cond)

    def unpack(self, batch) -> tuple[Tensor, dict[str, Tensor]]:
        """The batch's real images at the current resolution and fade (:func:`fade_reals`), [N, C, r, r]."""
        real, cond = super().unpack(batch)
        return fade_reals(real, self.resolution, self.alpha), cond


class ProGAN(Progressive, WGANGP):
    """ProGAN: the progressively grown networks trained with WGAN-GP (lambda 10, one critic step per generator step)
    plus the epsilon-drift term ``0.001 * E[D(x)^2]`` that keeps the critic's outputs near zero (appendix A.1),
    Adam(0.001, betas=(0, 0.99)), latents of 512 dimensions. The paper's generator EMA (decay 0.999) is
    ``callbacks.GeneratorEMA(decay=0.999)``, as its configs set.

    Real images are brought to the current resolution and faded like the fakes (:func:`fade_reals`) in
    :meth:`unpack`, so the discriminator, its penalty and validation all see the current stage.

    Args:
        latent_dim: size of z (512 in the paper).
        channels: image channels.
        image_size: the target resolution, a power of two >= 4 (1024 for CelebA-HQ in the paper).
        generator: ``factory(latent_dim, channels, image_size)`` making a growing generator (one with ``grow``,
            ``resolution`` and ``alpha``, as ``gans.nets.ProGANGenerator``, the default).
        discriminator: ``factory(channels * pack, image_size)`` making a growing critic.
        n_critic: critic steps per generator step (1 in the paper).
        drift: epsilon of the drift term (0.001); 0 leaves it out.
        g_optimizer: generator optimizer.
        d_optimizer: critic optimizer.
        **kwargs: the rest of :class:`gans.wgan_gp.WGANGP`'s arguments (``gp_weight``, ``loss``, ...).

    Raises:
        ConfigurationError: ``drift`` below 0, or a network that cannot grow.
    """

    def __init__(
        self,
        latent_dim: int = 512,
        channels: int = 3,
        image_size: int = 1024,
        generator: ImageGenerator = PROGAN_GENERATOR,
        discriminator: ImageDiscriminator = PROGAN_DISCRIMINATOR,
        n_critic: int = 1,
        drift: float = 0.001,
        g_optimizer: OptimizerCallable = PROGAN_ADAM,
        d_optimizer: OptimizerCallable = PROGAN_ADAM,
        **kwargs,
    ) -> None:
        if drift < 0:
            raise ConfigurationError(f"drift={drift} must be >= 0 (0.001 in the paper)")
        super().__init__(
            latent_dim=latent_dim, channels=channels, image_size=image_size, generator=generator,
            discriminator=discriminator, n_critic=n_critic, g_optimizer=g_optimizer, d_optimizer=d_optimizer, **kwargs,
        )
        self.check_growing()
        self.drift = drift
        if drift > 0:
            self.d_adversarial = partial(_with_drift, self.d_adversarial, drift)
