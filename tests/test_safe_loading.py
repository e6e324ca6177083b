"""Checkpoints load without arbitrary unpickling unless the user says the file is trusted; generators export to
safetensors and load from it without any pickle."""

import json
import struct
from pathlib import Path

import pytest
import torch
from conftest import TINY, quiet_trainer, tiny_datamodule

from callbacks import GeneratorEMA
from gans import DCGAN
from gans.base import load_gan
from gans.export import export_generator
from gans.export import main as export_main
from gans.sample import main as sample_main


class Opaque:
    """Not a tensor nor a plain container: only full unpickling restores it."""

    def __init__(self, value: int) -> None:
        self.value = value


@pytest.fixture
def trained(synthetic_mnist, tmp_path):
    model = DCGAN(**TINY)
    trainer = quiet_trainer(tmp_path, max_steps=3, callbacks=[GeneratorEMA(half_life_kimg=0.01)])
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return path, model


def test_a_checkpoint_that_needs_unpickling_is_refused_without_the_flag(trained, tmp_path, capsys):
    path, model = trained
    unsafe = tmp_path / "unsafe.ckpt"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["extra"] = Opaque(3)
    torch.save(checkpoint, unsafe)

    with pytest.raises(ValueError, match=r"only arbitrary unpickling can load.*--unsafe-load"):
        load_gan(unsafe)
    with pytest.raises(SystemExit) as exit_info:
        sample_main(["--ckpt", str(unsafe), "--num", "2", "--out", str(tmp_path / "x.pt")])
    assert exit_info.value.code == 2 and "--unsafe-load" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()

    loaded = load_gan(unsafe, unsafe_load=True)  # the user vouches for the file
    z = torch.randn(4, TINY["latent_dim"])
    assert torch.equal(loaded.sample(z=z), model.sample(z=z))
    sample_main(["--ckpt", str(unsafe), "--num", "2", "--out", str(tmp_path / "x.pt"), "--unsafe-load"])
    assert torch.load(tmp_path / "x.pt").shape == (2, 1, 8, 8)


def test_export_to_safetensors_and_sample_from_it(trained, tmp_path, capsys):
    path, model = trained
    out = tmp_path / "generator.safetensors"
    export_main(["--ckpt", str(path), "--out", str(out)])
    assert "wrote the EMA generator" in capsys.readouterr().out
    # safetensors: an 8-byte header length, a JSON header, raw tensor bytes; nothing to unpickle.
    header_size = struct.unpack("<Q", out.read_bytes()[:8])[0]
    header = json.loads(out.read_bytes()[8 : 8 + header_size])
    assert header["__metadata__"]["class_path"] == "gans.dcgan.DCGAN"
    assert header["__metadata__"]["network"] == "generator_ema"

    exported = load_gan(out)
    z = torch.randn(5, TINY["latent_dim"])
    assert type(exported) is DCGAN and exported.generator_ema is None
    assert torch.equal(exported.sample(z=z), model.sample(z=z))  # the EMA generator's images
    raw = load_gan(export_generator(model, tmp_path / "raw.safetensors", ema=False))
    assert torch.equal(raw.sample(z=z), model.sample(z=z, ema=False))

    sample_main(["--ckpt", str(out), "--num", "6", "--out", str(tmp_path / "s.pt"), "--seed", "1"])
    sample_main(["--ckpt", str(path), "--num", "6", "--out", str(tmp_path / "c.pt"), "--seed", "1"])
    assert torch.equal(torch.load(tmp_path / "s.pt"), torch.load(tmp_path / "c.pt"))


def test_export_bad_input(trained, tmp_path, capsys):
    path, _ = trained
    with pytest.raises(SystemExit):
        export_main(["--ckpt", str(path), "--out", str(tmp_path / "g.pt")])
    assert "expected a .safetensors file" in capsys.readouterr().err
    not_exported = tmp_path / "other.safetensors"
    not_exported.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(ValueError, match="not a generator exported by gans.export"):
        load_gan(not_exported)


LEGACY = Path(__file__).parent / "data" / "legacy_5ebb08f"


@pytest.mark.parametrize("name", ["DCGAN", "WGANGP", "MLPGAN", "BEGAN", "SNGAN"])
def test_checkpoints_of_the_flat_network_arguments_still_load(name):
    """Checkpoints written by commit 5ebb08f, when the networks' sizes were flat arguments of the variant
    (``g_features``, ``d_norm``, ``g_hidden``, BEGAN's ``features``...): they load, their hyperparameters now name the
    networks, and they give the samples the old code gave for the same latents."""
    model = load_gan(LEGACY / f"{name}.ckpt")
    assert type(model).__name__ == name
    assert {"generator", "discriminator"} <= model.hparams.keys() and "g_features" not in model.hparams
    expected = torch.load(LEGACY / "samples.pt", weights_only=True)[name]
    z = model.sample_z(4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.sample(z=z), expected, rtol=0, atol=1e-6)


def test_generators_exported_with_the_flat_network_arguments_still_load():
    model = load_gan(LEGACY / "DCGAN_generator.safetensors")
    expected = torch.load(LEGACY / "samples.pt", weights_only=True)["DCGAN"]
    torch.testing.assert_close(model.sample(z=model.sample_z(4, torch.Generator().manual_seed(0))), expected)
