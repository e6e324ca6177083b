"""Every config parses and instantiates; the CLI trains, validates and tests from the command line; the default
callbacks are set without listing them, and the model's sample shape follows the data module."""

import inspect
import subprocess
import sys
from pathlib import Path
from pydoc import locate

import pytest
import torch
import yaml
from conftest import inputs_for
from lightning.pytorch.callbacks import LearningRateMonitor

from callbacks import GANMetrics, GeneratorEMA, IterationCheckpoint, PredictionWriter, SampleGrid
from gans import MLPGAN, WGANGP
from gans.cli import DEFAULT_CALLBACKS, main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
ADAM, SGD, RMSPROP = torch.optim.Adam, torch.optim.SGD, torch.optim.RMSprop
#: The papers' settings that configs claim in their headers and get from the variants' defaults (the configs no longer
#: repeat them): config -> optimizer, learning rate, (for Adam) betas, n_critic. Which configs exist and that each
#: instantiates is found from configs/ itself (test_config_instantiates); this only pins what these papers specify.
PAPERS = {
    "dcgan_mnist": (ADAM, 2e-4, (0.5, 0.999), 1),
    "wgan_gp_mnist": (ADAM, 1e-4, (0.0, 0.9), 5),
    "gan_mnist": (SGD, 0.1, None, 1),
    "wgan_mnist": (RMSPROP, 5e-5, None, 5),
    "lsgan_mnist": (ADAM, 2e-4, (0.5, 0.999), 1),
    "sngan_fashion_mnist": (ADAM, 2e-4, (0.0, 0.9), 5),
    "r1_mnist": (ADAM, 2e-4, (0.5, 0.999), 1),
    "began_fashion_mnist": (ADAM, 1e-4, (0.5, 0.999), 1),
    "minibatch_discrimination_mnist": (ADAM, 2e-4, (0.5, 0.999), 1),
    "minibatch_stddev_fashion_mnist": (ADAM, 2e-4, (0.5, 0.999), 1),
    "pacgan_mnist": (ADAM, 2e-4, (0.5, 0.999), 1),
    "unrolled_mnist": (ADAM, 2e-4, (0.5, 0.999), 1),
    "gan_ring": (ADAM, 1e-3, (0.5, 0.999), 1),
    "msggan_fashion_mnist": (ADAM, 3e-3, (0.0, 0.99), 1),
    "stylegan_fashion_mnist": (ADAM, 1e-3, (0.0, 0.99), 1),
    "lapgan_fashion_mnist": (SGD, 0.02, None, 1),
    "srgan_div2k": (ADAM, 1e-4, (0.9, 0.999), 1),
}
TINY_ARGS = [  # the model's image size follows --data.init_args.image_size
    "--model.init_args.generator.init_args.features=4", "--model.init_args.discriminator.init_args.features=4",
    "--data.init_args.image_size=8", "--data.init_args.batch_size=8", "--data.init_args.download=false",
    "--trainer.enable_progress_bar=false", "--metrics=false",  # no Inception weights on this machine
]


def sample_shape(datamodule) -> tuple[int | None, ...]:
    """The shape of one sample of a data module that knows it when built: an image's [C, H, W] or a point's [d]; a
    paired folder's images are [None, crop, crop] (its channels are read from the files, which the test gives none)."""
    known = getattr(datamodule, "image_shape", None) or getattr(datamodule, "data_shape", None)
    return known or (None, datamodule.crop_size, datamodule.crop_size)


def same_shape(shape: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    """``shape`` is ``expected``, whose unknown (``None``) entries match any size."""
    return len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected, strict=True))


def test_configs_are_found():
    assert CONFIGS  # the discovery itself: an empty glob would make the parametrized test pass vacuously
    assert set(PAPERS) <= {c.stem for c in CONFIGS}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_config_instantiates(config, tmp_path):
    """Model, data module and callbacks of every config, built without touching data (download happens in fit)."""
    written = yaml.safe_load(config.read_text())
    reads_files = "data_dir" in inspect.signature(locate(written["data"]["class_path"])).parameters
    cli = main(["--config", str(config), f"--trainer.default_root_dir={tmp_path}",
                *([f"--data.init_args.data_dir={tmp_path}"] if reads_files else [])], run=False)
    assert type(cli.model) is locate(written["model"]["class_path"])
    assert type(cli.datamodule) is locate(written["data"]["class_path"])
    assert not list(tmp_path.iterdir())  # nothing read, downloaded or written
    kinds = {type(c) for c in cli.trainer.callbacks}
    points = len(sample_shape(cli.datamodule)) == 1
    if points:  # scatter plots, no FID
        assert {IterationCheckpoint, SampleGrid} <= kinds and GANMetrics not in kinds
    else:
        assert {IterationCheckpoint, GeneratorEMA, SampleGrid, GANMetrics, PredictionWriter} <= kinds
    for name, cls in DEFAULT_CALLBACKS.items():  # a default the config switches off is gone, one left on is there
        assert any(isinstance(c, cls) for c in cli.trainer.callbacks) == bool(cli.config[name]), name
    # The networks are sized for the samples the data module produces, without the config repeating the shape. On the
    # meta device: shapes without arithmetic (the GPU configs' networks would take a minute on two CPU cores).
    inputs = inputs_for(cli.model, 2)
    cli.model.to("meta")
    image = cli.model.sample(2, generator=torch.Generator().manual_seed(0), **inputs)
    assert image.device.type == "meta"
    assert same_shape(tuple(image.shape[1:]), sample_shape(cli.datamodule))
    assert not {"channels", "image_size", "data_shape"} & set(written["model"].get("init_args") or {})


@pytest.mark.parametrize("config", sorted(PAPERS))
def test_configs_train_with_the_papers_optimizers(config, tmp_path):
    cli = main(["--config", str(ROOT / f"configs/{config}.yaml"), f"--trainer.default_root_dir={tmp_path}"], run=False)
    optimizer, lr, betas, n_critic = PAPERS[config]
    assert cli.model.n_critic == n_critic
    factories = cli.model.optimizer_factories
    for network, factory in ((cli.model.generator, factories["g"]), (cli.model.discriminator, factories["d"])):
        opt = factory(network.parameters())
        assert type(opt) is optimizer and opt.defaults["lr"] == lr
        assert betas is None or tuple(opt.defaults["betas"]) == betas


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
    assert GANMetrics not in {type(c) for c in main([*args, "--metrics=null"], run=False).trainer.callbacks}
    # Also one that trainer.callbacks lists, as configs written before the default callbacks had options did.
    listed = [*args, "--metrics=null", "--trainer.callbacks+=GANMetrics"]
    assert GANMetrics in {type(c) for c in main(listed, run=False).trainer.callbacks}
    assert GANMetrics not in {type(c) for c in main([*listed, "--metrics=false"], run=False).trainer.callbacks}


def of_class(cli, cls):
    return [c for c in cli.trainer.callbacks if isinstance(c, cls)]


def test_default_callbacks_are_set_dropped_and_added_to_without_relisting_them(tmp_path):
    base = ["--config", str(ROOT / "configs/dcgan_mnist.yaml"), f"--trainer.default_root_dir={tmp_path}"]
    cli = main([*base, "--ema.decay=0.999", "--samples.init_args.every_n_steps=7", "--predictions=null",
                "--trainer.callbacks+=LearningRateMonitor"], run=False)
    [ema], [grid], [checkpoint] = of_class(cli, GeneratorEMA), of_class(cli, SampleGrid), of_class(cli, IterationCheckpoint)
    assert ema.decay == 0.999 and grid.every_n_steps == 7 and grid.num_samples == 64  # the rest as configured
    assert checkpoint._every_n_train_steps == 2000 and of_class(cli, GANMetrics)  # from the config, kept
    assert not of_class(cli, PredictionWriter)
    assert of_class(cli, LearningRateMonitor)
    # The EMA is updated before the grids and the metrics read it (Lightning runs callbacks in list order).
    order = [type(c) for c in cli.trainer.callbacks]
    assert order.index(GeneratorEMA) < order.index(SampleGrid) < order.index(GANMetrics)


def test_a_listed_callback_takes_the_place_of_the_default_of_its_class(tmp_path):
    """A config that lists its callbacks, as all did before the default ones had options, runs as it did."""
    config = tmp_path / "listed.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"class_path": "gans.DCGAN"}, "data": {"class_path": "datamodules.MNISTDataModule"},
        "trainer": {"callbacks": [
            {"class_path": "callbacks.IterationCheckpoint", "init_args": {"every_n_train_steps": 2}},
            {"class_path": "callbacks.GeneratorEMA", "init_args": {"decay": 0.9}},
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"monitor": "metrics/fid"}},
        ]},
    }))
    cli = main(["--config", str(config), f"--trainer.default_root_dir={tmp_path}"], run=False)
    [ema], [checkpoint] = of_class(cli, GeneratorEMA), of_class(cli, IterationCheckpoint)
    assert ema.decay == 0.9 and checkpoint._every_n_train_steps == 2
    assert len(of_class(cli, SampleGrid)) == 1 and len(of_class(cli, PredictionWriter)) == 1  # defaults still on
    assert len([c for c in cli.trainer.checkpoint_callbacks if type(c) is not IterationCheckpoint]) == 1  # best FID


@pytest.mark.parametrize(
    ("model", "data", "expected"),
    [
        ("DCGAN", ["--data.image_size=16"], {"channels": 1, "image_size": 16}),
        ("SNGAN", [], {"channels": 1, "image_size": 32}),  # SNGAN's own default is 3 channels
        ("MLPGAN", ["--data.image_size=28"], {"data_shape": [1, 28, 28]}),
        ("MLPGAN", ["--data=GaussianMixtureDataModule"], {"data_shape": [2]}),
    ],
    ids=["dcgan_16", "sngan_grey", "mlpgan_digits", "mlpgan_points"],
)
def test_the_models_sample_shape_follows_the_data_module(model, data, expected, tmp_path):
    args = [f"--model={model}", "--data=MNISTDataModule", *data, f"--trainer.default_root_dir={tmp_path}"]
    cli = main(args, run=False)
    hparams = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cli.model.hparams.items()}
    assert {k: hparams.get(k) for k in ("channels", "image_size", "data_shape") if k in hparams} == expected
    assert cli.model.sample(2).shape[1:] == sample_shape(cli.datamodule)
    # A value equal to the data module's may still be given (configs and commands written before the link).
    [name] = [k for k in expected if k != "channels"]
    value = expected[name]
    same = main([*args, f"--model.init_args.{name}={value}"], run=False)
    assert _plain(same.model.hparams[name]) == value


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def test_a_data_module_that_knows_its_shape_only_from_its_files_leaves_the_model_as_configured(tmp_path):
    cli = main(["--model=DCGAN", "--data=ImageFolderDataModule", f"--data.data_dir={tmp_path}",
                "--model.init_args.channels=3", "--model.init_args.image_size=16", "--data.image_size=16",
                f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert (cli.model.hparams.channels, cli.model.hparams.image_size) == (3, 16)


def test_a_checkpoint_holds_only_the_models_own_arguments(synthetic_mnist, tmp_path):
    """Lightning records every applied link in the hyperparameters, also one to an argument the model lacks; the
    checkpoint must rebuild the model from them."""
    cli = main(["fit", "--model=MLPGAN", "--data=MNISTDataModule", "--data.image_size=8",
                f"--data.data_dir={synthetic_mnist}", "--data.batch_size=8", "--model.generator.init_args.hidden=[8]",
                "--model.discriminator.init_args.hidden=[8]", "--trainer.max_steps=1",
                "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}"])
    assert "image_size" not in cli.model.hparams and "channels" not in cli.model.hparams
    model = MLPGAN.load_from_checkpoint(next(tmp_path.rglob("last.ckpt")), weights_only=True)
    assert type(model) is MLPGAN and tuple(model.hparams.data_shape) == (1, 8, 8)


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
                "--samples.every_n_steps=1", "--data.init_args.num_samples=2048",
                "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={tmp_path}",
                "--trainer.enable_progress_bar=false"])
    assert cli.trainer.global_step == 2
    plots = sorted(tmp_path.rglob("samples_fixed_*.png"))
    assert [p.name for p in plots] == ["samples_fixed_00000001.png", "samples_fixed_00000002.png"]
    points = cli.model.sample(100)
    assert points.shape == (100, 2)


@pytest.mark.parametrize(
    ("config", "added", "twice"),
    [("stylegan2_fashion_mnist", ["--trainer.callbacks+=ADA"], "ADA"),  # the config lists ADA already
     ("dcgan_mnist", ["--trainer.callbacks+=DiffAugment", "--trainer.callbacks+=DiffAugment"], "DiffAugment")],
)
def test_a_callback_that_cannot_run_twice_listed_twice_is_one_message(config, added, twice, tmp_path, capsys):
    # A second ADA ended in Lightning's RuntimeError traceback ("more than one stateful callback"); a second
    # DiffAugment silently augmented every image twice.
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(ROOT / f"configs/{config}.yaml"), *added, "--metrics=false",
              "--data.init_args.download=false", f"--trainer.default_root_dir={tmp_path}"], run=False)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    error = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and error[0].startswith("error: trainer.callbacks=[")
    assert f"]: {twice} is listed twice" in error[0]
    # Once is fine (the ADA of the Fashion-MNIST config, one DiffAugment added to DCGAN's).
    cli = main(["--config", str(ROOT / f"configs/{config}.yaml"), *added[:-1], "--metrics=false",
                "--data.init_args.download=false", f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert sum(type(c).__name__ == twice for c in cli.trainer.callbacks) == 1
