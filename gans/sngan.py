"""SNGAN (Miyato et al. 2018): spectral normalisation of every discriminator layer, with the hinge loss and the
ResNet networks of the paper's CIFAR-10 experiments."""

from lightning.pytorch.cli import OptimizerCallable

from gans.base import GAN
from gans.nets import ImageDiscriminator, ImageGenerator

#: The paper's setting for the ResNet with hinge loss: alpha = 2e-4, beta1 = 0, beta2 = 0.9, n_dis = 5.
SNGAN_ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 2e-4, "betas": (0.0, 0.9)}}
#: Table 4's CIFAR-10 ResNets: a 256-channel generator, a 128-channel spectrally normalised discriminator.
SNGAN_GENERATOR = {"class_path": "gans.nets.ResNetGenerator", "init_args": {"features": 256}}
SNGAN_DISCRIMINATOR = {"class_path": "gans.nets.ResNetDiscriminator", "init_args": {"features": 128}}


class SNGAN(GAN):
    """The ResNet generator (256 channels) and spectrally normalised ResNet discriminator (128 channels) of the
    paper's Table 4 for 32x32 images; hinge loss; 5 discriminator steps per generator step; Adam(2e-4, 0, 0.9).
    Spectral normalisation is ``torch.nn.utils.parametrizations.spectral_norm``: one power iteration per
    training forward pass, the vector u persisted between steps, as in the paper.

    Args:
        latent_dim: size of z (128).
        channels: image channels.
        image_size: image side, a power of two >= 8 (32 in the paper).
        generator: the generator, ``factory(latent_dim, channels, image_size)``: ``gans.nets.ResNetGenerator``
            with 256 channels by default.
        discriminator: the discriminator, ``factory(channels * pack, image_size)``:
            ``gans.nets.ResNetDiscriminator`` (spectrally normalised) with 128 channels by default.
        loss: adversarial loss name (``hinge``).
        n_critic: discriminator steps per generator step (5).
        g_optimizer: generator optimizer.
        d_optimizer: discriminator optimizer.
        **kwargs: the rest of :class:`gans.base.GAN`'s arguments (``pack``, ``r1_gamma``, schedulers).
    """

    def __init__(
        self,
        latent_dim: int = 128,
        channels: int = 3,
        image_size: int = 32,
        generator: ImageGenerator = SNGAN_GENERATOR,
        discriminator: ImageDiscriminator = SNGAN_DISCRIMINATOR,
        loss: str = "hinge",
        n_critic: int = 5,
        g_optimizer: OptimizerCallable = SNGAN_ADAM,
        d_optimizer: OptimizerCallable = SNGAN_ADAM,
        **kwargs,
    ) -> None:
        super().__init__(
            latent_dim=latent_dim, loss=loss, n_critic=n_critic, g_optimizer=g_optimizer, d_optimizer=d_optimizer,
            **kwargs,
        )
        self.generator = self.build_network("generator", generator, latent_dim, channels, image_size)
        self.discriminator = self.build_discriminator(discriminator, channels, image_size)
