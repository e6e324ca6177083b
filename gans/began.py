"""BEGAN (Berthelot et al. 2017): an auto-encoder discriminator, and a proportional controller k_t that keeps the
generator's and the discriminator's losses in the equilibrium E[L(G(z))] = gamma E[L(x)]."""

from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from gans.base import GAN
from gans.errors import ConfigurationError
from gans.nets import ImageDiscriminator, ImageGenerator
from gans.outputs import GeneratorOutput

#: Adam with learning rate 1e-4 (the paper; it halves the rate when M_global stalls, left to a scheduler here).
BEGAN_ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-4, "betas": (0.5, 0.999)}}
#: The paper's decoder as generator and auto-encoder as discriminator: n = 64 channels (128 for its best CelebA
#: results), an N_h = 64 code.
BEGAN_GENERATOR = {"class_path": "gans.nets.BEGANDecoder", "init_args": {"features": 64}}
BEGAN_DISCRIMINATOR = {"class_path": "gans.nets.BEGANAutoencoder", "init_args": {"embedding": 64, "features": 64}}


def reconstruction_error(autoencoder: torch.nn.Module, x: Tensor) -> Tensor:
    """L(v) = |v - D(v)| per sample, the L1 reconstruction error (the paper's eta = 1) averaged over pixels: [N]."""
    return (x - autoencoder(x)).abs().flatten(1).mean(dim=1)


class BEGAN(GAN):
    """L_D = L(x) - k_t L(G(z)), L_G = L(G(z)), k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1) after each
    discriminator step, z ~ U[-1, 1]. Logs ``k`` and the convergence measure
    M_global = L(x) + |gamma L(x) - L(G(z))| (``train/m_global``), which falls as the images improve.

    Args:
        latent_dim: N_z, size of z (64 in the paper).
        channels: image channels.
        image_size: image side, a power of two >= 8.
        generator: the generator, ``factory(latent_dim, channels, image_size)``: ``gans.nets.BEGANDecoder`` by
            default (``features``: n, the channels).
        discriminator: the auto-encoder, ``factory(channels, image_size)`` returning reconstructions:
            ``gans.nets.BEGANAutoencoder`` by default (``embedding``: N_h, the code size; ``features``: n).
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
        channels: int = 1,
        image_size: int = 32,
        generator: ImageGenerator = BEGAN_GENERATOR,
        discriminator: ImageDiscriminator = BEGAN_DISCRIMINATOR,
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
        self.generator = self.build_network("generator", generator, latent_dim, channels, image_size)
        self.discriminator = self.build_discriminator(discriminator, channels, image_size)

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """z ~ U[-1, 1]^latent_dim, as in the paper."""
        if generator is not None:
            return (torch.rand(n, self.latent_dim, generator=generator) * 2 - 1).to(self.device)
        return torch.rand(n, self.latent_dim, device=self.device) * 2 - 1

    def critic(self, x: Tensor | GeneratorOutput, discriminator: Any = None, **cond: Tensor) -> Tensor:
        """BEGAN's score of each sample: its auto-encoder's reconstruction error L(v), [N] (low for what D takes as
        real)."""
        return reconstruction_error(discriminator or self.discriminator, GeneratorOutput.images_of(x))

    def _losses(self, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        l_real = self.critic(real).mean()
        l_fake = self.critic(fake).mean()
        m_global = l_real.detach() + (self.gamma * l_real.detach() - l_fake.detach()).abs()
        return {"d_loss": l_real - self.k * l_fake, "l_real": l_real, "l_fake": l_fake, "m_global": m_global}

    def d_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        terms = self._losses(real, fake.images.detach())
        return {**terms, "l_real": terms["l_real"].detach(), "l_fake": terms["l_fake"].detach(), "k": self.k.clone()}

    def g_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        return {"g_loss": self.critic(fake).mean()}

    @torch.no_grad()
    def after_d_step(self, terms: dict[str, Tensor]) -> None:
        balance = self.gamma * terms["l_real"] - terms["l_fake"]
        self.k.copy_((self.k + self.lambda_k * balance).clamp(0.0, 1.0))

    def evaluation_terms(self, real: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """BEGAN's losses, k_t's balance and M_global on held-out images against fresh fakes."""
        return self._losses(real, self.sample(real.shape[0], **cond))
