"""Each variant trains through Lightning; training length, divergence and sampling behave as documented."""

import lightning as L
import pytest
import torch
from conftest import TINY, inputs_for, quiet_trainer, tiny_data, tiny_datamodule, tiny_kwargs, variant_classes
from lightning.pytorch.loggers import CSVLogger

from callbacks import IterationCheckpoint, SampleGrid
from gans import DCGAN, WGANGP
from gans.base import load_gan
from gans.sample import main as sample_main

VARIANTS = variant_classes()


def parameters(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


@pytest.mark.parametrize("cls", VARIANTS)
def test_fast_dev_run_updates_both_networks(cls, synthetic_mnist, tmp_path):
    model = cls(**tiny_kwargs(cls))
    g0, d0 = parameters(model.generator), parameters(model.discriminator)
    # fast_dev_run=n_critic batches: exactly one iteration (n_critic D steps, one G step).
    trainer = quiet_trainer(tmp_path, fast_dev_run=model.n_critic)
    trainer.fit(model, tiny_data(model, synthetic_mnist))
    assert trainer.global_step == 1 and model.batches_seen == model.n_critic
    assert not torch.equal(g0, parameters(model.generator))
    assert not torch.equal(d0, parameters(model.discriminator))
    images = model.sample(6, **inputs_for(model, 6))
    assert images.shape == (6, 1, 8, 8) and images.min() >= -1 and images.max() <= 1


@pytest.mark.parametrize("cls", VARIANTS)
def test_validate_and_test(cls, synthetic_mnist, tmp_path):
    model = cls(**tiny_kwargs(cls))
    data = tiny_data(model, synthetic_mnist)
    trainer = quiet_trainer(tmp_path, limit_val_batches=2, limit_test_batches=2)
    (val,) = trainer.validate(model, data)
    (test,) = trainer.test(model, data)
    # What each variant's evaluation_terms give (BEGAN: its reconstruction losses and M_global), all finite.
    assert "val/d_loss" in val and "test/d_loss" in test
    assert all(torch.isfinite(torch.tensor(v)) for v in (*val.values(), *test.values()))
    if type(model).evaluation_terms is DCGAN.evaluation_terms:  # the base's: D's scores of real and fake
        assert {"val/d_real", "val/d_fake"} <= val.keys() and {"test/d_real", "test/d_fake"} <= test.keys()


class OptimizerSteps(L.Callback):
    """Counts the optimizer steps each network really took, from Adam's own per-parameter step counter."""

    def on_train_end(self, trainer, module):
        g_opt, d_opt = trainer.optimizers
        self.g_steps = int(g_opt.state[next(iter(module.generator.parameters()))]["step"])
        self.batches_seen = int(d_opt.state[next(iter(module.discriminator.parameters()))]["step"])


def test_training_length_counts_generator_steps(synthetic_mnist, tmp_path):
    """README, "Training length": max_steps = iterations = generator steps; each takes n_critic D steps, each on
    its own batch; checkpoints and sample grids count iterations too, and a run also saves when it ends."""
    n_critic, max_steps = 3, 5
    model = WGANGP(**TINY, n_critic=n_critic)
    steps = OptimizerSteps()
    ckpt = IterationCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2)
    grids = SampleGrid(every_n_steps=2, num_samples=4, interpolation_rows=0)
    # 96 images / batch 8 = 12 batches per epoch; 15 D steps cross an epoch boundary mid-iteration.
    trainer = quiet_trainer(
        tmp_path, max_steps=max_steps, callbacks=[steps, ckpt, grids], enable_checkpointing=True,
        logger=CSVLogger(tmp_path, name="csv"),
    )
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    assert trainer.global_step == max_steps
    assert steps.g_steps == max_steps
    assert steps.batches_seen == model.batches_seen == n_critic * max_steps
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        # The last one is written inside epoch 1 (D steps 13 to 15), where the run stopped, not after it.
        "epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt", "epoch=1-step=5.ckpt", "last.ckpt",
    ]
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == max_steps
    pngs = sorted(p.name for p in (tmp_path / "csv").rglob("*.png"))
    assert pngs == ["samples_fixed_00000002.png", "samples_fixed_00000004.png", "samples_fixed_00000005.png"]


def test_schedulers_are_stepped_once_per_iteration(synthetic_mnist, tmp_path):
    step_lr = {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 1, "gamma": 0.5}}
    model = WGANGP(**TINY, n_critic=2, g_scheduler=step_lr, d_scheduler=step_lr)
    trainer = quiet_trainer(tmp_path, max_steps=3)
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    g_opt, d_opt = trainer.optimizers
    assert g_opt.param_groups[0]["lr"] == pytest.approx(1e-4 * 0.5**3)
    assert d_opt.param_groups[0]["lr"] == pytest.approx(1e-4 * 0.5**3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_critic=0"):
        WGANGP(**TINY, n_critic=0)
    with pytest.raises(ValueError, match="loss='wasserstien'"):
        DCGAN(**TINY, loss="wasserstien")
    with pytest.raises(ValueError, match="discriminator=DCGANDiscriminator has BatchNorm"):
        WGANGP(**{**TINY, "image_size": 32, "discriminator": {"init_args": {"features": 4, "norm": "batch"}}})


@pytest.fixture
def checkpoint(synthetic_mnist, tmp_path):
    model = WGANGP(**TINY, n_critic=1)
    trainer = quiet_trainer(tmp_path, max_steps=2)
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return path, model


def test_load_gan_rebuilds_the_variant(checkpoint):
    path, model = checkpoint
    loaded = load_gan(path)
    assert type(loaded) is WGANGP and loaded.latent_dim == TINY["latent_dim"] and loaded.batches_seen == 2
    z = torch.randn(3, TINY["latent_dim"])
    assert torch.equal(loaded.sample(z=z), model.sample(z=z))


def test_sample_cli(checkpoint, tmp_path, capsys):
    path, _ = checkpoint
    sample_main(["--ckpt", str(path), "--num", "10", "--out", str(tmp_path / "a.pt"), "--seed", "3"])
    sample_main(["--ckpt", str(path), "--num", "10", "--out", str(tmp_path / "b.pt"), "--seed", "3", "--batch-size", "4"])
    sample_main(["--ckpt", str(path), "--num", "10", "--out", str(tmp_path / "c.pt"), "--seed", "4"])
    a, b, c = (torch.load(tmp_path / f"{name}.pt") for name in "abc")
    assert a.shape == (10, 1, 8, 8) and a.dtype == torch.float32 and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)  # seeded, independent of the batch size
    sample_main(["--ckpt", str(path), "--num", "9", "--out", str(tmp_path / "grid.png")])
    assert (tmp_path / "grid.png").stat().st_size > 0
    assert "wrote 9 samples" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--ckpt", "missing.ckpt", "--num", "2", "--out", "x.pt"], "checkpoint 'missing.ckpt' does not exist"),
        (["--num", "0", "--out", "x.pt"], "--num 0"),
        (["--num", "2", "--out", "x.txt"], "--out 'x.txt'"),
    ],
)
def test_sample_cli_bad_input(checkpoint, args, message, capsys):
    if "--ckpt" not in args:
        args = ["--ckpt", str(checkpoint[0]), *args]
    with pytest.raises(SystemExit) as exit_info:
        sample_main(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_load_gan_rejects_foreign_and_truncated_files(checkpoint, tmp_path):
    path, _ = checkpoint
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="cannot load checkpoint .*truncated.ckpt"):
        load_gan(truncated)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not a checkpoint of a gans model"):
        load_gan(foreign)


def test_image_size_mismatch_is_refused(synthetic_mnist, tmp_path):
    model = DCGAN(**{**TINY, "image_size": 16})  # the data module makes 8x8 images
    with pytest.raises(ValueError, match=r"images of shape \(1, 8, 8\) but the generator makes \(1, 16, 16\)"):
        quiet_trainer(tmp_path, max_steps=1).fit(model, tiny_datamodule(synthetic_mnist))


def test_attached_trainer(synthetic_mnist, tmp_path):
    """The one private Lightning attribute the base reads (LightningModule._trainer), through one wrapper."""
    model = DCGAN(**TINY)
    assert model.attached_trainer is None
    seen = []

    class Probe(L.Callback):
        def on_train_batch_start(self, trainer, module, *args):
            seen.append(module.attached_trainer is trainer)

    quiet_trainer(tmp_path, max_steps=1, callbacks=[Probe()]).fit(model, tiny_datamodule(synthetic_mnist))
    assert seen == [True]
