"""Checkpointing by iteration, checkpoint files that are never left half-written, and finding the newest complete
one to resume from."""

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

from gans.errors import ConfigurationError
from gans.files import atomic_write, checkpoint_problem

# Lightning warns on every save under manual optimisation that the checkpoint holds the state after the optimizer
# step. That is the intended meaning here: the checkpoint of iteration N is the state after N generator steps.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization and every_n_train_steps")


class IterationCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that saves every ``every_n_train_steps`` iterations (generator steps), keeps them all
    by default, keeps ``last.ckpt``, and also saves when training ends between two intervals (Lightning's own
    only writes ``last.ckpt`` at the end when it never wrote one).

    Takes the arguments of ``ModelCheckpoint``; the defaults differ only in ``every_n_train_steps=1000``,
    ``save_top_k=-1`` and ``save_last=True``.
    """

    def __init__(
        self, every_n_train_steps: int = 1000, save_top_k: int = -1, save_last: bool | None = True, **kwargs: Any
    ) -> None:
        super().__init__(every_n_train_steps=every_n_train_steps, save_top_k=save_top_k, save_last=save_last, **kwargs)

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args)
        # The last iteration is saved here, inside the epoch, rather than at on_train_end, by which time Lightning
        # has marked the epoch complete: a run resumed from it with a larger max_steps then continues the epoch where
        # it stopped, as an uninterrupted longer run would, instead of starting the next one.
        if 0 < trainer.max_steps <= trainer.global_step:
            self._save_now(trainer)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save_now(trainer)  # training ended between two intervals (max_epochs, a stop)

    def _save_now(self, trainer: L.Trainer) -> None:
        # The one place that uses ModelCheckpoint's private methods. Its public hooks save only on their own triggers
        # (an interval, an epoch's end, validation), and no public method saves "now" with its top-k bookkeeping and
        # last.ckpt; writing the files with trainer.save_checkpoint would bypass best_k_models, last_model_path and the
        # state a resumed callback restores. tests/test_checkpoints.py::test_model_checkpoint_internals_we_use fails
        # when Lightning renames or reshapes them.
        if self._should_skip_saving_checkpoint(trainer):  # fast_dev_run, or already saved at this step
            return
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through :func:`gans.files.atomic_write`: a crash mid-write leaves the previous file intact, never
    a truncated one, and the file gets the permissions of the process umask."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    atomic_write(path, write)


def newest_complete_checkpoint(folders: Iterable[str | Path]) -> tuple[Path | None, dict[Path, str]]:
    """The most recently written complete ``.ckpt`` file under ``folders`` (searched recursively), and the newer
    files passed over with the reason. Temporary files of an interrupted write (``.<name>.<pid>.tmp``) never match."""
    found = {p.resolve() for folder in folders if Path(folder).is_dir() for p in Path(folder).rglob("*.ckpt")}
    skipped: dict[Path, str] = {}
    for path in sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"), reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped[path] = problem
    return None, skipped


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file beside the target, flushes it to disk, then renames it over the
    target: a crash mid-write leaves the previous checkpoint intact, never a truncated one. Loads with
    ``weights_only=True`` unless told otherwise, and names the file when it is incomplete or cannot be loaded."""

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if "://" in str(path):  # remote file systems: fsspec's own semantics
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_save(checkpoint, path)

    @override
    def load_checkpoint(self, path: str | Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if "://" in str(path):
            return super().load_checkpoint(path, *args, **kwargs)
        problem = checkpoint_problem(path)
        if problem is not None:
            raise ConfigurationError(f"cannot load checkpoint {str(path)!r}: {problem}")
        if kwargs.get("weights_only") is None and len(args) < 2:
            kwargs["weights_only"] = True  # tensors and plain containers only: no arbitrary unpickling
        try:
            return super().load_checkpoint(path, *args, **kwargs)
        except Exception as err:
            raise ConfigurationError(f"cannot load checkpoint {str(path)!r}: {type(err).__name__}: {err}") from err
