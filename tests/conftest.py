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


@pytest.fixture
def synthetic_celeba(tmp_path: Path):
    """A CelebA copy in the official layout under ``tmp_path / "data"`` (its ``data_dir``): 30 real 178 x 218 JPEGs
    split 20/5/5 and the five text files with their header lines; a ``tests.celeba_copy.CelebACopy``."""
    from celeba_copy import write_celeba

    return write_celeba(tmp_path / "data")


@pytest.fixture
def aligned_pairs(tmp_path: Path):
    """A paired set in pix2pix's AB layout under ``tmp_path / "pairs"``: 6 train and 3 val JPEGs 24 wide (12 x 12
    halves), heights 11, 13, 9; a ``tests.translation_data.AlignedPairs``."""
    from translation_data import write_aligned_pairs

    return write_aligned_pairs(tmp_path / "pairs")


@pytest.fixture
def unpaired_set(tmp_path: Path) -> Path:
    """An unpaired set in CycleGAN's layout under ``tmp_path / "unpaired"``: trainA (5), trainB (3), testA and testB
    (2 each), 12 x 12 PNGs; its ``data_dir``."""
    from translation_data import write_unpaired

    return write_unpaired(tmp_path / "unpaired")


@pytest.fixture
def two_folder_pairs(tmp_path: Path) -> Path:
    """A paired set as two folders matched by stem under ``tmp_path / "two"``: ``A/train``, ``B/train``, ``A/val``,
    ``B/val`` (4 and 2 pairs, 16 x 12); its ``data_dir``."""
    from translation_data import write_two_folders

    root = tmp_path / "two"
    write_two_folders(root, split="train")
    write_two_folders(root, names=("v1", "v2"), split="val", seed=1)
    return root


@pytest.fixture
def label_map_pairs(tmp_path: Path) -> Path:
    """A label-map set in pix2pixHD's layout under ``tmp_path / "labels"``: ``train_label`` (one-channel class
    indices, 4 classes), ``train_img``, ``train_inst`` and the same for ``val`` (4 and 2 pairs, 16 x 12)."""
    from translation_data import write_two_folders

    root = tmp_path / "labels"
    folders = {"source_folder": "{split}_label", "target_folder": "{split}_img", "instance_folder": "{split}_inst"}
    write_two_folders(root, split="train", source_type="labels", **folders)
    write_two_folders(root, names=("v1", "v2"), split="val", source_type="labels", seed=1, **folders)
    return root


@pytest.fixture
def hr_images(tmp_path: Path) -> Path:
    """High-resolution PNGs in DIV2K's layout under ``tmp_path / "div2k"``: ``DIV2K_train_HR`` and ``DIV2K_valid_HR``,
    4 each, about 40 x 40; its ``data_dir``."""
    from translation_data import write_hr_folder

    return write_hr_folder(tmp_path / "div2k")


def tiny_net(**init_args) -> dict:
    """A network spec without class_path: the variant's default network, 4 channels wide, with ``init_args``."""
    return {"init_args": {"features": 4, **init_args}}


#: Smallest networks the variants accept: 8x8 images, 4 channels wide; enough to exercise every code path fast.
TINY = {"image_size": 8, "latent_dim": 8, "generator": tiny_net(), "discriminator": tiny_net()}
#: The smallest MLP networks: 16 units, on 8x8 images.
MLP_TINY = {"latent_dim": 8, "data_shape": (1, 8, 8), "generator": {"init_args": {"hidden": (16,)}},
            "discriminator": {"init_args": {"hidden": (16,)}}}

#: Tiny values by argument name, for the variants found automatically: the model's sizes, then its networks'.
TINY_SIZES = {"latent_dim": 8, "w_dim": 8, "channels": 1, "source_channels": 1, "image_size": 8,
              "data_shape": (1, 8, 8)}
TINY_NET_ARGS = {"features": 4, "hidden": (16,), "embedding": 8, "fmap_max": 8, "n_layers": 1,
                 # StyleGAN2's official network arguments: 4 and 8 channels at 8x8 and 4x4, 2 mapping layers.
                 "channel_base": 32, "channel_max": 8, "mapping_kwargs": {"num_layers": 2},
                 "synthesis_kwargs": {"channel_base": 32, "channel_max": 8}}
#: Off for the registry: stages that come before the adversarial phases (SRGAN's pre-training; the registry counts D
#: and G steps), and the VGG perceptual terms (no pretrained weights offline, and VGG19 needs inputs of 16 pixels).
TINY_STAGES = {"pretrain_steps": 0, "lambda_vgg": 0.0}


def variant_classes() -> list[type]:
    """The registry of the tests: every GAN variant ``gans`` exports (a concrete subclass of ``gans.base.GAN``),
    found by its class, sorted by name. A new variant is tested without being listed anywhere."""
    import inspect

    import gans
    from gans.base import GAN

    found = {
        obj for name in gans.__all__
        if isinstance(obj := getattr(gans, name), type) and issubclass(obj, GAN) and obj is not GAN
        and not inspect.isabstract(obj)
    }
    return sorted(found, key=lambda cls: cls.__name__)


def use_every_layer(model) -> None:
    """Puts a growing model (``set_growth``: ProGAN) in the middle of the fade of its last resolution, where every
    layer is in use (at full resolution the lower resolutions' toRGB/fromRGB layers are not); others are left as they
    are. For the tests that require a gradient for every parameter."""
    if callable(getattr(model, "set_growth", None)):
        model.set_growth(model.resolutions[-1], 0.5)


def tiny_kwargs(cls: type, **overrides) -> dict:
    """The smallest arguments of GAN variant ``cls``, chosen by argument NAME (not by variant): 8x8 single-channel
    images and, for each network argument whose default is a spec, the spec's class's size arguments made tiny.
    ``overrides`` win; a network override's init_args are merged into the tiny ones."""
    import inspect
    import typing

    from gans.base import GAN

    params = {}
    for c in reversed(cls.__mro__):
        # The variants' own signatures: GAN's latent_dim is no size of a translation model (Translation refuses it).
        if isinstance(c, type) and issubclass(c, GAN) and c is not GAN:
            params.update(inspect.signature(c.__init__).parameters)
    from gans.translation import Translation

    fixed = {"latent_dim"} if issubclass(cls, Translation) else set()  # a translation model has no z (refuses one)
    kwargs = {name: value for name, value in {**TINY_SIZES, **TINY_STAGES}.items()
              if name in params and name not in fixed}
    for name, param in params.items():
        default = param.default
        if isinstance(default, dict) and "class_path" in default and name in ("generator", "discriminator"):
            module_name, _, class_name = default["class_path"].rpartition(".")
            net = getattr(__import__(module_name, fromlist=[class_name]), class_name)
            # The factory's first arguments are the sizes the variant passes (its annotation's Callable[[...], ...]).
            given = len(typing.get_args(param.annotation)[0])
            accepted = list(inspect.signature(net).parameters)[given:]
            init = {k: v for k, v in TINY_NET_ARGS.items() if k in accepted}
            extra = overrides.pop(name, {}).get("init_args", {})
            kwargs[name] = {"init_args": {**init, **extra}}
    return {**kwargs, **overrides}


def tiny_datamodule(data_dir: Path, batch_size: int = 8):
    from datamodules import MNISTDataModule

    return MNISTDataModule(data_dir=str(data_dir), batch_size=batch_size, image_size=8)


def same(a, b) -> bool:
    """Equal state-dict entries: tensors bit for bit, and the extra state of a stateful piece (an image pool, kept
    examples: dicts and lists of tensors) entry by entry."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def is_translation(model) -> bool:
    from gans.translation import Translation

    return isinstance(model, Translation)


def inputs_for(model, n: int, generator=None) -> dict:
    """What ``model.sample``/``generate``/``critic`` need besides latents for ``n`` samples: nothing for a model of z,
    ``n`` random sources of the right shape for a translation model (``random_source``)."""
    return {"source": model.random_source(n, generator)} if is_translation(model) else {}


def tiny_pairs(model, batch_size: int = 8):
    """A data module of random (source, target) pairs shaped for a tiny translation model: 32 training pairs, 16 for
    validation and test, in a fixed order, resumable mid-epoch as every data module of the library (the exact-resume
    tests stop after 2 of the 4 batches of an epoch)."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    rng = torch.Generator().manual_seed(0)

    def pairs(n: int) -> TensorDataset:
        source = model.random_source(n, rng).cpu()
        target = torch.rand(n, model.channels, model.image_size, model.image_size, generator=rng) * 2 - 1
        return TensorDataset(source, target)

    train, held = pairs(32), pairs(16)

    class Pairs(L.LightningDataModule):
        batch_kind = model.batch_kinds[0]
        image_shape = (model.channels, model.image_size, model.image_size)

        def train_dataloader(self):
            from datamodules.resumable import resumable_loader

            # Resumable as every data module's: a run resumed part-way through an epoch continues with its next batch.
            return resumable_loader(self, train, batch_size, seed=0)

        def val_dataloader(self):
            return DataLoader(held, batch_size=batch_size)

        test_dataloader = val_dataloader

    return Pairs()


def tiny_data(model, data_dir: Path, batch_size: int = 8):
    """The tiny data a registry test feeds ``model``: synthetic MNIST at 8x8, or random pairs for a translation
    model."""
    return tiny_pairs(model, batch_size) if is_translation(model) else tiny_datamodule(data_dir, batch_size)


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


@pytest.fixture(autouse=True)
def no_wandb_run_left_open():
    """A W&B run a test leaves open (a CLI run with WandbLogger) would be reused by the next test's WandbLogger, with
    its step counter: finish it after each test."""
    yield
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
