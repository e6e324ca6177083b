"""Every config parses and instantiates; the CLI trains, validates and tests from the command line."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from callbacks import GANMetrics, GeneratorEMA, IterationCheckpoint, PredictionWriter, SampleGrid
from datamodules import GaussianMixtureDataModule, MNISTDataModule
from gans import BEGAN, DCGAN, LSGAN, MLPGAN, SNGAN, WGAN, WGANGP, UnrolledGAN
from gans.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
ADAM, SGD, RMSPROP = torch.optim.Adam, torch.optim.SGD, torch.optim.RMSprop
#: config -> the variant, its optimizer, learning rate and (for Adam) betas, and n_critic: the paper's settings.
EXPECTED = {
    "dcgan_mnist": (DCGAN, ADAM, 2e-4, (0.5, 0.999), 1),
    "wgan_gp_mnist": (WGANGP, ADAM, 1e-4, (0.0, 0.9), 5),
    "gan_mnist": (MLPGAN, SGD, 0.1, None, 1),
    "wgan_mnist": (WGAN, RMSPROP, 5e-5, None, 5),
    "lsgan_mnist": (LSGAN, ADAM, 2e-4, (0.5, 0.999), 1),
    "sngan_fashion_mnist": (SNGAN, ADAM, 2e-4, (0.0, 0.9), 5),
    "r1_mnist": (DCGAN, ADAM, 2e-4, (0.5, 0.999), 1),
    "began_fashion_mnist": (BEGAN, ADAM, 1e-4, (0.5, 0.999), 1),
    "minibatch_discrimination_mnist": (DCGAN, ADAM, 2e-4, (0.5, 0.999), 1),
    "minibatch_stddev_fashion_mnist": (DCGAN, ADAM, 2e-4, (0.5, 0.999), 1),
    "pacgan_mnist": (DCGAN, ADAM, 2e-4, (0.5, 0.999), 1),
    "unrolled_mnist": (UnrolledGAN, ADAM, 2e-4, (0.5, 0.999), 1),
    "gan_ring": (MLPGAN, ADAM, 1e-3, (0.5, 0.999), 1),
}
TINY_ARGS = [
    "--model.init_args.image_size=8", "--model.init_args.generator.init_args.features=4",
    "--model.init_args.discriminator.init_args.features=4",
    "--data.init_args.image_size=8", "--data.init_args.batch_size=8", "--data.init_args.download=false",
    "--trainer.enable_progress_bar=false", "--metrics=false",  # no Inception weights on this machine
]


def test_every_config_is_covered():
    assert {c.stem for c in CONFIGS} == set(EXPECTED)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_config_instantiates(config, tmp_path):
    cli = main(["--config", str(config), f"--trainer.default_root_dir={tmp_path}"], run=False)
    cls, optimizer, lr, betas, n_critic = EXPECTED[config.stem]
    assert type(cli.model) is cls and cli.model.n_critic == n_critic
    assert isinstance(cli.datamodule, GaussianMixtureDataModule if "ring" in config.stem else MNISTDataModule)
    factories = cli.model.optimizer_factories
    for network, factory in ((cli.model.generator, factories["g"]), (cli.model.discriminator, factories["d"])):
        opt = factory(network.parameters())
        assert type(opt) is optimizer and opt.defaults["lr"] == lr
        assert betas is None or tuple(opt.defaults["betas"]) == betas
    kinds = {type(c) for c in cli.trainer.callbacks}
    if "ring" in config.stem:  # points: scatter plots, no FID
        assert {IterationCheckpoint, SampleGrid} <= kinds and GANMetrics not in kinds
    else:
        assert {IterationCheckpoint, GeneratorEMA, SampleGrid, GANMetrics, PredictionWriter} <= kinds
    # The networks are sized for the images the data module produces.
    image = cli.model.sample(2, generator=torch.Generator().manual_seed(0))
    shape = cli.datamodule.data_shape if "ring" in config.stem else cli.datamodule.image_shape
    assert image.shape[1:] == shape


def test_optimizer_override_and_short_names(tmp_path):
    cli = main(
        ["--model=WGANGP", "--data=MNISTDataModule", "--model.g_optimizer.lr=3e-4",
         f"--trainer.default_root_dir={tmp_path}"],
        run=False,
    )
    g_opt = cli.model.optimizer_factories["g"](cli.model.generator.parameters())
    d_opt = cli.model.optimizer_factories["d"](cli.model.discriminator.parameters())
    assert type(cli.model) is WGANGP
    assert g_opt.defaults["lr"] == 3e-4 and tuple(g_opt.defaults["betas"]) == (0.0, 0.9)
    assert d_opt.defaults["lr"] == 1e-4  # the paper's default, untouched
    # Without a config the run still checkpoints by iteration, keeps an EMA and writes sample grids.
    assert {IterationCheckpoint, GeneratorEMA, SampleGrid} <= {type(c) for c in cli.trainer.callbacks}


def test_metrics_flag_drops_the_metrics_callback(tmp_path):
    args = ["--config", str(ROOT / "configs/dcgan_mnist.yaml"), f"--trainer.default_root_dir={tmp_path}"]
    assert GANMetrics in {type(c) for c in main(args, run=False).trainer.callbacks}
    kinds = {type(c) for c in main([*args, "--metrics=false"], run=False).trainer.callbacks}
    assert GANMetrics not in kinds and GeneratorEMA in kinds


def test_fit_validate_test_in_process(synthetic_mnist, tmp_path):
    data = [f"--data.init_args.data_dir={synthetic_mnist}"]
    cli = main(["fit", "--config", str(ROOT / "configs/wgan_gp_mnist.yaml"), *TINY_ARGS, *data,
                "--trainer.max_steps=2", f"--trainer.default_root_dir={tmp_path}"])
    assert cli.trainer.global_step == 2 and cli.model.batches_seen == 10
    last = next(tmp_path.rglob("last.ckpt"))
    for command in ("validate", "test"):
        cli = main([command, "--config", str(ROOT / "configs/wgan_gp_mnist.yaml"), *TINY_ARGS, *data,
                    f"--trainer.default_root_dir={tmp_path}", f"--ckpt_path={last}", "--trainer.limit_val_batches=2",
                    "--trainer.limit_test_batches=2"])
        prefix = "val" if command == "validate" else "test"
        assert f"{prefix}/d_loss" in cli.trainer.callback_metrics

    # predict: one fake per held-out example, written by the config's PredictionWriter.
    cli = main(["predict", "--config", str(ROOT / "configs/wgan_gp_mnist.yaml"), *TINY_ARGS, *data,
                f"--trainer.default_root_dir={tmp_path}", f"--ckpt_path={last}", "--trainer.limit_predict_batches=2"])
    out = Path(cli.trainer.log_dir) / "predictions"
    images = torch.load(out / "predictions_rank0.pt", weights_only=True)
    assert images.shape == (16, 1, 8, 8) and images.abs().max() <= 1 and images.std() > 0
    assert (out / "predictions_grid.png").is_file()


def test_train_py_from_the_shell(synthetic_mnist, tmp_path):
    command = [sys.executable, "train.py", "fit", "--config", "configs/dcgan_mnist.yaml", *TINY_ARGS,
               f"--data.init_args.data_dir={synthetic_mnist}", "--trainer.max_steps=3",
               f"--trainer.default_root_dir={tmp_path}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "`Trainer.fit` stopped: `max_steps=3` reached." in result.stderr + result.stdout
    assert next(tmp_path.rglob("config.yaml"))
    assert torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=True)["global_step"] == 3


def test_ring_config_trains_and_plots_points(tmp_path):
    cli = main(["fit", "--config", str(ROOT / "configs/gan_ring.yaml"), "--trainer.max_steps=2",
                "--trainer.callbacks.init_args.every_n_steps=1", "--data.init_args.num_samples=2048",
                "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={tmp_path}",
                "--trainer.enable_progress_bar=false"])
    assert cli.trainer.global_step == 2
    plots = sorted(tmp_path.rglob("samples_fixed_*.png"))
    assert [p.name for p in plots] == ["samples_fixed_00000001.png", "samples_fixed_00000002.png"]
    points = cli.model.sample(100)
    assert points.shape == (100, 2)
