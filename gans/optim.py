"""Optimizers and learning-rate schedules of a GAN: built from LightningCLI specs, fused where the device allows, lazily
regularised phases corrected as in StyleGAN2, and schedulers stepped by hand (manual optimisation never steps them).

A spec ``{"class_path": ..., "init_args": {...}}`` is what LightningCLI writes to ``config.yaml``; it is also accepted
from Python, so a variant can state its paper's optimizer as a default that both understand. Specs are turned into
callables by Lightning's own ``instantiate_class``, the one class-path importer of the library.
"""

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable, instantiate_class
from lightning.pytorch.utilities import rank_zero_warn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from gans.errors import ConfigurationError

#: The default optimizer spec: Adam(2e-4, betas=(0.5, 0.999)), DCGAN's.
ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 2e-4, "betas": (0.5, 0.999)}}

#: Devices with fused Adam kernels in torch 2.14.
FUSED_DEVICES = frozenset({"cpu", "cuda", "mps", "xpu"})


class SpecFactory:
    """A callable for a ``{"class_path": ..., "init_args": {...}}`` spec: called with the positional arguments the spec
    leaves out (an optimizer's parameters, a network's sizes), it builds the class with the spec's ``init_args``
    through Lightning's ``instantiate_class``. Picklable, so spawned processes get it."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        if "." not in str(spec.get("class_path", "")):
            raise ConfigurationError(
                f"class_path={spec.get('class_path')!r}: expected the full import path of a class, e.g. "
                "'gans.nets.ResNetGenerator' (short names are the command line's)"
            )
        self.spec = {"class_path": spec["class_path"], "init_args": dict(spec.get("init_args") or {})}

    def __call__(self, *args: Any) -> Any:
        return instantiate_class(args, self.spec)


def from_spec(spec: Callable | Mapping | type) -> Callable:
    """A callable from a spec (:class:`SpecFactory`); a class is taken as a spec without ``init_args``; any other
    callable (a ``functools.partial``, jsonargparse's factory) is returned as it is."""
    if isinstance(spec, type):
        spec = {"class_path": f"{spec.__module__}.{spec.__qualname__}"}
    return SpecFactory(spec) if isinstance(spec, Mapping) else spec


def spec_of(factory: Any) -> Any:
    """The JSON-able ``{"class_path", "init_args"}`` spec behind a factory: a spec as it is, a class, a
    :func:`from_spec` callable, or a ``functools.partial`` of a class with keyword arguments (LightningCLI's and
    jsonargparse's factories included); anything else (a lambda) as it is, which a checkpoint can then only pickle."""
    if isinstance(factory, Mapping):
        return {"class_path": factory["class_path"], "init_args": dict(factory.get("init_args") or {})}
    if isinstance(factory, type):
        return {"class_path": f"{factory.__module__}.{factory.__qualname__}", "init_args": {}}
    if isinstance(factory, SpecFactory):
        return factory.spec
    target = factory_target(factory)
    if isinstance(factory, functools.partial) and isinstance(target, type):
        return {"class_path": f"{target.__module__}.{target.__qualname__}", "init_args": dict(factory.keywords)}
    return factory


def with_default_spec(cls: type, argument: str, factory: Any) -> Any:
    """``factory``, or for a spec without ``class_path`` (``{"init_args": {"features": 32}}``) the default spec of
    ``cls``'s ``__init__`` argument ``argument`` (its own or, through ``**kwargs``, a base's) with those ``init_args``
    changed: from Python, the paper's network with other sizes.

    Raises:
        ConfigurationError: a spec without ``class_path`` for an argument whose default is not a spec.
    """
    if not isinstance(factory, Mapping) or "class_path" in factory:
        return factory
    signatures = (inspect.signature(klass.__init__).parameters for klass in cls.__mro__)
    default = next((params[argument].default for params in signatures if argument in params), None)
    if not isinstance(default, Mapping):
        raise ConfigurationError(f"{argument}={dict(factory)!r} names no class_path, and its default is no spec")
    return {**default, "init_args": {**default.get("init_args", {}), **factory.get("init_args", {})}}


def factory_target(factory: Any) -> Any:
    """The class or function a (possibly partial) factory calls; for a :class:`SpecFactory`, which imports its class
    only when called, its ``class_path``."""
    if isinstance(factory, SpecFactory):
        return factory.spec["class_path"]
    if isinstance(factory, functools.partial):
        # jsonargparse's partial holds the class among its arguments, after its instantiator.
        classes = [item for item in (factory.func, *factory.args) if isinstance(item, type)]
        return classes[0] if classes else factory_target(factory.func)
    return factory


def check_scheduler(argument: str, optimizer: OptimizerCallable, scheduler: LRSchedulerCallable) -> LRScheduler:
    """Builds the scheduler factory ``scheduler`` on the optimizer factory ``optimizer`` applied to one stand-in
    parameter, so that a scheduler that cannot be built from its configuration (a missing ``T_max``, OneCycleLR
    without ``total_steps``, SequentialLR given specs instead of schedulers) is refused when the model is built, not
    at the first training step. Returns the stand-in scheduler.

    Raises:
        ConfigurationError: naming ``argument`` (``g_scheduler`` or ``d_scheduler``), the scheduler and why it cannot
            be built.
    """
    target = factory_target(scheduler)
    if isinstance(target, str):  # a spec's class_path: torch's own schedulers are at hand without an import
        module_name, _, name = target.rpartition(".")
        target = getattr(torch.optim.lr_scheduler, name) if module_name == "torch.optim.lr_scheduler" else target
    name = target.rpartition(".")[2] if isinstance(target, str) else getattr(target, "__qualname__", str(target))
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


class LinearDecay(LRScheduler):
    """pix2pix's and CycleGAN's learning-rate policy (``--lr_policy linear``): the configured rate for ``constant``
    steps, then a linear decay over ``decay`` steps, the factor after step t (0-based) being
    ``1 - max(0, t + 1 - constant) / (decay + 1)`` as the reference code's ``lambda_rule`` (so the last step of the
    decay still trains at 1 / (decay + 1) of the rate). A step is an epoch with ``scheduler_interval="epoch"``, as the
    papers count (100 + 100 epochs), or an iteration. Stepping it more than ``constant + decay`` times is refused
    before training (``total_steps``), since the rate would be zero.

    Args:
        optimizer: the optimizer whose rates it scales.
        constant: steps at the configured rate (the reference's ``n_epochs``, 100).
        decay: steps of the linear decay (``n_epochs_decay``, 100).
        last_epoch: the index of the last step taken (-1: a new run).

    Raises:
        ConfigurationError: ``constant`` below 0 or ``decay`` below 1.
    """

    def __init__(self, optimizer: Optimizer, constant: int = 100, decay: int = 100, last_epoch: int = -1) -> None:
        if constant < 0 or decay < 1:
            raise ConfigurationError(
                f"LinearDecay(constant={constant}, decay={decay}): expected constant >= 0 steps at the full rate and "
                "decay >= 1 steps of decay"
            )
        self.constant, self.decay = constant, decay
        self.total_steps = constant + decay
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The multiplier of the configured rates after ``step`` steps (0 at the start)."""
        return max(0.0, 1.0 - max(0, step + 1 - self.constant) / (self.decay + 1))

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]


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


def restore_configured_steps(optimizers: list[Optimizer]) -> None:
    """Gives each optimizer's parameter groups back the step implementation it was configured with (``fused``,
    ``foreach``): a restored optimizer state brings its own along, so a run resumed from an unfused optimizer's
    checkpoint would otherwise keep the unfused step, which fails when the GradScaler hands it its scale."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group.update({k: optimizer.defaults[k] for k in ("fused", "foreach") if k in optimizer.defaults})


def lazy_regularization_ratio(interval: int) -> float:
    """``c / (c + 1)`` for a regularisation phase run every ``c`` steps of its network's main phase (Karras et al.
    2020, appendix B; ``mb_ratio`` of the official ``training_loop.py``)."""
    return interval / (interval + 1)


def correct_for_lazy_regularization(optimizer: Optimizer, ratio: float) -> None:
    """Scales each parameter group's learning rate by ``ratio`` and raises its Adam betas to the power ``ratio``, as
    the official StyleGAN2 code does for a network with a lazy regularisation phase: with one extra step every ``c``
    main steps, the optimizer's effective rate and momentum horizon per main step stay what was configured."""
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * ratio
        if "betas" in group:
            group["betas"] = tuple(beta**ratio for beta in group["betas"])


class Schedules:
    """The learning-rate schedulers of a GAN's optimizers, stepped by hand at ``interval``.

    Args:
        factories: per optimizer name (``"generator"``, ``"discriminator"``), the argument it came from
            (``"g_scheduler"``), the optimizer factory and the scheduler factory or ``None``.
        interval: ``"step"`` (after every iteration) or ``"epoch"``.
        monitor: the logged value a ``ReduceLROnPlateau`` watches (see :class:`gans.base.GAN`).

    Raises:
        ConfigurationError: a scheduler that cannot be built, a ReduceLROnPlateau without ``monitor``, or a
            ``monitor`` without a ReduceLROnPlateau.
    """

    def __init__(
        self,
        factories: Mapping[str, tuple[str, OptimizerCallable, LRSchedulerCallable | None]],
        interval: str = "step",
        monitor: str | None = None,
    ) -> None:
        if interval not in ("step", "epoch"):
            raise ConfigurationError(f"scheduler_interval={interval!r}; expected 'step' or 'epoch'")
        self.arguments = {name: argument for name, (argument, _, _) in factories.items()}
        self.factories = {name: scheduler for name, (_, _, scheduler) in factories.items() if scheduler is not None}
        plateaus = []
        for argument, optimizer, scheduler in factories.values():
            built = None if scheduler is None else check_scheduler(argument, optimizer, scheduler)
            if not isinstance(built, ReduceLROnPlateau):
                continue
            plateaus.append(argument)
            # A GAN's per-batch loss is no measure of progress: on it the rate would fall every `patience` steps.
            if monitor is None and not getattr(built, "monitor", None):
                raise ConfigurationError(
                    f"{argument}=ReduceLROnPlateau needs scheduler_monitor, the logged value it watches: e.g. "
                    "'metrics/fid' (with the GANMetrics callback) or 'val/d_loss' (with validation)"
                )
        if monitor is not None and not plateaus:
            raise ConfigurationError(
                f"scheduler_monitor={monitor!r} is only read by a ReduceLROnPlateau scheduler, and none of "
                f"{', '.join(self.arguments.values())} is one"
            )
        self.interval, self.monitor = interval, monitor
        self._plateau_values: dict[str, float] = {}  # the value each plateau scheduler was last stepped with

    def build(self, name: str, optimizer: Optimizer) -> Any:
        """The scheduler of optimizer ``name`` built on ``optimizer``, or ``None``."""
        factory = self.factories.get(name)
        return None if factory is None else factory(optimizer)

    def check_lengths(self, trainer: L.Trainer, schedulers: Mapping[str, Any], batches_per_iteration: int) -> None:
        """Refuses a scheduler of ``schedulers`` (by optimizer name) that the run would step past its ``total_steps``.
        Called when training starts: the data loaders are set up by then (and a resumed run's loader state restored:
        setting them up earlier, before the checkpoint is read, would lose it)."""
        for name, scheduler in schedulers.items():
            self._check_length(self.arguments[name], scheduler, trainer, batches_per_iteration)

    def _check_length(self, argument: str, scheduler: Any, trainer: L.Trainer, batches_per_iteration: int) -> None:
        """Refuses, before training, a scheduler with a fixed length (OneCycleLR's ``total_steps``) that the run
        would step past: it would raise at that step, possibly hours into training."""
        total = getattr(scheduler, "total_steps", None)
        if total is None:
            return
        if self.interval == "epoch":
            planned = math.inf if trainer.max_epochs in (None, -1) else trainer.max_epochs
            unit = f"trainer.max_epochs={trainer.max_epochs}"
            if trainer.max_steps != -1:  # max_steps ends the run first when its iterations fill fewer epochs
                batches = trainer.num_training_batches
                if batches != math.inf and batches > 0:
                    epochs = math.ceil(trainer.max_steps * batches_per_iteration / batches)
                    if epochs < planned:
                        planned, unit = epochs, f"trainer.max_steps={trainer.max_steps} ({epochs} epochs)"
        elif trainer.max_steps != -1:
            planned, unit = trainer.max_steps, f"trainer.max_steps={trainer.max_steps} iterations"
        else:  # an epoch is a pass over the training batches, batches_per_iteration of them per iteration
            batches = trainer.estimated_stepping_batches
            planned = math.ceil(batches / batches_per_iteration) if batches != math.inf else math.inf
            unit = f"trainer.max_epochs={trainer.max_epochs} ({planned} iterations)"
        if planned > total:
            remedy = (
                f"set its total_steps to at least {planned}"
                if planned != math.inf
                else "give the run an end (trainer.max_steps or trainer.max_epochs)"
            )
            raise ConfigurationError(
                f"{argument}={type(scheduler).__qualname__} has total_steps={total}, but this run steps it once per "
                f"{self.interval} for {unit} (scheduler_interval={self.interval!r}): {remedy}"
            )

    def step(self, trainer: L.Trainer, schedulers: Mapping[str, Any]) -> None:
        """Steps every scheduler in ``schedulers`` (by optimizer name); a ReduceLROnPlateau with its monitored value,
        when that value is new."""
        for name, scheduler in schedulers.items():
            if isinstance(scheduler, ReduceLROnPlateau):
                self._step_plateau(trainer, name, scheduler)
            else:
                scheduler.step()

    def _step_plateau(self, trainer: L.Trainer, name: str, scheduler: ReduceLROnPlateau) -> None:
        key = getattr(scheduler, "monitor", None) or self.monitor  # one is set: __init__ refuses neither
        logged = trainer.callback_metrics
        if key not in logged:
            family = key.split("/")[0] + "/"
            kin = sorted(logged_name for logged_name in logged if logged_name.startswith(family))
            if kin:  # its kind is logged, it is not: a misspelt key would otherwise never step the scheduler
                raise ConfigurationError(
                    f"scheduler_monitor={key!r} (the value {self.arguments[name]}=ReduceLROnPlateau watches) is not "
                    "logged; "
                    f"logged values: {', '.join(kin)}"
                )
            # Not logged yet (metrics/ every N iterations, val/ after the first validation); Python shows it once.
            rank_zero_warn(
                f"scheduler_monitor={key!r} is not logged yet: {self.arguments[name]}=ReduceLROnPlateau waits"
            )
            return
        # The processes' own losses differ: all of them must step with the same value, or their rates would part.
        value = torch.as_tensor(logged[key], dtype=torch.float32, device=trainer.strategy.root_device)
        value = float(trainer.strategy.reduce(value, reduce_op="mean"))
        if self._plateau_values.get(name) == value:  # not evaluated again since the last step
            return
        self._plateau_values[name] = value
        scheduler.step(value)

    def state_dict(self) -> dict[str, Any]:
        return {"plateau_values": dict(self._plateau_values)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._plateau_values = dict(state.get("plateau_values", {}))
