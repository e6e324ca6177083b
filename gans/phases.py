"""Training phases as data: which networks a step optimises, how often, with which loss.

A GAN's schedule is a tuple of :class:`Phase`; every training batch runs, in order, the phases due at that batch.
This is the shape of NVIDIA's stylegan2-ada-pytorch training loop (phases Gmain, Greg, Dmain, Dreg, each with an
interval), with the classic GAN schedules as instances:

- Goodfellow et al.'s k discriminator steps per generator step (WGAN's ``n_critic``): ``D`` every batch, ``G`` every
  k-th batch, ``G`` completing the iteration;
- lazy regularisation (Karras et al. 2020): ``D_reg`` (R1/R2 alone) every c-th discriminator step and ``G_reg`` (path
  length) every c-th iteration, each with its own optimizer step, the network's optimizer corrected by
  lr * c/(c+1) and beta ** (c/(c+1)) because it takes (c+1)/c steps per main step;
- extra networks (InfoGAN's Q head, CycleGAN's two pairs): more phases over other optimizers.

A phase runs at a fixed interval for the whole run: stages (SRGAN's MSE pre-training of G alone for the first N
iterations) need a start and an end, which the SRGAN work adds.

Phases count training batches, not optimizer steps: a phase runs at batch t (1-based) when ``t % every == 0``
(``clock="batch"``), or in every ``every``-th batch that runs the iteration phase (``clock="iteration"``). A step the
non-finite guard skips does not move these clocks: the schedule stays that of the batches. The phase marked
``iteration`` is the one ``trainer.global_step`` counts, so ``max_steps`` and every interval in iterations keep
meaning generator steps.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from gans.errors import ConfigurationError
from gans.optim import lazy_regularization_ratio


@dataclass(frozen=True)
class Phase:
    """One optimizer step of a training schedule.

    Attributes:
        name: short name (``"D"``, ``"G"``, ``"D_reg"``, ``"G_reg"``) for messages.
        optimizer: the name of the optimizer the phase steps (a key of ``GAN.optimized_networks()``).
        loss: the name of the GAN method computing its terms, called as ``loss(real, fake, **cond)``; it returns a
            dict of named terms, every one logged under ``train/``.
        total: the key of the term the phase minimises (``"d_loss"``).
        every: the phase runs on every ``every``-th tick of its clock.
        clock: ``"batch"`` counts training batches; ``"iteration"`` counts the batches that complete an iteration.
        fake: what the loss gets as ``fake``: ``"detached"`` (a fresh batch generated without the generator's graph),
            ``"graph"`` (with it, for the generator's own loss; the other optimizers' networks are frozen), or
            ``"none"`` (``None``: the loss generates what it needs itself, or needs no fakes).
        iteration: this phase's step completes an iteration (advances ``trainer.global_step``); one phase has it.
        lazy: a lazy regulariser of the network its optimizer steps: that optimizer's learning rate and betas get the
            c/(c+1) correction, c = how many of the network's main (non-lazy) phase runs one run of this phase spans.
        after: the name of a GAN method called with the terms after the phase's step was applied (WGAN's clipping,
            BEGAN's k_t), or ``None``.
    """

    name: str
    optimizer: str
    loss: str
    total: str
    every: int = 1
    clock: Literal["batch", "iteration"] = "batch"
    fake: Literal["detached", "graph", "none"] = "detached"
    iteration: bool = False
    lazy: bool = False
    after: str | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigurationError(f"every={self.every}: phase {self.name!r} must run at least every 1 tick")
        if self.clock not in ("batch", "iteration"):
            raise ConfigurationError(f"clock={self.clock!r}: phase {self.name!r} takes 'batch' or 'iteration'")
        if self.fake not in ("detached", "graph", "none"):
            raise ConfigurationError(f"fake={self.fake!r}: phase {self.name!r} takes 'detached', 'graph' or 'none'")


class Schedule:
    """A validated tuple of phases and the arithmetic of when each runs.

    Args:
        phases: the phases, in the order they run within a batch.
        optimizers: the optimizer names the model has.

    Raises:
        ConfigurationError: no or several ``iteration`` phases, an unknown optimizer, an iteration-clock phase before
            the iteration phase, or a lazy phase whose optimizer has no main phase.
    """

    def __init__(self, phases: Sequence[Phase], optimizers: Iterable[str]) -> None:
        self.phases = tuple(phases)
        optimizers = list(optimizers)
        counted = [p for p in self.phases if p.iteration]
        if len(counted) != 1:
            raise ConfigurationError(f"phases={[p.name for p in self.phases]}: exactly one must complete an iteration")
        self.iteration_phase = counted[0]
        if self.iteration_phase.clock != "batch":
            raise ConfigurationError(
                f"phase {self.iteration_phase.name!r} completes the iteration: its clock must be 'batch'"
            )
        for phase in self.phases:
            if phase.optimizer not in optimizers:
                raise ConfigurationError(
                    f"phase {phase.name!r} steps optimizer {phase.optimizer!r}; the model has {optimizers}"
                )
            if phase.clock == "iteration" and self.phases.index(phase) < self.phases.index(self.iteration_phase):
                raise ConfigurationError(f"phase {phase.name!r} counts iterations: list it after {counted[0].name!r}")
        self.lazy_ratios: dict[str, float] = {}
        for phase in self.phases:
            if not phase.lazy:
                continue
            main = [p for p in self.phases if p.optimizer == phase.optimizer and not p.lazy]
            if not main:
                raise ConfigurationError(
                    f"lazy phase {phase.name!r} needs a main phase of optimizer {phase.optimizer!r}"
                )
            if phase.optimizer in self.lazy_ratios:  # the official correction is for one lazy phase per network
                raise ConfigurationError(
                    f"phase {phase.name!r}: optimizer {phase.optimizer!r} has a lazy phase already"
                )
            interval, rest = divmod(self.period(phase), self.period(main[0]))
            if rest or not interval:
                raise ConfigurationError(
                    f"lazy phase {phase.name!r} runs every {self.period(phase)} batches, not a multiple of its main "
                    f"phase {main[0].name!r}'s {self.period(main[0])}"
                )
            self.lazy_ratios[phase.optimizer] = lazy_regularization_ratio(interval)

    @property
    def batches_per_iteration(self) -> int:
        """Training batches per iteration (``n_critic`` of the classic schedule)."""
        return self.iteration_phase.every

    def period(self, phase: Phase) -> int:
        """Batches between two runs of ``phase``."""
        return phase.every * (self.iteration_phase.every if phase.clock == "iteration" else 1)

    def due(self, phase: Phase, batch: int) -> bool:
        """Whether ``phase`` runs at training batch ``batch`` (1-based)."""
        return batch % self.period(phase) == 0

    def completes_iteration(self, batch: int) -> bool:
        """Whether batch ``batch`` (1-based) runs the iteration phase."""
        return self.due(self.iteration_phase, batch)
