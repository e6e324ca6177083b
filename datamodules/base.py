"""What the library's image data modules share: the checks of the loader settings, the resumable training loader,
the evaluation loaders and the fingerprint that keys the metrics' cached real-data statistics."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset

from datamodules.resumable import ScheduledTrainData
from gans.errors import check_at_least

#: In the fingerprint of a data module whose items are augmented (flips, crops): their seeds are mixed by
#: ``gans.seeding.step_seed`` (Python's ``hash()`` before), so statistics cached from the old items are not reused.
AUGMENTATION_SEEDING = {"seeding": "step_seed"}


def file_fingerprint(paths: Iterable[Path]) -> list[list]:
    """``[path, size, modification time in ns]`` of each file (``None`` twice for a file that is not there): enough to
    notice a replaced file without reading it."""
    rows = []
    for path in paths:
        stat = path.stat() if path.is_file() else None
        rows.append([str(path), stat.st_size, stat.st_mtime_ns] if stat else [str(path), None, None])
    return rows


class ImageDataModule(ScheduledTrainData, L.LightningDataModule):
    """Base of the image data modules: a subclass builds ``train_set`` in ``setup`` and says which settings shape its
    images (``_data_settings``) and which files hold its training images (``_training_files``).

    The training loader gives equal batches (the GAN losses and BatchNorm statistics assume a fixed batch size; the
    last partial batch is dropped) in an order that a checkpoint resumes part-way through an epoch, with indices
    tagged by their epoch (``datamodules.resumable``), so that a data set can seed per-epoch augmentation with them.
    A callback may set ``batch_size_schedule`` (``ScheduledTrainData``) to change the batch size as training goes
    on (progressive growing's batch size per resolution). Evaluation loaders give every item, in order.

    Subclasses take these arguments through ``**kwargs`` (LightningCLI and jsonargparse follow ``super().__init__`` to
    list and document them), so each is declared and documented once.

    Args:
        batch_size: items per batch, per process.
        num_workers: DataLoader worker processes; 0 loads in the main process.
        pin_memory: pinned host memory for faster copies to the GPU.

    Raises:
        ConfigurationError: ``batch_size`` below 1 or ``num_workers`` below 0.
    """

    def __init__(self, batch_size: int = 64, num_workers: int = 0, pin_memory: bool = False) -> None:
        super().__init__()
        check_at_least(1, batch_size=batch_size)
        check_at_least(0, num_workers=num_workers)
        # Here, the subclasses' arguments are recorded too: Lightning collects those of every __init__ up the call
        # stack, and this frame holds the values (defaults included) of the ones they passed on in **kwargs.
        self.save_hyperparameters()
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.seed: int | None = None  # of the data order: seed_everything's when None
        self.train_set: Dataset | None = None

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise RuntimeError(f"{type(self).__name__}: call setup('fit') before train_dataloader()")
        return self._resumable_train_loader(
            self.train_set, self.batch_size, self.seed, tag_epoch=True, **self._train_loader_options()
        )

    def fingerprint(self) -> dict:
        """What identifies the training images: the settings that shape them and each training file's name, size and
        modification time. The metrics key their cached real-data statistics by it, so replacing a file invalidates
        them."""
        return {"class": type(self).__name__, **self._data_settings(), "files": file_fingerprint(self._training_files())}

    def _data_settings(self) -> dict:
        raise NotImplementedError

    def _training_files(self) -> list[Path]:
        raise NotImplementedError

    def _loader(self, dataset: Dataset) -> DataLoader:
        """An evaluation loader: in order, every item, the last batch possibly smaller."""
        return DataLoader(dataset, batch_size=self.batch_size, **self._loader_options())

    def _loader_options(self) -> dict[str, Any]:
        return {"num_workers": self.num_workers, "persistent_workers": self.num_workers > 0,
                "pin_memory": self.pin_memory}

    def _train_loader_options(self) -> dict[str, Any]:
        return self._loader_options()
