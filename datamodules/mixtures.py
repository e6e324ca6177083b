"""The 2-D Gaussian mixtures on which mode collapse is measured (Metz et al. 2017; Srivastava et al. 2017, VEEGAN;
Lin et al. 2018, PacGAN): 8 Gaussians on a ring and 25 on a 5x5 grid, and the mode-coverage measure."""

from __future__ import annotations

import math
from typing import Literal

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.resumable import ScheduledTrainData, as_batch
from gans.errors import ConfigurationError

#: The standard settings: ring of 8 modes of radius 2 with std 0.02 (unrolled GAN, VEEGAN); 5x5 grid of modes at
#: {-4, -2, 0, 2, 4}^2 with std 0.05 (VEEGAN, PacGAN).
MIXTURES = {"ring": 0.02, "grid": 0.05}


def mixture_modes(mixture: Literal["ring", "grid"]) -> Tensor:
    """The means of the mixture's components, [K, 2]."""
    if mixture == "ring":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return (2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)).float()
    if mixture == "grid":
        axis = torch.arange(-4.0, 5.0, 2.0)
        return torch.cartesian_prod(axis, axis)
    raise ConfigurationError(f"mixture={mixture!r} is not known; expected one of {sorted(MIXTURES)}")


def sample_mixture(mixture: Literal["ring", "grid"], n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` points, [n, 2], from equal-weight isotropic Gaussians at the modes with the mixture's std."""
    modes = mixture_modes(mixture)
    which = torch.randint(len(modes), (n,), generator=generator)
    return modes[which] + MIXTURES[mixture] * torch.randn(n, 2, generator=generator)


def mode_coverage(
    samples: Tensor, modes: Tensor, std: float, min_count: int = 20, radius: float | None = None
) -> tuple[int, float]:
    """The measure of VEEGAN and PacGAN: a sample is of high quality when it lies within three standard deviations
    of its nearest mode; a mode is covered when at least ``min_count`` high-quality samples are nearest to it
    (PacGAN's threshold: 20 of 2,500 samples, a fifth of a mode's share on the grid).

    Args:
        samples: generated points, [N, 2].
        modes: the mixture's means, [K, 2].
        std: the mixture's standard deviation.
        min_count: high-quality samples a mode needs to count as covered.
        radius: the distance that counts as "at the mode"; ``None`` is the papers' 3 * std. A wider radius measures
            which modes a generator reaches before its samples are sharp.

    Returns:
        The number of covered modes and the fraction of samples within the radius.
    """
    distance, nearest = torch.cdist(samples.double(), modes.double()).min(dim=1)  # [N]
    good = distance <= (3 * std if radius is None else radius)
    counts = torch.bincount(nearest[good], minlength=len(modes))  # [K]
    return int((counts >= min_count).sum()), float(good.double().mean())


class _Points(Dataset):
    def __init__(self, points: Tensor) -> None:
        self.points = points

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> Tensor:
        return self.points[index]

    def __getitems__(self, indices: list[int]) -> Tensor:  # a whole batch at once: no per-item collation
        return self.points[indices]


class GaussianMixtureDataModule(ScheduledTrainData, L.LightningDataModule):
    """A fixed training set of points drawn from a 2-D mixture, served in shuffled batches ([B, 2] tensors), of
    ``batch_size`` points or as ``batch_size_schedule`` says (``datamodules.resumable.ScheduledTrainData``).

    Args:
        mixture: ``"ring"`` (8 modes) or ``"grid"`` (25 modes).
        num_samples: size of the training set (100,000 in PacGAN's experiments).
        batch_size: points per batch (100 in the papers).
        seed: seeds the training set and the shuffling (the order of each epoch is a function of the seed and the
            epoch, so a resumed run continues it).
    """

    #: What a batch holds, for models to check that they can use it (see ``gans.base.GAN.batch_kinds``).
    batch_kind = "samples"

    def __init__(
        self,
        mixture: Literal["ring", "grid"] = "grid",
        num_samples: int = 100_000,
        batch_size: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if mixture not in MIXTURES:
            raise ConfigurationError(f"mixture={mixture!r} is not known; expected one of {sorted(MIXTURES)}")
        if not 0 < batch_size <= num_samples:
            raise ConfigurationError(f"batch_size={batch_size} must be positive and at most num_samples={num_samples}")
        self.save_hyperparameters()
        self.mixture, self.num_samples, self.batch_size, self.seed = mixture, num_samples, batch_size, seed
        self.std = MIXTURES[mixture]
        self.modes = mixture_modes(mixture)
        self.data_shape = (2,)

    def setup(self, stage: str | None = None) -> None:
        self.points = sample_mixture(self.mixture, self.num_samples, torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        # Shuffled by `seed` and resumable part-way through an epoch; batch_size_schedule as in ScheduledTrainData.
        return self._resumable_train_loader(_Points(self.points), self.batch_size, self.seed, collate_fn=as_batch)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Points(self.points), batch_size=self.batch_size, drop_last=True, collate_fn=as_batch)
