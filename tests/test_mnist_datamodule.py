"""MNISTDataModule on synthetic IDX files, plus the real files when GANS_DATA_DIR points at them."""

from __future__ import annotations

import os
import pickle
import urllib.error
from pathlib import Path

import lightning as L
import pytest
import torch
import torchvision
from conftest import TINY, idx_bytes, synthetic_idx_split, write_idx_dataset

from datamodules import MNISTDataModule
from datamodules.mnist import read_idx

TRAIN_FILE_NAMES = [
    "train-images-idx3-ubyte",
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte",
    "train-labels-idx1-ubyte.gz",
]


def expected_items(split: str, n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = synthetic_idx_split(split, n)
    return images.float().unsqueeze(1) / 127.5 - 1.0, labels.long()  # [n, 1, 28, 28], [n]


def stack(dataset: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(images), torch.tensor(labels)


def test_read_idx_matches_written(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, splits=("train",), n=12)
    images, labels = synthetic_idx_split("train", 12)
    raw_dir = tmp_path / "MNIST" / "raw"
    read_images = read_idx(raw_dir / "train-images-idx3-ubyte")
    read_labels = read_idx(raw_dir / "train-labels-idx1-ubyte")
    assert read_images.dtype == torch.uint8 and read_images.shape == (12, 28, 28)
    assert torch.equal(read_images, images)
    assert torch.equal(read_labels, labels)


@pytest.mark.parametrize("gz", [False, True])
def test_items_match_written(tmp_path: Path, gz: bool) -> None:
    write_idx_dataset(tmp_path, gz=gz)
    assert any(p.suffix == ".gz" for p in (tmp_path / "MNIST" / "raw").iterdir()) == gz
    dm = MNISTDataModule(data_dir=str(tmp_path), image_size=28)
    dm.setup("fit")
    image, label = dm.train_set[0]
    assert image.dtype == torch.float32 and image.shape == (1, 28, 28)
    assert image[0, 0, 0].item() == -1.0 and image[0, 0, 1].item() == 1.0
    assert isinstance(label, int)
    for dataset, split in ((dm.train_set, "train"), (dm.held_out_set, "t10k")):
        images, labels = stack(dataset)
        want_images, want_labels = expected_items(split)
        torch.testing.assert_close(images, want_images, rtol=0, atol=1e-6)
        assert torch.equal(labels, want_labels)


def test_prefers_uncompressed(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, n=96, gz=True)
    write_idx_dataset(tmp_path, n=80)
    dm = MNISTDataModule(data_dir=str(tmp_path))
    dm.setup("fit")
    assert len(dm.train_set) == 80


@pytest.mark.parametrize("image_size", [28, 32, 16])
def test_batches(synthetic_mnist: Path, image_size: int) -> None:
    dm = MNISTDataModule(data_dir=str(synthetic_mnist), batch_size=32, image_size=image_size)
    assert dm.image_shape == (1, image_size, image_size) and dm.num_classes == 10
    dm.setup("fit")
    train_batches = list(dm.train_dataloader())
    assert len(train_batches) == 3
    images, labels = train_batches[0]
    assert images.shape == (32, 1, image_size, image_size) and images.dtype == torch.float32
    assert labels.shape == (32,) and labels.dtype == torch.int64
    assert images.min() >= -1.0 and images.max() <= 1.0
    val_images = torch.cat([images for images, _ in dm.val_dataloader()])  # [96, 1, S, S], not shuffled
    assert val_images.shape == (96, 1, image_size, image_size)
    # A resize keeps the mean brightness: catches a wrong scale or a transposed resize.
    want = expected_items("t10k")[0]
    assert val_images.mean().item() == pytest.approx(want.mean().item(), abs=0.01)


def test_drop_last(synthetic_mnist: Path) -> None:
    dm = MNISTDataModule(data_dir=str(synthetic_mnist), batch_size=64)
    dm.setup("fit")
    assert [len(labels) for _, labels in dm.train_dataloader()] == [64]
    assert [len(labels) for _, labels in dm.val_dataloader()] == [64, 32]
    dm.setup("test")
    assert [len(labels) for _, labels in dm.test_dataloader()] == [64, 32]


def test_fashion_mnist_folder(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, folder="FashionMNIST", n=40, gz=True)
    dm = MNISTDataModule(data_dir=str(tmp_path), dataset="fashion_mnist", batch_size=8)
    dm.setup("fit")
    assert len(dm.train_set) == 40 and len(dm.held_out_set) == 40
    with pytest.raises(FileNotFoundError, match="MNIST"):
        MNISTDataModule(data_dir=str(tmp_path)).setup("fit")


def test_train_on_test_split(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, splits=("t10k",), n=70)
    dm = MNISTDataModule(data_dir=str(tmp_path), train_split="test", batch_size=32, image_size=28)
    dm.setup("fit")
    images, labels = stack(dm.train_set)
    want_images, want_labels = expected_items("t10k", 70)
    torch.testing.assert_close(images, want_images, rtol=0, atol=1e-6)
    assert torch.equal(labels, want_labels)
    assert dm.val_dataloader() == []
    with pytest.raises(RuntimeError, match="no held-out split"):
        dm.test_dataloader()


def test_only_test_split_refuses_default(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, splits=("t10k",))
    dm = MNISTDataModule(data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError) as excinfo:
        dm.setup("fit")
    message = str(excinfo.value)
    assert "test split" in message and "--data.train_split=test" in message and "--data.download=true" in message
    assert str(tmp_path / "MNIST" / "raw") in message


def test_missing_folder_lists_files(tmp_path: Path) -> None:
    dm = MNISTDataModule(data_dir=str(tmp_path / "nowhere"))
    dm.prepare_data()  # download=False: nothing to do, and no error before setup
    with pytest.raises(FileNotFoundError) as excinfo:
        dm.setup("fit")
    message = str(excinfo.value)
    assert all(name in message for name in TRAIN_FILE_NAMES)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message and "--data.download=true" in message


def test_missing_validation_split_trains_without_it(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, splits=("train",))
    dm = MNISTDataModule(data_dir=str(tmp_path))
    with pytest.warns(UserWarning, match="without validation"):
        dm.setup("fit")
    assert len(dm.train_set) == 96 and dm.val_dataloader() == []
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz"):
        dm.setup("test")


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file(tmp_path: Path, gz: bool) -> None:
    write_idx_dataset(tmp_path, gz=gz)
    path = tmp_path / "MNIST" / "raw" / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError) as excinfo:
        MNISTDataModule(data_dir=str(tmp_path)).setup("fit")
    message = str(excinfo.value)
    assert str(path) in message and "truncated" in message
    if not gz:
        expected = 96 * 28 * 28
        found = (16 + expected) // 2 - 16  # half the file, less the 16-byte header
        assert f"{expected} data bytes, found {found}" in message


def test_bad_magic(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x0d\x01" + path.read_bytes()[4:])  # dtype 0x0D is float32
    with pytest.raises(ValueError, match="not a uint8 IDX file") as excinfo:
        read_idx(path)
    assert str(path) in str(excinfo.value)


def test_count_mismatch_names_both_files(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path)
    raw_dir = tmp_path / "MNIST" / "raw"
    (raw_dir / "train-labels-idx1-ubyte").write_bytes(idx_bytes(torch.zeros(95, dtype=torch.uint8)))
    with pytest.raises(ValueError) as excinfo:
        MNISTDataModule(data_dir=str(tmp_path)).setup("fit")
    message = str(excinfo.value)
    assert str(raw_dir / "train-images-idx3-ubyte") in message and str(raw_dir / "train-labels-idx1-ubyte") in message


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"dataset": "cifar10"}, "'cifar10'"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"image_size": -1}, "image_size=-1"),
        ({"num_workers": -2}, "num_workers=-2"),
        ({"train_split": "val"}, "train_split='val'"),
    ],
)
def test_invalid_arguments(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match="expected") as excinfo:
        MNISTDataModule(**kwargs)
    assert needle in str(excinfo.value)


def test_download_failure_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network here")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    dm = MNISTDataModule(data_dir=str(tmp_path), download=True)
    with pytest.raises(FileNotFoundError) as excinfo:
        dm.prepare_data()
    message = str(excinfo.value)
    assert "no network here" in message and "train-images-idx3-ubyte.gz" in message and ".gz is fine" in message
    assert str(tmp_path / "MNIST" / "raw") in message


def test_download_writes_torchvision_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_download(root: str, train: bool, download: bool) -> None:
        calls.append((root, train, download))
        write_idx_dataset(Path(root), folder="FashionMNIST", n=40, gz=True)

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", fake_download)
    dm = MNISTDataModule(data_dir=str(tmp_path), dataset="fashion_mnist", download=True, batch_size=8)
    dm.prepare_data()
    dm.prepare_data()  # the files are there now: no second download
    assert calls == [(str(tmp_path), True, True)]
    dm.setup("fit")
    assert len(dm.train_set) == 40


def test_smaller_than_one_batch(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, n=20)
    dm = MNISTDataModule(data_dir=str(tmp_path), batch_size=32)
    dm.setup("fit")
    with pytest.raises(ValueError, match="holds 20 images, fewer than one batch of batch_size=32"):
        dm.train_dataloader()


def test_picklable(synthetic_mnist: Path) -> None:
    dm = MNISTDataModule(data_dir=str(synthetic_mnist))
    dm.setup("fit")
    clone = pickle.loads(pickle.dumps(dm))
    assert torch.equal(clone.train_set[5][0], dm.train_set[5][0])
    assert dm.hparams.batch_size == 64 and dm.hparams.dataset == "mnist"


class _Probe(L.LightningModule):
    """Counts the steps Lightning runs: checks that an empty val_dataloader really skips validation."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(16 * 16, 10)
        self.val_batches = 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        return torch.nn.functional.cross_entropy(self.layer(images.flatten(1)), labels)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.val_batches += 1

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.filterwarnings("ignore:Total length of `list` across ranks is zero")
@pytest.mark.parametrize(("train_split", "val_batches"), [("train", 2), ("test", 0)])
def test_trainer_validation(synthetic_mnist: Path, train_split: str, val_batches: int) -> None:
    dm = MNISTDataModule(data_dir=str(synthetic_mnist), batch_size=48, image_size=16, train_split=train_split)
    model = _Probe()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2 and model.val_batches == val_batches


GANS_DATA_DIR = os.environ.get("GANS_DATA_DIR")
real_data = pytest.mark.skipif(not GANS_DATA_DIR, reason="GANS_DATA_DIR is not set (the shared real-data folder)")


@real_data
def test_real_fashion_mnist() -> None:
    dm = MNISTDataModule(data_dir=GANS_DATA_DIR, dataset="fashion_mnist", image_size=28)
    dm.setup("fit")
    assert len(dm.train_set) == 60000 and len(dm.held_out_set) == 10000
    assert sorted(set(dm.train_set.labels.tolist())) == list(range(10))


@real_data
def test_real_mnist_needs_train_split_test() -> None:
    with pytest.raises(FileNotFoundError, match="test split"):
        MNISTDataModule(data_dir=GANS_DATA_DIR).setup("fit")
    dm = MNISTDataModule(data_dir=GANS_DATA_DIR, train_split="test")
    dm.setup("fit")
    assert len(dm.train_set) == 10000
    assert dm.train_set.images.shape == (10000, 1, 32, 32)
    # MNIST's mean pixel is 0.1325 in [0, 1] (0.13 in the training split); a resize must keep it.
    assert dm.train_set.images.float().mean().item() / 255 == pytest.approx(0.1325, abs=0.005)
    images, _ = next(iter(dm.train_dataloader()))
    assert images.shape == (64, 1, 32, 32) and images.min() >= -1 and images.max() <= 1


@pytest.mark.parametrize("flip", [False, True])
def test_on_device_serves_the_same_batches(synthetic_mnist: Path, tmp_path: Path, flip: bool) -> None:
    import lightning as L

    from gans import DCGAN

    class Batches(L.Callback):
        def __init__(self):
            self.seen = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.seen.append((batch[0].clone(), batch[1].clone()))

    runs = []
    for on_device in (False, True):
        dm = MNISTDataModule(data_dir=str(synthetic_mnist), batch_size=8, image_size=8, on_device=on_device, flip=flip)
        batches = Batches()
        L.seed_everything(0, verbose=False)
        trainer = L.Trainer(accelerator="cpu", max_steps=14, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                            callbacks=[batches], default_root_dir=str(tmp_path))
        trainer.fit(DCGAN(**TINY), dm)
        runs.append(batches.seen)
        if on_device:
            assert type(dm.train_set).__name__ == "_OnDeviceImages"
            assert dm.train_set.images.device == trainer.strategy.root_device
    assert len(runs[0]) == len(runs[1]) == 14  # 12 batches per epoch: the second epoch's order too
    # The metrics read the on-device training set item by item for their real statistics.
    from callbacks import GANMetrics

    metrics = GANMetrics(num_samples=8, metrics=["fid"], batch_size=4, feature_extractor="testdoubles.TinyFeatures",
                         cache_dir=str(tmp_path / "cache"))
    metrics.setup(trainer, trainer.lightning_module, "fit")
    assert metrics._compute_real(trainer, trainer.lightning_module, dm)["mu"].shape == (16,)
    for (x0, y0), (x1, y1) in zip(*runs, strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1) and y1.dtype == torch.int64
    with pytest.raises(ValueError, match="on_device=True .* needs num_workers=0"):
        MNISTDataModule(on_device=True, num_workers=2)


def test_flip_mirrors_a_new_half_every_epoch(synthetic_mnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    plain = MNISTDataModule(data_dir=str(synthetic_mnist), batch_size=8, image_size=8)
    plain.setup("fit")
    original = stack(plain.train_set)[0]  # [96, 1, 8, 8]; noise images, none mirror-symmetric
    dm = MNISTDataModule(data_dir=str(synthetic_mnist), batch_size=8, image_size=8, flip=True)
    dm.setup("fit")
    n = len(dm.train_set)
    mirrored = []
    for epoch in (0, 1):
        flipped = torch.tensor([
            torch.equal(dm.train_set[epoch * n + i][0], original[i].flip(-1)) for i in range(n)
        ])
        kept = torch.tensor([torch.equal(dm.train_set[epoch * n + i][0], original[i]) for i in range(n)])
        assert torch.equal(flipped, ~kept) and 30 < int(flipped.sum()) < 66  # each image, mirrored or not
        assert torch.equal(flipped, dm.train_set.flips(epoch))
        mirrored.append(flipped)
    assert not torch.equal(*mirrored)  # a new half every epoch
    # The loader tags indices with their epoch; a fresh data module (a resumed run) mirrors the same images.
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    again = MNISTDataModule(data_dir=str(synthetic_mnist), batch_size=8, image_size=8, flip=True)
    again.setup("fit")
    assert torch.equal(again.train_set.flips(1), mirrored[1])
    images, _ = next(iter(loader))
    first = next(iter(loader.sampler)) - n
    assert torch.equal(images[0], original[first].flip(-1) if mirrored[1][first] else original[first])
    assert plain.fingerprint()["flip_seed"] is None and dm.fingerprint()["flip_seed"] == 3
