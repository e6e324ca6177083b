"""Pix2Pix (Isola et al. 2017): paired image-to-image translation with a conditional GAN and an L1 term.

A U-Net generator maps the source to the target; a 70x70 PatchGAN judges (source, image) pairs patch by patch, so
the adversarial term sharpens texture while the L1 term, weighted 100, keeps the layout. The generator has no z: its
noise is dropout, which the paper keeps on at test time, together with batch statistics in its batch norms (at batch
1 that is instance normalisation). ``sample``, validation and ``predict`` therefore run the generator in training
mode here, without touching its running statistics (``test_time_noise``).
"""

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from gans.errors import ConfigurationError
from gans.nets import ImageDiscriminator, TranslationGenerator
from gans.outputs import GeneratorOutput
from gans.translation import Translation

#: Adam(2e-4, betas (0.5, 0.999)) for both networks (section 3.3 and the reference's defaults).
PIX2PIX_ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 2e-4, "betas": (0.5, 0.999)}}
#: The paper's U-Net: ``unet_256`` at 256x256 (8 downsamplings to 1x1), 64 features, batch norm, dropout 0.5.
PIX2PIX_GENERATOR = {"class_path": "gans.nets.UNetGenerator", "init_args": {"features": 64, "norm": "batch"}}
#: The paper's 70x70 PatchGAN (three strided 4x4 convolutions, then two of stride 1), batch norm.
PIX2PIX_DISCRIMINATOR = {
    "class_path": "gans.nets.PatchDiscriminator",
    "init_args": {"features": 64, "n_layers": 3, "norm": "batch"},
}


@contextlib.contextmanager
def stochastic_inference(network: nn.Module) -> Iterator[nn.Module]:
    """Runs ``network`` as pix2pix does at test time: in training mode (dropout active, batch norms normalising with
    the statistics of the batch at hand) while the running statistics of its norms stay as they are (they are not
    tracked in the block, so neither the running means nor ``num_batches_tracked`` move); the modes and flags are
    restored after.

    Args:
        network: the generator.
    """
    was_training = network.training
    norms = [m for m in network.modules() if getattr(m, "track_running_stats", False)]
    network.train()
    for m in norms:
        # A norm in training mode that tracks no statistics normalises with the batch's and updates nothing.
        m.track_running_stats = False
    try:
        yield network
    finally:
        for m in norms:
            m.track_running_stats = True
        network.train(was_training)


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seeds the global RNG of the CPU and of ``device`` (a CUDA one) inside the block and restores both after:
    dropout has no ``generator`` argument and draws from them, and the caller's stream must not move.

    Args:
        seed: the seed of the block's draws.
        device: the device the draws happen on.
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        for cuda in devices:
            with torch.cuda.device(cuda):
                torch.cuda.manual_seed(seed)
        yield


class Pix2Pix(Translation):
    """Pix2Pix: U-Net generator, conditional 70x70 PatchGAN, GAN loss + ``lambda_l1`` * L1, Adam(2e-4, 0.5).

    The discriminator's loss is multiplied by ``d_loss_weight`` (the paper halves it "to slow down the rate at which D
    learns relative to G"); G's is ``GAN + lambda_l1 * mean|target - G(source)|``, logged as ``train/g_gan`` and the
    unweighted ``train/g_l1``. The paper trains at batch 1 with batch norm (which then is instance norm) and uses
    batches of up to 10 elsewhere; ``norm`` of both networks is configuration (``"instance"`` or ``"batch"``). The
    constant-then-linear learning-rate decay is ``gans.optim.LinearDecay`` per epoch (the configs set it).

    Args:
        channels: channels of the target images (linked from the data module).
        source_channels: channels of the source images (linked from the data module); ``None``: as ``channels``.
        image_size: side of the square images (linked from the data module; 256 in the paper).
        generator: ``factory(source_channels, channels, image_size)``: by default ``gans.nets.UNetGenerator``
            (``features``, ``num_downs``, ``norm``, ``dropout``).
        discriminator: ``factory(source_channels + channels, image_size)`` (it sees the source and the image
            stacked): by default ``gans.nets.PatchDiscriminator`` (``features``, ``n_layers``, ``norm``).
        loss: adversarial loss; ``non_saturating`` is the reference's ``vanilla`` GAN loss (binary cross-entropy on
            the patch logits).
        lambda_l1: weight of the L1 term (100 in the paper); 0 trains the GAN term alone.
        d_loss_weight: factor of the discriminator's loss (the paper's 0.5; the base's ``least_squares`` loss already
            halves its terms as the reference's D loss does, so set 1 with it).
        test_time_noise: sample, validate and predict with the generator in training mode (dropout on, batch
            statistics; the running statistics are not updated), as the paper; ``False``: eval mode (no dropout,
            running statistics), deterministic translations.
        g_optimizer: optimizer of the generator.
        d_optimizer: optimizer of the discriminator.
        **kwargs: the rest of :class:`gans.translation.Translation`'s and :class:`gans.base.GAN`'s arguments
            (``num_fixed``, ``g_scheduler``/``d_scheduler``, ``scheduler_interval``, ...).

    Raises:
        ConfigurationError: a negative ``lambda_l1`` or ``d_loss_weight`` (and the base's refusals: ``latent_dim``
            other than 0, ``pack`` other than 1).
    """

    def __init__(
        self,
        channels: int = 3,
        source_channels: int | None = None,
        image_size: int = 256,
        generator: TranslationGenerator = PIX2PIX_GENERATOR,
        discriminator: ImageDiscriminator = PIX2PIX_DISCRIMINATOR,
        loss: str = "non_saturating",
        lambda_l1: float = 100.0,
        d_loss_weight: float = 0.5,
        test_time_noise: bool = True,
        g_optimizer: OptimizerCallable = PIX2PIX_ADAM,
        d_optimizer: OptimizerCallable = PIX2PIX_ADAM,
        **kwargs: Any,
    ) -> None:
        for name, value in (("lambda_l1", lambda_l1), ("d_loss_weight", d_loss_weight)):
            if value < 0:
                raise ConfigurationError(f"{name}={value} is invalid; expected a weight >= 0")
        super().__init__(
            channels=channels, source_channels=source_channels, image_size=image_size, loss=loss,
            g_optimizer=g_optimizer, d_optimizer=d_optimizer, **kwargs,
        )
        self.lambda_l1, self.d_loss_weight, self.test_time_noise = lambda_l1, d_loss_weight, test_time_noise
        self.generator = self.build_network("generator", generator, self.source_channels, channels, image_size)
        self.discriminator = self.build_discriminator(discriminator, self.source_channels + channels, image_size)

    def decode(self, network: nn.Module, z: Tensor, source: Tensor, **cond: Tensor) -> GeneratorOutput:
        """The translation of ``source``; outside training (``sample``, validation, ``predict``, where the base puts
        the generator in eval mode) with dropout and batch statistics on when ``test_time_noise``."""
        if network.training or not self.test_time_noise:
            return super().decode(network, z, source, **cond)
        with stochastic_inference(network):
            return super().decode(network, z, source, **cond)

    @torch.no_grad()
    def sample_output(self, n: int | None = None, z: Tensor | None = None, generator: torch.Generator | None = None,
                      ema: bool = True, **cond: Tensor) -> GeneratorOutput:
        """The translations of ``cond["source"]`` (see :meth:`gans.translation.Translation.sample_output`); with a
        ``generator``, the test-time dropout masks are drawn from it too, so a seeded sample repeats."""
        if generator is None or not self.test_time_noise:
            return super().sample_output(n, z, generator, ema, **cond)
        seed = int(torch.randint(2**62, (), generator=generator))
        with seeded_global_rng(seed, self.device):
            return super().sample_output(n, z, generator, ema, **cond)

    def d_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        """The base's discriminator terms on (source, target) and (source, detached G(source)) pairs, its loss times
        ``d_loss_weight``."""
        terms = super().d_loss(real, fake, **cond)
        terms["d_loss"] = self.d_loss_weight * terms["d_loss"]
        return terms

    def g_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        """``g_gan + lambda_l1 * g_l1``: the adversarial loss of the fake pairs and the mean absolute error to the
        target."""
        g_gan = self.g_adversarial(self.critic(fake, **cond))
        g_l1 = F.l1_loss(fake.images, real)
        return {"g_loss": g_gan + self.lambda_l1 * g_l1, "g_gan": g_gan.detach(), "g_l1": g_l1.detach()}
