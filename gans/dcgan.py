"""DCGAN (Radford et al. 2016): the DCGAN networks trained with the non-saturating loss."""

from lightning.pytorch.cli import OptimizerCallable

from gans.base import GAN
from gans.nets.dcgan import DCGANDiscriminator, DCGANGenerator

#: Adam with the paper's learning rate 2e-4 and beta1 = 0.5 (0.9 oscillated and was unstable, section 4).
DCGAN_ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 2e-4, "betas": (0.5, 0.999)}}


class DCGAN(GAN):
    """DCGAN: strided (transposed) convolutions, BatchNorm in both networks, ReLU in G, LeakyReLU(0.2) in D, Tanh
    output, N(0, 0.02) initialisation, Adam(2e-4, betas=(0.5, 0.999)).

    Args:
        latent_dim: size of z (100 in the paper).
        channels: image channels.
        image_size: image side, a power of two >= 8 (64 in the paper).
        g_features: generator width (channels of its last hidden block).
        d_features: discriminator width (channels of its first block).
        d_norm: discriminator normalisation: ``"batch"`` (the paper), ``"layer"`` or ``None``.
        d_minibatch: a minibatch layer at the end of the discriminator (``gans.nets.DCGANDiscriminator``):
            ``"stddev"`` (Karras et al.), ``"discrimination"`` (Salimans et al.) or ``None``.
        loss: adversarial loss name (``non_saturating`` in the paper).
        g_optimizer: generator optimizer.
        d_optimizer: discriminator optimizer.
        **kwargs: the rest of :class:`gans.base.GAN`'s arguments (``n_critic``, ``pack``, ``r1_gamma``, schedulers).
    """

    def __init__(
        self,
        latent_dim: int = 100,
        channels: int = 1,
        image_size: int = 32,
        g_features: int = 64,
        d_features: int = 64,
        d_norm: str | None = "batch",
        d_minibatch: str | None = None,
        loss: str = "non_saturating",
        g_optimizer: OptimizerCallable = DCGAN_ADAM,
        d_optimizer: OptimizerCallable = DCGAN_ADAM,
        **kwargs,
    ) -> None:
        super().__init__(latent_dim=latent_dim, loss=loss, g_optimizer=g_optimizer, d_optimizer=d_optimizer, **kwargs)
        self.generator = DCGANGenerator(latent_dim, channels, image_size, g_features)
        # PacGAN: the discriminator sees `pack` images stacked along the channels.
        self.discriminator = DCGANDiscriminator(
            channels * self.pack, image_size, d_features, norm=d_norm, minibatch=d_minibatch
        )
