"""Resuming: a run stopped at a checkpoint and resumed continues exactly as if it had never stopped."""

import lightning as L
import pytest
import torch
from conftest import TINY, quiet_trainer, tiny_datamodule
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from callbacks import GANMetrics, GeneratorEMA, IterationCheckpoint
from datamodules.resumable import ResumableDataLoader, ResumableSampler
from gans import DCGAN, WGANGP


class MemoryLogger(Logger):
    """A logger that keeps what it is given: (step, {name: value}) per call."""

    def __init__(self):
        super().__init__()
        self.rows = []

    name, version = "memory", 0

    @rank_zero_only
    def log_metrics(self, metrics, step=None):
        self.rows.append((step, {k: float(v) for k, v in metrics.items() if k.startswith("train/")}))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def fit(data_dir, run_dir, make_model, max_steps, ckpt_path=None, callbacks=(), every=1, **trainer_kwargs):
    L.seed_everything(0, verbose=False)
    model = make_model()
    logger = MemoryLogger()
    checkpoint = IterationCheckpoint(dirpath=run_dir / "ckpt", every_n_train_steps=every)
    trainer = quiet_trainer(
        run_dir, max_steps=max_steps, enable_checkpointing=True, callbacks=[*callbacks, checkpoint], logger=logger,
        log_every_n_steps=1, **trainer_kwargs,
    )
    trainer.fit(model, tiny_datamodule(data_dir), ckpt_path=ckpt_path)
    return model, logger.rows


def fresh(rows, n_critic):
    """The rows without train/g_loss on batches (step counts batches from 0) that took no generator step."""
    return [
        (step, {k: v for k, v in values.items() if k != "train/g_loss" or (step + 1) % n_critic == 0})
        for step, values in rows
    ]


def tiny_fid(cache_dir):
    return GANMetrics(every_n_steps=2, num_samples=16, metrics=["fid"], batch_size=8,
                      feature_extractor="testdoubles.TinyFeatures", cache_dir=str(cache_dir))


HALVE_EVERY_2 = {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 2, "gamma": 0.5}}
CASES = {
    # 96 images in batches of 8: 12 batches per epoch. DCGAN (BatchNorm, one D step per iteration), validated every
    # 5 batches so that validation draws fakes between checkpoints; resumed from iteration 7, in the first epoch.
    "dcgan": (lambda: DCGAN(**TINY), 14, 7, {"limit_val_batches": 2, "val_check_interval": 5}, False),
    # WGAN-GP with 3 critic steps (4 iterations per epoch) and step-wise learning-rate schedules, resumed in the
    # second epoch, part-way through it.
    "wgan_gp": (lambda: WGANGP(**TINY, n_critic=3, g_scheduler=HALVE_EVERY_2, d_scheduler=HALVE_EVERY_2), 9, 5, {},
                False),
    # DCGAN with a generator EMA (half-life with ramp-up, which counts the iterations restored) and FID every 2
    # iterations, whose real statistics come back from the checkpoint; resumed in the second epoch.
    "ema_fid": (lambda: DCGAN(**TINY), 18, 15, {}, True),
}


@pytest.mark.parametrize("case", CASES)
def test_resume_is_exact(case, synthetic_mnist, tmp_path):
    make_model, total, stop, trainer_kwargs, with_callbacks = CASES[case]

    def callbacks(run_dir):
        return [GeneratorEMA(half_life_kimg=0.1), tiny_fid(run_dir / "cache")] if with_callbacks else []

    whole_callbacks = callbacks(tmp_path / "whole")
    whole, whole_rows = fit(synthetic_mnist, tmp_path / "whole", make_model, total, callbacks=whole_callbacks,
                            **trainer_kwargs)
    part = tmp_path / "part"
    # The interrupted run checkpoints only when it ends (max_steps=stop): the checkpoint a longer run resumes from.
    _, first_rows = fit(synthetic_mnist, part, make_model, stop, callbacks=callbacks(part), every=1000,
                        **trainer_kwargs)
    ckpt = part / "ckpt" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == stop

    torch.manual_seed(12345)  # a fresh process starts from other global RNG state
    for cached in (part / "cache").glob("*.pt"):  # the real statistics must come from the checkpoint
        cached.unlink()
    resumed_callbacks = callbacks(part)
    resumed, resumed_rows = fit(synthetic_mnist, part, make_model, total, ckpt_path=ckpt,
                                callbacks=resumed_callbacks, **trainer_kwargs)

    n_critic = whole.n_critic
    assert len(whole_rows) >= total * n_critic  # a row per training batch (and validation rows without train/ values)
    assert [step for step, _ in first_rows + resumed_rows] == [step for step, _ in whole_rows]
    # Every logged loss, step for step, bit for bit. Lightning re-logs the last train/g_loss on the batches without a
    # generator step until the epoch ends; a resumed run has no last value to repeat: those repeats are left out.
    assert fresh(first_rows + resumed_rows, n_critic) == fresh(whole_rows, n_critic)
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name  # networks, EMA, BatchNorm statistics, spectral-norm vectors
    if with_callbacks:
        assert resumed.images_seen == whole.images_seen and resumed.batches_seen == whole.batches_seen
        assert not list((part / "cache").glob("*.pt")), "the real statistics were recomputed, not restored"
        assert resumed_callbacks[1].last["fid"] == whole_callbacks[1].last["fid"]


def test_sampler_resumes_part_way_and_shards():
    data = list(range(20))
    full = [list(ResumableSampler(data, num_replicas=2, rank=r, seed=3)) for r in (0, 1)]
    assert sorted(full[0] + full[1]) == data  # the two shards partition the data set
    loader = ResumableDataLoader(data, ResumableSampler(data, seed=3), batch_size=4, drop_last=True)
    loader.sampler.set_epoch(2)
    batches = iter(loader)
    first = [next(batches), next(batches)]
    state = loader.state_dict()
    assert state == {"seed": 3, "epoch": 2, "batches": 2}
    rest = list(batches)
    again = ResumableDataLoader(data, ResumableSampler(data, seed=3), batch_size=4, drop_last=True)
    again.load_state_dict(state)
    assert [b.tolist() for b in again] == [b.tolist() for b in rest]
    assert len(again) == 5 and len(first + rest) == 5
    with pytest.raises(ValueError, match="seeded with 3"):
        ResumableDataLoader(data, ResumableSampler(data, seed=4), batch_size=4).load_state_dict(state)


def test_epoch_tagged_indices():
    data = list(range(6))
    sampler = ResumableSampler(data, seed=1, tag_epoch=True)
    first = list(sampler)
    sampler.set_epoch(2)
    third = list(sampler)
    assert sorted(first) == data and sorted(third) == [12 + i for i in data]  # epoch * len + index
    sampler.set_epoch(2)
    sampler.start = 4
    assert list(sampler) == third[4:]  # a resumed epoch gives its remaining items the same tags
