"""LSGAN (Mao et al. 2017): least-squares losses with target codes a (fake), b (real) and c (what G wants)."""

import functools

from lightning.pytorch.cli import OptimizerCallable

from gans.dcgan import DCGAN, DCGAN_ADAM
from gans.losses import d_least_squares, g_least_squares


class LSGAN(DCGAN):
    """The DCGAN networks with the least-squares losses 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2] for D and
    1/2 E[(D(G(z)) - c)^2] for G. The defaults are the 0-1 coding the authors' code uses (a=0, b=c=1); a=-1, b=1, c=0
    (b - c = 1, b - a = 2) makes the objective the Pearson chi-square divergence (section 3.2).

    Args:
        a: target of D on fakes.
        b: target of D on real images.
        c: the value G wants D to give its fakes.
        g_optimizer: generator optimizer (Adam 2e-4, beta1 0.5).
        d_optimizer: discriminator optimizer.
        **kwargs: the rest of :class:`gans.dcgan.DCGAN`'s arguments.
    """

    def __init__(
        self,
        a: float = 0.0,
        b: float = 1.0,
        c: float = 1.0,
        g_optimizer: OptimizerCallable = DCGAN_ADAM,
        d_optimizer: OptimizerCallable = DCGAN_ADAM,
        **kwargs,
    ) -> None:
        kwargs.pop("loss", None)  # the loss is what this class is
        super().__init__(loss="least_squares", g_optimizer=g_optimizer, d_optimizer=d_optimizer, **kwargs)
        self.d_adversarial = functools.partial(d_least_squares, a=a, b=b)
        self.g_adversarial = functools.partial(g_least_squares, c=c)
