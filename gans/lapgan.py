"""LAPGAN (Denton et al. 2015): a Laplacian pyramid of generative adversarial networks.

The coarsest level is a plain GAN on the coarsest image I_0; each finer level k a conditional GAN whose generator G_k
makes the band h_k from noise z_k and the low-pass image l_k = u(I_{k-1}), and whose discriminator D_k judges
h + l_k: the real band with its real low-pass image, or G_k's band with the same l_k (``gans.pyramid``,
``gans.nets.lapgan``). Sampling runs the chain coarse to fine, I_k = u(I_{k-1}) + G_k(u(I_{k-1}), z_k).

Training, as the paper's: every level learns from the real pyramid alone (D_k and G_k see the real l_k, never a
generated one), so the levels share no parameters and no inputs and train independently. The paper trains them one
after the other; here one step trains all of them (or the ``train_levels`` chosen): the D loss is the sum of the
levels' D losses and the G loss the sum of theirs, and since each term reaches only its own level's networks, one
optimizer over all the generators and one over all the discriminators take, per level, the steps separate runs
would, except where an option joins the levels: ``clip_grad_norm`` clips their joint norm, a non-finite value in one
level (``nonfinite="skip"``, or fp16's GradScaler) drops every level's step, and a ``ReduceLROnPlateau`` watches the
summed loss. Level by level is ``train_levels``, changed between runs resumed from the same checkpoint (the optimizers span
every level whatever is trained, so a checkpoint resumes with any choice).
"""

from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from gans.base import GAN
from gans.errors import ConfigurationError
from gans.nets import PyramidDiscriminator, PyramidGenerator
from gans.nets.lapgan import checked_sides
from gans.nets.layers import pack as pack_samples
from gans.outputs import GeneratorOutput
from gans.phases import Phase
from gans.pyramid import gaussian_pyramid, upsample

#: The paper's optimizer: SGD at learning rate 0.02 with momentum 0.5, the momentum raised by 0.0008 per epoch up to
#: 0.8 and the rate divided by (1 + 4e-5) per epoch (the reference code: rate 0.01, momentum 0 rising to 0.7). The
#: starting values are the defaults; the ramps are not reproduced: torch's schedulers move the momentum only within
#: OneCycleLR/CyclicLR cycles, and the decay changes the rate by 0.4% in a hundred epochs.
LAPGAN_SGD = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.02, "momentum": 0.5}}
#: The paper's CIFAR-10 generators' sizes: G_0 fully connected (1200, 1200) (ReLU units and a tanh output, where the
#: reference code has ReLU then sigmoid units and a linear output), each G_k a convnet of 128 maps.
LAPGAN_GENERATOR = {"class_path": "gans.nets.LaplacianGenerator", "init_args": {"hidden": (1200, 1200), "features": 128}}
#: Its discriminators: D_0 fully connected (600, 600) with dropout, each D_k a convnet of 128 maps.
LAPGAN_DISCRIMINATOR = {
    "class_path": "gans.nets.LaplacianDiscriminator",
    "init_args": {"hidden": (600, 600), "features": 128, "dropout": 0.5},
}


class LAPGAN(GAN):
    """LAPGAN: ``levels`` GANs on the levels of a Laplacian pyramid, the coarsest unconditional, each finer one
    conditioned on the upsampled coarser image. All noise is uniform in [-1, 1] (the paper's z_K; the reference code
    draws the noise planes so too); ``z`` is z_0 followed by the flattened noise planes
    (``LaplacianGenerator.latent_shapes``). ``sample`` runs the chain; ``sample_output(...).scales`` holds the coarser
    images. Logs ``train/d_loss`` and ``train/g_loss`` (sums over the trained levels) and, per level of side S,
    ``d_loss_S``, ``d_real_S``, ``d_fake_S`` and ``g_loss_S``.

    Args:
        latent_dim: size of z_0, the coarsest level's latent vector (100 in the paper).
        channels: image channels.
        image_size: side of the finest images, a multiple of 2^(levels - 1).
        levels: levels of the pyramid, the coarsest included (the paper's CIFAR-10 model: 3, 8x8 to 32x32 (28x28 in
            the paper, from crops); STL and LSUN: 4 and more).
        generator: the chain, ``factory(latent_dim, channels, image_size, levels)``: ``gans.nets.LaplacianGenerator``
            by default (``hidden``: G_0's widths; ``features``: each G_k's maps). Another network must have its
            ``levels``, ``latent_shapes``, ``z_dim``, ``split`` and ``level``.
        discriminator: one discriminator per level, ``factory(channels * pack, image_size, levels)``:
            ``gans.nets.LaplacianDiscriminator`` by default (``hidden``: D_0's widths; ``features``: each D_k's maps;
            ``dropout``), with a ``levels`` list called as ``levels[k](images)``, and called on a list of every
            level's images (or on images, whose pyramid it takes) for the mean of their logits.
        train_levels: the sides of the levels to train (``[16, 32]``: all but an 8x8 coarsest); ``None`` trains
            all. The others' networks get no gradient and do not change.
        loss: adversarial loss name (the paper's is the minimax objective; the non-saturating generator loss, which
            the reference code trains with, is the default).
        g_optimizer: optimizer of every level's generator (the paper's SGD(0.02, momentum 0.5)).
        d_optimizer: optimizer of every level's discriminator.
        **kwargs: the rest of :class:`gans.base.GAN`'s arguments (``n_critic``, ``pack``, schedulers).

    Raises:
        ConfigurationError: an ``image_size`` the pyramid cannot halve, a side in ``train_levels`` that is no level's,
            or an R1/R2 penalty (not implemented per level).
    """

    def __init__(
        self,
        latent_dim: int = 100,
        channels: int = 1,
        image_size: int = 32,
        levels: int = 3,
        generator: PyramidGenerator = LAPGAN_GENERATOR,
        discriminator: PyramidDiscriminator = LAPGAN_DISCRIMINATOR,
        train_levels: list[int] | None = None,
        loss: str = "non_saturating",
        g_optimizer: OptimizerCallable = LAPGAN_SGD,
        d_optimizer: OptimizerCallable = LAPGAN_SGD,
        **kwargs: Any,
    ) -> None:
        for name in ("r1_gamma", "r2_gamma"):  # the base's penalties are on one discriminator's input
            if kwargs.get(name, 0.0):
                raise ConfigurationError(f"{name}={kwargs[name]}: LAPGAN has no R1/R2 penalty per level; expected 0")
        if latent_dim < 1:
            raise ConfigurationError(f"latent_dim={latent_dim} must be at least 1 (z_0 of the coarsest level)")
        super().__init__(latent_dim=latent_dim, loss=loss, g_optimizer=g_optimizer, d_optimizer=d_optimizer, **kwargs)
        self.channels, self.image_size, self.num_levels = channels, image_size, levels
        self.sides = checked_sides(image_size, levels)
        unknown = sorted(set(train_levels or ()) - set(self.sides))
        if train_levels is not None and (unknown or not train_levels):
            raise ConfigurationError(
                f"train_levels={train_levels}: expected sides of the pyramid's levels, some of {self.sides}"
            )
        # Which levels train is a choice of the run, not of the model: left out of the saved hyperparameters, so that a
        # run resumed with --ckpt_path (whose model arguments come from the checkpoint's) takes the new train_levels.
        self.hparams.pop("train_levels", None)
        #: Indices of the levels trained, coarse to fine.
        self.trained = [k for k, side in enumerate(self.sides) if train_levels is None or side in train_levels]
        self.generator = self.build_network("generator", generator, latent_dim, channels, image_size, levels)
        self.discriminator = self.build_discriminator(discriminator, channels, image_size, levels)

    def phases(self) -> tuple[Phase, ...]:
        """D every batch, G every ``n_critic``-th; each loss makes its own fakes from the real pyramid (``fake``
        ``"none"``), since the conditional levels' fakes are conditioned on the real images."""
        return (
            Phase("D", "d", "d_loss", "d_loss", fake="none", after="after_d_step"),
            Phase("G", "g", "g_loss", "g_loss", every=self.n_critic, fake="none", iteration=True),
        )

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """The chain's noise, uniform in [-1, 1]: [n, z_dim], z_0 then the flattened noise planes."""
        z_dim = self.generator.z_dim
        if generator is not None:
            return (torch.rand(n, z_dim, generator=generator) * 2 - 1).to(self.device)
        return torch.rand(n, z_dim, device=self.device) * 2 - 1

    def pyramid(self, real: Tensor) -> list[Tensor]:
        """The real images I_0 ... I_{levels-1} of ``real`` [N, C, S, S], coarse to fine.

        Raises:
            ConfigurationError: images of another shape than the model's.
        """
        if real.shape[1:] != (self.channels, self.image_size, self.image_size):
            raise ConfigurationError(
                f"image_size={self.image_size} and channels={self.channels}: LAPGAN makes images of shape "
                f"{(self.channels, self.image_size, self.image_size)} but the data gives {tuple(real.shape[1:])}: set "
                "the model's channels/image_size to match the data module's"
            )
        return gaussian_pyramid(real, self.num_levels)

    def level_fakes(self, images: list[Tensor], levels: list[int], network: Any = None) -> dict[int, Tensor]:
        """Fresh fakes of the given levels from ``network`` (the trained generator by default), each conditioned on the
        real pyramid ``images``: G_0(z_0) for the coarsest, u(I_{k-1}) + G_k(u(I_{k-1}), z_k) for a finer one,
        [N, C, S_k, S_k] by level index."""
        network = network or self.generator
        noise = network.split(self.sample_z(images[0].shape[0]))
        return {k: network.level(k, noise[k], upsample(images[k - 1]) if k else None) for k in levels}

    def level_critic(self, k: int, x: Tensor, discriminator: Any = None) -> Tensor:
        """D_k's logits of images of level ``k`` [N, C, S_k, S_k] (h + l_k for a conditional level), [N / pack]."""
        return (discriminator or self.discriminator).levels[k](pack_samples(x, self.pack))

    def critic(self, x: Tensor | GeneratorOutput, discriminator: Any = None, **cond: Tensor) -> Tensor:
        """The mean over the levels of the discriminators' logits, [N / pack]: of a generator output's own chain
        (``scales`` and ``images``), or of the Gaussian pyramid of a tensor of images (taken after packing, which it
        commutes with: the pyramid works per channel). Training scores each level apart (``d_loss``)."""
        discriminator = discriminator or self.discriminator
        if isinstance(x, GeneratorOutput) and len(x.scales) == self.num_levels - 1:
            return discriminator([pack_samples(image, self.pack) for image in (*x.scales, x.images)])
        return discriminator(pack_samples(GeneratorOutput.images_of(x), self.pack))

    def _d_terms(self, real: Tensor, levels: list[int], network: Any = None) -> dict[str, Tensor]:
        images = self.pyramid(real)
        with torch.no_grad():  # the generators are not trained by this loss
            fakes = self.level_fakes(images, levels, network)
        terms: dict[str, Tensor] = {}
        total = real.new_zeros(())
        for k in levels:
            d_real, d_fake = self.level_critic(k, images[k]), self.level_critic(k, fakes[k])  # [N / pack] each
            loss = self.d_adversarial(d_real, d_fake)
            total = total + loss
            side = self.sides[k]
            terms |= {f"d_loss_{side}": loss.detach(), f"d_real_{side}": d_real.detach().mean(),
                      f"d_fake_{side}": d_fake.detach().mean()}
        return {"d_loss": total, **terms}

    def d_loss(self, real: Tensor, fake: GeneratorOutput | None, **cond: Tensor) -> dict[str, Tensor]:
        """The sum over the trained levels of D_k's adversarial loss on the real image of its level against a fake
        conditioned on the same real l_k; ``fake`` is ``None`` (phase ``fake="none"``)."""
        return self._d_terms(real, self.trained)

    def g_loss(self, real: Tensor, fake: GeneratorOutput | None, **cond: Tensor) -> dict[str, Tensor]:
        """The sum over the trained levels of G_k's adversarial loss, its fakes conditioned on the real l_k."""
        fakes = self.level_fakes(self.pyramid(real), self.trained)
        terms = {f"g_loss_{self.sides[k]}": self.g_adversarial(self.level_critic(k, fake)) for k, fake in fakes.items()}
        return {"g_loss": sum(terms.values()), **{name: value.detach() for name, value in terms.items()}}

    def evaluation_terms(self, real: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """Every level's D loss and mean logits on held-out images against fresh fakes of the EMA generator when there
        is one (as the base's validation), conditioned on them, and their sum, ``d_loss``."""
        keep = real.shape[0] // self.pack * self.pack  # a last, smaller batch is cut to whole packs
        return self._d_terms(real[:keep], list(range(self.num_levels)), self.generator_ema)
