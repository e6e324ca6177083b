"""The original GAN (Goodfellow et al. 2014): fully connected networks, a maxout discriminator with dropout."""

from lightning.pytorch.cli import OptimizerCallable

from gans.base import GAN
from gans.nets.mlp import MLPDiscriminator, MLPGenerator

#: The paper's pylearn2 setup: SGD with learning rate 0.1 and momentum 0.5 (raised to 0.7 over training there, and
#: the learning rate divided by 1.000004 after every batch: the configs add that decay as a scheduler).
GOODFELLOW_SGD = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1, "momentum": 0.5}}


class MLPGAN(GAN):
    """GAN with the MLP networks of the paper's MNIST model: G has two ReLU layers of 1200 units, D two maxout
    layers of 240 units with 5 pieces and dropout. The paper's value function is ``loss="minimax"``; the paper
    itself recommends the non-saturating generator loss for practice (the default). ``n_critic`` is the paper's k
    (1 in its experiments). The same class trains on points (``data_shape: [2]``, ``g_tanh: false``) for the 2-D
    mixtures of ``datamodules.GaussianMixtureDataModule``.

    Args:
        latent_dim: size of z (100 in the paper).
        data_shape: shape of one sample, ``[C, H, W]`` or ``[d]``.
        g_hidden: widths of the generator's hidden layers.
        g_batch_norm: BatchNorm in the generator's hidden layers (off in the paper).
        g_tanh: Tanh on the generator's output (images in [-1, 1]); off for unbounded points.
        d_hidden: widths of the discriminator's hidden layers.
        d_pieces: linear pieces per maxout unit; 1 gives LeakyReLU units.
        d_input_dropout: dropout on the discriminator's input (0.2 in the paper's code).
        d_dropout: dropout on its hidden units (0.5).
        d_spectral_norm: spectral normalisation of the discriminator's layers (SNGAN's D).
        d_minibatch: a minibatch layer before D's output: ``"stddev"``, ``"discrimination"`` or ``None``.
        loss: adversarial loss name.
        g_optimizer: generator optimizer (SGD, lr 0.1, momentum 0.5).
        d_optimizer: discriminator optimizer.
        **kwargs: the rest of :class:`gans.base.GAN`'s arguments (``n_critic``, ``pack``, ``r1_gamma``, schedulers).
    """

    def __init__(
        self,
        latent_dim: int = 100,
        data_shape: tuple[int, ...] = (1, 28, 28),
        g_hidden: tuple[int, ...] = (1200, 1200),
        g_batch_norm: bool = False,
        g_tanh: bool = True,
        d_hidden: tuple[int, ...] = (240, 240),
        d_pieces: int = 5,
        d_input_dropout: float = 0.2,
        d_dropout: float = 0.5,
        d_spectral_norm: bool = False,
        d_minibatch: str | None = None,
        loss: str = "non_saturating",
        g_optimizer: OptimizerCallable = GOODFELLOW_SGD,
        d_optimizer: OptimizerCallable = GOODFELLOW_SGD,
        **kwargs,
    ) -> None:
        super().__init__(latent_dim=latent_dim, loss=loss, g_optimizer=g_optimizer, d_optimizer=d_optimizer, **kwargs)
        data_shape = tuple(data_shape)
        self.generator = MLPGenerator(latent_dim, data_shape, tuple(g_hidden), g_batch_norm, g_tanh)
        packed = (data_shape[0] * self.pack, *data_shape[1:])  # PacGAN: m samples side by side
        self.discriminator = MLPDiscriminator(
            packed, tuple(d_hidden), d_pieces, d_input_dropout, d_dropout, d_spectral_norm, d_minibatch
        )
