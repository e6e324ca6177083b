"""Writes what ``trainer.predict`` generates to disk, so that ``gans predict`` leaves files behind."""

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from tqdm import tqdm
from typing_extensions import override

from callbacks.checkpoint import atomic_save
from callbacks.samples import save_png, to_grid
from gans.errors import ConfigurationError


class PredictionWriter(BasePredictionWriter):
    """Saves each rank's generated images as ``<output_dir>/predictions_rank<r>.pt``, a float tensor [N, C, H, W]
    in [-1, 1] in the order of the predict data loader, plus a PNG grid of the first ``grid_size`` of rank 0 (the
    pixels of :func:`callbacks.samples.to_uint8`, as every logged sample grid). Rank 0 prints where they went.

    When the predict data set names its items (a ``names`` list, as the translation data modules' ``predict_dir``
    sets: one name per input file), each prediction is also saved as ``<output_dir>/<name>.png``, found through the
    loader's batch indices, so every process writes the files of its own share. Their sizes may then differ
    (super-resolution keeps each input's size), so the tensor file holds them only when they are of one size.

    Files are written to a temporary name and renamed, so an interrupted run never leaves a truncated one.

    Args:
        output_dir: folder of the files; ``<log_dir>/predictions`` (or ``<default_root_dir>/predictions``) when
            ``None``.
        grid_size: images in the PNG grid; ``0`` writes no grid.
    """

    def __init__(self, output_dir: str | None = None, grid_size: int = 64) -> None:
        super().__init__(write_interval="epoch")
        if grid_size < 0:
            raise ConfigurationError(f"PredictionWriter(grid_size={grid_size}): expected an integer >= 0")
        self.output_dir = output_dir
        self.grid_size = grid_size

    def _folder(self, trainer: L.Trainer) -> Path:
        if self.output_dir is not None:
            return Path(self.output_dir)
        return Path(trainer.log_dir or trainer.default_root_dir) / "predictions"

    @override
    def write_on_epoch_end(
        self, trainer: L.Trainer, module: L.LightningModule, predictions: list[Any], batch_indices: list[Any]
    ) -> None:
        # One dataloader gives a flat list of batches; several give one list per dataloader (batch_indices: always).
        if predictions and not isinstance(predictions[0], list):
            predictions = [predictions]
        folder = self._folder(trainer)
        named = self._write_named(trainer, folder, predictions, batch_indices)
        predictions = [batch.detach().float().cpu() for dataloader in predictions for batch in dataloader]
        if not predictions:
            return
        if len({tuple(p.shape[1:]) for p in predictions}) > 1:
            if trainer.is_global_zero:
                tqdm.write(f"wrote {named} predictions of differing sizes to {folder}/<input name>.png")
            return
        images = torch.cat(predictions)  # [N, C, H, W]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"predictions_rank{trainer.global_rank}.pt"
        atomic_save(images, path)
        if not trainer.is_global_zero:
            return
        # The phrasing of gans.sample, so both tools report their files alike; through tqdm, below the progress bar.
        tqdm.write(f"wrote {images.shape[0]} samples {tuple(images.shape[1:])} to {path}")
        if named:
            tqdm.write(f"wrote {named} predictions to {folder}/<input name>.png")
        if trainer.world_size > 1:
            others = folder / "predictions_rank<r>.pt"
            tqdm.write(f"the other {trainer.world_size - 1} processes wrote theirs to {others}")
        if self.grid_size:
            grid = images[: self.grid_size]
            grid_path = save_png(to_grid(grid, max(1, round(len(grid) ** 0.5))), folder / "predictions_grid.png")
            tqdm.write(f"wrote a grid of the first {len(grid)} samples to {grid_path}")

    @staticmethod
    def _write_named(trainer: L.Trainer, folder: Path, predictions: list[list[Any]], batch_indices: list[Any]) -> int:
        """Saves each prediction of a data set with ``names`` as ``<folder>/<name>.png``; returns how many."""
        loaders = trainer.predict_dataloaders
        loaders = loaders if isinstance(loaders, list | tuple) else [loaders]
        written = 0
        for loader, batches, indices in zip(loaders, predictions, batch_indices, strict=False):
            names = getattr(getattr(loader, "dataset", None), "names", None)
            if not names:
                continue
            for batch, batch_idx in zip(batches, indices, strict=True):
                for image, index in zip(batch.detach().float().cpu(), batch_idx, strict=True):
                    path = folder / f"{names[index]}.png"
                    # A padded shard (DistributedSampler) may give a process an index another also writes: the
                    # rename makes either file whole (a stochastic model, Pix2Pix with test-time dropout, may have
                    # translated the two copies differently; one of them is kept).
                    temporary = path.with_name(f".{path.name}.rank{trainer.global_rank}.tmp.png")
                    save_png((image + 1) / 2, temporary)
                    os.replace(temporary, path)
                    written += 1
        return written
