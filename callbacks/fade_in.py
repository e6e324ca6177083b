"""Progressive growing (Karras et al. 2018, section 3): the resolution and fade-in weight of a growing GAN.

Training starts at a low resolution; each higher one is first faded in, its new blocks weighted ``alpha`` rising
linearly from 0 to 1 while the previous resolution's output (upsampled in G, downsampled input in D, and the real
images the same way) takes the rest, then stabilized at ``alpha = 1``. Both phases are counted in real images shown
(800k each in the paper; the official code's defaults are 600k).

Why a pure function of the images shown: the growth state is computed before every batch from the module's
``images_seen`` (summed over all processes, saved in every checkpoint), never accumulated. Every process computes the
same state from the same count, so DDP ranks cannot drift apart, and a run resumed in the middle of a fade computes
exactly the alpha of the uninterrupted run, without a state of its own to restore. The networks hold the state
they run with (``gans.nets.progan.Growing``), so checkpoints, exports and the EMA generator carry it too.

The module must offer ``resolutions`` (the sizes it can run at, coarse to fine) and ``set_growth(resolution,
alpha)`` (``gans.ProGAN``, and any growing variant).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
from typing_extensions import override

from gans.errors import ConfigurationError


@dataclass(frozen=True)
class GrowthState:
    """Where a progressive run stands.

    Attributes:
        resolution: the side of the images G makes and D judges.
        alpha: the weight of the newest blocks, in [0, 1]; 1 outside fades.
        phase: ``"fade"`` while alpha rises, ``"stabilize"`` after.
        stage: the phases before this one (0 for the first stabilization, 1 for the first fade, ...).
    """

    resolution: int
    alpha: float
    phase: Literal["fade", "stabilize"]
    stage: int = 0


class GrowthSchedule:
    """The growth state after any number of real images: ``stabilize_images`` at the first resolution, then for each
    higher one ``fade_images`` of fade (alpha = images into the fade / ``fade_images``) and ``stabilize_images`` of
    stabilization; the last resolution then trains for ever.

    Args:
        resolutions: the resolutions to grow through, coarse to fine, each twice the previous.
        fade_images: real images of each fade; 0 switches to a new resolution at once.
        stabilize_images: real images of each stabilization phase.
    """

    def __init__(self, resolutions: tuple[int, ...], fade_images: int, stabilize_images: int) -> None:
        self.resolutions, self.fade_images, self.stabilize_images = tuple(resolutions), fade_images, stabilize_images

    def at(self, images: int) -> GrowthState:
        """The state while training on the real images after the first ``images``."""
        left = images
        for index, resolution in enumerate(self.resolutions):
            if index > 0:
                if left < self.fade_images:
                    return GrowthState(resolution, left / self.fade_images, "fade", 2 * index - 1)
                left -= self.fade_images
            if left < self.stabilize_images:
                return GrowthState(resolution, 1.0, "stabilize", 2 * index)
            left -= self.stabilize_images
        return GrowthState(self.resolutions[-1], 1.0, "stabilize", 2 * len(self.resolutions) - 2)

    @property
    def images_to_final(self) -> int:
        """Real images until the last resolution is fully faded in: ``stabilize_images`` at the first resolution,
        then a fade and a stabilization for each but the last, then its fade."""
        return (len(self.resolutions) - 1) * (self.fade_images + self.stabilize_images)


class ProgressiveGrowing(L.Callback):
    """Grows the module through its resolutions (see the module docstring) and logs ``growth/resolution``,
    ``growth/alpha`` and ``growth/fading`` (1 during a fade) with every training batch.

    Args:
        fade_kimg: thousands of real images of each fade-in (800 in the paper).
        stabilize_kimg: thousands of real images of each stabilization, the first resolution's included (800).
        start_resolution: the first resolution (4 in the paper); one of the module's ``resolutions``.
        batch_size: optional batch size per process at each resolution (the official code's ``minibatch_dict``:
            larger batches where the networks are small); a resolution not listed keeps the data module's. The data
            module must take a batch-size schedule (``datamodules.base.ImageDataModule``).
        lr: optional learning rate of every optimizer at each resolution (the official ``G_lrate_dict``/
            ``D_lrate_dict``); a resolution not listed trains with the configured one. Not together with a
            learning-rate scheduler.
        reset_optimizer_state: clear the optimizers' state (Adam's moments and step counts) whenever a fade or a
            stabilization begins, as the official code's ``reset_opt_for_new_lod=True`` does. Off by default: every
            layer keeps its state as the networks grow, and a new block's parameters get theirs when they first
            train.

    Raises:
        ConfigurationError: negative durations, or a resolution the module does not have.
    """

    def __init__(
        self,
        fade_kimg: float = 800.0,
        stabilize_kimg: float = 800.0,
        start_resolution: int = 4,
        batch_size: dict[int, int] | None = None,
        lr: dict[int, float] | None = None,
        reset_optimizer_state: bool = False,
    ) -> None:
        for name, value in (("fade_kimg", fade_kimg), ("stabilize_kimg", stabilize_kimg)):
            if value < 0:
                raise ConfigurationError(f"{name}={value} must be >= 0 (thousands of real images)")
        for resolution, size in (batch_size or {}).items():
            if size < 1:
                raise ConfigurationError(f"batch_size={batch_size}: {size} images at {resolution}x{resolution}")
        for resolution, rate in (lr or {}).items():
            if rate <= 0:
                raise ConfigurationError(f"lr={lr}: {rate} at {resolution}x{resolution} must be positive")
        self.fade_images = round(fade_kimg * 1000)
        self.stabilize_images = round(stabilize_kimg * 1000)
        self.start_resolution = start_resolution
        self.batch_size = dict(batch_size or {})
        self.lr = dict(lr or {})
        self.reset_optimizer_state = reset_optimizer_state
        self._schedule: GrowthSchedule | None = None
        self._configured_lr: list[list[float]] | None = None  # per optimizer, per parameter group
        self._state: GrowthState | None = None
        self._stage: int | None = None  # the stage of the last batch, saved: a reset is due when it changes

    @property
    def state(self) -> GrowthState | None:
        """The growth state of the last batch (``None`` before training)."""
        return self._state

    @property
    def schedule(self) -> GrowthSchedule:
        if self._schedule is None:
            raise RuntimeError("ProgressiveGrowing has no schedule before setup()")
        return self._schedule

    @override
    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        if not callable(getattr(module, "set_growth", None)) or not hasattr(module, "resolutions"):
            raise ConfigurationError(
                f"model={type(module).__name__} cannot grow: ProgressiveGrowing needs a growing GAN (resolutions and "
                "set_growth(resolution, alpha), as gans.ProGAN)",
                "model",
            )
        resolutions = tuple(module.resolutions)
        for name, value in (("start_resolution", [self.start_resolution]), ("batch_size", self.batch_size),
                            ("lr", self.lr)):
            unknown = [r for r in value if r not in resolutions]
            if unknown:
                raise ConfigurationError(
                    f"{name}={getattr(self, name)}: {unknown} not among the model's resolutions {resolutions}"
                )
        self._schedule = GrowthSchedule(
            resolutions[resolutions.index(self.start_resolution):], self.fade_images, self.stabilize_images
        )
        if self.batch_size and stage == "fit":
            datamodule = trainer.datamodule
            if not hasattr(datamodule, "batch_size_schedule"):
                raise ConfigurationError(
                    f"batch_size={self.batch_size}: {type(datamodule).__name__} takes no batch-size schedule; use a "
                    "datamodules.base.ImageDataModule or leave batch_size out"
                )
            train_set = getattr(datamodule, "train_set", None)
            largest = max(self.batch_size.values()) * trainer.world_size
            if train_set is not None and largest > len(train_set):  # else its epochs would end before a first batch
                raise ConfigurationError(
                    f"batch_size={self.batch_size}: {largest} images per step over {trainer.world_size} process(es), "
                    f"more than the {len(train_set)} training images"
                )
            datamodule.batch_size_schedule = BatchSizes(self._schedule, self.batch_size, datamodule.batch_size)

    @override
    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # After the module's checkpoint state is restored (the images shown) and before sanity-check validation, so
        # that every forward pass of the run runs at the state of its image count. Lightning restores the optimizers
        # only after this hook: learning rates and resets wait for the first batch.
        if self.lr and trainer.lr_scheduler_configs:
            raise ConfigurationError(
                f"lr={self.lr} sets the learning rate per resolution, which the run's learning-rate scheduler also "
                "sets: use one of them"
            )
        if self._configured_lr is None:
            self._configured_lr = [[group["lr"] for group in opt.param_groups] for opt in trainer.optimizers]
        state = self.schedule.at(module.images_seen)
        module.set_growth(state.resolution, state.alpha)

    @override
    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        state = self.schedule.at(module.images_seen)
        module.set_growth(state.resolution, state.alpha)
        if self.lr:
            ratios = module.schedule.lazy_ratios  # an optimizer corrected for lazy regularisation keeps its correction
            names = list(module.optimized_networks())
            for name, optimizer, configured in zip(names, trainer.optimizers, self._configured_lr, strict=True):
                for group, rate in zip(optimizer.param_groups, configured, strict=True):
                    rate = self.lr[state.resolution] * ratios.get(name, 1.0) if state.resolution in self.lr else rate
                    group["lr"] = rate
        if self.reset_optimizer_state and self._stage is not None and state.stage != self._stage:
            for optimizer in trainer.optimizers:
                optimizer.state.clear()
        self._state, self._stage = state, state.stage
        module.log_dict({
            "growth/resolution": float(state.resolution),
            "growth/alpha": state.alpha,
            "growth/fading": float(state.phase == "fade"),
        })

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"configured_lr": self._configured_lr, "stage": self._stage}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._configured_lr = state_dict.get("configured_lr")
        self._stage = state_dict.get("stage")


@dataclass(frozen=True)
class BatchSizes:
    """The per-process batch size after a number of real images (all processes): ``sizes`` at the resolution of
    ``schedule`` then, ``default`` at a resolution not listed. What ``ProgressiveGrowing(batch_size=...)`` gives the
    data module."""

    schedule: GrowthSchedule
    sizes: dict[int, int]
    default: int

    def __call__(self, images: int) -> int:
        return self.sizes.get(self.schedule.at(images).resolution, self.default)
