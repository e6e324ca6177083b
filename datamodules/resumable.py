"""A training data order that a checkpoint can resume part-way through an epoch.

The order of epoch ``e`` is a function of ``(seed, e)`` only (``DistributedSampler``'s permutation, sharded by rank),
and the loader's ``state_dict`` records the epoch and how many batches of it were consumed. Lightning saves that
state in every checkpoint and restores it before the first batch of a resumed run, which then continues with the
batch that would have come next. Lightning leaves a ``DistributedSampler`` in place under DDP, so the sharding
stays ours.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from gans.errors import ConfigurationError


def default_data_seed() -> int:
    """The seed of the data order: ``seed_everything``'s (``PL_GLOBAL_SEED``), else 0, the seed Lightning's own
    distributed sampler would use; the same on every process, as sharding needs."""
    return int(os.environ.get("PL_GLOBAL_SEED", "0"))


class ResumableSampler(DistributedSampler):
    """``DistributedSampler``'s order (a permutation seeded by ``seed + epoch``, every ``num_replicas``-th index for
    this rank) that can start its next pass ``start`` samples into the epoch. Its length stays the whole shard's,
    which is what Lightning's progress counters expect of a resumed epoch.

    With ``tag_epoch`` it yields ``epoch * len(dataset) + index``: a data set that takes the index modulo its length
    can seed per-item augmentation with the whole number, so that an item's crop and flip depend on the epoch and
    are the same after a resume.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        tag_epoch: bool = False,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.start, self.tag_epoch = 0, tag_epoch

    def __iter__(self):
        indices = list(super().__iter__())
        start, self.start = self.start, 0  # only the first pass after a resume starts late
        offset = self.epoch * len(self.dataset) if self.tag_epoch else 0
        return iter([offset + i for i in indices[start:]])


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableSampler` whose ``state_dict`` is the sampler's seed and epoch and the
    number of batches consumed in that epoch (Lightning fetches a sized loader's batches only as it trains on them,
    so a count of batches handed out is a count of batches trained on)."""

    def __init__(self, dataset: Dataset, sampler: ResumableSampler, **kwargs: Any) -> None:
        # Its own generator: the workers' base seed is drawn from it, not from the global RNG the model uses.
        kwargs.setdefault("generator", torch.Generator().manual_seed(sampler.seed))
        super().__init__(dataset, sampler=sampler, **kwargs)
        self.consumed = 0  # batches of the current epoch handed out

    def __iter__(self):
        sampler: ResumableSampler = self.sampler
        self.consumed = sampler.start // self.batch_size
        for batch in super().__iter__():
            self.consumed += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.sampler.seed, "epoch": self.sampler.epoch, "batches": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler: ResumableSampler = self.sampler
        if state["seed"] != sampler.seed:
            raise ConfigurationError(
                f"the checkpoint's data order was seeded with {state['seed']} and this run's with {sampler.seed}: "
                "resume with the same seed_everything (or PL_GLOBAL_SEED) as the interrupted run",
                "seed_everything",
            )
        sampler.set_epoch(state["epoch"])
        sampler.start = state["batches"] * self.batch_size


def as_batch(batch: Any) -> Any:
    """The collate function of data sets whose ``__getitems__`` already returns a whole batch."""
    return batch


def resumable_loader(
    datamodule: L.LightningDataModule,
    dataset: Dataset,
    batch_size: int,
    seed: int | None = None,
    tag_epoch: bool = False,
    **kwargs: Any,
) -> ResumableDataLoader:
    """The shuffled training loader of ``dataset`` for this process: equal batches (the last partial one dropped),
    sharded by the trainer's rank and world size when the data module is attached to one; ``tag_epoch`` as in
    :class:`ResumableSampler`."""
    trainer = getattr(datamodule, "trainer", None)
    world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
    seed = default_data_seed() if seed is None else seed
    sampler = ResumableSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, tag_epoch=tag_epoch)
    return ResumableDataLoader(dataset, sampler=sampler, batch_size=batch_size, drop_last=True, **kwargs)
