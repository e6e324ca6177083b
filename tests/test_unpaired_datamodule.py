"""Unpaired translation data in CycleGAN's layout: an epoch as long as the larger domain, A and B drawn
independently (at random or serially), each with its own jitter, and an order that resumes part-way through."""

import shutil

import pytest
import torch
from translation_data import pattern, unpaired_index, write_unpaired

from datamodules import UnpairedImageDataModule
from datamodules.resumable import ResumableDataLoader
from gans.errors import ConfigurationError


def drawn(batch) -> list[tuple[int, int]]:
    """The (A index, B index) of each item of a batch ``(a, b)`` of ``unpaired_image``s."""
    pairs = []
    for a, b in zip(*batch, strict=True):
        (domain_a, i), (domain_b, j) = unpaired_index(a), unpaired_index(b)
        assert (domain_a, domain_b) == ("A", "B")
        pairs.append((i, j))
    return pairs


def module(root, **kwargs) -> UnpairedImageDataModule:
    dm = UnpairedImageDataModule(data_dir=str(root), **{"load_size": 10, "crop_size": 8, "seed": 0, **kwargs})
    dm.setup("fit")
    return dm


def test_layout_shapes_and_an_epoch_as_long_as_the_larger_domain(unpaired_set):
    dm = module(unpaired_set, batch_size=1)  # trainA: 5, trainB: 3
    assert len(dm.train_set) == 5 and dm.batch_kind == "unpaired"
    assert dm.image_shape == dm.source_shape == (3, 8, 8)
    grey = UnpairedImageDataModule(data_dir=str(unpaired_set / "none"), crop_size=8, to_channels=1)
    assert grey.image_shape == grey.source_shape == (1, 8, 8)  # known without files: the CLI sizes the model
    loader = dm.train_dataloader()
    assert len(loader) == 5
    epoch = [pair for batch in loader for pair in drawn(batch)]
    assert sorted(i for i, _ in epoch) == [0, 1, 2, 3, 4]  # every A once, B drawn from its 3
    assert {j for _, j in epoch} <= {0, 1, 2}
    a, b = next(iter(dm.train_dataloader()))
    assert a.shape == b.shape == (1, 3, 8, 8) and -1 <= a.min() and a.max() <= 1
    # Validation uses testA/testB (no valA/valB), paired serially: the same items every time.
    val = dm.splits["val"]
    assert [drawn(([val[i][0]], [val[i][1]]))[0] for i in range(len(val))] == [(0, 0), (1, 1)]
    # BtoA: the source domain is B; the larger one still sets the length.
    swapped = module(unpaired_set, direction="BtoA")
    assert len(swapped.train_set) == 5 and unpaired_index(swapped.train_set[0][0])[0] == "B"
    with pytest.raises(ConfigurationError, match=r"^direction='AB'"):
        UnpairedImageDataModule(direction="AB")


def test_b_is_drawn_independently_of_a_or_serially(tmp_path):
    root = write_unpaired(tmp_path, n_a=12, n_b=4, size=8)
    dm = module(root, batch_size=4)
    epochs = []
    for epoch in range(6):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        epochs.append([pair for batch in loader for pair in drawn(batch)])
    pairs = [pair for epoch in epochs for pair in epoch]
    # Random pairing: over six epochs each A image meets several B images, and every B image is drawn.
    partners = {i: {j for a, j in pairs if a == i} for i in range(12)}
    assert sum(len(js) for js in partners.values()) / 12 > 2 and {j for _, j in pairs} == {0, 1, 2, 3}
    # The B index is not A's modulo 4 (the serial pairing) for most items.
    assert sum(j != i % 4 for i, j in pairs) > len(pairs) / 2
    # Seeded: the same epoch gives the same pairs.
    again = dm.train_dataloader()
    assert [pair for batch in again for pair in drawn(batch)] == epochs[0]
    serial = module(root, batch_size=4, serial_batches=True)
    assert all(j == i % 4 for batch in serial.train_dataloader() for i, j in drawn(batch))


def test_a_and_b_get_independent_jitter(tmp_path):
    # The same patterned image in both domains: a shared crop and mirror would give equal items.
    for domain in "AB":
        (tmp_path / f"train{domain}").mkdir()
    from PIL import Image

    for i in range(4):
        Image.fromarray(pattern(12, 12, seed=i).numpy()).save(tmp_path / "trainA" / f"{i}.png")
    for i in range(4):
        shutil.copy(tmp_path / "trainA" / f"{i}.png", tmp_path / "trainB" / f"{i}.png")
    dm = module(tmp_path, serial_batches=True, load_size=12, preprocess="crop")
    items = [dm.train_set[index] for index in range(16)]
    assert sum(not torch.equal(a, b) for a, b in items) >= 10


def test_the_order_resumes_part_way_through_an_epoch(unpaired_set):
    dm = module(unpaired_set, batch_size=1)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    batches = iter(loader)
    first = [next(batches) for _ in range(2)]
    state = loader.state_dict()
    rest = list(batches)
    assert state == {"seed": 0, "epoch": 1, "batches": 2} and len(rest) == 3
    # A new run (a new data module) restores the state: the same three batches, pairing and jitter included.
    resumed = module(unpaired_set, batch_size=1).train_dataloader()
    assert isinstance(resumed, ResumableDataLoader)
    resumed.load_state_dict(state)
    again = list(resumed)
    assert len(again) == 3
    for x, y in zip(rest, again, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(x, y, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(first[0], rest[0], strict=True))
