"""The shared GAN LightningModule: the GAN logic every variant shares, nothing else.

Training length: a training batch runs the phases of the variant's schedule that are due (``gans.phases``); one
*iteration* ends with the phase marked ``iteration`` (the generator step). For the classic schedule an iteration is
``n_critic`` discriminator steps, each on its own real batch, then one generator step. ``trainer.global_step`` counts
iterations only, so ``max_steps``, ``ModelCheckpoint(every_n_train_steps=...)`` and the sample-grid interval all
count iterations, as in the papers. An epoch is one pass over the real data.

Infrastructure lives in its own modules: optimizers and schedulers (``gans.optim``), the non-finite guard and
clipping (``gans.guard``), seeds (``gans.seeding``), memory format and compile (``gans.precision``), checkpoint
loading (``gans.loading``).
"""

import copy
from collections.abc import Callable
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.optim import Optimizer

from gans.distributed import picklable_parametrizations
from gans.errors import ConfigurationError
from gans.guard import NonFinite, StepGuard, grad_scaler
from gans.loading import build_gan, load_gan
from gans.losses import adversarial_loss, r1_penalty, r2_penalty
from gans.nets.layers import pack as pack_samples
from gans.optim import (
    ADAM,
    Schedules,
    correct_for_lazy_regularization,
    from_spec,
    fused_where_supported,
    restore_configured_steps,
    spec_of,
    with_default_spec,
)
from gans.outputs import GeneratorOutput
from gans.phases import Phase, Schedule
from gans.precision import channels_last, check_compile, compile_networks, double_backward_error
from gans.seeding import step_seed

__all__ = ["ADAM", "GAN", "GeneratorOutput", "Phase", "build_gan", "load_gan"]

#: Arguments that configure training, not the model: left out of the saved hyperparameters, which rebuild the model.
INFRASTRUCTURE = (
    "g_optimizer", "d_optimizer", "g_scheduler", "d_scheduler", "scheduler_interval", "scheduler_monitor",
    "nonfinite", "skip_limit", "clip_grad_norm", "channels_last", "compile",
)


def _no_closure() -> None:
    return None


class GAN(L.LightningModule):
    """Base of every GAN variant. A variant builds its networks in ``__init__`` (``self.generator``, the one used for
    sampling, EMA, export and metrics, and ``self.discriminator``; any others it names in ``optimized_networks``) and
    overrides only what differs (see the README's developer guide):

    - ``phases()``: the training schedule (``gans.phases.Phase``), by default D every batch, G every ``n_critic``-th,
      lazy R1/R2 as a ``D_reg`` phase when ``reg_every > 1``;
    - ``optimized_networks()``: which networks each optimizer steps;
    - ``unpack(batch)``: the real images and the conditioning (labels, source images) of a batch;
    - ``decode(network, z, **cond)``: how a generator network is called; returns a ``GeneratorOutput``;
    - ``critic(x, **cond)``: the discriminator's scores, [N / pack], of samples or of a ``GeneratorOutput``;
    - the phases' losses (``d_loss``, ``d_reg_loss``, ``g_loss``): dicts of named terms, each logged under ``train/``;
    - ``evaluation_terms(real, **cond)``: what validation and test log;
    - ``sample_inputs`` / ``sample_conditions`` / ``metric_sample_options``: what the callbacks show and measure.

    Args:
        latent_dim: size of the latent vector z ~ N(0, I); 0 for a model without z (translation).
        loss: adversarial loss, a name in ``gans.losses.ADVERSARIAL_LOSSES`` (``non_saturating``, ``minimax``,
            ``wasserstein``, ``hinge``, ``least_squares``).
        n_critic: discriminator steps per generator step (``k`` of Goodfellow et al.); each takes its own real batch.
        pack: PacGAN's packing degree m (Lin et al. 2018): the discriminator judges m samples at once, all real or
            all fake (``gans.nets.layers.pack``); its input has m times the channels. 1 is no packing.
        r1_gamma: weight gamma of the R1 penalty (Mescheder et al. 2018), gamma / 2 * E_real[||grad D||^2]; 0 is off.
        r2_gamma: weight gamma of the R2 penalty, the same on generated samples; 0 is off.
        reg_every: lazy regularisation (Karras et al. 2020): with ``reg_every`` c > 1 the R1/R2 penalties are a phase
            of their own (``D_reg``), run every c-th discriminator step with weight c, and the discriminator's optimizer
            gets the official correction lr * c/(c+1), betas ** (c/(c+1)); 1 adds them to every discriminator loss.
        g_optimizer: optimizer of the generator's parameters (``--model.g_optimizer.lr=...`` on the CLI), a
            ``class_path``/``init_args`` spec or a factory (``gans.optim``).
        d_optimizer: optimizer of the discriminator's parameters.
        g_scheduler: optional learning-rate scheduler of the generator, stepped by hand (``gans.optim.Schedules``:
            refused when the model is built if its configuration cannot make one, and when fitting starts if the run
            would step it past its ``total_steps``).
        d_scheduler: optional learning-rate scheduler of the discriminator.
        scheduler_interval: ``"step"`` steps the schedulers after every iteration, ``"epoch"`` after every epoch.
        scheduler_monitor: the logged value a ``ReduceLROnPlateau`` watches (``"metrics/fid"``, ``"val/d_loss"``),
            required with torch's; it steps whenever the value is new, with the mean over processes.
        nonfinite: what a non-finite loss term or gradient does (``gans.guard.StepGuard``): ``"stop"`` raises
            ``FloatingPointError`` naming it before the step is applied; ``"skip"`` drops that optimizer step, counts
            it in ``train/skipped_steps`` and goes on (a skipped generator step is no iteration). Under DDP all
            processes decide together; under fp16 the GradScaler's own skips are counted. ``"sanitize"`` checks
            nothing and applies the step with NaN gradients set to 0 and +-inf to +-1e5 (StyleGAN2-ADA's way; under
            fp16 the GradScaler still skips the steps that overflowed).
        skip_limit: with ``nonfinite="skip"``, one network's steps skipped in a row after which training stops; 0
            never stops.
        clip_grad_norm: the largest L2 norm of each optimizer step's gradient, applied after the all-reduce and the
            fp16 unscaling; the norm before clipping is logged as ``train/g_grad_norm`` / ``train/d_grad_norm``. None:
            no clipping (none of the classic GANs' papers clips).
        channels_last: keep 4-D weights and image batches channels-last (tensor cores prefer it); the math is the same.
        compile: networks to ``torch.compile`` when training starts (``"generator"``, ``"discriminator"``); a
            discriminator under an input-gradient penalty or unrolled cannot be (no double backward); a network dynamo
            cannot compile stops the run with dynamo's error.

    Raises:
        ConfigurationError: a value outside the ranges above.
    """

    generator: nn.Module
    discriminator: nn.Module

    #: The data modules' ``batch_kind`` values whose batches ``unpack`` understands: ``"samples"`` (images or points
    #: alone), ``"labelled"`` ((samples, labels): an unconditional model ignores the labels), ``"paired"`` ((source,
    #: target) images of a translation set). A conditional or translation variant names its own.
    batch_kinds: tuple[str, ...] = ("samples", "labelled")

    def __init__(
        self,
        latent_dim: int = 100,
        loss: str = "non_saturating",
        n_critic: int = 1,
        pack: int = 1,
        r1_gamma: float = 0.0,
        r2_gamma: float = 0.0,
        reg_every: int = 1,
        g_optimizer: OptimizerCallable = ADAM,
        d_optimizer: OptimizerCallable = ADAM,
        g_scheduler: LRSchedulerCallable | None = None,
        d_scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["step", "epoch"] = "step",
        scheduler_monitor: str | None = None,
        nonfinite: NonFinite = "stop",
        skip_limit: int = 100,
        clip_grad_norm: float | None = None,
        channels_last: bool = False,
        compile: list[str] | None = None,
    ) -> None:
        super().__init__()
        for name, value, low, meaning in (
            ("latent_dim", latent_dim, 0, "the size of z; 0 for a model without z"),
            ("n_critic", n_critic, 1, "discriminator steps per generator step"),
            ("pack", pack, 1, "samples per discriminator input"),
            ("reg_every", reg_every, 1, "discriminator steps between penalties"),
        ):
            if value < low:
                raise ConfigurationError(f"{name}={value} must be at least {low} ({meaning})")
        if r1_gamma < 0 or r2_gamma < 0:
            raise ConfigurationError(f"r1_gamma={r1_gamma} and r2_gamma={r2_gamma} must be >= 0")
        if reg_every > 1 and not (r1_gamma or r2_gamma):  # accepted, it would change nothing
            raise ConfigurationError(f"reg_every={reg_every} spaces the R1/R2 penalties, which are off: set r1_gamma")
        self.save_hyperparameters(ignore=list(INFRASTRUCTURE))
        self.automatic_optimization = False
        self.latent_dim, self.n_critic, self.pack = latent_dim, n_critic, pack
        self.r1_gamma, self.r2_gamma, self.reg_every = r1_gamma, r2_gamma, reg_every
        self.d_adversarial, self.g_adversarial = adversarial_loss(loss)
        #: Optimizer factories by optimizer name (the keys of ``optimized_networks``); a variant may add its own.
        self.optimizer_factories: dict[str, Callable] = {"g": from_spec(g_optimizer), "d": from_spec(d_optimizer)}
        schedulers = {"g": g_scheduler, "d": d_scheduler}
        self.schedules = Schedules(
            {
                name: (f"{name}_scheduler", self.optimizer_factories[name], None if sched is None else from_spec(sched))
                for name, sched in schedulers.items()
            },
            scheduler_interval,
            scheduler_monitor,
        )
        self.guard = StepGuard(nonfinite, skip_limit, clip_grad_norm)
        self.channels_last = channels_last
        self.compile_networks = list(compile or [])
        # Base of the per-step seeds of the global RNG (on_train_batch_start): drawn when fitting starts, saved in
        # checkpoints, so a resumed run draws the same latents, dropout masks and penalty points as an uninterrupted
        # one.
        self.rng_seed: int | None = None
        self.batches_seen = 0  # training batches run: the clock of the phases
        self.images_seen = 0  # real images shown to the model, summed over all processes (kimg)
        # The exponential moving average of the generator, set by callbacks.GeneratorEMA (attach_ema); sample()
        # uses it when present. A registered submodule, so checkpoints and device moves carry it.
        self.generator_ema: nn.Module | None = None
        self._schedule: Schedule | None = None
        self._schedulers: dict[str, Any] = {}
        self._phase: Phase | None = None  # the phase being run, for the names of what its step logs
        self._uncorrected_restore = False  # optimizer state restored from a checkpoint older than lazy phases

    def build_network(self, argument: str, factory: Any, *sizes: Any) -> nn.Module:
        """The network of ``__init__`` argument ``argument``, built by ``factory`` (a ``class_path``/``init_args``
        spec, a class, or a factory such as LightningCLI gives) from the ``sizes`` the variant derives (latent size,
        channels, image size). A spec without ``class_path`` (``{"init_args": {"features": 32}}``) changes the
        variant's default network. The spec is recorded in the hyperparameters, so ``load_gan`` rebuilds the same
        network."""
        factory = with_default_spec(type(self), argument, factory)
        network = from_spec(factory)(*sizes)
        if argument in self.hparams:
            self.hparams[argument] = spec_of(factory)
        return network

    def build_discriminator(self, factory: Any, channels: int | tuple[int, ...], *sizes: Any) -> nn.Module:
        """``build_network("discriminator", ...)`` for inputs of ``channels`` channels (or of a shape whose first
        entry is the channel count), multiplied by PacGAN's ``pack``: the discriminator judges ``pack`` samples
        stacked along the channels."""
        packed = channels * self.pack if isinstance(channels, int) else (channels[0] * self.pack, *channels[1:])
        return self.build_network("discriminator", factory, packed, *sizes)

    # ----------------------------------------------------------------------------------------------------------
    # The schedule: what a variant overrides to train differently
    # ----------------------------------------------------------------------------------------------------------

    def optimized_networks(self) -> dict[str, tuple[str, ...]]:
        """The networks (attribute names) each optimizer steps, by optimizer name; ``g_optimizer`` and ``d_optimizer``
        build ``"g"`` and ``"d"``. The order is that of ``trainer.optimizers``."""
        return {"g": ("generator",), "d": ("discriminator",)}

    def phases(self) -> tuple[Phase, ...]:
        """The training schedule: D on every batch (with R1/R2 when ``reg_every`` is 1), lazy R1/R2 as ``D_reg`` on
        every ``reg_every``-th batch when it is more, and G on every ``n_critic``-th batch, completing the iteration."""
        phases = [Phase("D", "d", "d_loss", "d_loss", after="after_d_step")]
        if self.reg_every > 1 and (self.r1_gamma > 0 or self.r2_gamma > 0):
            fake = "detached" if self.r2_gamma > 0 else "none"  # R1 alone needs no fakes
            # after_d_step too: WGAN's clipping follows every step of the discriminator.
            phases.append(Phase(
                "D_reg", "d", "d_reg_loss", "d_reg", every=self.reg_every, fake=fake, lazy=True, after="after_d_step"
            ))
        phases.append(Phase("G", "g", "g_loss", "g_loss", every=self.n_critic, fake="graph", iteration=True))
        return tuple(phases)

    @property
    def schedule(self) -> Schedule:
        """The validated schedule of ``phases()``, built once."""
        if self._schedule is None:
            self._schedule = Schedule(self.phases(), self.optimized_networks())
        return self._schedule

    # ----------------------------------------------------------------------------------------------------------
    # Data, networks and losses
    # ----------------------------------------------------------------------------------------------------------

    def unpack(self, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """Splits a batch into real images [N, C, H, W] and keyword conditioning for G and D (none here)."""
        real = batch[0] if isinstance(batch, (tuple, list)) else batch
        return real, {}

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Latents z ~ N(0, I), [n, latent_dim]. With a ``torch.Generator`` they are drawn on the CPU, so a seed
        gives the same latents on every device."""
        if generator is not None:
            return torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        return torch.randn(n, self.latent_dim, device=self.device)

    def decode(self, network: nn.Module, z: Tensor, **cond: Tensor) -> GeneratorOutput:
        """Runs a generator network on latents (and conditioning); a conditional variant passes its labels on."""
        return GeneratorOutput.of(network(z))

    def generate(self, n: int, **cond: Tensor) -> GeneratorOutput:
        """A batch of ``n`` fakes from fresh latents, differentiable w.r.t. the generator."""
        return self.decode(self.generator, self.sample_z(n), **cond)

    def critic(self, x: Tensor | GeneratorOutput, discriminator: Callable | None = None, **cond: Tensor) -> Tensor:
        """The discriminator's scores of a batch of samples (or of a generator's output), [N / pack]. ``discriminator``
        replaces ``self.discriminator`` (the unrolled GAN passes its unrolled copy)."""
        return (discriminator or self.discriminator)(pack_samples(GeneratorOutput.images_of(x), self.pack))

    def d_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        """Discriminator objective on a real batch and a detached fake batch, with the R1/R2 penalties when they are
        not lazy (``reg_every`` 1)."""
        regularize = self.reg_every == 1
        real = real.detach().requires_grad_(regularize and self.r1_gamma > 0)
        fake_images = fake.images.detach().requires_grad_(regularize and self.r2_gamma > 0)
        d_real = self.critic(real, **cond)  # [N / pack]
        d_fake = self.critic(fake_images, **cond)  # [N / pack]
        terms = {
            "d_loss": self.d_adversarial(d_real, d_fake),
            "d_real": d_real.detach().mean(),
            "d_fake": d_fake.detach().mean(),
            "d_real_sign": d_real.detach().sign().mean(),  # r_t of ADA (Karras et al. 2020), D's overfitting
        }
        if regularize:
            terms = self._add_penalties(terms, "d_loss", real, fake_images, d_real, d_fake, gain=1)
        return terms

    def d_reg_loss(self, real: Tensor, fake: GeneratorOutput | None, **cond: Tensor) -> dict[str, Tensor]:
        """The lazy ``D_reg`` phase: the R1/R2 penalties alone, times ``reg_every`` so that their average weight stays
        gamma (StyleGAN2's ``loss_Dr1 * gain``)."""
        real = real.detach().requires_grad_(self.r1_gamma > 0)
        d_real = self.critic(real, **cond) if self.r1_gamma > 0 else None
        fake_images = fake.images.detach().requires_grad_(True) if fake is not None else None
        d_fake = self.critic(fake_images, **cond) if fake_images is not None else None
        terms = {"d_reg": torch.zeros((), device=real.device)}
        return self._add_penalties(terms, "d_reg", real, fake_images, d_real, d_fake, gain=self.reg_every)

    def _add_penalties(
        self, terms: dict[str, Tensor], total: str, real: Tensor, fake: Tensor | None, d_real: Tensor | None,
        d_fake: Tensor | None, gain: int,
    ) -> dict[str, Tensor]:
        for name, gamma, penalty, scores, x in (
            ("r1", self.r1_gamma, r1_penalty, d_real, real),
            ("r2", self.r2_gamma, r2_penalty, d_fake, fake),
        ):
            if gamma > 0 and scores is not None:
                value = penalty(scores, x, self.grad_scale())
                terms[total] = terms[total] + gamma / 2 * gain * value
                terms[name] = value.detach()
        return terms

    def g_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        """Generator objective on a fake batch that carries the generator's graph."""
        return {"g_loss": self.g_adversarial(self.critic(fake, **cond))}

    def after_d_step(self, terms: dict[str, Tensor]) -> None:
        """Runs after every applied discriminator step (``D`` and lazy ``D_reg``), with its terms (WGAN's clipping,
        BEGAN's k_t); nothing by default."""

    def grad_scale(self) -> float:
        """The fp16 GradScaler's current loss scale, 1.0 without one: what input-gradient penalties multiply the
        scores by before their own backward, as PyTorch's AMP recipe asks, within the bounds that keep that backward
        in float16's range (``gans.losses.input_gradient``)."""
        scaler = grad_scaler(self.attached_trainer)
        return float(scaler.get_scale()) if scaler is not None else 1.0

    @property
    def attached_trainer(self) -> L.Trainer | None:
        """The trainer, or ``None`` outside one. Lightning's public ``trainer`` raises when the module is not attached,
        and offers no public test of it: its ``_trainer`` attribute, ``None`` then, is read here and nowhere else
        (``tests/test_models.py::test_attached_trainer`` fails if Lightning changes it)."""
        return self._trainer

    # ----------------------------------------------------------------------------------------------------------
    # Sampling, and what the callbacks show and measure
    # ----------------------------------------------------------------------------------------------------------

    def attach_ema(self) -> nn.Module:
        """Creates ``generator_ema``, a frozen copy of the generator, unless there is one; returns it."""
        if self.generator_ema is None:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        return self.generator_ema

    @torch.no_grad()
    def sample_output(
        self,
        n: int | None = None,
        z: Tensor | None = None,
        generator: torch.Generator | None = None,
        ema: bool = True,
        **cond: Tensor,
    ) -> GeneratorOutput:
        """What the generator makes of ``n`` latents, in eval mode (BatchNorm running statistics), from the EMA
        generator when there is one (``ema=False``: the trained generator); images (and the outputs at other scales)
        clamped to [-1, 1], 2-D points and ``ws`` as they are.

        Args:
            n: number of samples; may be omitted when ``z`` is given.
            z: latents to decode, [n, latent_dim]; drawn from ``generator`` (or the global RNG) when ``None``.
            generator: a ``torch.Generator`` seeding the latents.
            ema: decode with the EMA generator when there is one.
            **cond: conditioning (labels, source images), on any device.

        Raises:
            TypeError: neither ``n`` nor ``z``.
        """
        if z is None:
            if n is None:
                raise TypeError("sample() needs the number of images n or the latents z")
            z = self.sample_z(n, generator)
        network = self.generator_ema if ema and self.generator_ema is not None else self.generator
        was_training = network.training
        network.eval()
        try:
            output = self.decode(network, z.to(self.device), **{k: c.to(self.device) for k, c in cond.items()})
        finally:
            network.train(was_training)
        return output.map(lambda t: t.clamp(-1.0, 1.0) if t.dim() == 4 else t)

    def sample(self, n: int | None = None, **kwargs: Any) -> Tensor:
        """``n`` images in [-1, 1], [n, C, H, W] (or [n, d] points): ``sample_output(...).images``."""
        return self.sample_output(n, **kwargs).images

    def sample_inputs(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The keyword inputs of ``sample`` for ``n`` reproducible samples (fixed grids, metrics): latents here; a
        conditional variant adds labels, a translation variant source images."""
        return {"z": self.sample_z(n, generator)}

    def metric_sample_options(self) -> dict[str, Any]:
        """Keyword options of ``sample`` for the samples the metrics score (besides ``sample_inputs``): none here; a
        variant whose sampling defaults suit pictures rather than the distribution changes them (a style-based GAN
        samples with random noise, as the official metrics)."""
        return {}

    def sample_grid(self, inputs: dict[str, Tensor], images: Tensor, nrow: int) -> tuple[Tensor, int]:
        """What a sample grid shows of ``images``, the samples of ``inputs``, and how many per row: the samples
        themselves here; a translation variant shows rows of input | output | target."""
        return images, nrow

    def metric_images(self, item: Any) -> Tensor:
        """The real images of a data item (or of collated items) that the metrics compare samples with: the item
        itself, or its first entry ((images, labels)); a translation variant's are the targets."""
        return item[0] if isinstance(item, (tuple, list)) else item

    def sample_conditions(self) -> dict[str, Tensor]:
        """Conditioning values to show one row each of (``{"labels": arange(K)}`` for a class-conditional variant);
        none here."""
        return {}

    # ----------------------------------------------------------------------------------------------------------
    # Training loop
    # ----------------------------------------------------------------------------------------------------------

    def configure_optimizers(self) -> list[dict[str, Any]]:
        configs, self._schedulers = [], {}
        for name, networks in self.optimized_networks().items():
            params = [p for network in networks for p in getattr(self, network).parameters()]
            optimizer = fused_where_supported(self.optimizer_factories[name](params))
            if name in self.schedule.lazy_ratios:
                correct_for_lazy_regularization(optimizer, self.schedule.lazy_ratios[name])
            scheduler = self.schedules.build(name, optimizer)
            if scheduler is None:
                configs.append({"optimizer": optimizer})
                continue
            # Returned to Lightning so that their states are checkpointed; in manual optimisation it never steps them.
            self._schedulers[name] = scheduler
            configs.append({"optimizer": optimizer, "lr_scheduler": scheduler})
        return configs

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """Runs the phases due at this batch. Returns their terms, detached (what is logged under ``train/``), which
        Lightning hands to callbacks as the ``outputs`` of ``on_train_batch_end`` (ADA reads ``d_real_sign``)."""
        real, cond = self.unpack(batch)
        if self.channels_last:
            real, cond = channels_last(real), {name: channels_last(c) for name, c in cond.items()}
        self.images_seen += real.shape[0] * self.trainer.world_size
        self.batches_seen += 1
        optimizers = self.optimizers()  # one LightningOptimizer alone, or a list of them
        optimizers = dict(zip(self.optimized_networks(), optimizers if isinstance(optimizers, list) else [optimizers],
                              strict=True))
        logs, iterated = {}, False
        for phase in self.schedule.phases:
            if self.schedule.due(phase, self.batches_seen):
                terms, stepped = self._run_phase(phase, optimizers[phase.optimizer], real, cond)
                logs.update(terms)
                iterated |= stepped and phase.iteration
        logs = {name: value.detach() for name, value in logs.items()}
        self.log_dict({f"train/{name}": value for name, value in logs.items()})
        if iterated and self.schedules.interval == "step":  # after the log, which a ReduceLROnPlateau reads
            self.schedules.step(self.trainer, self._schedulers)
        if self.guard.nonfinite == "skip" or self.skipped_steps:
            self.log("train/skipped_steps", float(self.skipped_steps))
        return logs

    def _run_phase(
        self, phase: Phase, optimizer: LightningOptimizer, real: Tensor, cond: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], bool]:
        """Runs one phase: its fakes, its loss, its optimizer step. Returns the terms and whether the step was
        applied."""
        # The other optimizers' networks are frozen, which skips their weight gradients (official: requires_grad_).
        self.toggle_optimizer(optimizer)
        self._phase = phase
        try:
            fake = None
            if phase.fake != "none":
                with torch.set_grad_enabled(phase.fake == "graph"):
                    fake = self.generate(real.shape[0], **cond)
                if fake.images.shape[1:] != real.shape[1:]:  # else D may still run (another size) on nonsense
                    raise ConfigurationError(
                        f"the data gives images of shape {tuple(real.shape[1:])} but the generator makes "
                        f"{tuple(fake.images.shape[1:])}: set the model's channels/image_size to match the data "
                        "module's"
                    )
            terms = getattr(self, phase.loss)(real, fake, **cond)
            stepped = self._optimize(phase, optimizer, terms)
        finally:
            self.untoggle_optimizer(optimizer)
        if stepped and phase.after is not None:
            getattr(self, phase.after)(terms)
        return terms, stepped

    def _optimize(self, phase: Phase, optimizer: LightningOptimizer, terms: dict[str, Tensor]) -> bool:
        """Backward of the phase's total and the optimizer's step, unless a term or a gradient is not finite (see
        ``nonfinite``). Returns whether the step was applied."""
        optimizer.zero_grad(set_to_none=True)
        try:
            self.manual_backward(terms[phase.total])
        except RuntimeError as err:
            explained = double_backward_error(err, phase.total, self.compile_networks)
            if explained is None:
                raise
            raise explained from err
        networks = " and ".join(self.optimized_networks()[phase.optimizer])

        def where() -> str:  # formatted only for a message
            return f"at iteration {self.global_step} (batch {self.batches_seen}, epoch {self.current_epoch})"

        if not self.guard.check(
            self.trainer, optimizer.optimizer, networks, terms, phase.total, self.named_parameters, where
        ):
            optimizer.zero_grad(set_to_none=True)
            return False
        if phase.iteration:
            optimizer.step()
        else:
            # The strategy's step is what LightningOptimizer.step() runs (precision plugin, GradScaler included)
            # without the progress hooks that advance global_step: only iterations count.
            self.trainer.strategy.optimizer_step(optimizer.optimizer, closure=_no_closure)
        return True

    @property
    def skipped_steps(self) -> int:
        """Optimizer steps dropped for non-finite values (``nonfinite="skip"``, or the GradScaler under fp16); with
        ``"sanitize"`` nothing is checked, so nothing is counted."""
        return self.guard.skipped_steps

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        # The precision plugin calls this inside the step: after gan_ddp's all-reduce and the GradScaler's unscale_,
        # before the optimizer runs (Lightning's Trainer(gradient_clip_val) does not apply to manual optimisation).
        norm = self.guard.finalize(self.trainer, optimizer)
        if norm is not None:  # train/g_grad_norm, train/d_grad_norm; a lazy phase's under its own name (d_reg)
            phase = self._phase
            self.log(f"train/{phase.name.lower() if phase.lazy else phase.optimizer}_grad_norm", norm)

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        kind = getattr(datamodule, "batch_kind", None)
        if kind is not None and kind not in self.batch_kinds:  # before the first step, not a crash or a silent misuse
            raise ConfigurationError(
                f"{type(self).__name__} cannot use the batches of {type(datamodule).__name__}: they are {kind!r} and "
                f"{type(self).__name__} takes {' or '.join(map(repr, self.batch_kinds))} batches; pair it with a data "
                "module of those kinds, or the data module with a variant made for its batches",
                "data",
            )
        check_compile(self.compile_networks, [name for name, _ in self.named_children()])
        # Runs before a checkpoint is restored, which then brings back the interrupted run's seed. Drawn from the
        # global RNG, so seed_everything fixes it; rank 0's, so that it does not depend on the process count.
        if stage == "fit" and self.rng_seed is None:
            self.rng_seed = self.trainer.strategy.broadcast(int(torch.randint(2**62, ())), src=0)
        if self.channels_last:  # before the optimizers exist: they then hold channels-last state too
            self.to(memory_format=torch.channels_last)

    def on_train_start(self) -> None:
        # Before the first step, once the data loaders (and a resumed run's loader state) are set up.
        self.schedules.check_lengths(self.trainer, self._schedulers, self.schedule.batches_per_iteration)
        restore_configured_steps(self.trainer.optimizers)
        if self._uncorrected_restore:  # the optimizer state just restored predates the lazy-phase correction
            for name, optimizer in zip(self.optimized_networks(), self.trainer.optimizers, strict=True):
                if name in self.schedule.lazy_ratios:
                    correct_for_lazy_regularization(optimizer, self.schedule.lazy_ratios[name])
            rank_zero_warn(
                "The checkpoint was written before lazy regularisation became a phase of its own: its R1/R2 now run "
                "as D_reg steps, and the discriminator's restored learning rate and betas were corrected by c/(c+1)"
            )
            self._uncorrected_restore = False
        # After a checkpoint is restored and the EMA copy made (a copy of a compiled module would share its code).
        compile_networks(self, self.compile_networks)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Every random draw of a training step (latents, dropout, penalty points) comes from the global RNG seeded
        # from (run seed, process, batch): a resumed run repeats the uninterrupted one step for step, whatever
        # sampling, validation or metrics drew in between, and processes draw different latents.
        if self.rng_seed is not None:
            torch.manual_seed(step_seed(self.rng_seed, self.global_rank, self.batches_seen))

    def on_train_epoch_end(self) -> None:
        if self.schedules.interval == "epoch":
            self.schedules.step(self.trainer, self._schedulers)

    # ----------------------------------------------------------------------------------------------------------
    # Validation and test: how D scores held-out real images against fresh fakes (a rising gap between
    # train/d_real and val/d_real is the discriminator over-fitting, the signal ADA acts on).
    # ----------------------------------------------------------------------------------------------------------

    def evaluation_terms(self, real: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """What validation and test log (under ``val/`` and ``test/``) for a held-out batch."""
        keep = real.shape[0] // self.pack * self.pack  # a last, smaller batch is cut to whole packs
        real, cond = real[:keep], {name: c[:keep] for name, c in cond.items()}
        d_real = self.critic(real, **cond)
        d_fake = self.critic(self.sample(real.shape[0], **cond), **cond)
        return {"d_loss": self.d_adversarial(d_real, d_fake), "d_real": d_real.mean(), "d_fake": d_fake.mean()}

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        real, cond = self.unpack(batch)
        self.log_dict({f"val/{k}": v for k, v in self.evaluation_terms(real, **cond).items()}, sync_dist=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        real, cond = self.unpack(batch)
        self.log_dict({f"test/{k}": v for k, v in self.evaluation_terms(real, **cond).items()}, sync_dist=True)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """One fake per example of the batch, with that example's conditioning (labels, source images): for a
        translation model, the translations of the inputs; for an unconditional one, as many fresh samples."""
        real, cond = self.unpack(batch)
        return self.sample(real.shape[0], **cond)

    # ----------------------------------------------------------------------------------------------------------
    # Checkpoints: the networks, the EMA and any stateful piece (a buffer, or a submodule's get_extra_state) are in
    # the state dict; the counters, the seed and the guard's and schedules' state in checkpoint["gans"].
    # ----------------------------------------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # Spawned processes (gan_ddp_spawn) get the module pickled, which torch refuses for a spectral-normalised
        # (parametrized) network unless it is told how.
        picklable_parametrizations(self)
        return super().__getstate__()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The concrete class, so that tools can rebuild the right variant (Base.load_from_checkpoint would not).
        checkpoint["gans"] = {
            "class_path": f"{type(self).__module__}.{type(self).__qualname__}",
            "batches_seen": self.batches_seen,
            "images_seen": self.images_seen,
            "rng_seed": self.rng_seed,
            "guard": self.guard.state_dict(),
            "schedules": self.schedules.state_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("gans", {})
        self.batches_seen = state.get("batches_seen", state.get("d_steps", 0))  # d_steps: older checkpoints
        self._uncorrected_restore = "d_steps" in state and bool(self.schedule.lazy_ratios)
        self.images_seen = state.get("images_seen", 0)
        self.rng_seed = state.get("rng_seed", self.rng_seed)
        self.guard.load_state_dict(state.get("guard", {"skipped_steps": state.get("skipped_steps", 0)}))
        self.schedules.load_state_dict(state.get("schedules", {}))
        # Runs before the state dict is loaded: a checkpoint with an EMA generator loads with or without the callback,
        # and one without (a run that had no EMA) into a module with one starts the average at the generator.
        weights = checkpoint.get("state_dict", {})
        if any(key.startswith("generator_ema.") for key in weights):
            self.attach_ema()
        elif self.generator_ema is not None:
            prefix = "generator."
            copies = {f"generator_ema.{k[len(prefix):]}": v for k, v in weights.items() if k.startswith(prefix)}
            weights.update(copies)

