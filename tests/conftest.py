"""Shared test helpers: synthetic datasets in the real on-disk layouts."""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch


def synthetic_idx_split(split: str, n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels that `write_idx_dataset` writes for one split.

    Args:
        split: File prefix, "train" or "t10k"; it seeds the generator, so the two splits differ.
        n: Number of images.

    Returns:
        Images uint8 [n, 28, 28] and labels uint8 [n], cycling through 0..9.
    """
    generator = torch.Generator().manual_seed(zlib.crc32(split.encode()))
    images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=generator)
    # Pinned extremes let tests check the exact mapping 0 -> -1 and 255 -> 1.
    images[:, 0, 0] = 0
    images[:, 0, 1] = 255
    labels = torch.arange(n, dtype=torch.uint8) % 10
    return images, labels


def idx_bytes(array: torch.Tensor) -> bytes:
    """Encodes a uint8 tensor as an IDX file: two zero bytes, dtype 0x08, ndim, big-endian dims, data."""
    return struct.pack(f">2xBB{array.ndim}I", 0x08, array.ndim, *array.shape) + array.contiguous().numpy().tobytes()


def write_idx_dataset(
    root: Path,
    folder: str = "MNIST",
    splits: Sequence[str] = ("train", "t10k"),
    n: int = 96,
    gz: bool = False,
) -> None:
    """Writes synthetic but valid IDX files as torchvision lays them out: `<root>/<folder>/raw/<split>-*-ubyte`.

    Args:
        root: The data_dir.
        folder: "MNIST" or "FashionMNIST".
        splits: File prefixes to write, "train" and/or "t10k".
        n: Images per split.
        gz: Write `<name>.gz` instead of the uncompressed file.
    """
    raw_dir = Path(root) / folder / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    for split in splits:
        images, labels = synthetic_idx_split(split, n)
        for name, array in ((f"{split}-images-idx3-ubyte", images), (f"{split}-labels-idx1-ubyte", labels)):
            data = idx_bytes(array)
            if gz:
                (raw_dir / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                (raw_dir / name).write_bytes(data)


@pytest.fixture
def synthetic_mnist(tmp_path: Path) -> Path:
    """A data_dir holding MNIST/raw/ with both splits (96 images each), uncompressed."""
    write_idx_dataset(tmp_path)
    return tmp_path


#: Smallest networks the variants accept: 8x8 images, 4 channels wide; enough to exercise every code path fast.
TINY = {"image_size": 8, "g_features": 4, "d_features": 4, "latent_dim": 8}


def tiny_datamodule(data_dir: Path, batch_size: int = 8):
    from datamodules import MNISTDataModule

    return MNISTDataModule(data_dir=str(data_dir), batch_size=batch_size, image_size=8)


def quiet_trainer(root: Path, **kwargs):
    """A CPU Trainer without progress bar, model summary or sanity check; no logger unless one is given."""
    import lightning as L

    defaults = {
        "accelerator": "cpu",
        "devices": 1,
        "default_root_dir": str(root),
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "num_sanity_val_steps": 0,
        "limit_val_batches": 0,
    }
    return L.Trainer(**{**defaults, **kwargs})
