"""Preemption: on the scheduler's signal, save a checkpoint between two training steps, requeue on SLURM, and stop.

Lightning's own SLURM handler saves its ``hpc_ckpt_N.ckpt`` inside the signal handler, wherever the main thread is:
possibly between a discriminator and a generator step, on each process at a different point. This callback's
handler only notes the signal; the checkpoint is written at the end of the training batch during which it came,
after all processes agreed that one of them got it, so it resumes exactly (``tests/test_preemption.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment
from lightning.pytorch.strategies import ParallelStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from typing_extensions import override

from gans.errors import ConfigurationError


class Preemption(L.Callback):
    """Saves ``last.ckpt`` and ends training when the job is asked to stop; on SLURM also requeues the job.

    - SLURM: ask for a warning signal ahead of the time limit or preemption (``#SBATCH --signal=USR1@120``). On that
      signal (Lightning's ``SLURMEnvironment.requeue_signal``, SIGUSR1 by default) the run saves, requeues itself
      with ``scontrol requeue`` (when the environment's ``auto_requeue`` is on, its default) and stops; the requeued
      job resumes with ``--ckpt_path last``.
    - Anywhere: on SIGTERM (Kubernetes, a scheduler's cancel, ``kill``) the run saves and exits with status 143, so
      that a supervisor sees it did not finish.

    The checkpoint is written by ``trainer.save_checkpoint`` (atomically under ``train.py``) as ``last.ckpt`` in the
    checkpoint callback's folder, or in ``<default_root_dir>/checkpoints`` without one.

    Args:
        signals: extra signal names that also mean "save and stop" (e.g. ``["SIGUSR2"]``); SIGTERM and, on SLURM,
            the requeue signal are always handled.
    """

    def __init__(self, signals: list[str] | None = None) -> None:
        self.signals = [_signal(name) for name in signals or []]
        self._received: int | None = None
        self._saved: Path | None = None
        self._previous: dict[int, Any] = {}

    @property
    def received(self) -> int | None:
        """The number of the signal that stopped this run, or ``None``."""
        return self._received

    @property
    def saved(self) -> Path | None:
        """Where the preemption checkpoint went, or ``None`` when none was written."""
        return self._saved

    # ------------------------------------------------------------------------------------------------------------

    @override
    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._received, self._saved = None, None
        # Installed before Lightning registers its handlers (after setup): Lightning then leaves the SLURM requeue
        # signal to this handler instead of saving inside its own, and calls this SIGTERM handler after its own.
        for signum in {signal.SIGTERM, *self._requeue_signal(trainer), *self.signals}:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._note)

    @override
    def teardown(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _note(self, signum: int, frame: Any) -> None:
        self._received = signum

    # ------------------------------------------------------------------------------------------------------------

    @override
    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        here = self._received is not None or trainer.received_sigterm
        # One process may be signalled before the others: all of them save and stop together.
        if not (trainer.strategy.reduce_boolean_decision(here, all=False) if trainer.world_size > 1 else here):
            return
        self._save(trainer, module, self._received if self._received is not None else signal.SIGTERM)
        trainer.should_stop = True

    @override
    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        # A SIGTERM that came while later callbacks of the batch ran (the checkpoint callback, which runs last) makes
        # Lightning stop at the batch's end before this callback's next turn: the state is between two batches, save.
        if isinstance(exception, SIGTERMException) and self._saved is None:
            self._save(trainer, module, signal.SIGTERM)

    def _save(self, trainer: L.Trainer, module: L.LightningModule, signum: int) -> None:
        path = self._checkpoint_path(trainer)
        trainer.save_checkpoint(path, weights_only=False)
        self._saved, self._received = path, signum
        rank_zero_info(
            f"Received {signal.Signals(signum).name}: saved {path} at iteration {trainer.global_step} "
            f"(discriminator step {getattr(module, 'batches_seen', '?')}); resume with --ckpt_path last"
        )
        if signum in self._requeue_signal(trainer) and trainer.is_global_zero:
            self._requeue()

    @staticmethod
    def _requeue_signal(trainer: L.Trainer) -> list[int]:
        environment = cluster_environment(trainer)
        if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
            return [environment.requeue_signal]
        return []

    @staticmethod
    def _checkpoint_path(trainer: L.Trainer) -> Path:
        callback = trainer.checkpoint_callback
        folder = getattr(callback, "dirpath", None)
        folder = Path(folder) if folder else Path(trainer.default_root_dir) / "checkpoints"
        return folder / "last.ckpt"

    @staticmethod
    def _requeue() -> None:
        array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
        job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ["SLURM_JOB_ID"]
        try:
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, check=False)
        except FileNotFoundError:
            rank_zero_warn(f"Could not requeue SLURM job {job}: scontrol is not on PATH; resubmit it yourself")
            return
        if result.returncode == 0:
            rank_zero_info(f"Requeued SLURM job {job}")
        else:
            rank_zero_warn(f"scontrol requeue {job} failed ({result.returncode}): {result.stderr.strip()}")


def cluster_environment(trainer: L.Trainer) -> ClusterEnvironment | None:
    """The cluster environment the trainer runs in: a parallel strategy's own (the one given to it, or the one
    Lightning detected), else the single-device run's: a ``SLURMEnvironment`` the user passed as a plugin (with its
    ``auto_requeue`` and ``requeue_signal``), or the one Lightning detected.

    Args:
        trainer: the trainer, after its strategy was chosen.

    Returns:
        The environment, or ``None`` outside a cluster on one device.
    """
    if isinstance(trainer.strategy, ParallelStrategy) and trainer.strategy.cluster_environment is not None:
        return trainer.strategy.cluster_environment
    # Lightning keeps a single-device run's environment (the user's plugin, or the one it detected) only in its
    # private accelerator connector, and no public attribute has it: it is read here and nowhere else, and
    # tests/test_preemption.py::test_a_single_device_run_keeps_the_users_slurm_plugin fails when Lightning moves it.
    environment = trainer._accelerator_connector.cluster_environment
    return environment if isinstance(environment, SLURMEnvironment) or SLURMEnvironment.detect() else None


def _signal(name: str) -> int:
    try:
        return signal.Signals[name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"]
    except KeyError:
        raise ConfigurationError(f"Preemption(signals=[{name!r}]): not a signal name of this platform") from None
