"""Every learning-rate scheduler of torch.optim.lr_scheduler either trains or is refused when the model is built;
ReduceLROnPlateau steps on a monitored value; none of them fails in the middle of training."""

import functools
import inspect
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import TINY, quiet_trainer, tiny_datamodule
from lightning.pytorch.cli import ReduceLROnPlateau as MonitoredPlateau
from test_cli import TINY_ARGS
from torch.optim import lr_scheduler

from gans import DCGAN

ROOT = Path(__file__).resolve().parents[1]
SCHEDULERS = sorted(
    (
        cls
        for name, cls in inspect.getmembers(lr_scheduler, inspect.isclass)
        if issubclass(cls, lr_scheduler.LRScheduler) and cls is not lr_scheduler.LRScheduler
        and not name.startswith("_") and not inspect.isabstract(cls)
    ),
    key=lambda cls: cls.__name__,
)
LR = 2e-4  # DCGAN's learning rate


def halve(epoch: int) -> float:
    return 0.5**epoch


#: A value for each required argument of the schedulers, by name (the optimizer excepted).
REQUIRED = {
    "T_max": 4, "T_0": 2, "gamma": 0.5, "step_size": 1, "milestones": [1, 2], "base_lr": 1e-5, "max_lr": 1e-3,
    "lr_lambda": halve,
    "schedulers": [{"class_path": "torch.optim.lr_scheduler.ExponentialLR", "init_args": {"gamma": 0.5}}],
}
#: Schedulers that their required arguments alone do not make usable, and what the refusal says.
REFUSED = {
    "OneCycleLR": "total_steps",
    "SequentialLR": "`schedulers` are scheduler instances built on the optimizer",
    "ChainedScheduler": "`schedulers` are scheduler instances built on the optimizer",
}


def required_args(cls: type) -> dict:
    params = list(inspect.signature(cls).parameters.values())
    return {p.name: REQUIRED[p.name] for p in params
            if p.default is inspect.Parameter.empty and p.name != "optimizer"}


def spec(cls: type, **init_args) -> dict:
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}


def fit(model, data_dir, root, max_steps=3, **kwargs):
    L.seed_everything(0, verbose=False)
    trainer = quiet_trainer(root, max_steps=max_steps, **kwargs)
    trainer.fit(model, tiny_datamodule(data_dir))
    return trainer


def lrs(trainer) -> list[float]:
    return [opt.param_groups[0]["lr"] for opt in trainer.optimizers]


@pytest.mark.parametrize("cls", SCHEDULERS, ids=lambda cls: cls.__name__)
def test_every_scheduler_trains_or_is_refused_when_built(cls, synthetic_mnist, tmp_path):
    args = required_args(cls)
    if cls.__name__ in REFUSED:
        with pytest.raises(ValueError, match=f"g_scheduler={cls.__name__} cannot be built") as err:
            DCGAN(**TINY, g_scheduler=spec(cls, **args))
        assert REFUSED[cls.__name__] in str(err.value)
        return
    if cls is lr_scheduler.ReduceLROnPlateau:  # steps on a logged value, which it must be told: see the tests below
        with pytest.raises(ValueError, match="g_scheduler=ReduceLROnPlateau needs scheduler_monitor"):
            DCGAN(**TINY, g_scheduler=spec(cls, **args))
        return
    model = DCGAN(**TINY, g_scheduler=spec(cls, **args), d_scheduler=spec(cls, **args))
    trainer = fit(model, synthetic_mnist, tmp_path)
    # Stepped once per iteration, like the same scheduler stepped by hand three times.
    reference = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=LR, betas=(0.5, 0.999))
    by_hand = cls(reference, **args)
    for _ in range(3):
        reference.step()
        by_hand.step()
    assert lrs(trainer) == pytest.approx([reference.param_groups[0]["lr"]] * 2)


@pytest.mark.parametrize("cls", [c for c in SCHEDULERS if required_args(c)], ids=lambda cls: cls.__name__)
def test_a_missing_required_argument_is_refused_when_built(cls):
    missing = next(iter(required_args(cls)))
    with pytest.raises(ValueError, match=f"d_scheduler={cls.__name__} cannot be built.*{missing}"):
        DCGAN(**TINY, d_scheduler=spec(cls))


def test_one_cycle_with_total_steps_trains_and_too_few_are_refused_before_training(synthetic_mnist, tmp_path):
    enough = DCGAN(**TINY, g_scheduler=spec(lr_scheduler.OneCycleLR, max_lr=1e-3, total_steps=3))
    assert fit(enough, synthetic_mnist, tmp_path).global_step == 3
    # Stepped past total_steps, OneCycleLR raises: the run must not start.
    short = DCGAN(**TINY, g_scheduler=spec(lr_scheduler.OneCycleLR, max_lr=1e-3, total_steps=2))
    with pytest.raises(ValueError, match=r"g_scheduler=OneCycleLR has total_steps=2.*max_steps=3.*at least 3") as err:
        fit(short, synthetic_mnist, tmp_path)
    assert short.global_step == 0, err


def test_schedulers_of_schedulers_train_from_a_function_of_the_optimizer(synthetic_mnist, tmp_path):
    def warmup_then_decay(opt):
        parts = [lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=2), lr_scheduler.ExponentialLR(opt, 0.5)]
        return lr_scheduler.SequentialLR(opt, parts, milestones=[2])

    trainer = fit(DCGAN(**TINY, g_scheduler=warmup_then_decay), synthetic_mnist, tmp_path, max_steps=4)
    assert lrs(trainer)[0] == pytest.approx(LR * 0.5**2) and lrs(trainer)[1] == LR


#: A plateau scheduler for which no value is an improvement after the first: it halves the rate at every step after
#: it, so the rate counts the steps.
EVERY_STEP_WORSE = {"factor": 0.5, "patience": 0, "threshold": 1e9, "threshold_mode": "abs"}


def test_reduce_on_plateau_steps_both_networks_on_the_monitored_value(synthetic_mnist, tmp_path):
    plateau = spec(lr_scheduler.ReduceLROnPlateau, **EVERY_STEP_WORSE)
    model = DCGAN(**TINY, g_scheduler=plateau, d_scheduler=plateau, scheduler_monitor="train/g_loss")
    trainer = fit(model, synthetic_mnist, tmp_path, max_steps=4)
    assert lrs(trainer) == pytest.approx([LR * 0.5**3] * 2)


def test_one_cycle_per_epoch_is_measured_by_max_steps_when_the_epochs_are_unbounded(synthetic_mnist, tmp_path):
    # 96 images in batches of 8: 12 iterations an epoch; max_steps=14 ends in the second epoch, so 2 epoch steps.
    one_cycle = spec(lr_scheduler.OneCycleLR, max_lr=1e-3, total_steps=2)
    model = DCGAN(**TINY, g_scheduler=one_cycle, scheduler_interval="epoch")
    assert fit(model, synthetic_mnist, tmp_path, max_steps=14, max_epochs=-1).global_step == 14
    short = DCGAN(**TINY, g_scheduler=spec(lr_scheduler.OneCycleLR, max_lr=1e-3, total_steps=1),
                  scheduler_interval="epoch")
    with pytest.raises(ValueError, match=r"total_steps=1.*max_steps=14 \(2 epochs\).*at least 2"):
        fit(short, synthetic_mnist, tmp_path, max_steps=14, max_epochs=-1)


class LogEvery(L.Callback):
    """Puts a new value of ``key`` into callback_metrics every ``n`` iterations, as GANMetrics does with FID."""

    def __init__(self, key: str, n: int) -> None:
        self.key, self.n = key, n

    def on_train_batch_end(self, trainer, module, *args) -> None:
        if trainer.global_step % self.n == 0:
            trainer.callback_metrics[self.key] = torch.tensor(float(trainer.global_step))


def test_reduce_on_plateau_steps_only_on_new_values_of_its_monitor(synthetic_mnist, tmp_path):
    # metrics/fid is logged after iterations 2 and 4 (not yet at 1, not again at 3 and 5): two new values in
    # 5 iterations, so two plateau steps: one sets the best value, one halves the rate.
    model = DCGAN(**TINY, g_scheduler=spec(lr_scheduler.ReduceLROnPlateau, **EVERY_STEP_WORSE),
                  scheduler_monitor="metrics/fid")
    trainer = fit(model, synthetic_mnist, tmp_path, max_steps=5, callbacks=[LogEvery("metrics/fid", 2)])
    assert lrs(trainer) == pytest.approx([LR * 0.5, LR])


def test_lightnings_plateau_scheduler_brings_its_own_monitor(synthetic_mnist, tmp_path):
    plateau = functools.partial(MonitoredPlateau, monitor="train/d_real", **EVERY_STEP_WORSE)
    trainer = fit(DCGAN(**TINY, d_scheduler=plateau), synthetic_mnist, tmp_path, max_steps=3)
    assert lrs(trainer) == pytest.approx([LR, LR * 0.5**2])


def test_a_monitor_that_is_not_logged_stops_at_the_first_step(synthetic_mnist, tmp_path):
    model = DCGAN(**TINY, g_scheduler=spec(lr_scheduler.ReduceLROnPlateau), scheduler_monitor="train/g_los")
    with pytest.raises(ValueError, match=r"scheduler_monitor='train/g_los'.*not logged.*train/g_loss"):
        fit(model, synthetic_mnist, tmp_path)
    assert model.global_step == 1


def test_a_monitor_without_a_plateau_scheduler_is_refused():
    with pytest.raises(ValueError, match="scheduler_monitor='metrics/fid' is only read by a ReduceLROnPlateau"):
        DCGAN(**TINY, g_scheduler=spec(lr_scheduler.ExponentialLR, gamma=0.5), scheduler_monitor="metrics/fid")


def test_reduce_on_plateau_from_the_shell(synthetic_mnist, tmp_path):
    command = [sys.executable, "train.py", "fit", "--config", "configs/dcgan_mnist.yaml", *TINY_ARGS,
               f"--data.init_args.data_dir={synthetic_mnist}", "--trainer.max_steps=3",
               f"--trainer.default_root_dir={tmp_path}",
               # The short name is ambiguous to the parser: Lightning subclasses it (with a monitor argument).
               "--model.init_args.g_scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau",
               "--model.init_args.scheduler_monitor=train/g_loss",
               "--model.init_args.d_scheduler=lightning.pytorch.cli.ReduceLROnPlateau",
               "--model.init_args.d_scheduler.init_args.monitor=train/d_loss"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "`Trainer.fit` stopped: `max_steps=3` reached." in result.stderr + result.stdout
    # The short name: the parser stops (status 2) and names both full paths.
    command[-3:] = ["--model.init_args.d_scheduler=ReduceLROnPlateau"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Give the full class path to avoid ambiguity: torch.optim.lr_scheduler.ReduceLROnPlateau" in result.stderr
