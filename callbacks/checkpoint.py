"""Checkpointing by iteration, and checkpoint files that are never left half-written."""

import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

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

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._should_skip_saving_checkpoint(trainer):  # fast_dev_run, or already saved at this step
            return
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, flushed to disk, then renamed over ``path``: a crash
    mid-write leaves the previous file intact, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file beside the target, flushes it to disk, then renames it over the
    target: a crash mid-write leaves the previous checkpoint intact, never a truncated one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if "://" in str(path):  # remote file systems: fsspec's own semantics
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_save(checkpoint, path)
