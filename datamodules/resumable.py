"""A training data order that a checkpoint can resume part-way through an epoch, with a fixed batch size or one that
follows a schedule of the images shown.

The order of epoch ``e`` is a function of ``(seed, e)`` only (``DistributedSampler``'s permutation, sharded by rank),
and the loader's ``state_dict`` records the epoch and how far into it the loader got. Lightning saves that state in
every checkpoint and restores it before the first batch of a resumed run, which then continues with the batch that
would have come next. Lightning leaves a ``DistributedSampler`` in place under DDP, so the sharding stays ours.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

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

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start = 0  # a resumed position belongs to the epoch it was recorded in
        super().set_epoch(epoch)

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
        """Restores a state of this loader, or of a :class:`ScheduledDataLoader` (its position in items)."""
        sampler: ResumableSampler = self.sampler
        _check_seed(state, sampler)
        sampler.set_epoch(state["epoch"])
        sampler.start = state["items"] if "items" in state else state["batches"] * self.batch_size


def _check_seed(state: dict[str, int], sampler: ResumableSampler) -> None:
    if state["seed"] != sampler.seed:
        raise ConfigurationError(
            f"the checkpoint's data order was seeded with {state['seed']} and this run's with {sampler.seed}: "
            "resume with the same seed_everything (or PL_GLOBAL_SEED) as the interrupted run",
            "seed_everything",
        )


class ScheduledBatchSampler(Sampler[list[int]]):
    """Batches of a :class:`ResumableSampler`'s shard whose sizes follow ``schedule``.

    A batch has ``schedule(images)`` items (of this process), where ``images`` counts the training images that all
    processes were handed before it, since training began, over all epochs: the items of this process times
    ``num_replicas``, since every process takes batches of the same size. The sizes are a function of the sizes
    before them only, so they are the same on every rank and however far ahead the batches are fetched. An epoch ends
    when fewer items are left in the shard than its next batch would take; those are dropped, as with ``drop_last``.

    The position is ``epoch``, ``items`` (of that epoch, this process) and ``images`` after the batches handed out so
    far; :class:`ScheduledDataLoader` advances it as it yields batches (a ``DataLoader`` draws indices ahead of the
    batches it yields). A pass continues from there, so an epoch is handed out once; ``set_epoch`` to another epoch
    (Lightning calls it before every epoch) starts that one at its first item.

    Args:
        sampler: the order and the shard of this process.
        schedule: the batch size, per process, given the images handed out before the batch (all processes).
    """

    def __init__(self, sampler: ResumableSampler, schedule: Callable[[int], int]) -> None:
        super().__init__()
        self.sampler, self.schedule = sampler, schedule
        self.epoch, self.items, self.images = sampler.epoch, 0, 0

    def sizes(self, items: int, images: int) -> Iterator[int]:
        """The sizes of the batches of the epoch from ``items`` into it, with ``images`` handed out before.

        Raises:
            ValueError: the schedule gave a size below 1.
        """
        while True:
            size = self.schedule(images)
            if size < 1:
                raise ValueError(f"batch_size_schedule({images}) = {size}: expected a batch size >= 1")
            if items + size > self.sampler.num_samples:
                return
            yield size
            items, images = items + size, images + size * self.sampler.num_replicas

    def advance(self) -> None:
        """Moves the position past the next batch (the loader has handed it out)."""
        size = self.schedule(self.images)
        self.items, self.images = self.items + size, self.images + size * self.sampler.num_replicas

    def _sync(self) -> None:
        if self.sampler.epoch != self.epoch:  # set_epoch: the position belonged to the previous epoch
            self.epoch, self.items = self.sampler.epoch, 0

    def __iter__(self) -> Iterator[list[int]]:
        self._sync()
        self.sampler.start = self.items
        indices = iter(self.sampler)
        for size in self.sizes(self.items, self.images):
            yield list(islice(indices, size))

    def __len__(self) -> int:
        """The number of batches of the whole epoch that the next (or current) pass belongs to, counted from its
        first item, as Lightning's progress counters expect of a resumed epoch."""
        self._sync()
        return sum(1 for _ in self.sizes(0, self.images - self.items * self.sampler.num_replicas))


class ScheduledDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ScheduledBatchSampler`, resumable like :class:`ResumableDataLoader`: its
    ``state_dict`` is the seed, the epoch, the items of that epoch handed out (per process) and the images handed out
    since training began (all processes). A ``ResumableDataLoader`` state (``batches`` of a fixed ``batch_size``,
    from a run without the schedule) loads too.

    Its length, the batches of the current epoch, changes from epoch to epoch; Lightning reads it once per loader, so
    the training loader must be rebuilt every epoch (``ScheduledTrainData`` sees to it).

    Args:
        dataset: the training set.
        batch_sampler: the batches.
        batch_size: the fixed batch size of runs without the schedule, to read their ``batches``.
        **kwargs: the other ``DataLoader`` arguments (not ``sampler``, ``batch_size``, ``shuffle``, ``drop_last``).
    """

    def __init__(self, dataset: Dataset, batch_sampler: ScheduledBatchSampler, batch_size: int, **kwargs: Any) -> None:
        kwargs.setdefault("generator", torch.Generator().manual_seed(batch_sampler.sampler.seed))
        super().__init__(dataset, batch_sampler=batch_sampler, **kwargs)
        # DataLoader puts a SequentialSampler it never draws from in `sampler` when given a batch sampler, and forbids
        # assigning it. Lightning (use_distributed_sampler) replaces a loader whose `sampler` is not a
        # DistributedSampler by one over its own, which would lose the batch sampler; ours is one and shards already.
        # tests/test_batch_schedule.py::test_two_processes_under_lightning_ddp fails if Lightning stops keeping the loader
        # (and ::test_lightning_keeps_the_scheduled_loader if the assignment stops working).
        object.__setattr__(self, "sampler", batch_sampler.sampler)
        self.fixed_batch_size = batch_size

    def __iter__(self):
        batches: ScheduledBatchSampler = self.batch_sampler
        for batch in super().__iter__():
            batches.advance()
            yield batch

    def state_dict(self) -> dict[str, int]:
        batches: ScheduledBatchSampler = self.batch_sampler
        return {"seed": batches.sampler.seed, "epoch": batches.epoch, "items": batches.items, "images": batches.images}

    def load_state_dict(self, state: dict[str, int]) -> None:
        batches: ScheduledBatchSampler = self.batch_sampler
        sampler = batches.sampler
        _check_seed(state, sampler)
        sampler.set_epoch(state["epoch"])
        batches.epoch = state["epoch"]
        if "items" in state:
            batches.items, batches.images = state["items"], state["images"]
        else:  # a fixed batch size until then: whole epochs of whole batches, then `batches` more
            size = self.fixed_batch_size
            batches.items = state["batches"] * size
            batches.images = (state["epoch"] * (sampler.num_samples // size) * size + batches.items) * sampler.num_replicas


def as_batch(batch: Any) -> Any:
    """The collate function of data sets whose ``__getitems__`` already returns a whole batch."""
    return batch


def resumable_loader(
    datamodule: L.LightningDataModule,
    dataset: Dataset,
    batch_size: int,
    seed: int | None = None,
    tag_epoch: bool = False,
    schedule: Callable[[int], int] | None = None,
    **kwargs: Any,
) -> ResumableDataLoader | ScheduledDataLoader:
    """The shuffled training loader of ``dataset`` for this process: equal batches (the last partial one dropped),
    sharded by the trainer's rank and world size when the data module is attached to one; ``tag_epoch`` as in
    :class:`ResumableSampler`; with a ``schedule``, batch sizes as in :class:`ScheduledBatchSampler`."""
    trainer = getattr(datamodule, "trainer", None)
    world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
    seed = default_data_seed() if seed is None else seed
    sampler = ResumableSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, tag_epoch=tag_epoch)
    if schedule is not None:
        return ScheduledDataLoader(dataset, ScheduledBatchSampler(sampler, schedule), batch_size, **kwargs)
    return ResumableDataLoader(dataset, sampler=sampler, batch_size=batch_size, drop_last=True, **kwargs)


class ScheduledTrainData:
    """Mixed into a ``LightningDataModule`` (before it) whose training loader comes from
    :meth:`_resumable_train_loader`: lets a callback set ``batch_size_schedule`` and keeps the schedule's position
    across the loaders of one run.

    Lightning reads a loader's length once, so a loader whose epochs differ in length is rebuilt every epoch
    (``Trainer.reload_dataloaders_every_n_epochs`` is set to 1); each new loader continues where the trainer's
    stopped. The position is also this data module's checkpoint state, which Lightning restores before it asks for
    the first loader of a resumed run, so that the length it reads then is the resumed epoch's.
    """

    #: The per-process batch size of the training loader as a function of the training images (all processes)
    #: handed out before the batch since training began (see ``ScheduledBatchSampler``); ``None``: ``batch_size``.
    #: Set it before Lightning asks for the training loader (in a callback's ``setup``).
    batch_size_schedule: Callable[[int], int] | None = None
    _restored_loader_state: dict[str, int] | None = None

    def _resumable_train_loader(
        self, dataset: Dataset, batch_size: int, seed: int | None, **kwargs: Any
    ) -> ResumableDataLoader | ScheduledDataLoader:
        loader = resumable_loader(self, dataset, batch_size, seed=seed, schedule=self.batch_size_schedule, **kwargs)
        if self.batch_size_schedule is None:
            return loader
        state = self._restored_loader_state
        if (current := self._trainer_loader()) is not None:
            # Lightning rebuilds the loader when an epoch starts, and reads its length before it sets the epoch: the
            # new loader starts the next epoch already (the length depends on the images before it, not its number).
            # The trainer's loader, not the last one built: callbacks build some for the data set alone.
            state = current.state_dict()
            state.update(epoch=state["epoch"] + 1, items=0)
        if state is not None:
            loader.load_state_dict(state)
        if (trainer := getattr(self, "trainer", None)) is not None:
            trainer.reload_dataloaders_every_n_epochs = 1
        return loader

    def _trainer_loader(self) -> ScheduledDataLoader | None:
        trainer = getattr(self, "trainer", None)
        loader = trainer.train_dataloader if trainer is not None else None
        return loader if isinstance(loader, ScheduledDataLoader) else None

    def state_dict(self) -> dict[str, Any]:
        loader = self._trainer_loader()
        return {"train_loader": loader.state_dict()} if loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored_loader_state = state_dict.get("train_loader")

    def teardown(self, stage: str) -> None:
        if stage == "fit":  # a later fit resumes only from its own checkpoint
            self._restored_loader_state = None
