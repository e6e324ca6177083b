"""The original GAN (Goodfellow et al. 2014): fully connected networks, a maxout discriminator with dropout."""

from lightning.pytorch.cli import OptimizerCallable

from gans.base import GAN
from gans.nets import VectorDiscriminator, VectorGenerator

#: The paper's pylearn2 setup: SGD with learning rate 0.1 and momentum 0.5 (raised to 0.7 over training there, and
#: the learning rate divided by 1.000004 after every batch: the configs add that decay as a scheduler).
GOODFELLOW_SGD = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1, "momentum": 0.5}}
#: The paper's MNIST generator: two ReLU layers of 1200 units, no BatchNorm, Tanh output.
GOODFELLOW_GENERATOR = {
    "class_path": "gans.nets.MLPGenerator",
    "init_args": {"hidden": (1200, 1200), "batch_norm": False, "tanh": True},
}
#: Its discriminator: two maxout layers of 240 units with 5 pieces, dropout 0.2 on the input and 0.5 on the units.
GOODFELLOW_DISCRIMINATOR = {
    "class_path": "gans.nets.MLPDiscriminator",
    "init_args": {
        "hidden": (240, 240), "pieces": 5, "input_dropout": 0.2, "dropout": 0.5, "spectral_norm": False,
        "minibatch": None,
    },
}


class MLPGAN(GAN):
    """GAN with the MLP networks of the paper's MNIST model: G has two ReLU layers of 1200 units, D two maxout
    layers of 240 units with 5 pieces and dropout. The paper's value function is ``loss="minimax"``; the paper
    itself recommends the non-saturating generator loss for practice (the default). ``n_critic`` is the paper's k
    (1 in its experiments). The same class trains on points (``data_shape: [2]``, the generator's ``tanh: false``)
    for the 2-D mixtures of ``datamodules.GaussianMixtureDataModule``.

    Args:
        latent_dim: size of z (100 in the paper).
        data_shape: shape of one sample, ``[C, H, W]`` or ``[d]``.
        generator: the generator, ``factory(latent_dim, data_shape)``: ``gans.nets.MLPGenerator`` by default
            (``hidden``: widths; ``batch_norm``: BatchNorm in the hidden layers, off in the paper; ``tanh``: Tanh
            output for images in [-1, 1], off for unbounded points).
        discriminator: the discriminator, ``factory(packed_shape)`` (``data_shape`` with its first entry times
            ``pack``): ``gans.nets.MLPDiscriminator`` by default (``hidden``; ``pieces``: linear pieces per maxout
            unit, 1 gives LeakyReLU units; ``input_dropout``, 0.2 in the paper's code; ``dropout``, 0.5;
            ``spectral_norm``: SNGAN's normalisation of every layer; ``minibatch``: ``"stddev"``,
            ``"discrimination"`` or ``None``).
        loss: adversarial loss name.
        g_optimizer: generator optimizer (SGD, lr 0.1, momentum 0.5).
        d_optimizer: discriminator optimizer.
        **kwargs: the rest of :class:`gans.base.GAN`'s arguments (``n_critic``, ``pack``, ``r1_gamma``, schedulers).
    """

    def __init__(
        self,
        latent_dim: int = 100,
        data_shape: tuple[int, ...] = (1, 28, 28),
        generator: VectorGenerator = GOODFELLOW_GENERATOR,
        discriminator: VectorDiscriminator = GOODFELLOW_DISCRIMINATOR,
        loss: str = "non_saturating",
        g_optimizer: OptimizerCallable = GOODFELLOW_SGD,
        d_optimizer: OptimizerCallable = GOODFELLOW_SGD,
        **kwargs,
    ) -> None:
        super().__init__(latent_dim=latent_dim, loss=loss, g_optimizer=g_optimizer, d_optimizer=d_optimizer, **kwargs)
        data_shape = tuple(data_shape)
        self.generator = self.build_network("generator", generator, latent_dim, data_shape)
        self.discriminator = self.build_discriminator(discriminator, data_shape)
