"""Sample grids from a fixed set of latents, written through whatever loggers the run has."""

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor
from torchvision.utils import make_grid, save_image


def log_image(trainer: L.Trainer, key: str, image: Tensor, step: int) -> list[Path]:
    """Logs one image [C, H, W] in [0, 1] on every logger of ``trainer``: ``wandb.Image`` for W&B, ``add_image``
    for TensorBoard, and a PNG file ``<log_dir>/images/<key>_<step>.png`` for loggers without image support (or
    under ``default_root_dir`` when the run has no logger). Returns the PNG files written."""
    written = []
    image = image.detach().float().cpu().clamp(0, 1)
    for logger in trainer.loggers or [None]:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[image], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, global_step=step)
        else:
            root = getattr(logger, "log_dir", None) or trainer.default_root_dir
            path = Path(root) / "images" / f"{key.replace('/', '_')}_{step:08d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image(image, path)
            written.append(path)
    return written


def to_grid(images: Tensor, nrow: int) -> Tensor:
    """[N, C, H, W] in [-1, 1] -> one grid image [C', H', W'] in [0, 1]."""
    return make_grid((images.float() + 1) / 2, nrow=nrow, padding=2, pad_value=1.0).clamp(0, 1)


class SampleGrid(L.Callback):
    """Logs a grid of ``module.sample(z=z_fixed)`` every ``every_n_steps`` iterations and when training ends.

    The latents are drawn once from ``seed``, so successive grids show how the same z evolve.

    Args:
        every_n_steps: interval in iterations (generator steps, ``trainer.global_step``); ``0`` logs only at the end.
        num_samples: images in the grid.
        nrow: images per row; the square root of ``num_samples`` when ``None``.
        seed: seed of the fixed latents.
        key: name of the image in the loggers.
    """

    def __init__(
        self, every_n_steps: int = 500, num_samples: int = 64, nrow: int | None = None, seed: int = 0, key: str = "samples/fixed"
    ) -> None:
        if every_n_steps < 0 or num_samples < 1:
            raise ValueError(f"SampleGrid needs every_n_steps >= 0 and num_samples >= 1, got {every_n_steps}, {num_samples}")
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.nrow = nrow or max(1, round(num_samples**0.5))
        self.seed = seed
        self.key = key
        self._last_step = -1

    def _log(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        step = trainer.global_step
        if step == self._last_step or not trainer.is_global_zero or trainer.sanity_checking:
            return
        self._last_step = step
        images = module.sample(self.num_samples, generator=torch.Generator().manual_seed(self.seed))
        log_image(trainer, self.key, to_grid(images, self.nrow), step)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
        if self.every_n_steps and trainer.global_step > 0 and trainer.global_step % self.every_n_steps == 0:
            self._log(trainer, module)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._log(trainer, module)
