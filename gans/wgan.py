"""WGAN (Arjovsky et al. 2017): a Wasserstein critic kept Lipschitz by clipping its weights."""

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from gans.dcgan import DCGAN
from gans.errors import ConfigurationError
from gans.outputs import GeneratorOutput

#: Algorithm 1 of the paper: RMSProp with alpha = 5e-5 (momentum-based optimizers made the critic unstable).
WGAN_RMSPROP = {"class_path": "torch.optim.RMSprop", "init_args": {"lr": 5e-5}}


class WGAN(DCGAN):
    """The DCGAN networks (BatchNorm in the critic, as in the paper's experiments) trained with the Wasserstein loss;
    after every critic step all critic parameters are clipped to [-c, c]; 5 critic steps per generator step;
    RMSProp(5e-5).

    Args:
        clip_value: c, the clipping bound (0.01 in the paper).
        n_critic: critic steps per generator step (5).
        loss: adversarial loss name (``wasserstein``).
        g_optimizer: generator optimizer.
        d_optimizer: critic optimizer.
        **kwargs: the rest of :class:`gans.dcgan.DCGAN`'s arguments.
    """

    def __init__(
        self,
        clip_value: float = 0.01,
        n_critic: int = 5,
        loss: str = "wasserstein",
        g_optimizer: OptimizerCallable = WGAN_RMSPROP,
        d_optimizer: OptimizerCallable = WGAN_RMSPROP,
        **kwargs,
    ) -> None:
        if clip_value <= 0:
            raise ConfigurationError(f"clip_value={clip_value} must be positive")
        super().__init__(n_critic=n_critic, loss=loss, g_optimizer=g_optimizer, d_optimizer=d_optimizer, **kwargs)
        self.clip_value = clip_value

    def d_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        terms = super().d_loss(real, fake, **cond)
        terms["wasserstein"] = terms["d_real"] - terms["d_fake"]  # the critic's estimate of W(P_real, P_fake)
        return terms

    @torch.no_grad()
    def after_d_step(self, terms: dict[str, Tensor]) -> None:
        for p in self.discriminator.parameters():
            p.clamp_(-self.clip_value, self.clip_value)
