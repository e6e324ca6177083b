"""DCGAN (Radford et al. 2016): the DCGAN networks trained with the non-saturating loss."""

from lightning.pytorch.cli import OptimizerCallable

from gans.base import GAN
from gans.nets import ImageDiscriminator, ImageGenerator

#: Adam with the paper's learning rate 2e-4 and beta1 = 0.5 (0.9 oscillated and was unstable, section 4).
DCGAN_ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 2e-4, "betas": (0.5, 0.999)}}
#: The paper's generator: 64 channels in its last hidden block, doubling towards the 4x4 start.
DCGAN_GENERATOR = {"class_path": "gans.nets.DCGANGenerator", "init_args": {"features": 64}}
#: The paper's discriminator: 64 channels in its first block, BatchNorm after every block but the first.
DCGAN_DISCRIMINATOR = {
    "class_path": "gans.nets.DCGANDiscriminator",
    "init_args": {"features": 64, "norm": "batch", "minibatch": None},
}


class DCGAN(GAN):
    """DCGAN: strided (transposed) convolutions, BatchNorm in both networks, ReLU in G, LeakyReLU(0.2) in D, Tanh
    output, N(0, 0.02) initialisation, Adam(2e-4, betas=(0.5, 0.999)).

    Args:
        latent_dim: size of z (100 in the paper).
        channels: image channels.
        image_size: image side, a power of two >= 8 (64 in the paper).
        generator: the generator, ``factory(latent_dim, channels, image_size)``: by default
            ``gans.nets.DCGANGenerator`` (``features``: its width); any ``class_path`` with that call fits.
        discriminator: the discriminator, ``factory(channels * pack, image_size)``: by default
            ``gans.nets.DCGANDiscriminator`` (``features``; ``norm``: ``"batch"``, ``"layer"`` or ``None``;
            ``minibatch``: ``"stddev"``, ``"discrimination"`` or ``None``).
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
        generator: ImageGenerator = DCGAN_GENERATOR,
        discriminator: ImageDiscriminator = DCGAN_DISCRIMINATOR,
        loss: str = "non_saturating",
        g_optimizer: OptimizerCallable = DCGAN_ADAM,
        d_optimizer: OptimizerCallable = DCGAN_ADAM,
        **kwargs,
    ) -> None:
        super().__init__(latent_dim=latent_dim, loss=loss, g_optimizer=g_optimizer, d_optimizer=d_optimizer, **kwargs)
        self.generator = self.build_network("generator", generator, latent_dim, channels, image_size)
        self.discriminator = self.build_discriminator(discriminator, channels, image_size)
