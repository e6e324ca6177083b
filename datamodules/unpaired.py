"""Unpaired translation sets in CycleGAN's layout: two domains, A and B, in separate folders, no image matched to
another. Each item draws an A image and a B image independently (B at random or, with ``serial_batches``, at A's
index), each with its own jitter, as the reference code's ``UnalignedDataset``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.base import AUGMENTATION_SEEDING
from datamodules.folder import ImageFiles, peek_header, scan_folder
from datamodules.paired import Preprocess, TranslationDataModule
from datamodules.resumable import default_data_seed
from gans.seeding import step_seed


class UnpairedImages(Dataset):
    """Items ``(a, b)``, float32 [C, crop, crop] in [-1, 1]: item ``i`` is A image ``i % len(A)`` and B image
    ``i % len(B)`` (``serial``) or one drawn at random, so that an epoch of ``max(len(A), len(B))`` items shows every
    image of the larger domain once. The random B and the jitter are seeded by the (epoch-tagged) index: the same
    after a resume, different from epoch to epoch; A's and B's jitter are separate draws.

    Args:
        a: the images of the source domain.
        b: the images of the target domain.
        preprocess: how items are cut.
        jitter: random cuts (training) or deterministic ones.
        serial: B at A's index (modulo its length) instead of at random.
    """

    def __init__(self, a: ImageFiles, b: ImageFiles, preprocess: Preprocess, jitter: bool, serial: bool) -> None:
        self.a, self.b, self.preprocess, self.jitter, self.serial = a, b, preprocess, jitter, serial

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def indices(self, index: int) -> tuple[int, int]:
        """The A and B images of item ``index`` (before any bad file is skipped)."""
        i = index % len(self)
        if self.serial:
            return i % len(self.a), i % len(self.b)
        # Its own stream, not the jitter's: the pairing does not depend on whether items are jittered.
        draw = torch.Generator().manual_seed(step_seed(self.a.seed, index, 1))
        return i % len(self.a), int(torch.randint(len(self.b), (), generator=draw))

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        i, j = self.indices(index)
        rng = self.a.rng(index) if self.jitter else None
        items = []
        for files, k in ((self.a, i), (self.b, j)):
            _, image = files.load(k)
            items.append(self.preprocess.geometry(tuple(image.shape[-2:]), rng).apply(image))
        return items[0], items[1]


class UnpairedImageDataModule(TranslationDataModule):
    """An unpaired translation set in CycleGAN's layout: ``<data_dir>/trainA/``, ``trainB/``, ``testA/``, ``testB/``
    (and optionally ``valA/``, ``valB/``; validation uses the test folders when they are absent). Batches are
    ``(a, b)`` float32 [B, C, crop_size, crop_size] in [-1, 1], a from the source domain (A, or B with
    ``direction="BtoA"``), b drawn from the other independently. An epoch has as many items as the larger domain;
    its order is resumable part-way through, as every training loader of the library. ``image_shape`` is the target
    domain's [C, H, W], ``source_shape`` the source domain's.

    Args:
        data_dir: the folder holding ``trainA/``, ``trainB/``, ...
        serial_batches: the reference's option: item i pairs A image i with B image i (modulo the size of B);
            otherwise each item draws its B image at random (seeded, the same after a resume).
        batch_size: pairs per batch, per process (1 in CycleGAN).
        **kwargs: ``direction`` (``"BtoA"``: B is the source domain), ``load_size``, ``crop_size``, ``preprocess``,
            ``jitter``, ``flip``: see :class:`datamodules.paired.TranslationDataModule`; ``to_channels``,
            ``bad_files``, ``seed`` (of the order, the pairing and the jitter), ``num_workers``, ``pin_memory``: the
            arguments every folder data module takes.
    """

    #: What a batch holds, for models to check that they can use it (see ``gans.base.GAN.batch_kinds``).
    batch_kind = "unpaired"

    def __init__(
        self,
        data_dir: str = "data/horse2zebra",
        serial_batches: bool = False,
        batch_size: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        self.data_dir, self.serial_batches = Path(data_dir), serial_batches
        self.splits: dict[str, UnpairedImages] = {}
        # One file of each domain, when they are there (or to_channels), so that the command line sizes the model by
        # them when it builds it (setup reads every file and sets the shapes again).
        headers = [peek_header(self.data_dir / f"train{d}") for d in ("AB" if self.direction == "AtoB" else "BA")]
        if (self.to_channels or not all(headers)) and self.preprocess.mode != "none":  # the crop sets the size
            # Without files, RGB (most translation sets are): setup refuses files of another channel count.
            self.assumed_channels = None if self.to_channels or all(headers) else 3
            headers = [(self.to_channels or 3, (self.crop_size, self.crop_size))] * 2
        if all(headers):
            self.source_shape, self.image_shape = (
                (self.to_channels or c, *self.preprocess.output_size(size[::-1])) for c, size in headers
            )

    def _domain(self, folder: Path) -> tuple[ImageFiles, tuple[int, int, int]]:
        """The images of one domain and the shape of its items."""
        files, channels, sizes = self.check_files(scan_folder(folder), folder)
        self.check_assumed(channels, folder)
        for path, (width, height) in zip(files, sizes, strict=True):
            self.preprocess.check_size(path, (height, width))
        seed = default_data_seed() if self.seed is None else self.seed
        return ImageFiles(files, channels, self.bad_files, seed), (channels, *self.preprocess.output_size(sizes[0][::-1]))

    def _split(self, prefix: str, training: bool) -> UnpairedImages:
        (a, self.source_shape), (b, self.image_shape) = (
            self._domain(self.data_dir / f"{prefix}{d}") for d in ("AB" if self.direction == "AtoB" else "BA")
        )
        # Held-out items pair serially: every B image is shown, the same ones every time.
        return UnpairedImages(a, b, self.preprocess, self.jitter and training, self.serial_batches or not training)

    def _held_out(self, stage: str) -> str | None:
        """The folders' prefix of validation (``val``, else ``test``) or test, or ``None`` when absent."""
        names = ("val", "test") if stage == "val" else ("test",)
        return next((n for n in names if all((self.data_dir / f"{n}{d}").is_dir() for d in "AB")), None)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._split("train", training=True)
            self.check_batch(self.train_set, self.data_dir / "trainA")
        for name, stages in (("val", (None, "fit", "validate")), ("test", (None, "test"))):
            if stage in stages and name not in self.splits and (prefix := self._held_out(name)) is not None:
                self.splits[name] = self._split(prefix, training=False)
        if stage == "predict" and "predict" not in self.splits:
            self.splits["predict"] = self._predict_set()  # sources of the direction's source domain, in predict_dir

    def _test_folder(self) -> str:
        return f"{self.data_dir / 'testA'} or {self.data_dir / 'testB'}"

    def _training_files(self) -> list[Path]:
        return [*self.train_set.a.files, *self.train_set.b.files] if self.train_set is not None else []

    def skipped_files(self) -> int:
        decoded = int(self.train_set.a.bad.sum() + self.train_set.b.bad.sum()) if self.train_set is not None else 0
        return self._header_skips + decoded

    def _data_settings(self) -> dict:
        jitter = None
        if self.jitter:
            jitter = {"load_size": self.load_size, "preprocess": self.preprocess.mode, "flip": self.preprocess.flip,
                      "seed": getattr(self.train_set.a, "seed", None) if self.train_set else None,
                      **AUGMENTATION_SEEDING}
        return {"direction": self.direction, "crop_size": self.crop_size, "serial_batches": self.serial_batches,
                "jitter": jitter}
