"""Sample grids from fixed latents, interpolations and class rows, written through whatever loggers the run has."""

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor
from torchvision.io import write_png
from torchvision.utils import make_grid
from typing_extensions import override

from gans.errors import check_at_least
from gans.latent import slerp


def to_uint8(image: Tensor) -> Tensor:
    """The 8-bit pixels that every logger and PNG file of this library stores for an image [C, H, W] in [0, 1]:
    uint8 [C, H, W], ``floor(255 x + 0.5)`` after clamping to [0, 1], the rounding of torchvision's ``save_image``
    (NaN becomes 0)."""
    image = torch.nan_to_num(image.detach().float().cpu(), nan=0.0).clamp(0, 1)
    return image.mul(255).add(0.5).to(torch.uint8)


def save_png(image: Tensor, path: str | Path) -> Path:
    """Writes an image [C, H, W] in [0, 1] (C = 1 or 3) to ``path`` as a PNG of :func:`to_uint8`'s pixels, creating
    its folder. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(to_uint8(image), str(path))
    return path


def log_image(trainer: L.Trainer, key: str, image: Tensor, step: int, caption: str | None = None) -> list[Path]:
    """Logs one image [C, H, W] in [0, 1] (C = 1 or 3) on every logger of ``trainer``, each storing the same pixels
    (:func:`to_uint8`): ``wandb.Image`` with ``caption`` for W&B, ``add_image`` for TensorBoard, and a PNG file
    ``<log_dir>/images/<key>_<step>.png`` for loggers without image support (or under ``default_root_dir`` when the
    run has no logger). Returns the PNG files written."""
    written = []
    pixels = to_uint8(image)  # [C, H, W]
    for logger in trainer.loggers or [None]:
        if isinstance(logger, WandbLogger):
            # wandb.Image casts float arrays and tensors with astype(uint8) (0.31 turns [0, 1] into black); an HWC
            # uint8 array is stored unchanged.
            captions = {"caption": [caption]} if caption else {}
            logger.log_image(key=key, images=[pixels.permute(1, 2, 0).numpy()], step=step, **captions)
        elif isinstance(logger, TensorBoardLogger):
            # Floats would be truncated (x * 255 cast to uint8), one level below the PNG's rounding.
            logger.experiment.add_image(key, pixels, global_step=step, dataformats="CHW")
        else:
            root = getattr(logger, "log_dir", None) or trainer.default_root_dir
            written.append(save_png(image, Path(root) / "images" / f"{key.replace('/', '_')}_{step:08d}.png"))
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


#: What each grid of :class:`SampleGrid` shows, as W&B captions (TensorBoard and PNG files show the key only).
CAPTIONS = {
    "fixed": "generator, fixed latents",
    "fixed_ema": "EMA generator (what sample() returns), fixed latents: the same z as fixed_raw",
    "fixed_raw": "trained generator without EMA, fixed latents: the same z as fixed_ema",
    "interpolation": "each row: spherical interpolation between two fixed latents (EMA generator if there is one)",
    "classes": "row k: class k; each column: one latent (EMA generator if there is one)",
    "scales": "the first row of the fixed grid at each output scale, coarse (top) to fine (bottom)",
}


#: The grid of each conditioning a module offers in ``sample_conditions()``, by the conditioning's name.
CONDITION_GRIDS = {"labels": "classes"}


class SampleGrid(L.Callback):
    """What a person looks at, logged every ``every_n_steps`` iterations and when training ends:

    - ``samples/fixed``: ``module.sample`` of a fixed set of latents, so successive grids show how the same z
      evolve; with an EMA generator, ``samples/fixed_ema`` (the EMA generator's, what ``sample`` returns) and
      ``samples/fixed_raw`` (the trained generator's) instead, from the same latents; for a translation model, rows
      of input | output | target from sources kept from the first training batches (``module.sample_grid``);
    - ``samples/interpolation``: ``interpolation_rows`` rows, each a spherical interpolation between two fixed
      latents in ``interpolation_steps`` images (0 rows: none);
    - ``samples/classes`` (for each conditioning the module offers in ``sample_conditions()``, e.g. the labels of a
      class-conditional model): one row per value, the same latent in each column;
    - ``samples/scales``: for a generator that also returns lower-resolution outputs (``GeneratorOutput.scales``),
      the first row of the fixed grid at each scale, coarse to fine, enlarged to the final size.

    On W&B each image has a caption saying what it shows (:data:`CAPTIONS`).

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
        check_at_least(0, "SampleGrid", every_n_steps=every_n_steps, interpolation_rows=interpolation_rows)
        check_at_least(1, "SampleGrid", num_samples=num_samples)
        check_at_least(2, "SampleGrid", interpolation_steps=interpolation_steps)
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.nrow = nrow or max(1, round(num_samples**0.5))
        self.interpolation_rows = interpolation_rows
        self.interpolation_steps = interpolation_steps
        self.seed = seed
        self.key = key
        self._last_step = -1

    def images(self, module: L.LightningModule) -> dict[str, Tensor]:
        """The grids, by name (``fixed`` or ``fixed_ema`` and ``fixed_raw``, ``interpolation``, ``classes``), as
        images [C, H, W] in [0, 1]."""
        rng = torch.Generator().manual_seed(self.seed)
        inputs = module.sample_inputs(self.num_samples, generator=rng)
        output = module.sample_output(**inputs)
        grids = {}
        if module.generator_ema is not None:
            grids["fixed_ema"] = to_grid(*module.sample_grid(inputs, output.images, self.nrow))
            grids["fixed_raw"] = to_grid(*module.sample_grid(inputs, module.sample(**inputs, ema=False), self.nrow))
        else:
            grids["fixed"] = to_grid(*module.sample_grid(inputs, output.images, self.nrow))
        if output.scales:
            size = output.images.shape[-2:]
            rows = [F.interpolate(s[: self.nrow], size=size, mode="nearest") for s in (*output.scales, output.images)]
            grids["scales"] = to_grid(torch.cat(rows), self.nrow)
        ends = module.sample_inputs(2 * self.interpolation_rows, generator=rng) if self.interpolation_rows else {}
        if ends.get("z") is not None and ends["z"].shape[-1]:  # a model without z has nothing to interpolate
            steps = self.interpolation_steps
            path = {"z": slerp(ends["z"][0::2], ends["z"][1::2], torch.linspace(0, 1, steps)).flatten(0, 1)}
            # The row's other inputs (labels) are those of its start, held along the row: [R * T, ...].
            path.update({k: v[0::2].repeat_interleave(steps, dim=0) for k, v in ends.items() if k != "z"})
            grids["interpolation"] = to_grid(module.sample(**path), steps)
        for name, values in module.sample_conditions().items():
            columns = min(self.nrow, 10)
            zc = module.sample_z(columns, generator=rng).repeat(len(values), 1)  # [K * columns, d]
            condition = values.repeat_interleave(columns, dim=0)  # [K * columns, ...]
            grids[CONDITION_GRIDS.get(name, name)] = to_grid(module.sample(z=zc, **{name: condition}), columns)
        return grids

    def _log(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        step = trainer.global_step
        if step == self._last_step or not trainer.is_global_zero or trainer.sanity_checking:
            return
        self._last_step = step
        for name, image in self.images(module).items():
            log_image(trainer, f"{self.key}/{name}", image, step, caption=CAPTIONS.get(name))

    @override
    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
        if self.every_n_steps and trainer.global_step > 0 and trainer.global_step % self.every_n_steps == 0:
            self._log(trainer, module)

    @override
    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._log(trainer, module)
