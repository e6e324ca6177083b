"""StyleGAN (Karras et al. 2019, "A Style-Based Generator Architecture for Generative Adversarial Networks").

The networks (``gans.nets.StyleGANGenerator``/``StyleGANDiscriminator``) grow like ProGAN's through
``callbacks.ProgressiveGrowing``; training follows the official FFHQ setup (NVlabs/stylegan ``train.py``): the
non-saturating logistic loss with R1 (gamma 10) on every discriminator step, Adam(0.001, 0, 0.99, eps 1e-8) for both
networks, style-mixing regularization on 90% of the training batches, and the generator EMA with a half-life of
10k images (``callbacks.GeneratorEMA(half_life_kimg=10, rampup=None)``). Truncation is for sampling only.
"""

from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from gans.base import GAN
from gans.errors import ConfigurationError
from gans.nets import ImageDiscriminator, ImageGenerator
from gans.outputs import GeneratorOutput
from gans.progan import Progressive
from gans.style import StyleBased

#: The official optimizers: Adam with alpha = 0.001, beta1 = 0, beta2 = 0.99, epsilon = 1e-8 (ProGAN's).
STYLEGAN_ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3, "betas": (0.0, 0.99), "eps": 1e-8}}
#: The paper's generator: w of 512, 512 feature maps up to 32x32, halving above (fmap_base 8192, fmap_max 512).
STYLEGAN_GENERATOR = {"class_path": "gans.nets.StyleGANGenerator", "init_args": {"fmap_base": 8192, "fmap_max": 512}}
#: The official ``D_basic``: ProGAN's widths, minibatch standard deviation over groups of 4.
STYLEGAN_DISCRIMINATOR = {
    "class_path": "gans.nets.StyleGANDiscriminator",
    "init_args": {"fmap_base": 8192, "fmap_max": 512, "mbstd_group_size": 4},
}


class StyleGAN(StyleBased, Progressive, GAN):
    """StyleGAN: the style-based generator and StyleGAN's discriminator, grown progressively (see the module
    docstring), trained with the non-saturating loss and R1.

    Style mixing (section 3.1): for a ``style_mixing_prob`` share of the training batches (fakes for D and for G
    alike, as the official ``G_style``), a second latent is mapped and its ws replace the first's from a crossover
    layer drawn uniformly from ``1 .. L - 1``, ``L`` the layers of the current resolution. The tracked mean
    ``w_avg`` is updated with the first latents' batch mean at every training forward (decay 0.995).

    Sampling (``sample``, ``sample_output``) takes ``truncation_psi`` and ``truncation_cutoff`` (section 3.3 and the
    official ``Gs.run``: psi 0.7 on the first 8 layers for its figures; 1, no truncation, by default here) and
    ``noise_mode``: ``"const"`` (the default: each noise input's fixed image, reproducible samples), ``"random"``
    or ``"none"``. For the editing tools: ``mapping``, ``synthesis``, ``w_avg``, ``num_ws``
    (``gans.style.StyleBased``).

    Args:
        latent_dim: size of z (512 in the paper).
        channels: image channels.
        image_size: the target resolution, a power of two >= 4 (1024 for FFHQ).
        generator: ``factory(latent_dim, channels, image_size)`` making a style-based growing generator (with
            ``mapping``, ``synthesis``, ``num_ws`` and ``grow``, as ``gans.nets.StyleGANGenerator``, the default:
            ``w_dim``, ``mapping_layers``, ``mapping_lr_multiplier``, ``w_avg_beta``, ``fmap_base``, ``fmap_max``,
            ``fused_scale``, ``blur_filter``).
        discriminator: ``factory(channels * pack, image_size)`` making a growing discriminator
            (``gans.nets.StyleGANDiscriminator``).
        style_mixing_prob: share of training batches with style mixing (0.9 in the paper); 0 turns it off.
        loss: adversarial loss name (``non_saturating``, the official ``G_logistic_nonsaturating``/``D_logistic``).
        r1_gamma: weight of R1 on the reals (10 for FFHQ), on every discriminator step as in the official code.
        g_optimizer: generator optimizer (the mapping network's 100x lower rate is in its layers).
        d_optimizer: discriminator optimizer.
        **kwargs: the rest of :class:`gans.base.GAN`'s arguments (``reg_every`` makes R1 lazy, as StyleGAN2).

    Raises:
        ConfigurationError: ``style_mixing_prob`` outside [0, 1], or a generator that is not style-based and growing.
    """

    def __init__(
        self,
        latent_dim: int = 512,
        channels: int = 3,
        image_size: int = 1024,
        generator: ImageGenerator = STYLEGAN_GENERATOR,
        discriminator: ImageDiscriminator = STYLEGAN_DISCRIMINATOR,
        style_mixing_prob: float = 0.9,
        loss: str = "non_saturating",
        r1_gamma: float = 10.0,
        g_optimizer: OptimizerCallable = STYLEGAN_ADAM,
        d_optimizer: OptimizerCallable = STYLEGAN_ADAM,
        **kwargs,
    ) -> None:
        if not 0.0 <= style_mixing_prob <= 1.0:
            raise ConfigurationError(f"style_mixing_prob={style_mixing_prob} must be in [0, 1] (0.9 in the paper)")
        super().__init__(latent_dim=latent_dim, loss=loss, r1_gamma=r1_gamma, g_optimizer=g_optimizer,
                         d_optimizer=d_optimizer, **kwargs)
        self.generator = self.build_network("generator", generator, latent_dim, channels, image_size)
        self.discriminator = self.build_discriminator(discriminator, channels, image_size)
        self.check_growing()
        missing = [name for name in ("mapping", "synthesis", "num_ws") if not hasattr(self.generator, name)]
        if missing:
            raise ConfigurationError(
                f"generator={type(self.generator).__name__} is not style-based (no {', '.join(missing)}); StyleGAN "
                "needs a generator such as gans.nets.StyleGANGenerator"
            )
        self.style_mixing_prob = style_mixing_prob

    # ----------------------------------------------------------------------------------------------------------
    # Training: fakes with style mixing
    # ----------------------------------------------------------------------------------------------------------

    def generate(self, n: int, **cond: Tensor) -> GeneratorOutput:
        """A training batch of ``n`` fakes with random noise, style mixing (``style_mixing_prob``) and the update of
        ``w_avg``; differentiable w.r.t. the generator. ``ws``: the (mixed) per-layer latents."""
        return self.run_generator(self.sample_z(n))

    # ----------------------------------------------------------------------------------------------------------
    # Sampling and the editing tools' surface
    # ----------------------------------------------------------------------------------------------------------

    def decode(self, network: nn.Module, z: Tensor, **cond: Tensor) -> GeneratorOutput:
        """The generator's images and ws for latents z, with the truncation and noise mode :meth:`sample_output` was
        given while it runs (else none, and random noise)."""
        return GeneratorOutput.of(network(z, **self.sampling_controls()))
