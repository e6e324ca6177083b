"""Images from folders: any folder of images (CelebA's aligned crops, LSUN exports, your own); the translation sets
(``datamodules.paired``, ``unpaired``, ``superres``) build on the pieces here. Bad data is found before training
where it can be, and reported with its path.

Before training, ``setup`` reads every file's header (cheap: no pixel data is decoded) and stops with a message for
an empty folder, a data set smaller than one batch, images of mixed channel counts, and (paired sets) images whose
halves cannot be split. A file whose header cannot be read, or whose pixels fail to decode during training, is
skipped and counted (``bad_files="skip"``: a warning names it, the ``data/skipped_files`` scalar goes to the
loggers, and the next good image takes its place so batches keep their size) or stops the run (``"stop"``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.base import AUGMENTATION_SEEDING, ImageDataModule
from datamodules.resumable import default_data_seed
from gans.errors import ConfigurationError, MissingFileError, check_at_least
from gans.seeding import step_seed

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: PIL modes by channel count: what a file decodes to before any conversion.
CHANNELS = {"1": 1, "L": 1, "P": 3, "RGB": 3, "RGBA": 4, "CMYK": 4, "YCbCr": 3, "LA": 2, "I": 1, "I;16": 1, "F": 1}
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError)  # what PIL raises for broken files


class BadImageError(ValueError):
    """A file of the data set cannot be decoded."""


def scan_folder(folder: Path, argument: str = "data_dir") -> list[Path]:
    """The image files under ``folder`` (recursively, sorted), or a clear error naming ``argument`` (the option that
    gave the folder) when there is none."""
    if not folder.is_dir():
        raise MissingFileError(f"image folder {folder} does not exist", argument)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise MissingFileError(
            f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)}, in subfolders too)", argument
        )
    return files


def peek_header(folder: Path) -> tuple[int, tuple[int, int]] | None:
    """The channel count (1 or 3, as ``check_files`` counts) and (width, height) of one image under ``folder`` (the
    first found, not decoded), or ``None`` when there is none that can be read: enough to size a model before
    ``setup`` reads every file."""
    if not folder.is_dir():
        return None
    path = next((p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), None)
    try:
        mode, size = read_header(path) if path is not None else (None, None)
    except DECODE_ERRORS:
        return None
    return None if mode is None else (1 if CHANNELS.get(mode, 3) == 1 else 3, size)


def read_header(path: Path) -> tuple[str, tuple[int, int]]:
    """The PIL mode and (width, height) of an image file, from its header only."""
    with Image.open(path) as image:
        return image.mode, image.size


def to_tensor(image: Image.Image, channels: int) -> Tensor:
    """A decoded PIL image as float32 [channels, H, W] in [-1, 1]."""
    image = image.convert("L" if channels == 1 else "RGB")
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    pixels = pixels.view(image.height, image.width, channels).permute(2, 0, 1)  # [C, H, W]
    return pixels.float() / 127.5 - 1.0


def resize(image: Tensor, size: tuple[int, int], mode: Literal["bilinear", "bicubic"] = "bilinear") -> Tensor:
    """[C, H, W] in [-1, 1] resized to ``size`` (antialiased, so that it matches PIL's resampling), still in
    [-1, 1]."""
    if tuple(image.shape[-2:]) == size:
        return image
    resized = F.interpolate(image[None], size=size, mode=mode, antialias=True, align_corners=False)[0]
    # The bilinear filter's weights sum to 1 only up to rounding (-1.0000004 happens); the bicubic one overshoots.
    return resized.clamp_(-1.0, 1.0)


def center_crop_resize(image: Tensor, size: int) -> Tensor:
    """The largest centred square, resized to ``size`` x ``size``."""
    height, width = image.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return resize(image[:, top : top + side, left : left + side], (size, size))


class ImageFiles(Dataset):
    """Files decoded on access; a file that fails is skipped (the next good one stands in) or raises. ``index`` may
    exceed the length (an epoch-tagged index from the training sampler): it then also seeds the item's augmentation,
    so that the same epoch and position give the same crop and flip after a resume."""

    def __init__(self, files: list[Path], channels: int, bad_files: Literal["skip", "stop"], seed: int) -> None:
        self.files, self.channels, self.bad_files, self.seed = files, channels, bad_files, seed
        # Shared with DataLoader workers: each marks the files it failed to decode (idempotent, so no race).
        self.bad = torch.zeros(len(files), dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self.files)

    def decode(self, i: int) -> Any:
        """File ``i``'s pixels: float32 [channels, H, W] in [-1, 1] here; a subclass may read several files (a pair)
        and return what it needs. Raises one of ``DECODE_ERRORS`` for a file that cannot be decoded."""
        with Image.open(self.files[i]) as image:
            return to_tensor(image, self.channels)

    def load(self, index: int) -> tuple[int, Any]:
        """The first decodable item at or after ``index`` (cyclically), with the index it came from."""
        for offset in range(len(self.files)):
            i = (index + offset) % len(self.files)
            if self.bad[i]:
                continue
            try:
                return i, self.decode(i)
            except DECODE_ERRORS as err:
                if isinstance(err, ConfigurationError):  # a value the user set does not fit the file: no bad file
                    raise
                if self.bad_files == "stop":
                    raise BadImageError(
                        f"cannot decode {self.files[i]}: {err}; remove or replace it, or pass bad_files='skip'"
                    ) from err
                self.bad[i] = True
                warnings.warn(f"skipping {self.files[i]}, which cannot be decoded: {err}", stacklevel=2)
        raise BadImageError(f"none of the {len(self.files)} images can be decoded")

    def rng(self, index: int) -> torch.Generator:
        """The generator of item ``index``'s augmentation: the same in every process and run."""
        return torch.Generator().manual_seed(step_seed(self.seed, index))


class ImageFolder(ImageFiles):
    """Items are images float32 [channels, size, size] in [-1, 1]: the centred square, resized; with ``flip``,
    mirrored with probability 1/2."""

    def __init__(self, files, channels, bad_files, seed, image_size: int, flip: bool) -> None:
        super().__init__(files, channels, bad_files, seed)
        self.image_size, self.flip = image_size, flip

    def __getitem__(self, index: int) -> Tensor:
        return self.item(index)[1]

    def item(self, index: int) -> tuple[int, Tensor]:
        """The item and the index of the file it came from (another than ``index % len`` when a bad file was
        skipped), for subclasses that pair each image with that file's labels."""
        i, image = self.load(index % len(self))
        image = center_crop_resize(image, self.image_size)
        if self.flip and torch.rand((), generator=self.rng(index)) < 0.5:
            image = image.flip(-1)
        return i, image


class FolderDataModule(ImageDataModule):
    """What the folder data modules share: header checks and bad-file accounting.

    Args:
        to_channels: 1 or 3 to convert every image; ``None`` takes the files' own count and refuses a mix.
        bad_files: a file that cannot be decoded is skipped and counted (``"skip"``) or stops the run (``"stop"``).
        seed: seed of the data order, of a held-out split and of the augmentation (flips, crops);
            ``seed_everything``'s when ``None``.
        **kwargs: ``batch_size``, ``num_workers``, ``pin_memory``: see :class:`datamodules.base.ImageDataModule`.
    """

    def __init__(
        self,
        to_channels: int | None = None,
        bad_files: Literal["skip", "stop"] = "stop",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if bad_files not in ("skip", "stop"):
            raise ConfigurationError(f"bad_files={bad_files!r}; expected 'skip' or 'stop'")
        if to_channels not in (None, 1, 3):
            raise ConfigurationError(
                f"to_channels={to_channels}; expected 1 (grey), 3 (RGB) or None (as the files are)"
            )
        self.to_channels, self.bad_files, self.seed = to_channels, bad_files, seed
        self.train_set: ImageFiles | None = None
        self._header_skips = 0  # files whose header could not be read at setup (bad_files="skip")
        self._logged_skips = 0

    def check_files(self, files: list[Path], folder: Path) -> tuple[list[Path], int, list[tuple[int, int]]]:
        """Reads every header: returns the readable files, their channel count, and their sizes. Unreadable files
        are skipped with a warning or stop the run (``bad_files``); mixed channel counts stop it unless
        ``to_channels`` says what to convert to."""
        good, modes, sizes, bad = [], {}, [], []
        for path in files:
            try:
                mode, size = read_header(path)
            except DECODE_ERRORS as err:
                if isinstance(err, ConfigurationError):  # a value the user set does not fit the file: no bad file
                    raise
                if self.bad_files == "stop":
                    raise BadImageError(
                        f"cannot read {path}: {err}; remove or replace it, or pass --data.init_args.bad_files=skip"
                    ) from err
                bad.append(path)
                warnings.warn(f"skipping {path}, which cannot be read: {err}", stacklevel=2)
                continue
            good.append(path)
            modes.setdefault(CHANNELS.get(mode, 3), []).append(path)
            sizes.append(size)
        self._header_skips += len(bad)
        if not good:
            raise BadImageError(f"none of the {len(files)} images in {folder} can be read")
        if self.to_channels is not None:
            return good, self.to_channels, sizes
        if len(modes) > 1:
            examples = "; ".join(
                f"{len(paths)} with {c} channel{'s' * (c > 1)} (e.g. {paths[0]})" for c, paths in sorted(modes.items())
            )
            raise ConfigurationError(
                f"the images in {folder} have mixed channel counts: {examples}. Pass --data.init_args.to_channels=3 "
                "(or 1) to convert them all",
                "to_channels",
            )
        channels = next(iter(modes))
        return good, (1 if channels == 1 else 3), sizes

    def check_batch(self, dataset: Dataset, folder: Path | str) -> None:
        world = self.trainer.world_size if self.trainer is not None else 1
        if len(dataset) < self.batch_size * world:
            raise ConfigurationError(
                f"{folder} holds {len(dataset)} usable images, fewer than one batch (batch_size={self.batch_size}"
                f"{f' on each of {world} processes' if world > 1 else ''}); lower --data.init_args.batch_size",
                "batch_size",
            )

    def _training_files(self) -> list[Path]:
        return self.train_set.files if self.train_set is not None else []

    def skipped_files(self) -> int:
        """Files skipped so far: unreadable headers at setup plus files that failed to decode in training."""
        decoded = int(self.train_set.bad.sum()) if self.train_set is not None else 0
        return self._header_skips + decoded

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        if trainer is not None and trainer.training and trainer.is_global_zero:
            skipped = self.skipped_files()
            if skipped != self._logged_skips:  # logged when it changes, so the dashboard shows when files failed
                self._logged_skips = skipped
                for logger in trainer.loggers:
                    logger.log_metrics({"data/skipped_files": float(skipped)}, step=trainer.global_step)
        return batch


class SplitFolderDataModule(FolderDataModule):
    """A folder data module that keeps its evaluation sets in ``splits`` (``"val"``, ``"test"``, ``"predict"``, as
    its ``setup`` finds them): their loaders, every item in order. (A subclass, not a mixin: LightningCLI follows
    ``super().__init__`` to the first base class for the arguments of ``**kwargs``.)"""

    splits: dict[str, Dataset]
    #: Items per predict batch; ``None``: ``batch_size`` (1 where the inputs keep sizes that may differ).
    predict_batch_size: int | None = None
    #: The channels a subclass announced in ``image_shape`` when it was built without files to read (3: most
    #: translation sets are RGB), so that the command line could size the model; ``None`` when it read them.
    assumed_channels: int | None = None

    def check_assumed(self, channels: int, folder: Path) -> None:
        """Refuses files of another channel count than the one announced without them (the model has that one)."""
        if self.assumed_channels is not None and channels != self.assumed_channels:
            raise ConfigurationError(
                f"to_channels=None: the images in {folder} have {channels} channel{'s' * (channels > 1)}, but the model "
                f"was sized for {self.assumed_channels} when the data module was built without them; pass "
                f"--data.init_args.to_channels={channels}", "to_channels",
            )

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.splits["val"]) if "val" in self.splits else []

    def test_dataloader(self) -> DataLoader:
        if "test" not in self.splits:
            raise MissingFileError(f"no test split: {self._test_folder()} does not exist", "data_dir")
        return self._loader(self.splits["test"])

    def predict_dataloader(self) -> DataLoader:
        if "predict" not in self.splits:
            raise RuntimeError(f"{type(self).__name__}: call setup('predict') before predict_dataloader()")
        batch_size = self.predict_batch_size or self.batch_size
        return DataLoader(self.splits["predict"], batch_size=batch_size, **self._loader_options())

    def _test_folder(self) -> str:
        """Where the test split would be, for the message when it is not."""
        raise NotImplementedError


class ImageFolderDataModule(FolderDataModule):
    """Every image under ``data_dir`` (recursively), for unconditional GANs: batches of images float32
    [B, channels, image_size, image_size] in [-1, 1], the centred square of each file resized. All images train;
    ``val_fraction`` holds a seeded share out for validation.

    Args:
        data_dir: folder of images (``.jpg``, ``.png``, ...), in subfolders or not (CelebA: ``img_align_celeba``).
        image_size: side of the square images.
        flip: mirror training images with probability 1/2 (ProGAN and StyleGAN's augmentation for faces).
        val_fraction: share of the images held out for validation (0: none).
        **kwargs: ``to_channels``, ``bad_files``, ``seed`` (of the order, the held-out split and the flips),
            ``batch_size``, ``num_workers``, ``pin_memory``: the arguments every folder data module takes. With
            ``to_channels`` the sample shape (``image_shape``) is known before the files are read, so the command
            line sizes the model by it; without, the model keeps its configured ``channels`` and ``image_size``.
    """

    #: What a batch holds, for models to check that they can use it (see ``gans.base.GAN.batch_kinds``).
    batch_kind = "samples"

    def __init__(
        self,
        data_dir: str = "data/images",
        image_size: int = 64,
        flip: bool = False,
        val_fraction: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_at_least(1, image_size=image_size)
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigurationError(f"val_fraction={val_fraction} must be in [0, 1)")
        self.data_dir, self.image_size, self.flip, self.val_fraction = Path(data_dir), image_size, flip, val_fraction
        self.val_set: ImageFolder | None = None
        if self.to_channels is not None:  # known before setup: the command line sizes the model by it
            self.image_shape = (self.to_channels, image_size, image_size)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        files, channels, _ = self.check_files(scan_folder(self.data_dir), self.data_dir)
        self.image_shape = (channels, self.image_size, self.image_size)
        seed = default_data_seed() if self.seed is None else self.seed
        order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
        held = int(len(files) * self.val_fraction)
        val_files, train_files = [files[i] for i in sorted(order[:held])], [files[i] for i in sorted(order[held:])]
        self.train_set = ImageFolder(train_files, channels, self.bad_files, seed, self.image_size, self.flip)
        self.check_batch(self.train_set, self.data_dir)
        if val_files:
            self.val_set = ImageFolder(val_files, channels, self.bad_files, seed, self.image_size, flip=False)

    def val_dataloader(self) -> DataLoader | list:
        return [] if self.val_set is None else self._loader(self.val_set)

    def _data_settings(self) -> dict:
        # The metrics read epoch 0's items: which of them are mirrored depends on the seed.
        flip_seed = getattr(self.train_set, "seed", None) if self.flip else None
        return {"image_size": self.image_size, "flip_seed": flip_seed, **(AUGMENTATION_SEEDING if self.flip else {})}
