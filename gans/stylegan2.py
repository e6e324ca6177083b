"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"), trained as NVIDIA's
stylegan2-ada-pytorch trains it (``training/loss.py``, ``training/training_loop.py``, ``train.py``).

The schedule is the official one, as phases (``gans.phases``), in its order within a batch:

- ``G``: the non-saturating loss on fakes made with style mixing (probability 0.9: a second latent's ws from a random
  crossover layer on, the official ``run_G``), completing the iteration;
- ``G_reg``: path-length regularization every ``pl_every`` (4) iterations, on its own batch of half the size
  (``pl_batch_shrink``), weight ``pl_weight`` (2) times the interval; its target is the moving average ``pl_mean``
  (decay 0.01), a buffer, so checkpoints carry it;
- ``D``: the logistic loss on real images and on mixed fakes;
- ``D_reg``: R1 every ``reg_every`` (16) batches, weight ``r1_gamma / 2`` times the interval (the base's lazy R1).

Both lazy phases give their network's Adam the official correction, lr * c/(c+1) and betas ** (c/(c+1)) (the base
does it for ``lazy=True`` phases). Adam(0.0025, betas (0, 0.99), eps 1e-8) for both networks. The generator's EMA with
the official half-life and ramp-up is ``callbacks.GeneratorEMA(half_life_kimg=..., rampup=...)``, set by the configs.

The official configurations (``train.py``'s ``--cfg``) are :data:`PRESETS` and :func:`auto_config`; the configs
``configs/stylegan2_*.yaml`` spell them out.
"""

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from gans.base import GAN
from gans.errors import ConfigurationError
from gans.guard import NonFinite
from gans.losses import path_length_penalty, path_lengths
from gans.optim import lazy_regularization_ratio
from gans.outputs import GeneratorOutput
from gans.phases import Phase, Schedule
from gans.style import StyleBased

#: ``factory(z_dim, c_dim, w_dim, img_resolution, img_channels)``: the official ``Generator``'s leading arguments.
StyleGenerator = Callable[[int, int, int, int, int], nn.Module]
#: ``factory(c_dim, img_resolution, img_channels)``: the official ``Discriminator``'s leading arguments.
StyleDiscriminator = Callable[[int, int, int], nn.Module]

#: The official optimizer of both networks (``train.py``: lrate 0.0025 up to 512x512, betas (0, 0.99), eps 1e-8).
STYLEGAN2_ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.0025, "betas": (0.0, 0.99), "eps": 1e-8}}
#: The official generator with its own defaults (8 mapping layers, channel_base 32768, channel_max 512, skip).
STYLEGAN2_GENERATOR = {"class_path": "gans.nets.stylegan2.StyleGAN2Generator", "init_args": {}}
#: The official discriminator with its own defaults (resnet, channel_base 32768, channel_max 512, mbstd group 4).
STYLEGAN2_DISCRIMINATOR = {"class_path": "gans.nets.stylegan2.StyleGAN2Discriminator", "init_args": {}}

#: The official presets of stylegan2-ada-pytorch's ``train.py --cfg`` (``cfg_specs``): reference GPU count, training
#: length in thousands of images, total batch ``mb``, minibatch-stddev group ``mbstd``, width ``fmaps`` (channel_base =
#: fmaps * 32768), learning rate, R1 gamma, EMA half-life in kimg, EMA ramp-up and mapping layers. ``cifar`` also
#: turns off path length and style mixing and uses the ``orig`` discriminator (see ``configs/stylegan2_cifar.yaml``).
#: ``auto`` is :func:`auto_config`.
PRESET_KEYS = ("ref_gpus", "kimg", "mb", "mbstd", "fmaps", "lrate", "gamma", "ema", "ramp", "map")
PRESETS: dict[str, dict[str, Any]] = {
    name: dict(zip(PRESET_KEYS, values, strict=True))
    for name, values in {
        "stylegan2": (8, 25000, 32, 4, 1, 0.002, 10, 10, None, 8),
        "paper256": (8, 25000, 64, 8, 0.5, 0.0025, 1, 20, None, 8),
        "paper512": (8, 25000, 64, 8, 1, 0.0025, 0.5, 20, None, 8),
        "paper1024": (8, 25000, 32, 4, 1, 0.002, 2, 10, None, 8),
        "cifar": (2, 100000, 64, 32, 1, 0.0025, 0.01, 500, 0.05, 2),
    }.items()
}


def auto_config(resolution: int, gpus: int = 1) -> dict[str, Any]:
    """The official ``--cfg=auto`` preset (stylegan2-ada-pytorch ``train.py``) for images of ``resolution`` on ``gpus``
    GPUs: the batch grows with the GPUs up to 64 (at most 32 per GPU, fewer above 128x128 to bound memory), the
    minibatch-stddev group stays 4 (or the per-GPU batch if smaller), half the widths below 512x512, R1 gamma from the
    heuristic 0.0002 * resolution^2 / batch, an EMA half-life of 10 kimg per 32 images of batch with ramp-up 0.05, and
    2 mapping layers.

    Args:
        resolution: the image side (a power of two).
        gpus: the GPU count the batch is spread over.

    Returns:
        The preset as :data:`PRESETS` holds them (``mb`` is the total batch, ``mb // gpus`` per GPU), plus
        ``channel_base`` (``fmaps * 32768``).

    Raises:
        ConfigurationError: ``resolution`` or ``gpus`` below 1.
    """
    for name, value in (("resolution", resolution), ("gpus", gpus)):
        if value < 1:
            raise ConfigurationError(f"{name}={value} must be at least 1")
    mb = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
    values = (gpus, 25000, mb, min(mb // gpus, 4), 1 if resolution >= 512 else 0.5,
              0.002 if resolution >= 1024 else 0.0025, 0.0002 * resolution**2 / mb, mb * 10 / 32, 0.05, 2)
    spec = dict(zip(PRESET_KEYS, values, strict=True))
    return {**spec, "channel_base": int(spec["fmaps"] * 32768)}


class StyleGAN2(StyleBased, GAN):
    """StyleGAN2 with the official training (see the module docstring): networks equal to stylegan2-ada-pytorch's
    (``gans.nets.stylegan2``), built from this module's sizes, so the official configurations map one to one: z_dim is
    ``latent_dim``, ``w_dim`` is ``w_dim``, c_dim is ``num_classes``, img_resolution and img_channels are
    ``image_size`` and ``channels`` (which the command line takes from the data module); everything else is the
    networks' own arguments, under ``generator.init_args`` (``mapping_kwargs``: ``num_layers``;
    ``synthesis_kwargs``: ``channel_base``, ``channel_max``, ``num_fp16_res``, ``conv_clamp``, ``architecture``) and
    ``discriminator.init_args`` (``architecture``, ``channel_base``, ``channel_max``, ``num_fp16_res``,
    ``conv_clamp``, ``epilogue_kwargs``: ``mbstd_group_size``).

    For the editing tools: :meth:`mapping` (z, c -> ws, with truncation), :meth:`synthesis` (ws -> images),
    :attr:`w_avg` (the tracked mean w), :attr:`num_ws`; ``sample``/``sample_output`` take ``truncation_psi``,
    ``truncation_cutoff`` and ``noise_mode`` as the official ``generate.py``.

    Args:
        latent_dim: z_dim (512).
        w_dim: size of w (512).
        channels: img_channels.
        image_size: img_resolution, a power of two >= 4.
        num_classes: c_dim: 0 for an unconditional model; K > 0 for a conditional one, trained on labelled batches
            (images, class indices), each label given to G and D as a one-hot c, or (images, label vectors [N, K])
            given as they are (CelebA's attributes).
        generator: ``factory(z_dim, c_dim, w_dim, img_resolution, img_channels)``, by default
            ``gans.nets.stylegan2.StyleGAN2Generator``; its forward returns ``GeneratorOutput(images, ws)`` and it has
            ``mapping`` and ``synthesis`` (the official interface).
        discriminator: ``factory(c_dim, img_resolution, img_channels)``, by default
            ``gans.nets.stylegan2.StyleGAN2Discriminator``, scoring ``(images, c)`` as [N, 1].
        r1_gamma: R1 weight gamma (official default 10; per data set in the presets).
        reg_every: R1 runs every ``reg_every``-th batch (the official D_reg_interval, 16); 1: in every D step.
        pl_weight: path-length weight (2); 0 turns it off (the ``cifar`` preset).
        pl_every: path length runs every ``pl_every``-th iteration (the official G_reg_interval, 4); 1: in every G
            step.
        pl_batch_shrink: path length uses a batch this many times smaller than the real batch (2).
        pl_decay: decay of the path lengths' moving average ``pl_mean`` (0.01).
        style_mixing_prob: probability of style mixing per batch (0.9); 0 turns it off (the ``cifar`` preset).
        g_optimizer: generator optimizer (mapping and synthesis; the mapping's 0.01 learning-rate multiplier is in
            its layers).
        d_optimizer: discriminator optimizer.
        nonfinite: ``"sanitize"`` (the official training loop's way: NaN gradients set to 0 and +-inf to +-1e5 before
            every step, which lets the float16 layers overflow now and then without ending the run), or the base's
            ``"stop"`` / ``"skip"``.
        **kwargs: the rest of :class:`gans.base.GAN`'s arguments (``loss``, ``nonfinite``, ``compile``, ...).

    Raises:
        ConfigurationError: a value outside the ranges above, or ``pack`` > 1 with classes.
    """

    def __init__(
        self,
        latent_dim: int = 512,
        w_dim: int = 512,
        channels: int = 3,
        image_size: int = 256,
        num_classes: int = 0,
        generator: StyleGenerator = STYLEGAN2_GENERATOR,
        discriminator: StyleDiscriminator = STYLEGAN2_DISCRIMINATOR,
        r1_gamma: float = 10.0,
        reg_every: int = 16,
        pl_weight: float = 2.0,
        pl_every: int = 4,
        pl_batch_shrink: int = 2,
        pl_decay: float = 0.01,
        style_mixing_prob: float = 0.9,
        g_optimizer: OptimizerCallable = STYLEGAN2_ADAM,
        d_optimizer: OptimizerCallable = STYLEGAN2_ADAM,
        nonfinite: NonFinite = "sanitize",
        **kwargs: Any,
    ) -> None:
        for name, value, low in (("num_classes", num_classes, 0), ("pl_every", pl_every, 1),
                                 ("pl_batch_shrink", pl_batch_shrink, 1), ("w_dim", w_dim, 1)):
            if value < low:
                raise ConfigurationError(f"{name}={value} must be at least {low}")
        if pl_weight < 0:
            raise ConfigurationError(f"pl_weight={pl_weight} must be >= 0 (0 turns path length off)")
        for name, value in (("pl_decay", pl_decay), ("style_mixing_prob", style_mixing_prob)):
            if not 0 <= value <= 1:
                raise ConfigurationError(f"{name}={value} must be in [0, 1]")
        # Without R1 or R2 there is nothing to space out: the base refuses reg_every > 1 then, the saved
        # hyperparameters keep the value given here.
        penalized = r1_gamma or kwargs.get("r2_gamma", 0.0)
        super().__init__(latent_dim=latent_dim, r1_gamma=r1_gamma, reg_every=reg_every if penalized else 1,
                         g_optimizer=g_optimizer, d_optimizer=d_optimizer, nonfinite=nonfinite, **kwargs)
        if num_classes and self.pack > 1:
            raise ConfigurationError(f"pack={self.pack}: a class-conditional StyleGAN2 scores each image with its label")
        self.w_dim, self.channels, self.image_size, self.num_classes = w_dim, channels, image_size, num_classes
        self.pl_weight, self.pl_every, self.pl_batch_shrink = pl_weight, pl_every, pl_batch_shrink
        self.pl_decay, self.style_mixing_prob = pl_decay, style_mixing_prob
        self.d_reg_interval = reg_every  # the base's reg_every is 1 without R1
        if num_classes:
            self.batch_kinds = ("labelled",)
        self.generator = self.build_network("generator", generator, latent_dim, num_classes, w_dim, image_size,
                                            channels)
        self.discriminator = self.build_network("discriminator", discriminator, num_classes, image_size,
                                                channels * self.pack)
        # The path lengths' moving average, the target of the penalty (official ``pl_mean``): a buffer, so that
        # checkpoints and resumed runs carry it.
        self.register_buffer("pl_mean", torch.zeros(()))

    # ----------------------------------------------------------------------------------------------------------
    # The schedule
    # ----------------------------------------------------------------------------------------------------------

    def phases(self) -> tuple[Phase, ...]:
        """The official order: ``G``, ``G_reg`` (path length, every ``pl_every``-th iteration, lazy), ``D``, ``D_reg``
        (R1, every ``reg_every``-th batch, lazy)."""
        base = super().phases()
        g_phases = [p for p in base if p.optimizer == "g"]
        if self.pl_weight > 0 and self.pl_every > 1:
            g_phases.append(Phase("G_reg", "g", "g_reg_loss", "g_reg", every=self.pl_every, clock="iteration",
                                  fake="none", lazy=True))
        return (*g_phases, *(p for p in base if p.optimizer != "g"))

    @property
    def schedule(self) -> Schedule:
        """The base's schedule of :meth:`phases`, whose lazy corrections include, as the official ``training_loop``,
        a network whose regularisation interval is set but whose term is off (``pl_weight`` 0 with ``pl_every`` > 1:
        the ``cifar`` preset's G at lr * 4/5; ``r1_gamma`` 0 with ``reg_every`` > 1): the official code keeps the
        Greg/Dreg phases then, which step nothing but leave the optimizer corrected."""
        schedule = super().schedule
        for name, interval, on in (("g", self.pl_every, self.pl_weight > 0),
                                   ("d", self.d_reg_interval, self.r1_gamma > 0 or self.r2_gamma > 0)):
            if not on and interval > 1:
                schedule.lazy_ratios.setdefault(name, lazy_regularization_ratio(interval))
        return schedule

    # ----------------------------------------------------------------------------------------------------------
    # Data and networks
    # ----------------------------------------------------------------------------------------------------------

    def unpack(self, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """Real images [N, C, H, W] and, for a conditional model, ``{"labels": y}`` (class indices [N])."""
        real, cond = super().unpack(batch)
        if self.num_classes:
            cond = {"labels": batch[1]}
        return real, cond

    def one_hot(self, labels: Tensor | None, n: int) -> Tensor | None:
        """The networks' c for ``labels``: class indices [n] one-hot encoded, [n, num_classes] float32; label vectors
        [n, num_classes] (CelebA's 40 attributes, as the official c may be any vector) as they are; ``None`` for an
        unconditional model.

        Raises:
            ConfigurationError: a conditional model without labels, a class outside ``0 .. num_classes - 1``, or
                label vectors of another size.
        """
        if not self.num_classes:
            return None
        if labels is None:
            raise ConfigurationError(f"num_classes={self.num_classes}: this conditional model needs labels")
        if labels.dim() == 2:
            if labels.shape != (n, self.num_classes):
                raise ConfigurationError(
                    f"num_classes={self.num_classes}: the label vectors are {tuple(labels.shape[1:])} per sample"
                )
            return labels.to(self.device, torch.float32)
        labels = labels.to(self.device).long().reshape(n)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ConfigurationError(
                f"num_classes={self.num_classes}: the labels hold classes {int(labels.min())}..{int(labels.max())}; "
                "set num_classes to the data's class count"
            )
        return F.one_hot(labels, self.num_classes).float()

    def generate(self, n: int, labels: Tensor | None = None, **cond: Tensor) -> GeneratorOutput:
        """Fakes for training (all phases): fresh latents through :meth:`run_generator`, with ``labels`` as c."""
        return self.run_generator(self.sample_z(n), self.one_hot(labels, n))

    def decode(self, network: nn.Module, z: Tensor, labels: Tensor | None = None, **cond: Tensor) -> GeneratorOutput:
        """A generator network on latents for sampling: no mixing, no ``w_avg`` update, with the truncation and noise
        mode that ``sample_output`` was given."""
        return GeneratorOutput.of(network(z, self.one_hot(labels, z.shape[0]), **self.sampling_controls()))

    def critic(self, x: Tensor | GeneratorOutput, discriminator: Callable | None = None, labels: Tensor | None = None,
               **cond: Tensor) -> Tensor:
        """D's scores [N / pack] of images, with their labels as c; through the base's ``critic``, so that what it
        does to every variant's inputs applies here too."""
        network = discriminator or self.discriminator
        c = self.one_hot(labels, GeneratorOutput.images_of(x).shape[0])
        return super().critic(x, lambda images: network(images, c), **cond).flatten()  # [N, 1] -> [N]

    # ----------------------------------------------------------------------------------------------------------
    # Path length
    # ----------------------------------------------------------------------------------------------------------

    def g_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        """The non-saturating generator loss; with ``pl_every`` 1, path length added (the official ``Gboth``)."""
        terms = super().g_loss(real, fake, **cond)
        if self.pl_weight > 0 and self.pl_every == 1:
            penalty = self._path_length_terms(real, **cond)
            terms = {**penalty, "g_loss": terms["g_loss"] + penalty.pop("g_reg")}
        return terms

    def g_reg_loss(self, real: Tensor, fake: None, **cond: Tensor) -> dict[str, Tensor]:
        """The lazy ``G_reg`` phase: path length alone, on its own batch, times ``pl_every``."""
        return self._path_length_terms(real, **cond)

    def _path_length_terms(self, real: Tensor, labels: Tensor | None = None, **cond: Tensor) -> dict[str, Tensor]:
        n = max(real.shape[0] // self.pl_batch_shrink, 1)
        fake = self.run_generator(self.sample_z(n), self.one_hot(None if labels is None else labels[:n], n))
        lengths = path_lengths(fake.images, fake.ws, scale=self.grad_scale())  # [n]
        # The official code keeps pl_mean per process (each moves it towards its own batch's mean), so the processes'
        # targets drift apart (and a strategy that broadcasts rank 0's buffers would keep rank 0's alone). Here the
        # mean moved towards is that of all processes' lengths (an all-reduce of one number), so every rank computes
        # the same target in the same step, that of one process with the whole batch; the penalty's gradient through
        # it stays this process's share, as in the official code.
        local = lengths.mean()
        batch_mean = local + (self._mean_over_processes(local.detach()) - local.detach())
        penalty, pl_mean = path_length_penalty(lengths, self.pl_mean, self.pl_decay, batch_mean)
        self.pl_mean.copy_(pl_mean)
        return {"g_reg": penalty * self.pl_weight * self.pl_every, "pl_penalty": penalty.detach(),
                "pl_length": batch_mean.detach(), "pl_mean": pl_mean}

    def _mean_over_processes(self, value: Tensor) -> Tensor:
        trainer = self.attached_trainer
        if trainer is None or trainer.world_size == 1:
            return value
        return trainer.strategy.reduce(value.clone(), reduce_op="mean")

    # ----------------------------------------------------------------------------------------------------------
    # Sampling and the editing tools' interface
    # ----------------------------------------------------------------------------------------------------------

    def sample_inputs(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Latents, and for a conditional model labels drawn uniformly (so that metrics sample every class)."""
        inputs = super().sample_inputs(n, generator)
        if self.num_classes:
            inputs["labels"] = torch.randint(self.num_classes, (n,), generator=generator).to(self.device)
        return inputs

    def sample_conditions(self) -> dict[str, Tensor]:
        """``{"labels": arange(K)}`` for a conditional model (a row per class in the sample grids)."""
        return {"labels": torch.arange(self.num_classes, device=self.device)} if self.num_classes else {}

    def evaluation_terms(self, real: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """The base's, on a batch cut to a whole number of D's minibatch-stddev groups (the official layer reshapes
        the batch into groups; a last, smaller validation batch may not divide)."""
        group = next((m.group_size for m in self.discriminator.modules() if getattr(m, "group_size", None)), None)
        if group and real.shape[0] > group:
            keep = real.shape[0] // group * group
            real, cond = real[:keep], {name: c[:keep] for name, c in cond.items()}
        return super().evaluation_terms(real, **cond)
