"""Paired translation sets: every source image has its target. Two layouts: pix2pix's aligned one (each file holds A
on its left half and B on its right, as ``datasets/combine_A_and_B.py`` writes them) and two folders matched by file
name (the input of that script, ``A/<split>/`` and ``B/<split>/``, or pix2pixHD's ``<split>_label/`` and
``<split>_img/``). A source may be an image or a label map (SPADE, pix2pixHD): class indices, never interpolated.

Training items get pix2pix's jitter: one draw of crop position and mirror per item, applied alike to source, target
and instance map, so they stay aligned pixel for pixel. Validation, test and predict items are cut
deterministically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from datamodules.base import AUGMENTATION_SEEDING
from datamodules.folder import (
    CHANNELS,
    ImageFiles,
    SplitFolderDataModule,
    peek_header,
    resize,
    scan_folder,
    to_tensor,
)
from datamodules.resumable import default_data_seed
from gans.errors import ConfigurationError, MissingFileError, check_at_least

#: pix2pix's ``--preprocess`` choices that this module implements.
PREPROCESS = ("resize_and_crop", "crop", "scale_width_and_crop", "none")
#: A colour-coded label map's pixel takes the class of the nearest palette colour if it lies within this Euclidean
#: RGB distance: JPEG noise stays well below it, a colour the palette lacks is refused.
PALETTE_TOLERANCE = 30.0


@dataclass(frozen=True)
class Geometry:
    """Where one item's images are cut: resized to ``size`` (height, width), then cut to ``crop`` (height, width) at
    ``(top, left)`` when ``crop`` is set, then mirrored when ``flip``. Drawn once per item, applied to each of its
    images, so that source, target and instance map get the same."""

    size: tuple[int, int]
    top: int = 0
    left: int = 0
    crop: tuple[int, int] | None = None
    flip: bool = False

    def apply(self, image: Tensor) -> Tensor:
        """``image`` float [C, H, W] in [-1, 1] (bicubic, antialiased, as pix2pix's PIL BICUBIC) or an integer map
        int64 [1, H, W] of classes or instances (nearest: a class index is never interpolated), cut."""
        if image.is_floating_point():
            image = resize(image, self.size, mode="bicubic")
        elif tuple(image.shape[-2:]) != self.size:
            # float32 holds the indices exactly (class counts and pix2pixHD's instance ids are far below 2^24).
            image = F.interpolate(image[None].float(), size=self.size, mode="nearest-exact")[0].long()
        if self.crop is not None:
            image = image[:, self.top : self.top + self.crop[0], self.left : self.left + self.crop[1]]
        return image.flip(-1) if self.flip else image


@dataclass(frozen=True)
class Preprocess:
    """pix2pix's preprocessing (``--preprocess``, ``--load_size``, ``--crop_size``, ``--no_flip``).

    Attributes:
        mode: ``"resize_and_crop"`` (to ``load_size`` square, then a ``crop_size`` crop), ``"crop"`` (a crop at the
            file's size), ``"scale_width_and_crop"`` (width to ``load_size``, height in proportion but at least
            ``crop_size``, then a crop) or ``"none"`` (the file's size rounded to a multiple of 4).
        load_size: see ``mode``.
        crop_size: see ``mode``.
        flip: training items are mirrored with probability 1/2.
    """

    mode: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True

    def geometry(self, size: tuple[int, int], rng: torch.Generator | None) -> Geometry:
        """The geometry of an image of ``size`` (height, width): with ``rng``, training's (a random crop position and
        mirror); without, the deterministic one of validation, test and predict (``resize_and_crop`` resizes
        straight to ``crop_size``; the other crops are centred; nothing is mirrored)."""
        height, width = size
        flip = rng is not None and self.flip and bool(torch.rand((), generator=rng) < 0.5)
        if self.mode == "none":  # pix2pix rounds to a multiple of 4 so that strided networks give the size back
            return Geometry((max(4, round(height / 4) * 4), max(4, round(width / 4) * 4)), flip=flip)
        if self.mode == "resize_and_crop":
            if rng is None:
                return Geometry((self.crop_size, self.crop_size))
            new = (self.load_size, self.load_size)
        elif self.mode == "scale_width_and_crop":
            new = (int(max(self.load_size * height / width, self.crop_size)), self.load_size)
        else:
            new = size
        spare = (new[0] - self.crop_size, new[1] - self.crop_size)
        if rng is None:
            top, left = spare[0] // 2, spare[1] // 2
        else:
            top, left = (int(torch.randint(s + 1, (), generator=rng)) for s in spare)
        return Geometry(new, top, left, (self.crop_size, self.crop_size), flip)

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The (height, width) of the items cut from an image of ``size``."""
        return self.geometry(size, None).crop or self.geometry(size, None).size

    def check_size(self, path: Path, size: tuple[int, int]) -> None:
        """Refuses an image (``size`` is (height, width)) too small for a ``crop`` crop."""
        if self.mode == "crop" and min(size) < self.crop_size:
            raise ConfigurationError(
                f"crop_size={self.crop_size}: {path} is {size[1]} x {size[0]} pixels, smaller than the crop; lower "
                "crop_size or use preprocess=resize_and_crop"
            )


@dataclass(frozen=True)
class LabelMaps:
    """How label-map sources are read.

    Attributes:
        num_classes: classes of the maps; a pixel outside ``0 .. num_classes-1`` stops the run, naming the file.
        palette: colour of each class for colour-coded maps (class c is ``palette[c]``); ``None``: the files hold
            class indices in one channel (PNG mode L, P or I).
    """

    num_classes: int
    palette: tuple[tuple[int, int, int], ...] | None = None

    def read(self, image: Image.Image, path: Path) -> Tensor:
        """The classes of a label-map file, int64 [1, H, W].

        Raises:
            ConfigurationError: a multi-channel file without a palette, a colour the palette lacks, or a class
                outside ``0 .. num_classes-1``; the message names the file.
        """
        if self.palette is None:
            if CHANNELS.get(image.mode, 3) != 1 and image.mode != "P":
                raise ConfigurationError(
                    f"palette=None: {path} has {CHANNELS.get(image.mode, 3)} channels (PIL mode {image.mode}); a map "
                    "of class indices has one. For colour-coded maps, give palette (one [r, g, b] per class)",
                    "palette",
                )
            labels = torch.from_numpy(np.asarray(image).astype(np.int64))[None]  # [1, H, W]
        else:
            rgb = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32).copy())  # [H, W, 3]
            distance = torch.cdist(rgb.view(-1, 3), torch.tensor(self.palette, dtype=torch.float32))  # [HW, K]
            nearest, labels = distance.min(dim=1)
            if nearest.max() > PALETTE_TOLERANCE:
                y, x = divmod(int(nearest.argmax()), image.width)
                colour = tuple(int(c) for c in rgb[y, x])
                raise ConfigurationError(
                    f"palette={[list(c) for c in self.palette]}: {path} has the colour {list(colour)} at x={x}, y={y}, "
                    "which is none of the palette's", "palette",
                )
            labels = labels.view(1, image.height, image.width)
        if (high := int(labels.max())) >= self.num_classes or int(labels.min()) < 0:
            bad = high if high >= self.num_classes else int(labels.min())
            y, x = divmod(int((labels[0] == bad).flatten().nonzero()[0]), image.width)
            raise ConfigurationError(
                f"num_classes={self.num_classes}: {path} holds class {bad} (at x={x}, y={y}), outside 0.."
                f"{self.num_classes - 1}", "num_classes",
            )
        return labels


def read_map(image: Image.Image) -> Tensor:
    """An instance map (one channel of ids, PNG mode L, I or I;16) as int64 [1, H, W]."""
    return torch.from_numpy(np.asarray(image if CHANNELS.get(image.mode, 3) == 1 else image.convert("L"))
                            .astype(np.int64))[None]


class PairedImages(ImageFiles):
    """Paired items: ``(source, target)``, or ``(source, target, instance)`` with instance maps; ``(source, empty)``
    for a folder of sources alone (predict: the target is an empty tensor [0], as no target exists).

    Sources are float32 [C, H, W] in [-1, 1], or int64 [1, H, W] class maps with ``labels``; targets float32
    [C, H, W] in [-1, 1]; instance maps int64 [1, H, W]. With ``jitter`` every item gets a random crop and mirror
    (the same for its images, seeded by its epoch-tagged index); without, the deterministic cut.

    Args:
        files: the files of the items: aligned AB files, or the A files of two-folder pairs, or the sources.
        channels: channels the images are converted to (1 or 3).
        bad_files: a file that fails to decode is skipped (``"skip"``) or stops the run (``"stop"``).
        seed: seed of the jitter.
        preprocess: how items are cut.
        jitter: random cuts (training) or deterministic ones.
        direction: ``"AtoB"`` (A is the source) or ``"BtoA"``.
        partners: the B file of each item (two folders); ``None`` for aligned files or for sources alone.
        instances: the instance map of each item, or ``None``.
        labels: how label-map sources are read; ``None`` for image sources.
        sources_only: ``files`` are sources without targets.
    """

    def __init__(self, files: list[Path], channels: int, bad_files: Literal["skip", "stop"], seed: int,
                 preprocess: Preprocess, jitter: bool, direction: str = "AtoB", partners: list[Path] | None = None,
                 instances: list[Path] | None = None, labels: LabelMaps | None = None,
                 sources_only: bool = False) -> None:
        super().__init__(files, channels, bad_files, seed)
        self.preprocess, self.jitter, self.direction = preprocess, jitter, direction
        self.partners, self.instances, self.labels, self.sources_only = partners, instances, labels, sources_only
        #: The file names without suffix, relative to their folder: predictions are saved under them.
        self.names: list[str] = []

    def source(self, image: Image.Image, path: Path) -> Tensor:
        """A source image as float32 [C, H, W] in [-1, 1], or a label map as int64 [1, H, W]."""
        return self.labels.read(image, path) if self.labels is not None else to_tensor(image, self.channels)

    def decode(self, i: int) -> tuple[Tensor, ...]:
        path = self.files[i]
        with Image.open(path) as image:
            if self.sources_only:
                return (self.source(image, path),)
            if self.partners is None:  # aligned: A on the left half, B on the right
                half = image.width // 2
                a, b = image.crop((0, 0, half, image.height)), image.crop((half, 0, 2 * half, image.height))
                a_path = b_path = path
            else:
                a, b, a_path, b_path = image.copy(), Image.open(self.partners[i]), path, self.partners[i]
        with b:
            source, target = (a, b) if self.direction == "AtoB" else (b, a)
            items = [self.source(source, a_path if self.direction == "AtoB" else b_path), to_tensor(target, self.channels)]
        if self.instances is not None:
            with Image.open(self.instances[i]) as image:
                items.append(read_map(image))
        return tuple(items)

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        _, items = self.load(index % len(self))
        cut = self.preprocess.geometry(tuple(items[0].shape[-2:]), self.rng(index) if self.jitter else None)
        items = tuple(cut.apply(x) for x in items)
        return (*items, torch.empty(0)) if self.sources_only else items


def files_by_name(folder: Path) -> dict[str, Path]:
    """The image files under ``folder`` by name: the path relative to it, without suffix (``"aachen/0001"``)."""
    named: dict[str, Path] = {}
    for path in scan_folder(folder):
        name = path.relative_to(folder).with_suffix("").as_posix()
        if name in named:
            raise ConfigurationError(f"data_dir={folder.parent}: {named[name]} and {path} have the same name; the "
                                     "pairs are matched by name, so keep one", "data_dir")
        named[name] = path
    return named


def match_by_name(folders: Sequence[Path]) -> list[list[Path]]:
    """The files of ``folders`` matched by name, one list per folder in the same order.

    Raises:
        MissingFileError: a file without its partner in another folder; the message names both paths.
    """
    named = [files_by_name(folder) for folder in folders]
    unmatched = [
        (named[i][name], folders[j] / name)
        for i in range(len(folders)) for j in range(len(folders)) if i != j
        for name in sorted(named[i].keys() - named[j].keys())
    ]
    if unmatched:
        path, partner = unmatched[0]
        more = f" ({len(unmatched) - 1} more files lack a partner)" if len(unmatched) > 1 else ""
        raise MissingFileError(
            f"{path} has no partner: no {partner}.* (pairs are matched by file name, suffix aside){more}", "data_dir"
        )
    names = sorted(named[0])
    return [[files[name] for name in names] for files in named]


class TranslationDataModule(SplitFolderDataModule):
    """What the translation data modules share: the direction, pix2pix's preprocessing and the evaluation loaders
    (``predict``: the sources of ``predict_dir``, items ``(source, empty)`` as no target exists).

    Args:
        direction: ``"AtoB"`` (A is the source) or ``"BtoA"``.
        load_size: side the images are resized to before the random crop (286 in pix2pix and CycleGAN).
        crop_size: side of the crops, the size of every item (256 in pix2pix and CycleGAN).
        preprocess: pix2pix's ``--preprocess``: ``"resize_and_crop"``, ``"crop"`` (at the file's size),
            ``"scale_width_and_crop"`` (width to ``load_size``; pix2pixHD's) or ``"none"`` (the file's size rounded
            to a multiple of 4: files of one size, or ``batch_size=1``); see :class:`Preprocess`.
        jitter: random crops and mirrors on training items (off: the deterministic cut of validation).
        flip: mirror jittered items with probability 1/2 (pix2pix's ``--no_flip`` turns it off).
        predict_dir: folder of sources to translate with ``predict`` (cut as validation); a prediction is saved
            under its input's name by :class:`callbacks.PredictionWriter`.
        **kwargs: ``to_channels``, ``bad_files``, ``seed`` (of the order and the jitter), ``batch_size``,
            ``num_workers``, ``pin_memory``: the arguments every folder data module takes.
    """

    #: How label-map sources are read; ``None``: the sources are images.
    labels: LabelMaps | None = None

    def __init__(
        self,
        direction: Literal["AtoB", "BtoA"] = "AtoB",
        load_size: int = 286,
        crop_size: int = 256,
        preprocess: Literal["resize_and_crop", "crop", "scale_width_and_crop", "none"] = "resize_and_crop",
        jitter: bool = True,
        flip: bool = True,
        predict_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.predict_dir = Path(predict_dir) if predict_dir is not None else None
        for name, value, accepted in (("direction", direction, ("AtoB", "BtoA")), ("preprocess", preprocess, PREPROCESS)):
            if value not in accepted:
                raise ConfigurationError(f"{name}={value!r}; expected one of {', '.join(map(repr, accepted))}")
        check_at_least(1, load_size=load_size, crop_size=crop_size)
        if preprocess in ("resize_and_crop", "scale_width_and_crop") and crop_size > load_size:
            raise ConfigurationError(f"crop_size={crop_size} must be between 1 and load_size={load_size}")
        self.direction, self.preprocess = direction, Preprocess(preprocess, load_size, crop_size, flip)
        self.load_size, self.crop_size, self.jitter = load_size, crop_size, jitter

    def _predict_set(self) -> PairedImages:
        """The sources of ``predict_dir`` (images, or label maps as the training sources), items ``(source,
        empty)``, each named by its path under the folder."""
        if self.predict_dir is None:
            raise ConfigurationError("predict_dir=None: give the folder of sources to translate "
                                     "(--data.init_args.predict_dir)", "predict_dir")
        files, channels, sizes = self.check_files(scan_folder(self.predict_dir, "predict_dir"), self.predict_dir)
        for path, (width, height) in zip(files, sizes, strict=True):
            self.preprocess.check_size(path, (height, width))
        if self.to_channels is None and self.labels is None and hasattr(self, "source_shape"):
            channels = self.source_shape[0]  # as the model takes them (the training files'), whatever these hold
        seed = default_data_seed() if self.seed is None else self.seed
        dataset = PairedImages(files, channels, self.bad_files, seed, self.preprocess, jitter=False,
                               labels=self.labels, sources_only=True)
        dataset.names = [p.relative_to(self.predict_dir).with_suffix("").as_posix() for p in files]
        return dataset


class PairedImageDataModule(TranslationDataModule):
    """A paired translation set, batches ``(source, target)`` (``(source, target, instance)`` with
    ``instance_folder``), A -> B or B -> A.

    Layouts (``layout``):

    - ``"aligned"``, pix2pix's: ``<data_dir>/train/``, ``val/`` (and ``test/``) of files that hold A on the left half
      and B on the right, of any height.
    - ``"folders"``: A and B in separate folders matched by file name (suffix aside), ``<data_dir>/A/train/x.jpg``
      with ``<data_dir>/B/train/x.png``; the folders are patterns of ``{split}`` (pix2pixHD's cityscapes:
      ``folder_a="{split}_label"``, ``folder_b="{split}_img"``, ``instance_folder="{split}_inst"``).

    Images are float32 [B, C, H, W] in [-1, 1]; a label-map source (``source_type="labels"``) is int64 [B, 1, H, W]
    of class indices, resized by nearest neighbour; instance maps likewise. Training items get pix2pix's jitter
    (``preprocess``), validation, test and predict items the deterministic cut (``resize_and_crop``: resized to
    ``crop_size``). ``image_shape`` is the target's [C, H, W], ``source_shape`` the source's (``num_classes``
    channels for label maps, the one-hot channels a network sees).

    Args:
        data_dir: the folder of the set.
        layout: ``"aligned"`` (AB files) or ``"folders"`` (A and B apart, matched by name).
        folder_a: folder of the A images (``layout="folders"``), relative to ``data_dir``, ``{split}`` replaced by
            ``train``, ``val`` or ``test``.
        folder_b: folder of the B images, likewise.
        instance_folder: folder of instance maps (one channel of ids per pair, pix2pixHD's ``--instance_feat``
            input), likewise; ``None``: no instance maps.
        source_type: ``"image"`` or ``"labels"`` (a label map: class indices, or colours with ``palette``).
        num_classes: classes of a label-map source (35 for cityscapes' label ids); required with ``labels``.
        palette: colour of each class, ``[[r, g, b], ...]``, for colour-coded label maps; ``None``: one channel
            of class indices.
        batch_size: pairs per batch, per process (1 in pix2pix).
        **kwargs: ``direction``, ``load_size``, ``crop_size``, ``preprocess``, ``jitter``, ``flip``, ``predict_dir``: see
            :class:`TranslationDataModule`; ``to_channels``, ``bad_files``, ``seed`` (of the order and the jitter),
            ``num_workers``, ``pin_memory``: the arguments every folder data module takes.
    """

    #: What a batch holds, for models to check that they can use it (see ``gans.base.GAN.batch_kinds``).
    batch_kind = "paired"

    def __init__(
        self,
        data_dir: str = "data/facades",
        layout: Literal["aligned", "folders"] = "aligned",
        folder_a: str = "A/{split}",
        folder_b: str = "B/{split}",
        instance_folder: str | None = None,
        source_type: Literal["image", "labels"] = "image",
        num_classes: int | None = None,
        palette: list[list[int]] | None = None,
        batch_size: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        for name, value, accepted in (("layout", layout, ("aligned", "folders")),
                                      ("source_type", source_type, ("image", "labels"))):
            if value not in accepted:
                raise ConfigurationError(f"{name}={value!r}; expected one of {', '.join(map(repr, accepted))}")
        if layout == "aligned" and instance_folder is not None:
            raise ConfigurationError(f"instance_folder={instance_folder!r} needs layout='folders' (instance maps are "
                                     "matched by file name)")
        self.labels = self._label_maps(source_type, num_classes, palette)
        self.data_dir, self.layout = Path(data_dir), layout
        self.folders = {"a": folder_a, "b": folder_b, "instance": instance_folder}
        self.splits: dict[str, PairedImages] = {}
        self._peek()

    @staticmethod
    def _label_maps(source_type: str, num_classes: int | None, palette: list[list[int]] | None) -> LabelMaps | None:
        if source_type == "image":
            if num_classes is not None or palette is not None:
                raise ConfigurationError(f"source_type={source_type!r} with num_classes or palette: set "
                                         "source_type='labels' for label-map sources")
            return None
        if palette is not None:
            if any(len(colour) != 3 for colour in palette):
                raise ConfigurationError(f"palette={palette}: expected one [r, g, b] per class")
            num_classes = len(palette) if num_classes is None else num_classes
            if num_classes != len(palette):
                raise ConfigurationError(f"num_classes={num_classes} but the palette has {len(palette)} colours")
        if num_classes is None:
            raise ConfigurationError("num_classes=None: a label-map source (source_type='labels') needs its class "
                                     "count", "num_classes")
        check_at_least(2, num_classes=num_classes)
        return LabelMaps(num_classes, None if palette is None else tuple(tuple(c) for c in palette))

    def _folder(self, key: str, split: str) -> Path:
        return self.data_dir / (split if self.layout == "aligned" else self.folders[key].format(split=split))

    def _has_split(self, split: str) -> bool:
        return self._folder("a", split).is_dir()

    def _split(self, split: str, jitter: bool) -> PairedImages:
        if self.layout == "aligned":
            folders = [self._folder("a", split)]
            lists = [scan_folder(folders[0])]
        else:
            folders = [self._folder(k, split) for k in ("a", "b", "instance") if self.folders[k] is not None]
            lists = match_by_name(folders)
        checked = [self.check_files(files, folder) for files, folder in zip(lists, folders, strict=True)]
        usable = set.intersection(*({p.relative_to(f).with_suffix("") for p in c[0]}
                                    for c, f in zip(checked, folders, strict=True)))
        keep = [[i for i, p in enumerate(c[0]) if p.relative_to(f).with_suffix("") in usable]
                for c, f in zip(checked, folders, strict=True)]  # a pair whose partner cannot be read goes too
        files = [[c[0][i] for i in k] for c, k in zip(checked, keep, strict=True)]
        sizes = [[c[2][i] for i in k] for c, k in zip(checked, keep, strict=True)]
        self._check_sizes(files, sizes)
        channels = self._set_shapes([c[1] for c in checked[:2]], sizes[0][0])
        self.check_assumed(channels, self._folder("b" if self.layout == "folders" else "a", split))
        seed = default_data_seed() if self.seed is None else self.seed
        dataset = PairedImages(
            files[0], channels, self.bad_files, seed, self.preprocess, jitter, self.direction,
            partners=files[1] if len(files) > 1 else None,
            instances=files[2] if len(files) > 2 else None, labels=self.labels,
        )
        dataset.names = [p.relative_to(folders[0]).with_suffix("").as_posix() for p in files[0]]
        return dataset

    def _set_shapes(self, channels: list[int], size: tuple[int, int]) -> int:
        """Sets ``image_shape`` and ``source_shape`` from the channel counts of the A and the B files (one count for
        aligned files) and the (width, height) of a file; returns the channels the images are read with."""
        if self.labels is None:  # a grey A with an RGB B: both RGB (to_channels decides otherwise)
            channels = max(channels)
        else:  # the target's, whatever the label maps hold
            channels = channels[1 if self.layout == "folders" and self.direction == "AtoB" else 0]
        width, height = size
        out = self.preprocess.output_size((height, width // 2 if self.layout == "aligned" else width))
        self.image_shape = (channels, *out)
        self.source_shape = (self.labels.num_classes if self.labels is not None else channels, *out)
        return channels

    def _peek(self) -> None:
        """Sets the shapes from one file of each training folder, or where the crop sets the size from
        ``to_channels`` (3, RGB, when no file is there; ``setup`` then refuses files of another count), so that the command line sizes the model by them when it builds it (``setup`` reads
        every file and sets them again)."""
        headers = [peek_header(self._folder(k, "train")) for k in ("a", "b")[: 1 if self.layout == "aligned" else 2]]
        if (self.to_channels or not all(headers)) and self.preprocess.mode != "none":  # the crop sets the size
            self.assumed_channels = None if self.to_channels or all(headers) else 3
            crop = self.preprocess.crop_size
            headers = [(self.to_channels or 3, (crop * (2 if self.layout == "aligned" else 1), crop))] * len(headers)
        if all(headers):
            self._set_shapes([self.to_channels or c for c, _ in headers], headers[0][1])

    def _check_sizes(self, files: list[list[Path]], sizes: list[list[tuple[int, int]]]) -> None:
        """Aligned files must split into two halves; the images of a pair must be of one size; a ``crop`` crop must
        fit."""
        for i, path in enumerate(files[0]):
            width, height = sizes[0][i]
            if self.layout == "aligned":
                if width % 2 or width < 2:
                    raise ConfigurationError(
                        f"{path} is {width} pixels wide: a paired image holds A and B side by side, so its width must "
                        "be even (two halves of the same size)"
                    )
                width //= 2
            for other, other_sizes in zip(files[1:], sizes[1:], strict=True):
                if other_sizes[i] != sizes[0][i]:
                    raise ConfigurationError(
                        f"data_dir={self.data_dir}: {path} is {width} x {height} pixels but its partner {other[i]} is "
                        f"{other_sizes[i][0]} x {other_sizes[i][1]}; the images of a pair must be of one size",
                        "data_dir",
                    )
            self.preprocess.check_size(path, (height, width))

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._split("train", self.jitter)
            self.check_batch(self.train_set, self._folder("a", "train"))
        for name, stages in (("val", (None, "fit", "validate")), ("test", (None, "test"))):
            if stage in stages and name not in self.splits and self._has_split(name):
                self.splits[name] = self._split(name, jitter=False)
        if stage == "predict" and "predict" not in self.splits:
            self.splits["predict"] = self._predict_set()

    def _test_folder(self) -> str:
        return str(self._folder("a", "test"))

    def _training_files(self) -> list[Path]:
        if self.train_set is None:
            return []
        return [*self.train_set.files, *(self.train_set.partners or []), *(self.train_set.instances or [])]

    def _data_settings(self) -> dict:
        jitter = None
        if self.jitter:
            jitter = {"load_size": self.load_size, "seed": getattr(self.train_set, "seed", None), **AUGMENTATION_SEEDING}
        settings = {"direction": self.direction, "crop_size": self.crop_size, "jitter": jitter}
        if self.preprocess.mode != "resize_and_crop" or not self.preprocess.flip:  # older fingerprints stay valid
            settings.update(preprocess=self.preprocess.mode, flip=self.preprocess.flip)
        if self.labels is not None:
            settings.update(num_classes=self.labels.num_classes, palette=self.labels.palette)
        return settings
