"""What the command line says when a user's configuration is wrong, and what its --help says.

A refused value ends the run with exit status 2 and one ``error:`` line naming the argument (as ``--data.init_args.
batch_size``), the value and what is accepted, never a traceback; refusals at instantiation and during ``fit``'s
setup alike. Most cases run ``main`` in this process (``SystemExit`` with status 2 means no exception escaped);
one runs ``train.py`` in a subprocess to check the real exit status and stderr.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import callbacks.metrics as metrics_module
import gans
from gans.base import GAN
from gans.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--model.init_args.image_size=8", "--model.init_args.generator.init_args.features=4",
    "--model.init_args.discriminator.init_args.features=4",
    "--trainer.enable_progress_bar=false", "--trainer.max_steps=1",
]
TINY_MNIST = [
    *TINY, "--data.init_args.image_size=8", "--data.init_args.batch_size=8", "--data.init_args.download=false",
]
#: Lightning's own --ckpt_path text, which describes its "last", not the newest complete checkpoint we resume from.
LIGHTNING_LAST = "from the previous ``trainer.fit`` call"


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def refusal(args: list[str], capsys: pytest.CaptureFixture) -> str:
    """Runs the CLI in-process; returns its one ``error:`` line after checking exit status 2 and no traceback."""
    with pytest.raises(SystemExit) as stopped:
        main(args)
    stderr = capsys.readouterr().err
    assert stopped.value.code == 2, stderr
    return one_error_line(stderr)


def refusal_in_shell(args: list[str]) -> str:
    """Runs ``python train.py`` as a user does; returns its one ``error:`` line after checking exit status 2 and no
    traceback."""
    result = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    return one_error_line(result.stderr)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model.loss=hinj"], ["--model.init_args.loss='hinj'", "hinge", "least_squares", "non_saturating"]),
        (["--data.batch_size=0"], ["--data.init_args.batch_size=0", "expected an integer >= 1"]),
        (["--model.n_critic=0"], ["--model.init_args.n_critic=0", "at least 1"]),
        (["--model.g_scheduler=torch.optim.lr_scheduler.OneCycleLR", "--model.g_scheduler.max_lr=0.01"],
         ["--model.init_args.g_scheduler=OneCycleLR cannot be built", "total_steps"]),
        (["--model.g_scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau"],
         ["--model.init_args.g_scheduler=ReduceLROnPlateau needs scheduler_monitor", "metrics/fid"]),
    ],
    ids=["loss", "batch_size", "n_critic", "one_cycle", "plateau"],
)
def test_value_refused_by_a_constructor(args, expected, tmp_path):
    line = refusal_in_shell(["fit", "--model=DCGAN", "--data=MNISTDataModule", *args,
                             f"--trainer.default_root_dir={tmp_path}"])
    assert all(text in line for text in expected), line


def test_unknown_variant_lists_the_known_ones_and_suggests_the_closest(capsys):
    line = refusal_in_shell(["fit", "--model=DCGANN", "--data=MNISTDataModule"])
    variants = [n for n in gans.__all__ if isinstance(getattr(gans, n), type) and issubclass(getattr(gans, n), GAN)]
    assert "--model='DCGANN'" in line and "did you mean DCGAN?" in line
    assert all(name in line for name in variants if name != "GAN"), line
    line = refusal(["fit", "--model=DCGAN", "--data=MNISTDataModul"], capsys)
    assert "--data='MNISTDataModul'" in line and "did you mean MNISTDataModule?" in line
    assert "PairedImageDataModule" in line


def test_missing_inception_weights_name_the_callback_and_the_way_out(synthetic_mnist, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(metrics_module.torch.hub, "download_url_to_file", offline)
    line = refusal(["fit", "--config", str(ROOT / "configs/dcgan_mnist.yaml"), *TINY_MNIST,
                    f"--data.init_args.data_dir={synthetic_mnist}", f"--trainer.default_root_dir={tmp_path}"], capsys)
    assert "--metrics.init_args.feature_extractor_args" in line
    assert "Inception weights" in line and "--metrics=false" in line and "no network" in line


def test_a_model_shape_that_differs_from_the_data_modules_is_refused(capsys, tmp_path):
    """The model's image size and channels follow the data module: a different one given for the model would be
    replaced without a word, so it is refused instead."""
    line = refusal(["fit", "--model=DCGAN", "--data=MNISTDataModule", "--data.image_size=16",
                    "--model.init_args.image_size=32", f"--trainer.default_root_dir={tmp_path}"], capsys)
    assert line.startswith("error: --model.init_args.image_size=32 differs from the data module's 16"), line
    assert "MNISTDataModule makes samples of shape [1, 16, 16]" in line and "leave them out" in line
    line = refusal(["fit", "--model=MLPGAN", "--data=GaussianMixtureDataModule", "--model.data_shape=[1, 28, 28]",
                    f"--trainer.default_root_dir={tmp_path}"], capsys)
    assert "--model.init_args.data_shape=[1, 28, 28] differs from the data module's [2]" in line, line
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize(
    "strategy",
    [[], ["--trainer.strategy=gan_ddp_spawn", "--trainer.devices=2", "--trainer.accelerator=cpu"]],
    ids=["one_process", "gan_ddp_spawn"],
)
def test_paired_data_for_an_unconditional_variant_is_refused_before_training(strategy, tmp_path):
    """Also in processes of a spawning strategy, whose errors reach the command as text."""
    folder = tmp_path / "pairs" / "train"
    folder.mkdir(parents=True)
    for i in range(4):  # A | B side by side
        Image.new("RGB", (16, 8), (255, 0, 0)).save(folder / f"{i}.png")
    line = refusal_in_shell(["fit", "--model=DCGAN", "--data=PairedImageDataModule", *TINY, *strategy,
                             "--model.init_args.channels=3", f"--data.data_dir={tmp_path / 'pairs'}",
                             "--data.load_size=8", "--data.crop_size=8", "--data.batch_size=2",
                             f"--trainer.default_root_dir={tmp_path}"])
    assert "DCGAN cannot use the batches of PairedImageDataModule" in line and "'paired'" in line
    if not strategy:  # the spawned process's error names no option: only its text reaches the command
        assert "--data=PairedImageDataModule" in line
    assert not list(tmp_path.rglob("*.ckpt"))  # not a single step


def test_spectral_norm_variant_trains_under_gan_ddp_spawn_from_the_shell(synthetic_mnist, tmp_path):
    result = subprocess.run(
        [sys.executable, "train.py", "fit", "--config", "configs/sngan_fashion_mnist.yaml", *TINY_MNIST,
         "--metrics=false", "--data.init_args.dataset=mnist", f"--data.init_args.data_dir={synthetic_mnist}",
         "--trainer.strategy=gan_ddp_spawn", "--trainer.devices=2", "--trainer.accelerator=cpu",
         "--trainer.max_steps=2", "--model.init_args.n_critic=1", f"--trainer.default_root_dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "`Trainer.fit` stopped: `max_steps=2` reached." in result.stderr + result.stdout


def test_wrong_data_dir_from_the_shell(tmp_path):
    """A data folder without the files is found only by fit's setup: still one line and exit status 2."""
    nowhere = tmp_path / "nowhere"
    command = [sys.executable, "train.py", "fit", "--config", "configs/dcgan_mnist.yaml", *TINY_MNIST,
               "--metrics=false", f"--data.init_args.data_dir={nowhere}", f"--trainer.default_root_dir={tmp_path}"]
    line = refusal_in_shell(command[2:])
    assert f"--data.init_args.data_dir={nowhere}" in line and "looked for train-images-idx3-ubyte" in line


def test_help_says_what_the_tool_is_and_how_to_start(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    out = capsys.readouterr().out
    assert stopped.value.code == 0
    assert "GANs" in out and "Lightning Trainer command line tool" not in out
    for command in ("gans fit --config configs/dcgan_mnist.yaml", "--ckpt_path last", "python -m gans.sample"):
        assert command in out
    variants = [n for n in gans.__all__ if isinstance(getattr(gans, n), type) and issubclass(getattr(gans, n), GAN)]
    assert all(name in out for name in variants if name != "GAN")
    assert all(f"{config.stem}" in out for config in ROOT.glob("configs/*.yaml"))
    # Each subcommand's line is a whole sentence (Lightning's for test and predict were cut mid-sentence).
    listing = " ".join(out.split("Available subcommands:")[1].split("first steps")[0].split())
    descriptions = re.split(r"\b(?:fit|validate|test|predict) (?=[A-Z])", listing)[1:]
    assert len(descriptions) == 4 and all(text.strip().endswith(".") for text in descriptions), listing
    for subcommand in ("fit", "validate", "test", "predict"):
        with pytest.raises(SystemExit):
            main([subcommand, "--help"])
        out = capsys.readouterr().out
        assert "newest complete checkpoint" in " ".join(out.split()) and LIGHTNING_LAST not in " ".join(out.split())
        for cut in ("make sure you never run on your", "Useful to", "The main advantage is"):  # docstrings, cut
            assert cut not in out
