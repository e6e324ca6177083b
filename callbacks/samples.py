"""Sample grids from fixed latents, interpolations and class rows, written through whatever loggers the run has."""

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor
from torchvision.utils import make_grid, save_image

from gans.latent import slerp


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


def scatter_image(points: Tensor, extent: float | None = None, modes: Tensor | None = None, size: int = 256) -> Tensor:
    """2-D points [N, 2] drawn as blue dots on a white square image [3, size, size] in [0, 1], with optional
    ``modes`` [K, 2] as red crosses. The window is [-extent, extent]^2; by default the smallest integer that holds
    110% of the points' largest coordinate."""
    points = points.detach().float().cpu()
    if extent is None:
        extent = float(max(1.0, (1.1 * points.abs().max()).ceil())) if len(points) else 1.0
    image = torch.ones(3, size, size)

    def pixels(xy: Tensor) -> tuple[Tensor, Tensor]:
        ij = ((xy / extent + 1) / 2 * (size - 1)).round().long()
        inside = ((ij >= 0) & (ij < size)).all(dim=1)
        return size - 1 - ij[inside, 1], ij[inside, 0]  # row 0 at the top: y grows upwards

    rows, cols = pixels(points)
    image[:, rows, cols] = torch.tensor([0.1, 0.3, 0.9]).view(3, 1)
    if modes is not None:
        for d in range(-3, 4):
            for offset in ((d, 0), (0, d)):
                rows, cols = pixels(modes.float().cpu() + torch.tensor(offset) * 2 * extent / size)
                image[:, rows, cols] = torch.tensor([0.9, 0.1, 0.1]).view(3, 1)
    return image


def to_grid(images: Tensor, nrow: int) -> Tensor:
    """[N, C, H, W] in [-1, 1] -> one grid image [C', H', W'] in [0, 1]; 2-D points [N, 2] -> their scatter plot."""
    if images.dim() == 2 and images.shape[1] == 2:
        return scatter_image(images)
    return make_grid((images.detach().float().cpu() + 1) / 2, nrow=nrow, padding=2, pad_value=1.0).clamp(0, 1)


def side_by_side(*grids: Tensor, gap: int = 8) -> Tensor:
    """Grid images [C, H, W] of equal height next to each other, separated by white columns."""
    white = torch.ones(grids[0].shape[0], grids[0].shape[1], gap)
    parts = [part for grid in grids for part in (grid, white)][:-1]
    return torch.cat(parts, dim=2)


class SampleGrid(L.Callback):
    """What a person looks at, logged every ``every_n_steps`` iterations and when training ends:

    - ``samples/fixed``: ``module.sample`` of a fixed set of latents; with an EMA generator, the EMA grid (left)
      and the raw generator's (right) side by side, so successive grids show how the same z evolve;
    - ``samples/interpolation``: ``interpolation_rows`` rows, each a spherical interpolation between two fixed
      latents in ``interpolation_steps`` images (0 rows: none);
    - ``samples/classes``: for a conditional model (``module.num_classes > 0``), one row per class, the same
      latent in each column.

    Args:
        every_n_steps: interval in iterations (generator steps, ``trainer.global_step``); ``0`` logs only at the end.
        num_samples: images in the fixed grid.
        nrow: images per row of the fixed grid; the square root of ``num_samples`` when ``None``.
        interpolation_rows: rows of the interpolation strip.
        interpolation_steps: images per interpolation row.
        seed: seed of the fixed latents.
        key: prefix of the image names in the loggers.
    """

    def __init__(
        self,
        every_n_steps: int = 500,
        num_samples: int = 64,
        nrow: int | None = None,
        interpolation_rows: int = 4,
        interpolation_steps: int = 10,
        seed: int = 0,
        key: str = "samples",
    ) -> None:
        for name, value, low in (
            ("every_n_steps", every_n_steps, 0),
            ("num_samples", num_samples, 1),
            ("interpolation_rows", interpolation_rows, 0),
            ("interpolation_steps", interpolation_steps, 2),
        ):
            if value < low:
                raise ValueError(f"SampleGrid({name}={value}): expected an integer >= {low}")
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.nrow = nrow or max(1, round(num_samples**0.5))
        self.interpolation_rows = interpolation_rows
        self.interpolation_steps = interpolation_steps
        self.seed = seed
        self.key = key
        self._last_step = -1

    def images(self, module: L.LightningModule) -> dict[str, Tensor]:
        """The grids, by name, as images [C, H, W] in [0, 1]."""
        rng = torch.Generator().manual_seed(self.seed)
        z = module.sample_z(self.num_samples, generator=rng)
        grids = {}
        fixed = to_grid(module.sample(z=z), self.nrow)
        if getattr(module, "generator_ema", None) is not None:
            fixed = side_by_side(fixed, to_grid(module.sample(z=z, ema=False), self.nrow))
        grids["fixed"] = fixed
        if self.interpolation_rows:
            ends = module.sample_z(2 * self.interpolation_rows, generator=rng)  # [2R, d]
            t = torch.linspace(0, 1, self.interpolation_steps)
            path = slerp(ends[0::2], ends[1::2], t).flatten(0, 1)  # [R * T, d]
            grids["interpolation"] = to_grid(module.sample(z=path), self.interpolation_steps)
        num_classes = getattr(module, "num_classes", 0) or 0
        if num_classes:
            columns = min(self.nrow, 10)
            zc = module.sample_z(columns, generator=rng).repeat(num_classes, 1)  # [K * columns, d]
            labels = torch.arange(num_classes, device=module.device).repeat_interleave(columns)
            grids["classes"] = to_grid(module.sample(z=zc, labels=labels), columns)
        return grids

    def _log(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        step = trainer.global_step
        if step == self._last_step or not trainer.is_global_zero or trainer.sanity_checking:
            return
        self._last_step = step
        for name, image in self.images(module).items():
            log_image(trainer, f"{self.key}/{name}", image, step)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
        if self.every_n_steps and trainer.global_step > 0 and trainer.global_step % self.every_n_steps == 0:
            self._log(trainer, module)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._log(trainer, module)
