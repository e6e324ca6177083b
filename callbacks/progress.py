"""A progress bar that counts GAN iterations (generator steps), not the discriminator's batches."""

import math
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from typing_extensions import override

#: The losses shown, as the GAN base logs them (``train/<name>``).
LOSSES = ("d_loss", "g_loss")


class GANProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar whose main bar counts iterations: ``trainer.global_step`` (generator steps) out of
    ``max_steps``, or, when ``max_steps`` is -1, the iterations of the current epoch (its batches divided into groups
    of ``n_critic``). A resumed run starts at the restored iteration, and the rate (it/s) counts only the iterations
    of this run. The postfix shows the latest ``d_loss`` and ``g_loss`` (from ``train/d_loss``, ``train/g_loss``), the
    thousands of real images shown so far (``kimg``, the module's ``images_seen``) and the images per second of this
    run (``img/s``), plus any value logged with ``prog_bar=True``; not Lightning's logger version ``v_num``.

    ``train.py`` uses it in place of Lightning's default bar. Its arguments are :class:`TQDMProgressBar`'s.
    """

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        # Timing of this run only: nothing to checkpoint, a resumed run measures its own speed.
        self._first_batch = True  # the next batch is the first of an epoch (fresh or resumed part-way)
        self._start_images: int | None = None
        self._start_time = 0.0

    def _position(self, trainer: L.Trainer, pl_module: L.LightningModule, batches_done: int) -> tuple[int, int | None]:
        """(iterations done, iterations in all) for the main bar once ``batches_done`` batches of this epoch ran."""
        if trainer.max_steps != -1:
            return trainer.global_step, trainer.max_steps
        n_critic = getattr(pl_module, "n_critic", 1)
        batches_seen = getattr(pl_module, "batches_seen", None)
        # Discriminator steps before this epoch: batches_seen runs on across epochs, so an epoch's first generator step
        # need not come after its first n_critic batches.
        before = batches_seen - batches_done if isinstance(batches_seen, int) else 0
        done = (before + batches_done) // n_critic - before // n_critic
        batches = trainer.num_training_batches  # inf for an iterable without a length
        total = None if math.isinf(batches) else (before + int(batches)) // n_critic - before // n_critic
        return done, total

    def _move(self, n: int, total: int | None, initial: int | None = None) -> None:
        bar = self.train_progress_bar
        if bar.disable:
            return
        bar.total = total
        if initial is not None:
            bar.initial = initial  # tqdm's rate is (n - initial) / elapsed: iterations of this run only
        bar.n = n

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        # A run resumed part-way through an epoch gets no on_train_epoch_start for it: its first batch places the bar.
        self._first_batch = True
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch}")

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train_progress_bar.initial = 0  # else the reset below shows a negative rate for a moment
        super().on_train_epoch_start(trainer, pl_module)
        self._first_batch = True
        # Before the first batch says how far a resumed epoch got, max_steps mode already knows where it stands.
        n, total = self._position(trainer, pl_module, 0)
        self._move(n, total, initial=n)
        self.train_progress_bar.refresh()

    @override
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._start_images is None:
            self._start_images = getattr(pl_module, "images_seen", None)
            self._start_time = time.perf_counter()
        if self._first_batch:
            self._first_batch = False
            n, total = self._position(trainer, pl_module, batch_idx)
            self._move(n, total, initial=n)

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        n, total = self._position(trainer, pl_module, batch_idx + 1)
        # Refreshed every refresh_rate batches: under n_critic > 1 the iteration count stands still in between.
        if self.is_enabled and ((batch_idx + 1) % self.refresh_rate == 0 or n == total):
            self._move(n, total)
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    @override
    def on_train_end(self, *args: Any) -> None:
        super().on_train_end(*args)
        self._start_images = None

    @override
    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, int | str | float | dict]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)  # the logger's version folder: says nothing about training
        logged = trainer.callback_metrics
        losses = {name: float(logged[f"train/{name}"]) for name in LOSSES if f"train/{name}" in logged}
        items = {**losses, **items}
        images = getattr(pl_module, "images_seen", None)
        if isinstance(images, int):
            items["kimg"] = f"{images / 1000:.1f}"  # a string: Lightning's bar pads every float to three decimals
            elapsed = time.perf_counter() - self._start_time
            if self._start_images is not None and elapsed > 0:
                items["img/s"] = round((images - self._start_images) / elapsed)
        return items
