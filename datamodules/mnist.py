"""MNIST and Fashion-MNIST, read straight from torchvision's on-disk layout, plain or `.gz` IDX files."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from datamodules.base import AUGMENTATION_SEEDING, ImageDataModule
from datamodules.resumable import as_batch, default_data_seed
from gans.errors import ConfigurationError, MissingFileError, check_at_least
from gans.seeding import step_seed

# Folder under `data_dir`; also the name of the torchvision class that downloads into it.
FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
SPLIT_PREFIXES = {"train": "train", "test": "t10k"}
_IDX_UINT8 = 0x08
# Pixels per interpolate call: bounds the float copy to 64 MB whatever the image size.
_RESIZE_CHUNK_PIXELS = 2**24


def read_idx(path: Path) -> torch.Tensor:
    """Reads an IDX file of uint8 values (the MNIST format), plain or gzip-compressed.

    Args:
        path: The file; a name ending in `.gz` is decompressed.

    Returns:
        A uint8 tensor shaped as the header says: [N, H, W] for images, [N] for labels.

    Raises:
        ValueError: The file is truncated, corrupt, or not a uint8 IDX file; the message names it.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = bytearray(f.read())
        else:
            data = bytearray(path.read_bytes())
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise ConfigurationError(f"{path}: cannot decompress ({err}); the file is truncated or corrupt") from err

    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _IDX_UINT8:
        raise ConfigurationError(
            f"{path}: not a uint8 IDX file: header starts with {bytes(data[:4]).hex()}, expected 000008 then ndim"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ConfigurationError(f"{path}: truncated header: expected {header} bytes, found {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected, actual = math.prod(dims), len(data) - header
    if actual != expected:
        raise ConfigurationError(
            f"{path}: header announces {'x'.join(map(str, dims))} = {expected} data bytes, found {actual}; "
            "the file is truncated or corrupt"
        )
    # bytearray keeps the buffer writable, so the tensor shares it without a copy or a warning.
    return torch.frombuffer(data, dtype=torch.uint8)[header:].view(dims)


def split_file_names(split: Literal["train", "test"]) -> tuple[str, str]:
    """The images and labels file names of a split, without `.gz`."""
    prefix = SPLIT_PREFIXES[split]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find(raw_dir: Path, name: str) -> Path | None:
    # Uncompressed first: a torchvision download leaves both, and the plain file skips decompression.
    for path in (raw_dir / name, raw_dir / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def _has_split(raw_dir: Path, split: Literal["train", "test"]) -> bool:
    return all(_find(raw_dir, name) for name in split_file_names(split))


def _looked_for(split: Literal["train", "test"]) -> str:
    return ", ".join(f"{name} or {name}.gz" for name in split_file_names(split))


def load_split(raw_dir: Path, split: Literal["train", "test"]) -> tuple[torch.Tensor, torch.Tensor]:
    """Loads one split from a `raw/` folder.

    Args:
        raw_dir: The folder holding the IDX files, e.g. `data/MNIST/raw`.
        split: "train" for the `train-*` files, "test" for the `t10k-*` files.

    Returns:
        The images, uint8 [N, H, W], and the labels, int64 [N].

    Raises:
        FileNotFoundError: A file of the split is missing.
        ValueError: A file is malformed, or images and labels differ in count.
    """
    paths = [_find(raw_dir, name) for name in split_file_names(split)]
    if None in paths:
        raise FileNotFoundError(f"{split} split not found in {raw_dir}: looked for {_looked_for(split)}")
    image_path, label_path = paths
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3:
        raise ConfigurationError(f"{image_path}: expected images [N, H, W], found shape {tuple(images.shape)}")
    if labels.ndim != 1:
        raise ConfigurationError(f"{label_path}: expected labels [N], found shape {tuple(labels.shape)}")
    if len(images) != len(labels):
        raise ConfigurationError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels")
    return images, labels.long()


def resize_images(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Adds the channel axis and resizes square, once for the whole split, so that items only rescale.

    Args:
        images: uint8 [N, H, W].
        image_size: Side of the output images.

    Returns:
        uint8 [N, 1, image_size, image_size]; kept as uint8 because float would take four times the memory.
    """
    images = images.unsqueeze(1)  # [N, 1, H, W]
    if images.shape[-2:] == (image_size, image_size):
        return images.contiguous()
    out = torch.empty(len(images), 1, image_size, image_size, dtype=torch.uint8)
    chunk = max(1, _RESIZE_CHUNK_PIXELS // max(image_size**2, images[0].numel()))
    for start in range(0, len(images), chunk):
        resized = F.interpolate(
            images[start : start + chunk].float(),
            size=(image_size, image_size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )  # [chunk, 1, S, S]
        out[start : start + chunk] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


class MNISTImages(Dataset):
    """Preprocessed images with their labels.

    Items are `(image, label)`: image float32 [1, H, W] in [-1, 1], label a Python int. An index may exceed the
    length (an epoch-tagged index from the training sampler, ``datamodules.resumable``): its epoch then picks the
    mirrored images.

    Args:
        images: uint8 [N, 1, H, W].
        labels: int64 [N].
        flip_seed: with a seed, each epoch mirrors a random half of the images left to right (which half is a
            function of the seed and the epoch, so a resumed run mirrors the same ones); None mirrors nothing.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, flip_seed: int | None = None) -> None:
        self.images = images
        self.labels = labels
        self.flip_seed = flip_seed
        self._flips: tuple[int, torch.Tensor] | None = None  # (epoch, bool [N]) of the latest epoch asked for

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        epoch, i = divmod(index, len(self))
        image = self.images[i].float() / 127.5 - 1.0
        if self.flip_seed is not None and self.flips(epoch)[i]:
            image = image.flip(-1)
        return image, int(self.labels[i])

    def batch(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch in one indexing operation, on the device the images are on (flips included): images
        float32 [B, 1, H, W] in [-1, 1], labels int64 [B]. The indices are of one epoch, as a sampler gives them."""
        index = torch.as_tensor(indices, device=self.images.device) % len(self)
        images = self.images[index].float() / 127.5 - 1.0
        if self.flip_seed is not None:
            flips = self.flips(indices[0] // len(self))[index]
            images = torch.where(flips[:, None, None, None], images.flip(-1), images)
        return images, self.labels[index]

    def flips(self, epoch: int) -> torch.Tensor:
        """Which images epoch ``epoch`` mirrors: bool [N], on the images' device."""
        if self._flips is None or self._flips[0] != epoch:
            rng = torch.Generator().manual_seed(step_seed(self.flip_seed, epoch))
            self._flips = (epoch, (torch.rand(len(self), generator=rng) < 0.5).to(self.images.device))
        return self._flips[1]


class _OnDeviceImages(MNISTImages):
    """The data set held on the accelerator: the DataLoader asks for whole batches (``__getitems__``), which are
    cut, converted and mirrored there, with no worker processes and no host-to-device copy."""

    __getitems__ = MNISTImages.batch


class MNISTDataModule(ImageDataModule):
    """MNIST or Fashion-MNIST from `<data_dir>/MNIST/raw/` or `<data_dir>/FashionMNIST/raw/`.

    Files are torchvision's (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
    `t10k-labels-idx1-ubyte`), each plain or `.gz`. Batches are `(images, labels)`: images float32
    [B, 1, image_size, image_size] in [-1, 1], labels int64 [B].

    Validation and test use the `t10k` split when training on the train split. When training on the test split
    there is nothing held out: `val_dataloader` returns an empty list, so Lightning skips validation, and
    `test_dataloader` raises. Training on the test split is never chosen silently. `predict` always iterates the
    `t10k` split.

    Args:
        data_dir: Folder that holds `MNIST/raw/` or `FashionMNIST/raw/`.
        dataset: "mnist" or "fashion_mnist".
        train_split: Split to train on: "train" (the `train-*` files) or "test" (the `t10k-*` files).
        download: Download the files with torchvision when the needed split is missing.
        image_size: Side of the square images fed to the GAN; 28 keeps the originals, other sizes are resized
            once at setup (bilinear, antialiased).
        flip: Mirror a random half of the training images left to right, a new half every epoch (on the device with
            ``on_device``). Suits Fashion-MNIST's clothes; digits are not mirror-symmetric, so leave it off for MNIST.
            Seeded by ``seed_everything`` (``PL_GLOBAL_SEED``): a resumed run mirrors the same images.
        on_device: Hold the whole preprocessed training split on the trainer's device (60,000 28x28 digits are 47 MB
            as uint8; 61 MB at 32x32) and cut each batch there, flips included: no DataLoader workers, no copies per
            step. Needs ``num_workers=0`` and ``pin_memory=False``.
        **kwargs: ``batch_size`` (images per batch, per process), ``num_workers``, ``pin_memory``: see
            :class:`datamodules.base.ImageDataModule`.
    """

    #: What a batch holds, for models to check that they can use it (see ``gans.base.GAN.batch_kinds``).
    batch_kind = "labelled"

    def __init__(
        self,
        data_dir: str = "data",
        dataset: Literal["mnist", "fashion_mnist"] = "mnist",
        train_split: Literal["train", "test"] = "train",
        download: bool = False,
        image_size: int = 32,
        flip: bool = False,
        on_device: bool = False,
        **kwargs: Any,
    ) -> None:
        if dataset not in FOLDERS:
            raise ConfigurationError(f"dataset={dataset!r} is unknown; expected one of {', '.join(map(repr, FOLDERS))}")
        if train_split not in SPLIT_PREFIXES:
            raise ConfigurationError(f"train_split={train_split!r} is unknown; expected 'train' or 'test'")
        super().__init__(**kwargs)
        check_at_least(1, image_size=image_size)
        if on_device and (self.num_workers or self.pin_memory):
            raise ConfigurationError(
                f"on_device=True serves batches from the device itself: it needs num_workers=0 and pin_memory=False, "
                f"not num_workers={self.num_workers}, pin_memory={self.pin_memory}"
            )
        self.data_dir, self.dataset, self.image_size = Path(data_dir), dataset, image_size
        self.download, self.train_split, self.on_device = download, train_split, on_device
        self.flip = flip
        self.raw_dir = self.data_dir / FOLDERS[dataset] / "raw"
        self.image_shape = (1, image_size, image_size)
        self.num_classes = 10
        self.train_set: MNISTImages | None = None
        self.held_out_set: MNISTImages | None = None
        self.predict_set: MNISTImages | None = None

    def prepare_data(self) -> None:
        needed = [self.train_split] + (["test"] if self.train_split == "train" else [])
        if not self.download or all(_has_split(self.raw_dir, split) for split in needed):
            return
        import torchvision  # only a download needs it

        dataset_class = getattr(torchvision.datasets, FOLDERS[self.dataset])
        try:
            dataset_class(root=str(self.data_dir), train=self.train_split == "train", download=True)
        except Exception as err:  # network, HTTP, checksum and disk errors all call for the same fix
            raise MissingFileError(
                f"Downloading {FOLDERS[self.dataset]} into {self.raw_dir} failed: {err}\n"
                f"Looked there for {', '.join(_looked_for(split) for split in needed)}. "
                "Put the files there yourself (.gz is fine) and run again with --data.download=false, "
                "or point --data.data_dir at a folder that holds them.",
                "data_dir",
            ) from err

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            loaded = self._load(self.train_split)
            flip_seed = default_data_seed() if self.flip else None
            if self.on_device:
                device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
                self.train_set = _OnDeviceImages(loaded.images.to(device), loaded.labels.to(device), flip_seed)
            else:
                self.train_set = MNISTImages(loaded.images, loaded.labels, flip_seed)
        if self.train_split == "train" and stage in (None, "fit", "validate", "test") and self.held_out_set is None:
            if _has_split(self.raw_dir, "test"):
                self.held_out_set = self._load("test")
            elif stage in ("validate", "test"):
                raise MissingFileError(self._missing_message("test"), "data_dir")
            else:
                rank_zero_warn(f"No test split (t10k-*) in {self.raw_dir}: training without validation.")
        if stage == "predict" and self.predict_set is None:
            self.predict_set = self._load("test")

    def _data_settings(self) -> dict:
        return {
            "dataset": self.dataset,
            "train_split": self.train_split,
            "image_size": self.image_size,
            "flip_seed": default_data_seed() if self.flip else None,  # the metrics read epoch 0's mirrored images
            **(AUGMENTATION_SEEDING if self.flip else {}),
        }

    def _training_files(self) -> list[Path]:
        return [_find(self.raw_dir, name) or self.raw_dir / name for name in split_file_names(self.train_split)]

    def train_dataloader(self) -> DataLoader:
        if self.train_set is not None and len(self.train_set) < self.batch_size:
            # drop_last would leave no batch at all, and Lightning would train for zero steps without a word.
            raise ConfigurationError(
                f"The {self.train_split} split in {self.raw_dir} holds {len(self.train_set)} images, fewer than one "
                f"batch of batch_size={self.batch_size}; lower --data.batch_size",
                "batch_size",
            )
        return super().train_dataloader()

    def val_dataloader(self) -> DataLoader | list:
        """The `t10k` split, or an empty list (Lightning then skips validation) when there is none to hold out."""
        if self.held_out_set is None:
            return []
        return self._loader(self.held_out_set)

    def test_dataloader(self) -> DataLoader:
        if self.train_split == "test":
            raise RuntimeError(
                "MNISTDataModule(train_split='test') trains on the test split, so no held-out split is left to "
                "test on; train with --data.train_split=train to test"
            )
        if self.held_out_set is None:
            raise RuntimeError("MNISTDataModule: call setup('test') before test_dataloader()")
        return self._loader(self.held_out_set)

    def predict_dataloader(self) -> DataLoader:
        """The `t10k` split (whatever ``train_split`` is): a GAN's ``predict`` makes one fake per example, with its
        label as the condition for conditional models."""
        if self.predict_set is None:
            raise RuntimeError("MNISTDataModule: call setup('predict') before predict_dataloader()")
        return self._loader(self.predict_set)

    def _train_loader_options(self) -> dict[str, Any]:
        # The on-device set cuts whole batches itself (its __getitems__): nothing is left to collate.
        return {"collate_fn": as_batch} if self.on_device else self._loader_options()

    def _load(self, split: Literal["train", "test"]) -> MNISTImages:
        if not _has_split(self.raw_dir, split):
            raise MissingFileError(self._missing_message(split), "data_dir")
        images, labels = load_split(self.raw_dir, split)
        return MNISTImages(resize_images(images, self.image_size), labels)

    def _missing_message(self, split: Literal["train", "test"]) -> str:
        name = FOLDERS[self.dataset]
        if split == "train" and _has_split(self.raw_dir, "test"):
            return (
                f"Only the test split (t10k-*) of {name} was found in {self.raw_dir}; the train split is missing "
                f"(looked for {_looked_for('train')}). Pass --data.train_split=test to train on the test split "
                "(then nothing is held out for validation or test), or --data.download=true to download the train "
                "split."
            )
        if self.download:
            fix = "download=True is set: Lightning calls prepare_data() to download; call it yourself outside a Trainer"
        else:
            fix = "Put the files there (.gz is fine) or pass --data.download=true to download them"
        return (
            f"{name} {split} split not found in {self.raw_dir}: looked for {_looked_for(split)}. "
            f"{fix}; --data.data_dir sets the folder that holds {name}/raw/."
        )
