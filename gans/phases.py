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

- stages: a phase runs only inside its window of iterations (``start``, ``end``), e.g. SRGAN's MSE pre-training of G
  alone for the first N iterations, then the adversarial phases.

Phases count training batches, not optimizer steps: a phase runs at batch t (1-based) when ``t % every == 0``
(``clock="batch"``), or in every ``every``-th batch that runs the iteration phase (``clock="iteration"``). A step the
non-finite guard skips does not move these clocks: the schedule stays that of the batches. The phase marked
``iteration`` is the one ``trainer.global_step`` counts, so ``max_steps`` and every interval in iterations keep
meaning generator steps.

Windows count iterations, the unit of ``max_steps``: iterations are numbered from 0, and a phase with window
``(start, end)`` runs in the batches that make iterations ``start`` to ``end - 1``, i.e. from when ``start`` iterations
are complete until ``end`` are (``end=None``: to the end of training). Every batch belongs to the iteration it helps
complete. Several phases may be marked ``iteration`` when their windows follow each other without gap or overlap from
iteration 0 on, so that exactly one completes the iterations at any time; a windowed phase's clock starts at its
window's first batch. Since the schedule is a function of the batch count alone, which checkpoints hold, a run resumed
across a window's edge repeats the uninterrupted one.
"""

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
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
        start: the phase runs from when ``start`` iterations are complete (0: from the first batch).
        end: until ``end`` iterations are complete (exclusive), or ``None``: to the end of training.
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
    start: int = 0
    end: int | None = None

    def __post_init__(self) -> None:
        if self.start < 0:
            raise ConfigurationError(f"start={self.start}: phase {self.name!r} cannot start before iteration 0")
        if self.end is not None and self.end <= self.start:
            raise ConfigurationError(
                f"end={self.end}: phase {self.name!r} must end after its start, iteration {self.start}"
            )
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
        ConfigurationError: no ``iteration`` phase, or iteration phases whose windows leave a gap or overlap, an
            unknown optimizer, an iteration-clock phase before the iteration phase of its window, or a lazy phase whose
            optimizer has no main phase.
    """

    def __init__(self, phases: Sequence[Phase], optimizers: Iterable[str]) -> None:
        self.phases = tuple(phases)
        optimizers = list(optimizers)
        self.iteration_phases = self._tile(self.phases)
        #: The iteration phase of the open-ended last window: the one of the whole run without windows.
        self.iteration_phase = self.iteration_phases[-1]
        # The batches run before each iteration phase's window opens: where each stage begins on the batch clock.
        self._first_batches = [0]
        for phase in self.iteration_phases[:-1]:
            self._first_batches.append(self._first_batches[-1] + (phase.end - phase.start) * phase.every)
        for phase in self.phases:
            if phase.optimizer not in optimizers:
                raise ConfigurationError(
                    f"phase {phase.name!r} steps optimizer {phase.optimizer!r}; the model has {optimizers}"
                )
            if phase.clock == "iteration":
                for counted in self.iteration_phases:
                    if overlap(phase, counted) and self.phases.index(phase) < self.phases.index(counted):
                        raise ConfigurationError(
                            f"phase {phase.name!r} counts iterations: list it after {counted.name!r}"
                        )
        self.lazy_ratios: dict[str, float] = {}
        for phase in self.phases:
            if not phase.lazy:
                continue
            main = [p for p in self.phases if p.optimizer == phase.optimizer and not p.lazy and overlap(p, phase)]
            if not main:
                raise ConfigurationError(
                    f"lazy phase {phase.name!r} needs a main phase of optimizer {phase.optimizer!r} in its window"
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

    @staticmethod
    def _tile(phases: tuple[Phase, ...]) -> tuple[Phase, ...]:
        """The iteration phases in the order of their windows, which must cover iterations 0 on, one at a time."""
        counted = sorted((p for p in phases if p.iteration), key=lambda p: p.start)
        if not counted:
            raise ConfigurationError(f"phases={[p.name for p in phases]}: exactly one must complete an iteration")
        windows = [(p.name, p.start, p.end) for p in counted]
        if counted[0].start != 0 or counted[-1].end is not None or any(
            a.end != b.start for a, b in pairwise(counted)
        ):
            raise ConfigurationError(
                f"phases={windows}: exactly one must complete an iteration at any time, their windows (name, start, "
                "end) following each other from iteration 0 to the end of training"
            )
        for phase in counted:
            if phase.clock != "batch":
                raise ConfigurationError(f"phase {phase.name!r} completes the iteration: its clock must be 'batch'")
        return tuple(counted)

    @property
    def batches_per_iteration(self) -> int:
        """Training batches per iteration (``n_critic`` of the classic schedule) of the last, open-ended iteration
        phase: the whole run's without windows, the longest stage's in the usual staged run."""
        return self.iteration_phase.every

    def iteration_phase_at(self, iteration: int) -> Phase:
        """The iteration phase whose window holds iteration ``iteration`` (0-based)."""
        starts = [p.start for p in self.iteration_phases]
        return self.iteration_phases[bisect.bisect_right(starts, iteration) - 1]

    def first_batch(self, iteration: int) -> int:
        """The number of batches run before iteration ``iteration`` (0-based) begins."""
        index = self.iteration_phases.index(self.iteration_phase_at(iteration))
        phase = self.iteration_phases[index]
        return self._first_batches[index] + (iteration - phase.start) * phase.every

    def iteration_of(self, batch: int) -> int:
        """The iteration (0-based) that training batch ``batch`` (1-based) helps complete."""
        index = bisect.bisect_left(self._first_batches, batch) - 1
        phase = self.iteration_phases[index]
        return phase.start + (batch - self._first_batches[index] - 1) // phase.every

    def period(self, phase: Phase) -> int:
        """Batches between two runs of ``phase`` (at its window's start)."""
        batches = self.iteration_phase_at(phase.start).every if phase.clock == "iteration" else 1
        return phase.every * batches

    def due(self, phase: Phase, batch: int) -> bool:
        """Whether ``phase`` runs at training batch ``batch`` (1-based)."""
        iteration = self.iteration_of(batch)
        if iteration < phase.start or (phase.end is not None and iteration >= phase.end):
            return False
        if phase.clock == "batch":
            return (batch - self.first_batch(phase.start)) % phase.every == 0
        return self.completes_iteration(batch) and (iteration + 1 - phase.start) % phase.every == 0

    def completes_iteration(self, batch: int) -> bool:
        """Whether batch ``batch`` (1-based) runs the iteration phase."""
        return self.first_batch(self.iteration_of(batch) + 1) == batch

    def iterations_done(self, batch: int) -> int:
        """Iterations complete after training batch ``batch`` (``trainer.global_step`` when no step was skipped)."""
        return self.iteration_of(batch) + self.completes_iteration(batch)


def overlap(a: Phase, b: Phase) -> bool:
    """Whether the windows of phases ``a`` and ``b`` share an iteration."""
    return (a.end is None or b.start < a.end) and (b.end is None or a.start < b.end)
