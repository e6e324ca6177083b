"""BEGAN (Berthelot et al. 2017): an auto-encoder discriminator, and a proportional controller k_t that keeps the
generator's and the discriminator's losses in the equilibrium E[L(G(z))] = gamma E[L(x)]."""

from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from gans.base import GAN
from gans.errors import ConfigurationError
from gans.nets.began import BEGANAutoencoder, BEGANDecoder

#: Adam with learning rate 1e-4 (the paper; it halves the rate when M_global stalls, left to a scheduler here).
BEGAN_ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-4, "betas": (0.5, 0.999)}}


def reconstruction_loss(autoencoder: torch.nn.Module, x: Tensor) -> Tensor:
    """L(v) = |v - D(v)|, the L1 reconstruction error (the paper's eta = 1), averaged over pixels and samples."""
    return (x - autoencoder(x)).abs().mean()


class BEGAN(GAN):
    """L_D = L(x) - k_t L(G(z)), L_G = L(G(z)), k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1) after each
    discriminator step, z ~ U[-1, 1]. Logs ``k`` and the convergence measure
    M_global = L(x) + |gamma L(x) - L(G(z))| (``train/m_global``), which falls as the images improve.

    Args:
        latent_dim: N_z, size of z (64 in the paper).
        embedding: N_h, size of the auto-encoder's code (64).
        channels: image channels.
        image_size: image side, a power of two >= 8.
        features: n, the channels of the networks (64 in the paper; 128 for its best CelebA results).
        gamma: the diversity ratio E[L(G(z))] / E[L(x)] at equilibrium (0.5; the paper shows 0.3 to 0.7).
        lambda_k: the proportional gain of k (0.001).
        k_init: k_0 (0).
        g_optimizer: generator optimizer (Adam 1e-4).
        d_optimizer: discriminator optimizer.
        **kwargs: the rest of :class:`gans.base.GAN`'s arguments (schedulers).
    """

    def __init__(
        self,
        latent_dim: int = 64,
        embedding: int = 64,
        channels: int = 1,
        image_size: int = 32,
        features: int = 64,
        gamma: float = 0.5,
        lambda_k: float = 0.001,
        k_init: float = 0.0,
        g_optimizer: OptimizerCallable = BEGAN_ADAM,
        d_optimizer: OptimizerCallable = BEGAN_ADAM,
        **kwargs: Any,
    ) -> None:
        if not 0.0 <= k_init <= 1.0:
            raise ConfigurationError(f"k_init={k_init} must lie in [0, 1]")
        if kwargs.get("pack", 1) != 1:
            raise ConfigurationError(
                f"pack={kwargs['pack']}: BEGAN's discriminator reconstructs single images; expected 1"
            )
        # BEGAN's own losses (reconstruction errors and k_t) replace the adversarial loss and the penalties on scores:
        # these settings would be accepted and then have no effect.
        for name, unused in (("loss", "non_saturating"), ("r1_gamma", 0.0), ("r2_gamma", 0.0)):
            if kwargs.get(name, unused) != unused:
                raise ConfigurationError(
                    f"{name}={kwargs[name]!r}: BEGAN trains with its reconstruction losses and k_t, which take no "
                    f"adversarial loss or R1/R2 penalty; expected the default {unused!r}"
                )
        super().__init__(latent_dim=latent_dim, g_optimizer=g_optimizer, d_optimizer=d_optimizer, **kwargs)
        self.gamma, self.lambda_k = gamma, lambda_k
        self.register_buffer("k", torch.tensor(float(k_init)))  # a buffer: saved in checkpoints, moved with the module
        self.generator = BEGANDecoder(latent_dim, channels, image_size, features)
        self.discriminator = BEGANAutoencoder(embedding, channels, image_size, features)

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """z ~ U[-1, 1]^latent_dim, as in the paper."""
        if generator is not None:
            return (torch.rand(n, self.latent_dim, generator=generator) * 2 - 1).to(self.device)
        return torch.rand(n, self.latent_dim, device=self.device) * 2 - 1

    def _losses(self, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        l_real = reconstruction_loss(self.discriminator, real)
        l_fake = reconstruction_loss(self.discriminator, fake)
        m_global = l_real.detach() + (self.gamma * l_real.detach() - l_fake.detach()).abs()
        return {"d_loss": l_real - self.k * l_fake, "l_real": l_real, "l_fake": l_fake, "m_global": m_global}

    def d_loss(self, real: Tensor, fake: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        terms = self._losses(real, fake.detach())
        return {**terms, "l_real": terms["l_real"].detach(), "l_fake": terms["l_fake"].detach(), "k": self.k.clone()}

    def g_loss(self, real: Tensor, fake: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        return {"g_loss": reconstruction_loss(self.discriminator, fake)}

    @torch.no_grad()
    def after_d_step(self, terms: dict[str, Tensor]) -> None:
        balance = self.gamma * terms["l_real"] - terms["l_fake"]
        self.k.copy_((self.k + self.lambda_k * balance).clamp(0.0, 1.0))

    def _evaluate(self, batch: Any, prefix: str) -> None:
        real, cond = self.unpack(batch)
        terms = self._losses(real, self.sample(real.shape[0], **cond))
        self.log_dict({f"{prefix}/{name}": value for name, value in terms.items()}, sync_dist=True)
