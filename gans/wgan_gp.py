"""WGAN-GP (Gulrajani et al. 2017): a Wasserstein critic with a gradient penalty instead of weight clipping."""

from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from gans.dcgan import DCGAN, DCGAN_DISCRIMINATOR
from gans.errors import ConfigurationError
from gans.losses import gradient_penalty
from gans.nets import ImageDiscriminator
from gans.outputs import GeneratorOutput

#: Algorithm 1 of the paper: alpha = 1e-4, beta1 = 0, beta2 = 0.9.
WGANGP_ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-4, "betas": (0.0, 0.9)}}
#: The DCGAN discriminator without normalisation (section 4: no BatchNorm in the critic; layer norm is the drop-in).
WGANGP_CRITIC = {**DCGAN_DISCRIMINATOR, "init_args": {**DCGAN_DISCRIMINATOR["init_args"], "norm": None}}
#: Normalisations that couple the samples of a batch, which the per-sample penalty forbids in the critic.
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class WGANGP(DCGAN):
    """The DCGAN networks with a critic: no BatchNorm in the critic (the penalty is per sample, and BatchNorm couples
    the samples of a batch), Wasserstein loss plus lambda * E[(||grad D(x_hat)||_2 - 1)^2], 5 critic steps per
    generator step, Adam(1e-4, betas=(0.0, 0.9)).

    Args:
        latent_dim: size of z (128 in the paper's MNIST model).
        gp_weight: lambda, the weight of the gradient penalty (10 in the paper).
        discriminator: the critic, ``factory(channels * pack, image_size)``: the DCGAN discriminator without
            normalisation by default (``norm: layer`` is the paper's recommended drop-in); one with BatchNorm is
            refused.
        n_critic: critic steps per generator step (5 in the paper).
        loss: adversarial loss name (``wasserstein``).
        g_optimizer: generator optimizer.
        d_optimizer: critic optimizer.
        **kwargs: the rest of :class:`gans.dcgan.DCGAN`'s arguments (``channels``, ``image_size``, widths).
    """

    def __init__(
        self,
        latent_dim: int = 128,
        gp_weight: float = 10.0,
        discriminator: ImageDiscriminator = WGANGP_CRITIC,
        n_critic: int = 5,
        loss: str = "wasserstein",
        g_optimizer: OptimizerCallable = WGANGP_ADAM,
        d_optimizer: OptimizerCallable = WGANGP_ADAM,
        **kwargs,
    ) -> None:
        super().__init__(
            latent_dim=latent_dim,
            discriminator=discriminator,
            n_critic=n_critic,
            loss=loss,
            g_optimizer=g_optimizer,
            d_optimizer=d_optimizer,
            **kwargs,
        )
        if any(isinstance(m, BATCH_NORMS) for m in self.discriminator.modules()):
            raise ConfigurationError(
                f"discriminator={type(self.discriminator).__name__} has BatchNorm, which is not valid for WGAN-GP: the "
                "gradient penalty is per sample and BatchNorm couples the samples; use norm: null or norm: layer"
            )
        self.gp_weight = gp_weight

    def d_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        terms = super().d_loss(real, fake, **cond)
        gp = gradient_penalty(self.critic, real, fake.images, scale=self.grad_scale())
        terms["d_loss"] = terms["d_loss"] + self.gp_weight * gp
        terms["gp"] = gp.detach()
        terms["wasserstein"] = terms["d_real"] - terms["d_fake"]  # the critic's estimate of W(P_real, P_fake)
        return terms
