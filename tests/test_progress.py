"""The progress bar counts iterations (generator steps) and shows the losses and image rate; a CLI run prints no
warning or advert the user cannot act on and writes no placeholder hp_metric to TensorBoard."""

import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from conftest import TINY, quiet_trainer, tiny_datamodule
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from test_cli import TINY_ARGS

from callbacks import GANProgressBar, IterationCheckpoint
from gans import DCGAN
from gans.cli import main

ROOT = Path(__file__).resolve().parents[1]


class BarSpy(Callback):
    """Records the main bar's state after the progress bar's own hooks ran (it comes after it in the list)."""

    def __init__(self, bar: GANProgressBar):
        self.bar = bar
        self.starts, self.ends, self.epochs = [], [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        tqdm = self.bar.train_progress_bar
        self.starts.append((tqdm.n, tqdm.initial, tqdm.total))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        tqdm = self.bar.train_progress_bar
        self.ends.append((tqdm.n, tqdm.total, trainer.global_step, postfix(tqdm.postfix)))

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs.append((self.bar.train_progress_bar.n, self.bar.train_progress_bar.total))


def postfix(text: str | None) -> dict[str, float]:
    """The bar's postfix as shown, "d_loss=1.39, g_loss=0.693, ...", read back into numbers."""
    pairs = [item.split("=") for item in (text or "").split(",") if "=" in item]
    return {key.strip(): float(value) for key, value in pairs}


def fit(data_dir, run_dir, model, ckpt_path=None, **trainer_kwargs):
    bar = GANProgressBar()
    spy = BarSpy(bar)
    checkpoint = IterationCheckpoint(dirpath=run_dir / "ckpt", every_n_train_steps=1000)
    trainer = quiet_trainer(run_dir, enable_progress_bar=True, enable_checkpointing=True, log_every_n_steps=1,
                            callbacks=[bar, spy, checkpoint], logger=CSVLogger(run_dir), **trainer_kwargs)
    trainer.fit(model, tiny_datamodule(data_dir), ckpt_path=ckpt_path)
    return trainer, spy


def test_bar_counts_iterations_under_n_critic(synthetic_mnist, tmp_path):
    # 96 images in batches of 8: 12 batches per epoch, 4 iterations of 3 critic steps; 5 iterations cross an epoch.
    trainer, spy = fit(synthetic_mnist, tmp_path, DCGAN(**TINY, n_critic=3), max_steps=5)
    assert len(spy.ends) == 15 and trainer.global_step == 5
    assert [(n, total) for n, total, _, _ in spy.ends] == [(step, 5) for _, _, step, _ in spy.ends]
    assert [n for n, *_ in spy.ends] == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5]
    shown = spy.ends[-1][3]
    assert list(shown) == ["d_loss", "g_loss", "kimg", "img/s"]  # no v_num, although a logger has a version
    for loss in ("d_loss", "g_loss"):  # shown with 3 significant digits
        assert shown[loss] == pytest.approx(float(trainer.callback_metrics[f"train/{loss}"]), rel=1e-2)
    assert float(shown["kimg"]) == pytest.approx(15 * 8 / 1000, abs=0.05) and shown["img/s"] > 0


@pytest.mark.parametrize("max_steps, max_epochs, total, batches", [(5, None, 5, 9), (-1, 1, 4, 6)],
                         ids=["max_steps", "epoch"])
def test_resumed_bar_starts_at_the_restored_iteration(synthetic_mnist, tmp_path, max_steps, max_epochs, total,
                                                      batches):
    L.seed_everything(0, verbose=False)
    first, _ = fit(synthetic_mnist, tmp_path, DCGAN(**TINY, n_critic=3), max_steps=2)
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    assert ckpt.is_file() and first.global_step == 2
    trainer, spy = fit(synthetic_mnist, tmp_path, DCGAN(**TINY, n_critic=3), ckpt_path=ckpt, max_steps=max_steps,
                       max_epochs=max_epochs)
    # Part-way through the first epoch (6 of its 12 batches; Lightning calls no on_train_epoch_start for it): the bar
    # starts at iteration 2, and its rate (n - initial) / elapsed counts the iterations of this run only.
    assert spy.starts[0] == (2, 2, total)
    assert len(spy.ends) == batches and spy.ends[-1][:2] == (total, total)
    assert trainer.global_step == total


def test_bar_counts_the_epochs_iterations_without_max_steps(synthetic_mnist, tmp_path):
    # n_critic 8, 12 batches per epoch: the first epoch holds one generator step (D step 8), the second two (16, 24).
    trainer, spy = fit(synthetic_mnist, tmp_path, DCGAN(**TINY, n_critic=8), max_steps=-1, max_epochs=2)
    assert spy.epochs == [(1, 1), (2, 2)] and trainer.global_step == 3


def test_cli_replaces_only_lightnings_default_bar(tmp_path):
    base = ["--config", str(ROOT / "configs/dcgan_mnist.yaml"), f"--trainer.default_root_dir={tmp_path}"]
    # The config lists its own callbacks: the bar comes anyway.
    assert type(main(base, run=False).trainer.progress_bar_callback) is GANProgressBar
    assert main([*base, "--trainer.enable_progress_bar=false"], run=False).trainer.progress_bar_callback is None
    chosen = main([*base, "--trainer.callbacks+=TQDMProgressBar", "--trainer.callbacks.refresh_rate=7"], run=False)
    bar = chosen.trainer.progress_bar_callback
    assert type(bar) is TQDMProgressBar and bar.refresh_rate == 7


def test_cli_run_prints_no_noise_and_logs_no_hp_metric(synthetic_mnist, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    command = [sys.executable, "train.py", "fit", "--config", "configs/wgan_gp_mnist.yaml", *TINY_ARGS,
               "--trainer.enable_progress_bar=true", f"--data.init_args.data_dir={synthetic_mnist}",
               "--trainer.max_steps=3", "--trainer.log_every_n_steps=1", f"--trainer.default_root_dir={tmp_path}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LeafSpec" not in output
    assert "💡" not in output and "litlogger" not in output and "litmodels" not in output
    # The bar counts the 3 iterations (15 critic batches) and shows the losses, not the logger's version.
    bars = [line for line in re.split(r"[\r\n]", result.stdout) if line.startswith("Epoch")]
    assert bars and re.search(r"\b3/3 \[", bars[-1]) and "d_loss=" in bars[-1] and "img/s=" in bars[-1]
    assert not any("v_num" in line for line in bars)

    events = EventAccumulator(str(next(tmp_path.rglob("events.out.tfevents.*"))))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert "train/d_loss" in scalars and "hp_metric" not in scalars
