"""Super-resolution pairs made from any folder of high-resolution images: a crop of the image is the target, its
bicubic downsample the input, as SRGAN trains (Ledig et al. 2017: random 96 x 96 crops of ImageNet/DIV2K images,
downsampled 4x).

The downsample is torch's antialiased bicubic (``F.interpolate(mode="bicubic", antialias=True)``): the filter of
PIL's ``BICUBIC`` resize (a cubic kernel with a = -0.5, widened by the scale so that it averages like MATLAB's
``imresize``, which made DIV2K's own low-resolution images), computed on the float crop, without rounding the input
to 8 bits first, and without a round trip through PIL for each item.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.base import AUGMENTATION_SEEDING
from datamodules.folder import ImageFiles, SplitFolderDataModule, peek_header, scan_folder
from datamodules.resumable import default_data_seed
from gans.errors import ConfigurationError, check_at_least


def downsample(hr: Tensor, scale: int) -> Tensor:
    """The low-resolution version of ``hr`` [..., C, H, W] in [-1, 1]: bicubic, antialiased, to
    ``(H // scale, W // scale)``, clamped to [-1, 1] (the cubic kernel overshoots at edges)."""
    batched = hr if hr.dim() == 4 else hr[None]
    size = (hr.shape[-2] // scale, hr.shape[-1] // scale)
    lr = F.interpolate(batched, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(-1.0, 1.0)
    return lr if hr.dim() == 4 else lr[0]


class SuperResolutionImages(ImageFiles):
    """Items ``(lr, hr)``: a ``crop_size`` square of a high-resolution image (float32 [C, crop, crop] in [-1, 1]) and
    its downsample by ``scale``. Training crops are placed at random and mirrored horizontally and vertically with
    probability 1/2 each (seeded by the epoch-tagged index); held-out crops are centred. With ``crop_size=None``
    (predict) the files are the low-resolution inputs themselves, kept at their size: items ``(lr, empty)``.

    Args:
        files: the image files.
        channels: channels the images are converted to (1 or 3).
        bad_files: a file that fails to decode is skipped (``"skip"``) or stops the run (``"stop"``).
        seed: seed of the crops and flips.
        crop_size: side of the high-resolution crops; ``None``: the files are inputs.
        scale: the downsampling factor.
        jitter: random crops and flips (training) or centred crops.
    """

    def __init__(self, files: list[Path], channels: int, bad_files: str, seed: int, crop_size: int | None,
                 scale: int, jitter: bool) -> None:
        super().__init__(files, channels, bad_files, seed)
        self.crop_size, self.scale, self.jitter = crop_size, scale, jitter
        #: The file names without suffix, relative to their folder: predictions are saved under them.
        self.names: list[str] = []

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        _, image = self.load(index % len(self))
        if self.crop_size is None:
            return image, torch.empty(0)
        spare = (image.shape[-2] - self.crop_size, image.shape[-1] - self.crop_size)
        rng = self.rng(index) if self.jitter else None
        if rng is None:
            top, left = spare[0] // 2, spare[1] // 2
        else:
            top, left = (int(torch.randint(s + 1, (), generator=rng)) for s in spare)
        hr = image[:, top : top + self.crop_size, left : left + self.crop_size]
        if rng is not None:
            for dim, mirror in zip((-1, -2), torch.rand(2, generator=rng) < 0.5, strict=True):
                hr = hr.flip(dim) if mirror else hr
        return downsample(hr, self.scale), hr


class SuperResolutionDataModule(SplitFolderDataModule):
    """Super-resolution pairs from folders of high-resolution images (any images: DIV2K's ``DIV2K_train_HR/`` and
    ``DIV2K_valid_HR/``, or ``train/`` and ``val/``, or a photo collection): batches ``(lr, hr)``, ``hr`` a
    ``crop_size`` crop float32 [B, C, crop_size, crop_size] in [-1, 1], ``lr`` its bicubic downsample by ``scale``
    [B, C, crop_size / scale, crop_size / scale] (:func:`downsample`). ``image_shape`` is the high-resolution shape,
    ``source_shape`` the low-resolution one.

    Args:
        data_dir: the folder holding the image folders.
        train_folder: folder of the training images, relative to ``data_dir`` (``"."``: ``data_dir`` itself).
        val_folder: folder of the validation images (centre crops), or ``None``; skipped when absent.
        test_folder: folder of the test images (centre crops), or ``None``.
        crop_size: side of the high-resolution crops (96 in SRGAN); a multiple of ``scale``.
        scale: the upscaling factor the model learns (4 in SRGAN).
        jitter: random crop positions and flips for training (off: centred crops).
        predict_dir: folder of low-resolution inputs for ``predict``, kept at their size (the networks are
            convolutional), one per batch as their sizes may differ; a prediction is saved under its input's name
            by :class:`callbacks.PredictionWriter`.
        batch_size: crops per batch, per process (16 in SRGAN).
        **kwargs: ``to_channels``, ``bad_files``, ``seed`` (of the order, the crops and the flips),
            ``num_workers``, ``pin_memory``: the arguments every folder data module takes.
    """

    #: What a batch holds, for models to check that they can use it (see ``gans.base.GAN.batch_kinds``).
    batch_kind = "paired"
    #: The inputs of ``predict_dir`` keep their sizes, which may differ.
    predict_batch_size = 1

    def __init__(
        self,
        data_dir: str = "data/DIV2K",
        train_folder: str = "DIV2K_train_HR",
        val_folder: str | None = "DIV2K_valid_HR",
        test_folder: str | None = None,
        crop_size: int = 96,
        scale: int = 4,
        jitter: bool = True,
        predict_dir: str | None = None,
        batch_size: int = 16,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        check_at_least(1, crop_size=crop_size, scale=scale)
        if crop_size % scale:
            raise ConfigurationError(f"crop_size={crop_size} must be a multiple of scale={scale}")
        self.data_dir, self.crop_size, self.scale, self.jitter = Path(data_dir), crop_size, scale, jitter
        self.folders = {"train": train_folder, "val": val_folder, "test": test_folder}
        self.predict_dir = Path(predict_dir) if predict_dir is not None else None
        self.splits: dict[str, SuperResolutionImages] = {}
        # The CLI sizes the model by them: known from to_channels, or else the training files' first header.
        # Without to_channels and files, RGB (most photo sets are): setup refuses files of another channel count.
        header = None if self.to_channels else peek_header(self.data_dir / train_folder)
        self.assumed_channels = None if self.to_channels or header else 3
        self._set_shapes(self.to_channels or (header[0] if header else 3))

    def _set_shapes(self, channels: int) -> None:
        self.image_shape = (channels, self.crop_size, self.crop_size)
        self.source_shape = (channels, self.crop_size // self.scale, self.crop_size // self.scale)

    def _images(self, folder: Path, crop_size: int | None, jitter: bool) -> SuperResolutionImages:
        files, channels, sizes = self.check_files(scan_folder(folder), folder)
        for path, (width, height) in zip(files, sizes, strict=True):
            if crop_size is not None and min(width, height) < crop_size:
                raise ConfigurationError(
                    f"crop_size={crop_size}: {path} is {width} x {height} pixels, smaller than the crop; lower "
                    "crop_size or leave the image out"
                )
        if crop_size is not None:
            self.check_assumed(channels, folder)
            self._set_shapes(channels)
        elif self.to_channels is None and hasattr(self, "source_shape"):
            channels = self.source_shape[0]  # as the model takes them (the training files'), whatever these hold
        seed = default_data_seed() if self.seed is None else self.seed
        images = SuperResolutionImages(files, channels, self.bad_files, seed, crop_size, self.scale, jitter)
        images.names = [p.relative_to(folder).with_suffix("").as_posix() for p in files]
        return images

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._images(self.data_dir / self.folders["train"], self.crop_size, self.jitter)
            self.check_batch(self.train_set, self.data_dir / self.folders["train"])
        for name, stages in (("val", (None, "fit", "validate")), ("test", (None, "test"))):
            folder = self.folders[name]
            if stage in stages and name not in self.splits and folder is not None and (self.data_dir / folder).is_dir():
                self.splits[name] = self._images(self.data_dir / folder, self.crop_size, jitter=False)
        if stage == "predict" and "predict" not in self.splits:
            if self.predict_dir is None:
                raise ConfigurationError("predict_dir=None: give the folder of low-resolution images to upscale "
                                         "(--data.init_args.predict_dir)", "predict_dir")
            self.splits["predict"] = self._images(self.predict_dir, None, jitter=False)

    def _test_folder(self) -> str:
        folder = self.folders["test"]
        return f"test_folder={folder!r} under {self.data_dir}" if folder is None else str(self.data_dir / folder)

    def _training_files(self) -> list[Path]:
        return self.train_set.files if self.train_set is not None else []

    def _data_settings(self) -> dict:
        jitter = {"seed": getattr(self.train_set, "seed", None), **AUGMENTATION_SEEDING} if self.jitter else None
        return {"crop_size": self.crop_size, "scale": self.scale, "jitter": jitter}
