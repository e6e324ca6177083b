"""The shared GAN LightningModule: manual optimisation of a discriminator and a generator.

Training length: one *iteration* is ``n_critic`` discriminator steps, each on its own real batch (one batch per
``training_step``), followed by one generator step. ``trainer.global_step`` counts iterations (generator steps)
only, so ``max_steps``, ``ModelCheckpoint(every_n_train_steps=...)`` and the sample-grid interval all count
iterations, as in the papers. An epoch is one pass of the discriminator over the real data.
"""

import copy
import functools
import hashlib
import importlib
import inspect
import math
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from gans.distributed import picklable_parametrizations
from gans.errors import ConfigurationError
from gans.losses import adversarial_loss, r1_penalty, r2_penalty
from gans.nets.layers import pack as pack_samples

#: The default optimizer spec. A spec in this form is what LightningCLI writes to ``config.yaml``; it is also
#: accepted from Python, so a variant can state its paper's optimizer as a default that both understand.
ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 2e-4, "betas": (0.5, 0.999)}}


def optimizer_factory(spec: OptimizerCallable | LRSchedulerCallable | Mapping) -> Any:
    """Turns a ``{"class_path": ..., "init_args": {...}}`` spec into a callable; passes callables through."""
    if not isinstance(spec, Mapping):
        return spec
    module_name, _, class_name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return functools.partial(cls, **dict(spec.get("init_args", {})))


def _factory_target(factory: Any) -> Any:
    """The class or function a (possibly partial) factory calls."""
    if isinstance(factory, functools.partial):
        # jsonargparse's partial holds the class among its arguments, after its instantiator.
        classes = [item for item in (factory.func, *factory.args) if isinstance(item, type)]
        return classes[0] if classes else _factory_target(factory.func)
    return factory


def check_scheduler(argument: str, optimizer: Any, scheduler: Any) -> LRScheduler:
    """Builds the scheduler factory ``scheduler`` on the optimizer factory ``optimizer`` applied to one stand-in
    parameter, so that a scheduler that cannot be built from its configuration (a missing ``T_max``, OneCycleLR
    without ``total_steps``, SequentialLR given specs instead of schedulers) is refused when the model is built, not
    at the first training step. Returns the stand-in scheduler.

    Raises:
        ConfigurationError: naming ``argument`` (``g_scheduler`` or ``d_scheduler``), the scheduler and why it cannot
            be built.
    """
    target = _factory_target(scheduler)
    name = getattr(target, "__qualname__", type(target).__qualname__)
    try:
        stand_in = optimizer([torch.zeros(1, requires_grad=True)])
    except Exception:  # noqa: BLE001 (the optimizer's own error is reported when training builds it)
        stand_in = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3, momentum=0.9)
    try:
        built = scheduler(stand_in)
    except (TypeError, ValueError, AttributeError, KeyError) as err:
        hint = ""
        if isinstance(target, type) and "schedulers" in inspect.signature(target).parameters:
            hint = (
                f"; {name}'s `schedulers` are scheduler instances built on the optimizer, which a configuration "
                "cannot give: from Python, pass a function of the optimizer that builds them, e.g. "
                "lambda opt: SequentialLR(opt, [LinearLR(opt), ExponentialLR(opt, 0.99)], milestones=[1000])"
            )
        raise ConfigurationError(f"{argument}={name} cannot be built: {type(err).__name__}: {err}{hint}") from err
    if not isinstance(built, LRScheduler):
        raise ConfigurationError(
            f"{argument}={name} made a {type(built).__qualname__}; expected a torch.optim.lr_scheduler.LRScheduler"
        )
    return built


#: Devices with fused Adam kernels in torch 2.14.
FUSED_DEVICES = frozenset({"cpu", "cuda", "mps", "xpu"})


def fused_where_supported(optimizer: Optimizer) -> Optimizer:
    """An Adam or AdamW whose configuration set neither ``fused`` nor ``foreach``, rebuilt with ``fused=True`` when
    all its parameters are floating-point tensors on a device in ``FUSED_DEVICES``; any other optimizer as it is.

    The fused step updates every parameter in one kernel per device: on a GPU it saves the launches of the default
    multi-tensor step; on this project's CPU it takes 1.4 ms instead of 4.6 ms for DCGAN-64's generator (BENCHMARKS.md,
    "Training throughput"). ``fused: false`` or ``foreach: true`` in the optimizer's ``init_args`` keeps the
    unfused step.
    """
    chosen = optimizer.defaults
    if type(optimizer) not in (torch.optim.Adam, torch.optim.AdamW) or chosen.get("differentiable"):
        return optimizer
    if chosen.get("fused") is not None or chosen.get("foreach") is not None:
        return optimizer
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if not params or not all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in params):
        return optimizer
    accepted = inspect.signature(type(optimizer)).parameters
    settings = {name: value for name, value in chosen.items() if name in accepted}
    groups = [{**group, "fused": True} for group in optimizer.param_groups]
    return type(optimizer)(groups, **{**settings, "fused": True})


def _params_with_grad(optimizer: Optimizer | LightningOptimizer) -> list[nn.Parameter]:
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


def _no_closure() -> None:
    return None


def _channels_last(t: Tensor) -> Tensor:
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


def step_seed(*keys: int) -> int:
    """A 63-bit seed from integers, well mixed (blake2b), so that neighbouring steps get unrelated streams."""
    digest = hashlib.blake2b(b"".join(k.to_bytes(8, "little", signed=True) for k in keys), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class GAN(L.LightningModule):
    """Base of every GAN variant. A variant sets ``self.generator`` and ``self.discriminator`` in ``__init__`` and
    overrides only what differs (see the README's developer section):

    - ``unpack(batch)``: the real images and the conditioning (labels, source images) of a batch;
    - ``decode(network, z, **cond)``: how a generator network is called (a conditional variant passes labels);
    - ``generate(n, **cond)``: a differentiable batch of fakes (``decode`` of the raw generator on fresh z);
    - ``critic(x, **cond)``: the discriminator's scores, [N / pack], of samples (packed by PacGAN's ``pack``);
    - ``d_loss(real, fake, **cond)`` / ``g_loss(real, fake, **cond)``: dicts of named terms whose ``"d_loss"`` /
      ``"g_loss"`` entry is the total to minimise; every entry is logged under ``train/``;
    - ``after_d_step(terms)``: runs after each discriminator optimizer step (WGAN's clipping, BEGAN's k_t);
    - ``training_step`` itself, for schemes that are not "n_critic D steps then one G step".

    Args:
        latent_dim: size of the latent vector z ~ N(0, I).
        loss: adversarial loss, a name in ``gans.losses.ADVERSARIAL_LOSSES`` (``non_saturating``, ``minimax``,
            ``wasserstein``, ``hinge``, ``least_squares``).
        n_critic: discriminator steps per generator step (``k`` of Goodfellow et al.); each takes its own real batch.
        pack: PacGAN's packing degree m (Lin et al. 2018): the discriminator judges m samples at once, all real or
            all fake (``gans.nets.layers.pack``); its input has m times the channels. 1 is no packing.
        r1_gamma: weight gamma of the R1 penalty (Mescheder et al. 2018), gamma / 2 * E_real[||grad D||^2]; 0 is off.
        r2_gamma: weight gamma of the R2 penalty, the same on generated samples; 0 is off.
        reg_every: lazy regularisation (Karras et al. 2020): the R1/R2 penalties are computed on every
            ``reg_every``-th discriminator step only, multiplied by ``reg_every`` so that their average weight stays
            gamma. 1 computes them on every step.
        g_optimizer: optimizer of the generator's parameters (``--model.g_optimizer.lr=...`` on the CLI).
        d_optimizer: optimizer of the discriminator's parameters.
        g_scheduler: optional learning-rate scheduler of the generator, stepped by hand at ``scheduler_interval``.
        d_scheduler: optional learning-rate scheduler of the discriminator, stepped likewise.
        scheduler_interval: ``"step"`` steps the schedulers after every iteration, ``"epoch"`` after every epoch.
            A scheduler is refused when the model is built if its configuration cannot make one (a missing
            ``T_max``, ``OneCycleLR`` without ``total_steps``), and when fitting starts if it would be stepped more
            often than its ``total_steps`` allows.
        scheduler_monitor: the logged value that a ``ReduceLROnPlateau`` scheduler watches, e.g. ``"metrics/fid"``
            or ``"val/d_loss"``; required with torch's ``ReduceLROnPlateau`` (a GAN's per-batch loss is no measure
            of progress), while ``lightning.pytorch.cli.ReduceLROnPlateau`` brings its own ``monitor``, which wins.
            The scheduler is stepped at ``scheduler_interval`` whenever the value is new (for FID computed every N
            iterations, every N iterations: its ``patience`` counts evaluations), with the mean over processes. A key
            that is not logged while others of its kind (``train/``, ``metrics/``) are stops the run with a message.
        nonfinite: what a non-finite loss term or gradient does: ``"stop"`` raises ``FloatingPointError`` naming the
            loss, the network and the iteration before the step is applied (the checkpoints keep the last good
            state); ``"skip"`` drops that optimizer step, counts it in ``train/skipped_steps`` and goes on (a
            skipped generator step does not count as an iteration). Under DDP all processes take the same decision.
            Under fp16 mixed precision the GradScaler skips such steps itself (as it must while it calibrates its
            scale); they are counted, and stop the run only after ``skip_limit`` in a row.
        skip_limit: with ``nonfinite="skip"``, the number of one network's steps skipped in a row after which
            training stops anyway (its weights or the data have gone bad for good); 0 never stops.
        clip_grad_norm: the largest L2 norm of each optimizer step's gradient (all of one network's parameters
            together); larger ones are scaled down to it, after the gradients are averaged over processes and, under
            fp16 mixed precision, unscaled. The norm before clipping is logged as ``train/g_grad_norm`` and
            ``train/d_grad_norm``. None: no clipping (none of the classic GANs' papers clips).
        channels_last: keep the networks' 4-D weights and the image batches in the channels-last memory format,
            which tensor cores prefer for convolutions (on GPU, with mixed precision); the math is the same.
        compile: networks to compile with ``torch.compile`` when training starts, any of ``"generator"`` and
            ``"discriminator"``; one that fails to compile runs eagerly, with a warning. A discriminator under an
            input-gradient penalty (WGAN-GP, R1, R2) or unrolled cannot be compiled: those need its double backward.
    """

    generator: nn.Module
    discriminator: nn.Module

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
        nonfinite: Literal["stop", "skip"] = "stop",
        skip_limit: int = 100,
        clip_grad_norm: float | None = None,
        channels_last: bool = False,
        compile: list[str] | None = None,
    ) -> None:
        super().__init__()
        if latent_dim <= 0:
            raise ConfigurationError(f"latent_dim={latent_dim} must be a positive integer")
        if n_critic < 1:
            raise ConfigurationError(f"n_critic={n_critic} must be at least 1 (discriminator steps per generator step)")
        if pack < 1:
            raise ConfigurationError(f"pack={pack} must be at least 1 (samples per discriminator input)")
        if r1_gamma < 0 or r2_gamma < 0:
            raise ConfigurationError(f"r1_gamma={r1_gamma} and r2_gamma={r2_gamma} must be >= 0")
        if reg_every < 1:
            raise ConfigurationError(
                f"reg_every={reg_every} must be at least 1 (discriminator steps between penalties)"
            )
        if scheduler_interval not in ("step", "epoch"):
            raise ConfigurationError(f"scheduler_interval={scheduler_interval!r}; expected 'step' or 'epoch'")
        if nonfinite not in ("stop", "skip"):
            raise ConfigurationError(f"nonfinite={nonfinite!r}; expected 'stop' or 'skip'")
        if skip_limit < 0:
            raise ConfigurationError(f"skip_limit={skip_limit} must be >= 0 (0: never stop for skipped steps)")
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ConfigurationError(f"clip_grad_norm={clip_grad_norm} must be positive (or None: no clipping)")
        if not set(compile or []) <= {"generator", "discriminator"}:
            raise ConfigurationError(f"compile={compile}; expected a list of 'generator' and/or 'discriminator'")
        # Optimizers and schedulers are training configuration (LightningCLI keeps them in config.yaml); they are
        # not needed to rebuild the networks from a checkpoint, and a callable would not pickle with weights_only.
        self.save_hyperparameters(ignore=["g_optimizer", "d_optimizer", "g_scheduler", "d_scheduler"])
        self.automatic_optimization = False
        self.latent_dim = latent_dim
        self.n_critic = n_critic
        self.pack = pack
        self.r1_gamma, self.r2_gamma, self.reg_every = r1_gamma, r2_gamma, reg_every
        self.d_adversarial, self.g_adversarial = adversarial_loss(loss)
        self.g_optimizer = optimizer_factory(g_optimizer)
        self.d_optimizer = optimizer_factory(d_optimizer)
        self.g_scheduler = None if g_scheduler is None else optimizer_factory(g_scheduler)
        self.d_scheduler = None if d_scheduler is None else optimizer_factory(d_scheduler)
        self.scheduler_interval = scheduler_interval
        plateaus = []
        for name, optimizer, scheduler in (
            ("g_scheduler", self.g_optimizer, self.g_scheduler), ("d_scheduler", self.d_optimizer, self.d_scheduler)
        ):
            built = None if scheduler is None else check_scheduler(name, optimizer, scheduler)
            if not isinstance(built, ReduceLROnPlateau):
                continue
            plateaus.append(name)
            # A GAN's per-batch loss is no measure of progress: on it the rate would fall every `patience` steps.
            if scheduler_monitor is None and not getattr(built, "monitor", None):
                raise ConfigurationError(
                    f"{name}=ReduceLROnPlateau needs scheduler_monitor, the logged value it watches: e.g. "
                    "'metrics/fid' (with the GANMetrics callback) or 'val/d_loss' (with validation)"
                )
        if scheduler_monitor is not None and not plateaus:
            raise ConfigurationError(
                f"scheduler_monitor={scheduler_monitor!r} is only read by a ReduceLROnPlateau scheduler, and neither "
                "g_scheduler nor d_scheduler is one"
            )
        self.scheduler_monitor = scheduler_monitor
        self._plateau_values: dict[str, float] = {}  # the value each plateau scheduler was last stepped with
        self.nonfinite, self.skip_limit = nonfinite, skip_limit
        self.clip_grad_norm = clip_grad_norm
        self.channels_last = channels_last
        self.compile_networks = list(compile or [])
        self.skipped_steps = 0  # optimizer steps dropped for non-finite values (nonfinite="skip")
        self._skipped_in_a_row = {"generator": 0, "discriminator": 0}
        # Base of the per-step seeds of the global RNG (on_train_batch_start): drawn when fitting starts, saved in
        # checkpoints, so a resumed run draws the same latents, dropout masks and penalty points as an uninterrupted one.
        self.rng_seed: int | None = None
        self.d_steps = 0  # discriminator steps taken; global_step counts generator steps
        self.images_seen = 0  # real images shown to the discriminator, summed over all processes
        # The exponential moving average of the generator, set by callbacks.GeneratorEMA (attach_ema); sample()
        # uses it when present. A registered submodule, so checkpoints and device moves carry it.
        self.generator_ema: nn.Module | None = None

    # ----------------------------------------------------------------------------------------------------------
    # What a variant overrides
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

    def generate(self, n: int, **cond: Tensor) -> Tensor:
        """A batch of ``n`` fakes from fresh latents, differentiable w.r.t. the generator."""
        return self.decode(self.generator, self.sample_z(n), **cond)

    def critic(self, x: Tensor, **cond: Tensor) -> Tensor:
        """The discriminator's scores of a batch of samples, [N / pack]."""
        return self.discriminator(pack_samples(x, self.pack))

    def d_loss(self, real: Tensor, fake: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """Discriminator objective on a real batch and a detached fake batch, with the R1/R2 penalties when on."""
        regularize = self.d_steps % self.reg_every == 0  # lazy regularisation: this step carries the penalties
        r1, r2 = regularize and self.r1_gamma > 0, regularize and self.r2_gamma > 0
        real, fake = real.detach().requires_grad_(r1), fake.detach().requires_grad_(r2)
        d_real = self.critic(real, **cond)  # [N / pack]
        d_fake = self.critic(fake, **cond)  # [N / pack]
        terms = {
            "d_loss": self.d_adversarial(d_real, d_fake),
            "d_real": d_real.detach().mean(),
            "d_fake": d_fake.detach().mean(),
        }
        for name, on, gamma, penalty, scores, x in (
            ("r1", r1, self.r1_gamma, r1_penalty, d_real, real),
            ("r2", r2, self.r2_gamma, r2_penalty, d_fake, fake),
        ):
            if on:
                value = penalty(scores, x, self.grad_scale())
                terms["d_loss"] = terms["d_loss"] + gamma / 2 * self.reg_every * value
                terms[name] = value.detach()
        return terms

    def grad_scale(self) -> float:
        """The fp16 GradScaler's current loss scale, 1.0 without one: what input-gradient penalties multiply the
        scores by before their own backward, as PyTorch's AMP recipe asks, within the bounds that keep that backward
        in float16's range (``gans.losses.input_gradient``)."""
        return float(self._scaler.get_scale()) if self._scaler is not None else 1.0

    @property
    def _scaler(self) -> Any:
        """The precision plugin's GradScaler (fp16 mixed precision), or None."""
        return getattr(self._trainer.precision_plugin, "scaler", None) if self._trainer is not None else None

    def g_loss(self, real: Tensor, fake: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """Generator objective on a fake batch that carries the generator's graph."""
        return {"g_loss": self.g_adversarial(self.critic(fake, **cond))}

    def after_d_step(self, terms: dict[str, Tensor]) -> None:
        """Runs after every discriminator optimizer step, with that step's terms; nothing by default."""

    # ----------------------------------------------------------------------------------------------------------
    # Sampling
    # ----------------------------------------------------------------------------------------------------------

    def attach_ema(self) -> nn.Module:
        """Creates ``generator_ema``, a frozen copy of the generator, unless there is one; returns it."""
        if self.generator_ema is None:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        return self.generator_ema

    def decode(self, network: nn.Module, z: Tensor, **cond: Tensor) -> Tensor:
        """Runs a generator network on latents (and conditioning); a conditional variant passes its labels on."""
        return network(z)

    @torch.no_grad()
    def sample(
        self,
        n: int | None = None,
        z: Tensor | None = None,
        generator: torch.Generator | None = None,
        ema: bool = True,
        **cond: Tensor,
    ) -> Tensor:
        """``n`` images in [-1, 1], [n, C, H, W], from the EMA generator when there is one (``ema=False``: the raw
        generator), in eval mode (BatchNorm running statistics). A generator of points returns them unclamped.

        Args:
            n: number of images; may be omitted when ``z`` is given.
            z: latents to decode, [n, latent_dim]; drawn from ``generator`` (or the global RNG) when ``None``.
            generator: a ``torch.Generator`` seeding the latents.
            ema: decode with the EMA generator when there is one.
        """
        if z is None:
            if n is None:
                raise TypeError("sample() needs the number of images n or the latents z")
            z = self.sample_z(n, generator)
        network = self.generator_ema if ema and self.generator_ema is not None else self.generator
        was_training = network.training
        network.eval()
        try:
            images = self.decode(network, z.to(self.device), **cond)
        finally:
            network.train(was_training)
        # Images are clamped to their range; other samples (2-D points) are returned as they are.
        return images.clamp(-1.0, 1.0) if images.dim() == 4 else images

    # ----------------------------------------------------------------------------------------------------------
    # Training loop
    # ----------------------------------------------------------------------------------------------------------

    def configure_optimizers(self) -> list[dict[str, Any]]:
        pairs = [
            (fused_where_supported(self.g_optimizer(self.generator.parameters())), self.g_scheduler),
            (fused_where_supported(self.d_optimizer(self.discriminator.parameters())), self.d_scheduler),
        ]
        configs = []
        for argument, (opt, sched) in zip(("g_scheduler", "d_scheduler"), pairs, strict=True):
            if sched is None:
                configs.append({"optimizer": opt})
                continue
            scheduler = sched(opt)
            self._check_scheduler_length(argument, scheduler)
            # Returned to Lightning so that their states are checkpointed; in manual optimisation it never steps them.
            configs.append({"optimizer": opt, "lr_scheduler": scheduler})
        return configs

    def _check_scheduler_length(self, argument: str, scheduler: LRScheduler) -> None:
        """Refuses, before training, a scheduler with a fixed length (OneCycleLR's ``total_steps``) that the run
        would step past: it would raise at that step, possibly hours into training."""
        total = getattr(scheduler, "total_steps", None)
        if total is None or self._trainer is None:
            return
        trainer = self.trainer
        if self.scheduler_interval == "epoch":
            planned = math.inf if trainer.max_epochs in (None, -1) else trainer.max_epochs
            unit = f"trainer.max_epochs={trainer.max_epochs}"
            if trainer.max_steps != -1:  # max_steps ends the run first when its iterations fill fewer epochs
                # The fit loop sets its data up (once) later anyway; num_training_batches needs it now.
                trainer.fit_loop.setup_data()
                batches = trainer.num_training_batches
                if batches != math.inf and batches > 0:
                    epochs = math.ceil(trainer.max_steps * self.n_critic / batches)
                    if epochs < planned:
                        planned, unit = epochs, f"trainer.max_steps={trainer.max_steps} ({epochs} epochs)"
        elif trainer.max_steps != -1:
            planned, unit = trainer.max_steps, f"trainer.max_steps={trainer.max_steps} iterations"
        else:  # an epoch is a pass of the discriminator: n_critic batches per iteration
            batches = trainer.estimated_stepping_batches
            planned = math.ceil(batches / self.n_critic) if batches != math.inf else math.inf
            unit = f"trainer.max_epochs={trainer.max_epochs} ({planned} iterations)"
        if planned > total:
            remedy = (
                f"set its total_steps to at least {planned}"
                if planned != math.inf
                else "give the run an end (trainer.max_steps or trainer.max_epochs)"
            )
            raise ConfigurationError(
                f"{argument}={type(scheduler).__qualname__} has total_steps={total}, but this run steps it once per "
                f"{self.scheduler_interval} for {unit} (scheduler_interval={self.scheduler_interval!r}): {remedy}"
            )

    def training_step(self, batch: Any, batch_idx: int) -> None:
        g_opt, d_opt = self.optimizers()
        real, cond = self.unpack(batch)
        if self.channels_last:
            real, cond = _channels_last(real), {name: _channels_last(c) for name, c in cond.items()}
        n = real.shape[0]
        self.images_seen += n * self.trainer.world_size

        with torch.no_grad():
            fake = self.generate(n, **cond)
        if fake.shape[1:] != real.shape[1:]:  # else D may still run (another output size) and train on nonsense
            raise ConfigurationError(
                f"the data gives images of shape {tuple(real.shape[1:])} but the generator makes "
                f"{tuple(fake.shape[1:])}: set the model's channels/image_size to match the data module's"
            )
        d_terms = self.d_loss(real, fake, **cond)
        # global_step counts generator steps only (module docstring): this step must not advance it.
        if self._optimize(d_opt, d_terms, "d_loss", count_step=False):
            self.after_d_step(d_terms)
        self.d_steps += 1
        logs, g_stepped = d_terms, False

        if self.d_steps % self.n_critic == 0:
            # Freezing D's parameters skips their weight gradients in the generator's backward pass.
            self.toggle_optimizer(g_opt)
            g_terms = self.g_loss(real, self.generate(n, **cond), **cond)
            g_stepped = self._optimize(g_opt, g_terms, "g_loss", count_step=True)
            self.untoggle_optimizer(g_opt)
            logs = {**d_terms, **g_terms}

        self.log_dict({f"train/{name}": value.detach() for name, value in logs.items()})
        if g_stepped and self.scheduler_interval == "step":  # after the log, which a ReduceLROnPlateau reads
            self._step_schedulers()
        if self.nonfinite == "skip" or self.skipped_steps:
            self.log("train/skipped_steps", float(self.skipped_steps))

    def _optimize(self, optimizer: LightningOptimizer, terms: dict[str, Tensor], total: str, count_step: bool) -> bool:
        """Backward of ``terms[total]`` and the optimizer's step, unless a term or a gradient is not finite (see
        ``nonfinite``). Returns whether the step was applied."""
        optimizer.zero_grad(set_to_none=True)
        try:
            self.manual_backward(terms[total])
        except RuntimeError as err:
            if "double backward" not in str(err) or not self.compile_networks:
                raise
            raise RuntimeError(
                f"train/{total} needs a double backward through a compiled network (compile={self.compile_networks}): "
                "input-gradient penalties (WGAN-GP, R1, R2) and unrolling differentiate through the discriminator's "
                "gradient, which torch.compile does not support; compile only the generator"
            ) from err
        if not self._check_finite(optimizer, terms, total):
            optimizer.zero_grad(set_to_none=True)
            return False
        if count_step:
            optimizer.step()
        else:
            # The strategy's step is what LightningOptimizer.step() runs (precision plugin, GradScaler included)
            # without the progress hooks that advance global_step.
            self.trainer.strategy.optimizer_step(optimizer.optimizer, closure=_no_closure)
        return True

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        # The precision plugin calls this inside the step: after gan_ddp's all-reduce and the GradScaler's unscale_,
        # before the optimizer runs (Lightning's Trainer(gradient_clip_val) does not apply to manual optimisation).
        if self.clip_grad_norm is None:
            return
        scaler = self._scaler
        if scaler is not None and getattr(optimizer, "_step_supports_amp_scaling", False):
            # Lightning leaves a fused optimizer's gradients scaled, for its step to unscale; clipping needs them
            # unscaled first, and GradScaler.step then tells the optimizer they are.
            scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(_params_with_grad(optimizer), self.clip_grad_norm)
        self.log(f"train/{self._network(optimizer)[0]}_grad_norm", norm)

    def _network(self, optimizer: Optimizer) -> str:
        """``"generator"`` or ``"discriminator"``: whose parameters the (unwrapped) ``optimizer`` steps."""
        return "generator" if optimizer is self.trainer.optimizers[0] else "discriminator"

    def _check_finite(self, optimizer: LightningOptimizer, terms: dict[str, Tensor], total: str) -> bool:
        """Whether the loss terms and the gradients of ``optimizer``'s parameters are all finite, on every process.
        One device sync per step; names are only looked up once something is wrong. With ``nonfinite="stop"`` a
        failure raises; with ``"skip"`` it is counted."""
        params = _params_with_grad(optimizer)
        flags = [torch.stack([t.detach().float() for t in terms.values()]).isfinite().all()]
        # Under fp16 mixed precision the GradScaler owns overflow: while it calibrates, scaled gradients (and input
        # gradients inside penalties) overflow, and it skips those steps and lowers its scale. Such steps are left to
        # it (counted; stopped only after skip_limit in a row); the gradients are not checked.
        scaled = self._scaler is not None
        if params and not scaled:
            flags.append(torch.stack(torch._foreach_norm([p.grad for p in params])).isfinite().all())
        finite = torch.stack(flags).all()
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            # The losses differ between processes: all of them must skip or stop together.
            finite = finite.to(self.trainer.strategy.root_device, torch.int32)
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        network = self._network(optimizer.optimizer)
        if bool(finite):
            self._skipped_in_a_row[network] = 0
            return True

        bad_terms = {name: float(t.detach()) for name, t in terms.items() if not torch.isfinite(t).all()}
        bad_grads = [name for name, p in self.named_parameters() if p.grad is not None and not p.grad.isfinite().all()]
        where = f"at iteration {self.global_step} (discriminator step {self.d_steps}, epoch {self.current_epoch})"
        if bad_terms:
            name, value = next(iter(bad_terms.items()))
            what = f"train/{name} became {value} in the {network}'s step {where}; non-finite terms: {bad_terms}"
        elif bad_grads:
            what = (
                f"the {network}'s gradient of train/{total} = {float(terms[total]):.4g} became non-finite {where}, "
                f"first in {bad_grads[0]} ({len(bad_grads)} parameter tensors)"
            )
        else:
            what = f"a non-finite loss or gradient on another process in the {network}'s step {where}"
        if self.nonfinite == "skip" or scaled:
            self.skipped_steps += 1
            self._skipped_in_a_row[network] += 1
            in_a_row = self._skipped_in_a_row[network]
            if not self.skip_limit or in_a_row < self.skip_limit:
                if scaled:  # the scaler sees the non-finite gradients, skips the step and lowers its scale
                    return True
                rank_zero_warn(f"Skipped the step: {what}. Steps skipped so far: {self.skipped_steps}.")
                return False
            what += f"; {in_a_row} of the {network}'s steps in a row were skipped (skip_limit={self.skip_limit})"
        raise FloatingPointError(
            f"{what}. Training stopped before this step was applied: the last checkpoint holds the last good state. "
            "Lower the learning rates, check the data, or pass --model.init_args.nonfinite=skip to skip such steps."
        )

    #: The data modules' ``batch_kind`` values whose batches ``unpack`` understands: ``"samples"`` (images or points
    #: alone), ``"labelled"`` ((samples, labels): an unconditional model ignores the labels), ``"paired"`` ((source,
    #: target) images of a translation set). A conditional or translation variant names its own.
    batch_kinds: tuple[str, ...] = ("samples", "labelled")

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
        # Runs before a checkpoint is restored, which then brings back the interrupted run's seed. Drawn from the
        # global RNG, so seed_everything fixes it; rank 0's, so that it does not depend on the process count.
        if stage == "fit" and self.rng_seed is None:
            self.rng_seed = self.trainer.strategy.broadcast(int(torch.randint(2**62, ())), src=0)
        if self.channels_last:  # before the optimizers exist: they then hold channels-last state too
            self.to(memory_format=torch.channels_last)

    def on_train_start(self) -> None:
        # A restored optimizer state brings its parameter groups' step implementation (fused, foreach) along: the
        # configured one wins, so a run resumed from an unfused optimizer's checkpoint takes the fused step that the
        # GradScaler now expects of it (an unfused Adam fails when handed its scale).
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group.update({k: optimizer.defaults[k] for k in ("fused", "foreach") if k in optimizer.defaults})
        # After a checkpoint is restored and the EMA copy made (a copy of a compiled module would share its code).
        if self.compile_networks:
            # A network that dynamo cannot compile then runs eagerly instead of stopping the run.
            torch._dynamo.config.suppress_errors = True
            for name in self.compile_networks:
                getattr(self, name).compile()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Every random draw of a training step (latents, dropout, penalty points) comes from the global RNG seeded
        # from (run seed, process, discriminator step): a resumed run repeats the uninterrupted one step for step,
        # whatever sampling, validation or metrics drew in between, and processes draw different latents.
        if self.rng_seed is not None:
            torch.manual_seed(step_seed(self.rng_seed, self.global_rank, self.d_steps))

    def _step_schedulers(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            if isinstance(scheduler, ReduceLROnPlateau):
                self._step_plateau(scheduler)
            else:
                scheduler.step()

    def _step_plateau(self, scheduler: ReduceLROnPlateau) -> None:
        """Steps a ReduceLROnPlateau with its monitored value (``scheduler_monitor``), when that value is new."""
        network = self._network(scheduler.optimizer)
        key = getattr(scheduler, "monitor", None) or self.scheduler_monitor  # one is set: __init__ refuses neither
        logged = self.trainer.callback_metrics
        if key not in logged:
            family = key.split("/")[0] + "/"
            kin = sorted(name for name in logged if name.startswith(family))
            if kin:  # its kind is logged, it is not: a misspelt key would otherwise never step the scheduler
                raise ConfigurationError(
                    f"scheduler_monitor={key!r} (the value the {network}'s ReduceLROnPlateau watches) is not logged; "
                    f"logged values: {', '.join(kin)}"
                )
            # Not logged yet (metrics/ every N iterations, val/ after the first validation); Python shows it once.
            rank_zero_warn(f"scheduler_monitor={key!r} is not logged yet: the {network}'s ReduceLROnPlateau waits")
            return
        # The processes' own losses differ: all of them must step with the same value, or their rates would part.
        value = torch.as_tensor(logged[key], dtype=torch.float32, device=self.trainer.strategy.root_device)
        value = float(self.trainer.strategy.reduce(value, reduce_op="mean"))
        if self._plateau_values.get(network) == value:  # not evaluated again since the last step
            return
        self._plateau_values[network] = value
        scheduler.step(value)

    def on_train_epoch_end(self) -> None:
        if self.scheduler_interval == "epoch":
            self._step_schedulers()

    # ----------------------------------------------------------------------------------------------------------
    # Validation and test: how D scores held-out real images against fresh fakes (a rising gap between
    # train/d_real and val/d_real is the discriminator over-fitting, the signal ADA acts on).
    # ----------------------------------------------------------------------------------------------------------

    def _evaluate(self, batch: Any, prefix: str) -> None:
        real, cond = self.unpack(batch)
        keep = real.shape[0] // self.pack * self.pack  # a last, smaller batch is cut to whole packs
        real, cond = real[:keep], {name: c[:keep] for name, c in cond.items()}
        d_real = self.critic(real, **cond)
        d_fake = self.critic(self.sample(real.shape[0], **cond), **cond)
        metrics = {"d_loss": self.d_adversarial(d_real, d_fake), "d_real": d_real.mean(), "d_fake": d_fake.mean()}
        self.log_dict({f"{prefix}/{name}": value for name, value in metrics.items()}, sync_dist=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """One fake per example of the batch, with that example's conditioning (labels, source images): for a
        translation model, the translations of the inputs; for an unconditional one, as many fresh samples."""
        real, cond = self.unpack(batch)
        return self.sample(real.shape[0], **cond)

    # ----------------------------------------------------------------------------------------------------------
    # Checkpoints
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
            "d_steps": self.d_steps,
            "images_seen": self.images_seen,
            "skipped_steps": self.skipped_steps,
            "rng_seed": self.rng_seed,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("gans", {})
        self.d_steps = state.get("d_steps", 0)
        self.images_seen = state.get("images_seen", 0)
        self.skipped_steps = state.get("skipped_steps", 0)
        self.rng_seed = state.get("rng_seed", self.rng_seed)
        # Runs before the state dict is loaded: a checkpoint with an EMA generator loads with or without the callback,
        # and one without (a run that had no EMA) into a module with one starts the average at the generator.
        weights = checkpoint.get("state_dict", {})
        if any(key.startswith("generator_ema.") for key in weights):
            self.attach_ema()
        elif self.generator_ema is not None:
            prefix = "generator."
            weights.update({f"generator_ema.{k[len(prefix):]}": v for k, v in list(weights.items()) if k.startswith(prefix)})


def load_gan(path: str | Path, map_location: str | torch.device = "cpu", unsafe_load: bool = False) -> GAN:
    """Rebuilds the GAN variant a checkpoint of this library was saved from, with its weights, in eval mode.

    ``path`` is a training checkpoint (``.ckpt``) or a generator exported by ``gans.export`` (``.safetensors``:
    the generator's weights only, no pickle at all). A checkpoint loads with ``weights_only=True``: one that would
    need arbitrary unpickling (objects other than tensors and plain containers, which can run code while loading) is
    refused unless ``unsafe_load`` says its source is trusted.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist (expected a .ckpt file written by training)")
    if path.suffix == ".safetensors":
        from gans.export import load_exported

        return load_exported(path, map_location)
    from callbacks.checkpoint import checkpoint_problem  # here: callbacks import gans at module level

    problem = checkpoint_problem(path)
    if problem is not None:
        raise ConfigurationError(f"cannot load checkpoint {str(path)!r}: {problem}")
    checkpoint = _load_checkpoint(path, map_location, unsafe_load)
    class_path = checkpoint.get("gans", {}).get("class_path") if isinstance(checkpoint, dict) else None
    if class_path is None:
        raise ConfigurationError(f"{str(path)!r} is not a checkpoint of a gans model (it has no 'gans' entry)")
    model = build_gan(class_path, checkpoint.get("hyper_parameters", {}))
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(map_location).eval()


def _load_checkpoint(path: Path, map_location: str | torch.device, unsafe_load: bool) -> Any:
    """``torch.load`` with ``weights_only=True``, or without it for a file that needs it when ``unsafe_load``;
    any failure becomes a ValueError that names the file."""
    try:
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            if not unsafe_load:
                raise ConfigurationError(
                    f"{str(path)!r} holds objects that only arbitrary unpickling can load, and unpickling can run any "
                    f"code ({str(err).splitlines()[0][:200]}). Load it only if you trust its source: --unsafe-load "
                    "(unsafe_load=True in Python)"
                ) from err
        return torch.load(path, map_location=map_location, weights_only=False)
    except ValueError:
        raise
    except Exception as err:
        raise ConfigurationError(f"cannot load checkpoint {str(path)!r}: {type(err).__name__}: {err}") from err


def build_gan(class_path: str, hyper_parameters: Mapping[str, Any]) -> GAN:
    """An untrained instance of the variant ``class_path`` built with a checkpoint's hyperparameters."""
    module_name, _, class_name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    # Keys starting with "_" are LightningCLI's bookkeeping (_class_path, _instantiator), not arguments.
    return cls(**{k: v for k, v in hyper_parameters.items() if not k.startswith("_")})
