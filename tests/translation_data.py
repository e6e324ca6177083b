"""Small synthetic translation sets in the real on-disk layouts (real JPEG/PNG files), for the data modules' tests and
the registry's translation variants.

- ``write_aligned_pairs``: pix2pix's AB layout, ``<root>/train/*.jpg``, ``<root>/val/*.jpg`` (and ``test/``), each
  file A on the left half and B on the right, heights varying and odd as in the real silhouettes set.
- ``write_unpaired``: CycleGAN's layout, ``trainA/``, ``trainB/``, ``testA/``, ``testB/``.
- ``write_two_folders``: source and target in separate folders matched by file stem (pix2pix's
  ``combine_A_and_B.py`` input ``A/<split>/``, ``B/<split>/``, or pix2pixHD's ``<split>_label/``, ``<split>_img/``),
  sources as images or label maps (class indices or colour-coded), optionally instance maps.
- ``write_hr_folder``: high-resolution images for super-resolution (DIV2K's ``DIV2K_train_HR/``, ``DIV2K_valid_HR/``).

The contents are built so that a test can check what a loader did with them: in an aligned pair B is ``255 - A``
(A dark, B bright, so ``source + target == 0`` in [-1, 1] under any shared resize, crop and flip, and not under
different ones, as A varies from pixel to pixel); an unpaired image is one flat colour that encodes its domain and
its index (``unpaired_index`` reads it back after any resize or crop); a label map's target is the palette colour of
its class at each pixel.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

#: A colour palette for colour-coded label maps: class c is drawn as PALETTE[c] (cityscapes-like, but any will do).
PALETTE = ((0, 0, 0), (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
           (153, 153, 153), (250, 170, 30))
#: Unpaired images: the green level of each domain, and the red step between consecutive indices.
DOMAIN_GREEN = {"A": 40, "B": 210}
INDEX_STEP = 12


def _save(array: torch.Tensor, path: Path) -> Path:
    """Writes uint8 [H, W, 3] or [H, W] as an image file (JPEG at quality 95 or lossless PNG, by the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array.contiguous().numpy())
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=95)
    else:
        image.save(path)
    return path


def pattern(height: int, width: int, seed: int, channels: int = 3) -> torch.Tensor:
    """A dark image, uint8 [height, width, channels] in 0..127, that varies from pixel to pixel (a smooth gradient
    plus seeded noise), so that a crop or a mirror shows."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.linspace(0, 60, height)[:, None, None]
    cols = torch.linspace(0, 40, width)[None, :, None]
    noise = torch.randint(0, 28, (height, width, channels), generator=generator)
    return (rows + cols + noise).clamp(0, 127).to(torch.uint8)


@dataclass
class AlignedPairs:
    """What ``write_aligned_pairs`` wrote.

    Attributes:
        root: the data module's ``data_dir``.
        files: the files of each split (``"train"``, ``"val"``, ``"test"``), in sorted order.
        halves: each file's (A, B) as uint8 [H, W, 3], before compression (B is ``255 - A``).
    """

    root: Path
    files: dict[str, list[Path]] = field(default_factory=dict)
    halves: dict[Path, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


def write_aligned_pairs(
    root: Path,
    n_train: int = 6,
    n_val: int = 3,
    width: int = 24,
    heights: Sequence[int] = (11, 13, 9),
    n_test: int = 0,
    suffix: str = ".jpg",
    seed: int = 0,
) -> AlignedPairs:
    """Writes a paired set in pix2pix's aligned (AB) layout: ``<root>/<split>/<i>.jpg``, each ``width`` wide (A the
    left half, B the right) and of height ``heights[i % len(heights)]``.

    Args:
        root: the folder that gets ``train/``, ``val/`` (and ``test/``).
        n_train: training pairs.
        n_val: validation pairs.
        width: width of each file, both halves (even).
        heights: the files' heights, in turn (odd by default, as some of the real silhouettes).
        n_test: test pairs (no ``test/`` when 0).
        suffix: ``".jpg"`` as the published sets, or ``".png"`` for pixel-exact checks (JPEG blurs the seam and
            rounds ``B = 255 - A``).
        seed: seed of the patterns.

    Returns:
        What was written.
    """
    if width % 2:
        raise ValueError(f"width={width}: an aligned pair needs an even width")
    written = AlignedPairs(Path(root))
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if not n:
            continue
        paths = []
        for i in range(n):
            height = heights[i % len(heights)]
            a = pattern(height, width // 2, seed=seed * 1000 + zlib.crc32(split.encode()) % 97 * 100 + i)
            b = 255 - a
            path = _save(torch.cat([a, b], dim=1), Path(root) / split / f"{i}{suffix}")
            written.halves[path] = (a, b)
            paths.append(path)
        written.files[split] = sorted(paths)
    return written


def unpaired_image(domain: str, index: int, size: int) -> torch.Tensor:
    """Image ``index`` of ``domain`` ("A" or "B"): one flat colour, uint8 [size, size, 3]."""
    colour = torch.tensor([(index * INDEX_STEP) % 256, DOMAIN_GREEN[domain], 128], dtype=torch.uint8)
    return colour.expand(size, size, 3).clone()


def unpaired_index(image: torch.Tensor) -> tuple[str, int]:
    """The domain and index of an item [3, H, W] in [-1, 1] made from an ``unpaired_image`` (modulo
    ``256 // INDEX_STEP`` indices): a flat colour stays flat under resize, crop and mirror."""
    red, green = ((image[:2].mean(dim=(1, 2)) + 1) * 127.5).tolist()
    domain = min(DOMAIN_GREEN, key=lambda d: abs(DOMAIN_GREEN[d] - green))
    return domain, round(red / INDEX_STEP)


def write_unpaired(root: Path, n_a: int = 5, n_b: int = 3, size: int = 12, n_test_a: int = 2, n_test_b: int = 2,
                   suffix: str = ".png") -> Path:
    """Writes an unpaired set in CycleGAN's layout: ``<root>/trainA/<i:04d>.png`` (``n_a``, sorted as numbered),
    ``trainB/`` (``n_b``), ``testA/``, ``testB/``; image i of domain d is ``unpaired_image(d, i, size)``.

    Args:
        root: the data module's ``data_dir``.
        n_a: training images of domain A.
        n_b: training images of domain B.
        size: side of the square images.
        n_test_a: test images of A (the folder is left out when 0).
        n_test_b: test images of B (the folder is left out when 0).
        suffix: file type, by its suffix.

    Returns:
        ``root``.
    """
    for folder, domain, n in (("trainA", "A", n_a), ("trainB", "B", n_b), ("testA", "A", n_test_a),
                              ("testB", "B", n_test_b)):
        for i in range(n):
            _save(unpaired_image(domain, i, size), Path(root) / folder / f"{i:04d}{suffix}")
    return Path(root)


def label_map(height: int, width: int, num_classes: int, seed: int) -> torch.Tensor:
    """A map of class indices, uint8 [height, width] in 0..num_classes-1: vertical bands of seeded classes, with
    every class present when the map is wide enough."""
    generator = torch.Generator().manual_seed(seed)
    band = max(1, width // num_classes)
    classes = torch.randperm(num_classes, generator=generator)
    columns = classes[(torch.arange(width) // band).clamp(max=num_classes - 1)]
    return columns.to(torch.uint8).expand(height, width).clone()


def write_two_folders(
    root: Path,
    names: Sequence[str] = ("a", "b", "c", "d"),
    split: str = "train",
    size: tuple[int, int] = (16, 12),
    source_folder: str = "A/{split}",
    target_folder: str = "B/{split}",
    source_type: str = "image",
    num_classes: int = 4,
    instance_folder: str | None = None,
    seed: int = 0,
) -> dict[str, dict[str, Path]]:
    """Writes a paired set as two folders matched by file stem: ``<root>/<source_folder>/<name>.png`` and
    ``<root>/<target_folder>/<name>.jpg`` (the folder patterns take ``{split}``), and with ``instance_folder`` an
    instance map ``<name>.png`` per pair.

    Sources by ``source_type``: ``"image"``, an RGB ``pattern`` with the target ``255 - source``; ``"labels"``, a
    one-channel PNG of class indices; ``"colour"``, the same map drawn with ``PALETTE``. With label maps the target is
    the palette colour of each pixel's class, and the instance map numbers each class band (0, 1, ...).

    Args:
        root: the data module's ``data_dir``.
        names: the file stems of the pairs.
        split: the split the folders are for.
        size: (width, height) of every image.
        source_folder: folder of the sources, relative to ``root``, ``{split}`` replaced.
        target_folder: folder of the targets, likewise.
        source_type: ``"image"``, ``"labels"`` or ``"colour"``.
        num_classes: classes of the label maps (at most ``len(PALETTE)``).
        instance_folder: folder of instance maps, likewise; none when ``None``.
        seed: seed of the contents.

    Returns:
        For each name, the paths written: ``{"source": ..., "target": ..., "instance": ...}``.
    """
    if num_classes > len(PALETTE):
        raise ValueError(f"num_classes={num_classes}: the palette has {len(PALETTE)} colours")
    width, height = size
    palette = torch.tensor(PALETTE, dtype=torch.uint8)
    written = {}
    for i, name in enumerate(names):
        folders = {"source": source_folder, "target": target_folder, "instance": instance_folder}
        paths = {key: Path(root) / f.format(split=split) / name for key, f in folders.items() if f is not None}
        if source_type == "image":
            source = pattern(height, width, seed=seed * 1000 + i)
            target = 255 - source
        else:
            labels = label_map(height, width, num_classes, seed=seed * 1000 + i)
            source = labels if source_type == "labels" else palette[labels.long()]
            target = palette[labels.long()]
            if instance_folder is not None:
                edges = torch.cat([torch.zeros(1, dtype=torch.bool), labels[0, 1:] != labels[0, :-1]])
                _save(edges.cumsum(0).to(torch.uint8).expand(height, width), paths["instance"].with_suffix(".png"))
        paths["source"] = _save(source, paths["source"].with_suffix(".png"))
        paths["target"] = _save(target, paths["target"].with_suffix(".jpg"))
        if "instance" in paths:
            paths["instance"] = paths["instance"].with_suffix(".png")
        written[name] = paths
    return written


def write_hr_folder(root: Path, folders: Sequence[str] = ("DIV2K_train_HR", "DIV2K_valid_HR"), n: int = 4,
                    sizes: Sequence[tuple[int, int]] = ((40, 36), (37, 45), (48, 33)), seed: int = 0) -> Path:
    """Writes high-resolution images for super-resolution: ``<root>/<folder>/<i:04d>.png`` (DIV2K's names), each of
    the ``sizes`` (width, height) in turn, RGB, varying from pixel to pixel (a crop shows).

    Args:
        root: the data module's ``data_dir``.
        folders: the folders to fill, ``n`` images each.
        n: images per folder.
        sizes: (width, height) of the images, in turn (not multiples of the usual scales, on purpose).
        seed: seed of the contents.

    Returns:
        ``root``.
    """
    for f, folder in enumerate(folders):
        for i in range(n):
            width, height = sizes[i % len(sizes)]
            image = pattern(height, width, seed=seed * 1000 + f * 100 + i) * 2  # the whole range, 0..254
            _save(image, Path(root) / folder / f"{i + 1:04d}.png")
    return Path(root)
