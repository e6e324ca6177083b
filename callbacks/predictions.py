"""Writes what ``trainer.predict`` generates to disk, so that ``gans predict`` leaves files behind."""

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

    The file is written to a temporary name and renamed, so an interrupted run never leaves a truncated tensor.

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
        # One dataloader gives a flat list of batches; several give one list per dataloader.
        if predictions and isinstance(predictions[0], list):
            predictions = [batch for dataloader in predictions for batch in dataloader]
        if not predictions:
            return
        images = torch.cat([p.detach().float().cpu() for p in predictions])  # [N, C, H, W]
        folder = self._folder(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"predictions_rank{trainer.global_rank}.pt"
        atomic_save(images, path)
        if not trainer.is_global_zero:
            return
        # The phrasing of gans.sample, so both tools report their files alike; through tqdm, below the progress bar.
        tqdm.write(f"wrote {images.shape[0]} samples {tuple(images.shape[1:])} to {path}")
        if trainer.world_size > 1:
            others = folder / "predictions_rank<r>.pt"
            tqdm.write(f"the other {trainer.world_size - 1} processes wrote theirs to {others}")
        if self.grid_size:
            grid = images[: self.grid_size]
            grid_path = save_png(to_grid(grid, max(1, round(len(grid) ** 0.5))), folder / "predictions_grid.png")
            tqdm.write(f"wrote a grid of the first {len(grid)} samples to {grid_path}")
