"""CelebA (Liu et al. 2015), the aligned and cropped faces, read from the official layout as torchvision lays it out:

```
<data_dir>/celeba/img_align_celeba/000001.jpg ... 202599.jpg     (178 x 218 JPEGs)
<data_dir>/celeba/list_eval_partition.txt                        (000001.jpg 0: 0 train, 1 val, 2 test)
<data_dir>/celeba/list_attr_celeba.txt                           (the 40 attributes, -1 or 1)
<data_dir>/celeba/identity_CelebA.txt, list_bbox_celeba.txt, list_landmarks_align_celeba.txt
```

The text files are parsed here, not by ``torchvision.datasets.CelebA``, which checks their md5 sums even without a
download and so refuses a copy whose line endings or spacing differ from the Google Drive files. CelebA-HQ, FFHQ or
any other folder of faces trains through :class:`datamodules.ImageFolderDataModule`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from datamodules.folder import ImageFolder, ImageFolderDataModule
from datamodules.resumable import default_data_seed
from gans.errors import ConfigurationError, MissingFileError

#: The folder under ``data_dir``: torchvision's ``CelebA.base_folder``, so that its download lands where it is read.
FOLDER = "celeba"
IMAGES = "img_align_celeba"
PARTITION = "list_eval_partition.txt"
ATTRIBUTES = "list_attr_celeba.txt"
#: The value of each split in the partition file.
SPLITS = {"train": 0, "val": 1, "test": 2}
#: The splits each Lightning stage sets up.
STAGE_SPLITS = {None: ("train", "val", "test"), "fit": ("train", "val"), "validate": ("val",), "test": ("test",)}


def read_list(path: Path) -> tuple[list[str], list[str], Tensor]:
    """Reads one of CelebA's text lists. ``list_attr_celeba.txt``, ``list_bbox_celeba.txt`` and
    ``list_landmarks_align_celeba.txt`` start with a line holding the image count and a line of column names;
    ``list_eval_partition.txt`` and ``identity_CelebA.txt`` have no header. Each row is an image's file name and
    integers, separated by any run of spaces (the official files align their columns), ``\\n`` or ``\\r\\n``.

    Args:
        path: the file.

    Returns:
        The column names (``[]`` without a header; the bounding boxes' leading ``image_id`` is dropped), the file
        names, N of them, and the values, int64 [N, K].

    Raises:
        MissingFileError: the file does not exist.
        ConfigurationError: a row that is not a file name and K integers, or a count line that disagrees with the
            number of rows (a truncated download); the message names the file and the line.
    """
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist", "data_dir")
    lines = [(number, line.split()) for number, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    count, names = None, []
    if lines and len(lines[0][1]) == 1 and lines[0][1][0].isdigit():
        count = int(lines[0][1][0])
        names = lines[1][1] if len(lines) > 1 else []
        names = names[1:] if names[:1] == ["image_id"] else names
        lines = lines[2:]
    width = len(names) or (len(lines[0][1]) - 1 if lines else 0)
    files, values = [], []
    for number, tokens in lines:
        try:
            if len(tokens) != width + 1:
                raise ValueError(f"{len(tokens)} fields")
            values.extend(map(int, tokens[1:]))
        except ValueError as err:
            raise ConfigurationError(
                f"{path}, line {number}: expected an image file name and {width} integers, found {' '.join(tokens)!r} "
                f"({err}); the file is corrupt or not CelebA's",
                "data_dir",
            ) from err
        files.append(tokens[0])
    if count is not None and count != len(files):
        raise ConfigurationError(
            f"{path}: its first line announces {count} images but {len(files)} rows follow; the file is truncated or "
            "corrupt: replace it",
            "data_dir",
        )
    # Through NumPy: four times faster than torch.tensor on a list (the attributes are 8 million values).
    return names, files, torch.from_numpy(np.array(values, dtype=np.int64)).view(len(files), width)


class LabelledImages(ImageFolder):
    """:class:`datamodules.folder.ImageFolder`'s images with their files' labels: items are ``(image, labels)``,
    image float32 [3, size, size] in [-1, 1], labels ``labels[i]`` of the file the image came from (the next good
    one when a bad file is skipped)."""

    def __init__(self, files, channels, bad_files, seed, image_size, flip, labels: Tensor) -> None:
        super().__init__(files, channels, bad_files, seed, image_size, flip)
        self.labels = labels

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        i, image = self.item(index)
        return image, self.labels[i]


class CelebADataModule(ImageFolderDataModule):
    """CelebA's aligned faces, split by the official partition.

    Read from ``<data_dir>/celeba/`` (torchvision's layout, see :mod:`datamodules.celeba`). Each image's centred
    178 x 178 square (rows 20 to 197 of the 178 x 218 aligned image) is resized to ``image_size`` (bilinear,
    antialiased): batches of images float32 [B, 3, image_size, image_size] in [-1, 1], or with ``labels``
    ``(images, attributes)``, attributes float32 [B, 40] of 0 and 1 (the file's -1 and 1), in the order of
    :attr:`attribute_names`. Validation and test images are never mirrored.

    Needed files: ``img_align_celeba/`` with the images the partition lists and ``list_eval_partition.txt`` always,
    ``list_attr_celeba.txt`` with ``labels``; the identities, bounding boxes and landmarks are not read.

    Every training image's header is read at setup, bad files are skipped or stop the run (``bad_files``), flips are
    seeded by epoch and position (a resumed run mirrors the same images), the training order resumes part-way
    through an epoch, and ``fingerprint()`` keys the metrics' cache, as for every folder data module.

    Args:
        data_dir: the folder that holds ``celeba/`` (torchvision's ``root``).
        labels: batches are ``(images, attributes)`` (for conditional models and attribute editing) instead of
            images alone.
        download: when needed files are missing, download CelebA through torchvision (``CelebA(root=data_dir,
            download=True)``: 1.4 GB from Google Drive, which needs the ``gdown`` package and often refuses
            automated downloads); off by default, as the files are usually fetched by hand.
        **kwargs: ``image_size`` (64 by default), ``flip``: see :class:`datamodules.ImageFolderDataModule`;
            ``bad_files``, ``seed``, ``batch_size``, ``num_workers``, ``pin_memory``: the arguments every folder
            data module takes.

    Attributes:
        attribute_names: the 40 attribute names of ``list_attr_celeba.txt`` (after ``setup`` with ``labels``).

    Raises:
        MissingFileError: (at setup) a needed file or listed image is missing; the message names it and the folder
            it looked in. ``prepare_data`` with ``download`` says what to put where when the download fails.
        ConfigurationError: (at setup) a text file that is not in CelebA's format, or a partition without
            training images.
    """

    def __init__(self, data_dir: str = "data", labels: bool = False, download: bool = False, **kwargs: Any) -> None:
        # Always RGB, and the partition is the official one: neither is an option here.
        super().__init__(data_dir=data_dir, to_channels=3, val_fraction=0.0, **kwargs)
        for fixed in ("to_channels", "val_fraction"):  # so that the saved hyperparameters rebuild the module
            self.hparams.pop(fixed, None)  # (LightningCLI gives the hyperparameters it parsed, without them)
        self.root, self.labels, self.download = self.data_dir / FOLDER, labels, download
        self.image_shape = (3, self.image_size, self.image_size)  # known before setup: the CLI sizes the model by it
        #: What a batch holds, for models to check that they can use it (see ``gans.base.GAN.batch_kinds``).
        self.batch_kind = "labelled" if labels else "samples"
        self.attribute_names: list[str] = []
        self.test_set: ImageFolder | None = None
        self._attributes: tuple[dict[str, int], Tensor] | None = None  # row of each file name, float32 [N, 40]

    def missing(self) -> list[str]:
        """The needed files and folders that are not in ``<data_dir>/celeba/``, by name (a folder with a ``/``)."""
        needed = [(IMAGES, True), (PARTITION, False)] + [(ATTRIBUTES, False)] * self.labels
        return [f"{name}/" if folder else name for name, folder in needed
                if not ((self.root / name).is_dir() if folder else (self.root / name).is_file())]

    def prepare_data(self) -> None:
        missing = self.missing()
        if not self.download or not missing:
            return
        import torchvision  # only a download needs it

        try:
            torchvision.datasets.CelebA(root=str(self.data_dir), download=True)
        except Exception as err:  # network, Google Drive quota, missing gdown, checksum and disk errors: one fix
            raise MissingFileError(
                f"Downloading CelebA into {self.root} failed: {err}\n{self._missing_message(missing, download_failed=True)}",
                "data_dir",
            ) from err

    def setup(self, stage: str | None = None) -> None:
        splits = [name for name in STAGE_SPLITS.get(stage, ()) if getattr(self, f"{name}_set") is None]
        if not splits:
            return
        if missing := self.missing():
            raise MissingFileError(self._missing_message(missing), "data_dir")
        _, names, partition = read_list(self.root / PARTITION)
        if partition.shape[1] != 1 or not torch.isin(partition, torch.tensor(list(SPLITS.values()))).all():
            raise ConfigurationError(
                f"{self.root / PARTITION}: expected one value 0 (train), 1 (val) or 2 (test) per image", "data_dir"
            )
        if self.labels and self._attributes is None:
            self.attribute_names, files, values = read_list(self.root / ATTRIBUTES)
            if not values.abs().eq(1).all():
                raise ConfigurationError(f"{self.root / ATTRIBUTES}: expected attributes -1 or 1", "data_dir")
            self._attributes = {name: row for row, name in enumerate(files)}, (values > 0).float()
        for split in splits:
            chosen = [name for name, part in zip(names, partition[:, 0].tolist(), strict=True) if part == SPLITS[split]]
            if chosen or split == "train":
                setattr(self, f"{split}_set", self._split(split, chosen))
        if "train" in splits:
            self.check_batch(self.train_set, f"the train split of {self.root / IMAGES}")

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            raise MissingFileError(f"no test split: {self.root / PARTITION} marks no image 2 (test)", "data_dir")
        return self._loader(self.test_set)

    def _split(self, split: str, names: list[str]) -> ImageFolder:
        """The data set of one split's images (named by the partition file), checked: every image there and
        readable, and labelled with its attributes."""
        folder = self.root / IMAGES
        if not names:
            raise MissingFileError(f"{self.root / PARTITION} marks no image 0 (train)", "data_dir")
        files = [folder / name for name in names]
        if absent := [path.name for path in files if not path.is_file()]:
            raise MissingFileError(
                f"{len(absent)} of the {len(files)} {split} images that {PARTITION} lists are not in {folder} (e.g. "
                f"{', '.join(absent[:3])}): the images are incomplete; extract img_align_celeba.zip there again",
                "data_dir",
            )
        files, _, _ = self.check_files(files, folder)
        seed = default_data_seed() if self.seed is None else self.seed
        flip = self.flip and split == "train"
        if not self.labels:
            return ImageFolder(files, 3, self.bad_files, seed, self.image_size, flip)
        rows, values = self._attributes
        if unlabelled := [path.name for path in files if path.name not in rows]:
            raise ConfigurationError(
                f"{self.root / ATTRIBUTES} has no attributes for {len(unlabelled)} of the {split} images (e.g. "
                f"{', '.join(unlabelled[:3])}); the file is incomplete: replace it",
                "data_dir",
            )
        labels = values[[rows[path.name] for path in files]]  # [N, 40]
        return LabelledImages(files, 3, self.bad_files, seed, self.image_size, flip, labels)

    def _missing_message(self, missing: list[str], download_failed: bool = False) -> str:
        if download_failed:
            fix = "Download them by hand"
        elif self.download:
            fix = ("download=True is set: Lightning calls prepare_data() to download; call it yourself outside a "
                   "Trainer, or put the official files there")
        else:
            fix = "Put the official files there"
        download = "" if self.download else ", pass --data.download=true to download them through torchvision,"
        return (
            f"CelebA is not complete in {self.root}: looked there for {', '.join(missing)}. {fix} "
            f"(img_align_celeba.zip extracted to {IMAGES}/, the lists from the Anno/ and Eval/ folders){download} or "
            f"point --data.data_dir at the folder that holds {FOLDER}/."
        )
