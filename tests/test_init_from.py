"""callbacks.InitFrom: a run that starts from a trained model's weights (the official ``--resume`` for transfer
learning), with fresh optimizers and counters; a resume (``ckpt_path``) keeps its own weights."""

import logging
import os
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from conftest import TINY, quiet_trainer, tiny_datamodule

from callbacks import GeneratorEMA, InitFrom
from gans import DCGAN, StyleGAN2, load_gan
from gans.cli import main
from gans.errors import ConfigurationError
from gans.export import export_generator

SNAPSHOT = Path(os.environ.get("GANS_DATA_DIR", "/nonexistent")) / "stylegan2-official" / "sg2_32.pkl"


class StateAtStart(L.Callback):
    """The module's tensors when fitting starts, after the callbacks before it in the list."""

    def on_fit_start(self, trainer, module):
        self.state = {name: tensor.clone() for name, tensor in module.state_dict().items()}


def trained(root: Path, data: Path, ema: bool = True) -> Path:
    """A DCGAN trained 2 iterations; the path of its last checkpoint."""
    callbacks = [GeneratorEMA(half_life_kimg=0.01)] if ema else []
    trainer = quiet_trainer(root, max_steps=2, enable_checkpointing=True, callbacks=callbacks)
    trainer.fit(DCGAN(**TINY), tiny_datamodule(data))
    return Path(trainer.checkpoint_callback.last_model_path or trainer.checkpoint_callback.best_model_path)


def test_a_run_starts_from_the_weights_with_fresh_optimizers_and_counters(synthetic_mnist, tmp_path):
    source = trained(tmp_path / "source", synthetic_mnist)
    expected = load_gan(source).state_dict()
    torch.manual_seed(1)  # other initial weights than the source's
    model, start = DCGAN(**TINY), StateAtStart()
    trainer = quiet_trainer(tmp_path / "fine", max_steps=1, callbacks=[GeneratorEMA(half_life_kimg=0.01),
                                                                     InitFrom(source), start])
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    assert set(start.state) == set(expected)
    assert any(name.startswith("generator_ema.") for name in start.state)
    for name, tensor in expected.items():
        assert torch.equal(start.state[name], tensor), name
    # A new run: its own optimizer state and counters (one step here, not the source's two plus one).
    assert trainer.global_step == 1 and model.images_seen == 8
    assert all(state["step"] == 1 for opt in trainer.optimizers for state in opt.state_dict()["state"].values())


def test_the_ema_starts_as_the_generator_when_the_source_has_none(synthetic_mnist, tmp_path):
    source = trained(tmp_path / "source", synthetic_mnist, ema=False)
    generator = load_gan(source).generator.state_dict()
    model = DCGAN(**TINY)
    model.attach_ema()
    InitFrom(source).on_fit_start(SimpleNamespace(ckpt_path=None), model)
    for name, tensor in generator.items():
        assert torch.equal(model.generator_ema.state_dict()[name], tensor), name
        assert torch.equal(model.generator.state_dict()[name], tensor), name
    # A module without an EMA generator takes the rest and ignores the source's EMA.
    with_ema = trained(tmp_path / "with_ema", synthetic_mnist)
    plain = DCGAN(**TINY)
    InitFrom(with_ema).on_fit_start(SimpleNamespace(ckpt_path=None), plain)
    assert plain.generator_ema is None
    for name, tensor in load_gan(with_ema).discriminator.state_dict().items():
        assert torch.equal(plain.discriminator.state_dict()[name], tensor), name


def test_a_resume_keeps_its_own_weights(synthetic_mnist, tmp_path):
    first = trained(tmp_path / "first", synthetic_mnist)
    other = trained(tmp_path / "other", synthetic_mnist)
    start = StateAtStart()
    trainer = quiet_trainer(tmp_path / "first", max_steps=3, callbacks=[GeneratorEMA(half_life_kimg=0.01),
                                                                      InitFrom(other), start])
    trainer.fit(DCGAN(**TINY), tiny_datamodule(synthetic_mnist), ckpt_path=first)
    resumed = load_gan(first).state_dict()
    for name, tensor in resumed.items():
        assert torch.equal(start.state[name], tensor), name
    assert trainer.global_step == 3  # continued from the checkpoint's 2 iterations



def test_a_second_fit_continues_from_the_first(synthetic_mnist, tmp_path):
    source = trained(tmp_path / "source", synthetic_mnist)
    model, init = DCGAN(**TINY), InitFrom(source)
    quiet_trainer(tmp_path / "a", max_steps=1, callbacks=[init]).fit(model, tiny_datamodule(synthetic_mnist))
    after_first = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    start = StateAtStart()
    quiet_trainer(tmp_path / "b", max_steps=1, callbacks=[init, start]).fit(model, tiny_datamodule(synthetic_mnist))
    for name, tensor in after_first.items():
        assert torch.equal(start.state[name], tensor), name


def test_files_that_do_not_fit_the_module_are_refused_naming_the_tensor(synthetic_mnist, tmp_path):
    with pytest.raises(ConfigurationError, match=r"^InitFrom\(path='nowhere.ckpt'\): no such file"):
        InitFrom("nowhere.ckpt")
    source = trained(tmp_path / "source", synthetic_mnist)
    wider = DCGAN(**{**TINY, "generator": {"init_args": {"features": 8}}})
    with pytest.raises(ConfigurationError, match=r"generator\.\S+ is \(.*\) in the file but \(.*\) in the module"):
        InitFrom(source).on_fit_start(SimpleNamespace(ckpt_path=None), wider)
    # An exported generator has no discriminator: refused unless strict is off, which copies the generator alone.
    exported = tmp_path / "g.safetensors"
    export_generator(load_gan(source), exported)
    model = DCGAN(**TINY)
    discriminator = {name: t.clone() for name, t in model.discriminator.state_dict().items()}
    with pytest.raises(ConfigurationError, match=r"the file lacks \d+ of the module's \d+ tensors \(first: discrim"):
        InitFrom(exported).on_fit_start(SimpleNamespace(ckpt_path=None), model)
    InitFrom(exported, strict=False).on_fit_start(SimpleNamespace(ckpt_path=None), model)
    for name, tensor in load_gan(source).generator_ema.state_dict().items():  # what export writes by default
        assert torch.equal(model.generator.state_dict()[name], tensor), name
    for name, tensor in discriminator.items():
        assert torch.equal(model.discriminator.state_dict()[name], tensor), name


def test_from_the_command_line(synthetic_mnist, tmp_path, capsys, caplog):
    source = trained(tmp_path / "source", synthetic_mnist)
    args = ["fit", "--config", "configs/dcgan_mnist.yaml", "--model.init_args.image_size=8",
            "--model.init_args.latent_dim=8",
            "--model.init_args.generator.init_args.features=4", "--model.init_args.discriminator.init_args.features=4",
            "--trainer.enable_progress_bar=false", "--trainer.max_steps=1", "--metrics=false",
            "--data.init_args.image_size=8", "--data.init_args.batch_size=8", "--data.init_args.download=false",
            f"--data.init_args.data_dir={synthetic_mnist}", f"--trainer.default_root_dir={tmp_path / 'cli'}",
            "--trainer.callbacks+=InitFrom"]
    caplog.set_level(logging.INFO)
    cli = main([*args, f"--trainer.callbacks.path={source}"])
    assert any(isinstance(c, InitFrom) and c.path == source for c in cli.trainer.callbacks)
    assert cli.trainer.global_step == 1
    tensors = len(cli.model.state_dict())
    assert f"InitFrom: {tensors} tensors from {source}" in caplog.text
    with pytest.raises(SystemExit) as stopped:
        main([*args, "--trainer.callbacks.path=nowhere.pkl"])
    assert stopped.value.code == 2
    assert "InitFrom(path='nowhere.pkl'): no such file" in capsys.readouterr().err


@pytest.mark.skipif(not SNAPSHOT.is_file(), reason="the official snapshot is in GANS_DATA_DIR (../shared/data)")
def test_an_official_snapshot_initialises_g_d_and_g_ema():
    official = load_gan(SNAPSHOT)
    model = StyleGAN2(**official.hparams)
    model.attach_ema()
    InitFrom(SNAPSHOT).on_fit_start(SimpleNamespace(ckpt_path=None), model)
    for name, tensor in official.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    z = torch.randn(2, model.latent_dim)
    torch.testing.assert_close(model.eval().sample(z=z), official.sample(z=z))


def test_a_growing_module_keeps_its_growth_stage(synthetic_mnist, tmp_path):
    # ProgressiveGrowing sets the stage of the run when fitting starts; an InitFrom listed after it copied the source's
    # growth buffers (fully grown), and the module ran at the source's resolution until the first batch.
    from gans import StyleGAN

    tiny = {"latent_dim": 8, "channels": 1, "image_size": 16, "generator": {"init_args": {"fmap_max": 8,
            "mapping_layers": 2}}, "discriminator": {"init_args": {"fmap_max": 8}}}
    source = StyleGAN(**tiny)  # fully grown: 16x16
    source.attach_ema()
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(source)
    path = tmp_path / "source.ckpt"
    trainer.save_checkpoint(path)
    torch.manual_seed(1)
    model = StyleGAN(**tiny)
    model.attach_ema()
    model.set_growth(8, 0.25)  # as ProgressiveGrowing's on_fit_start, before this callback's
    InitFrom(path).on_fit_start(SimpleNamespace(ckpt_path=None), model)
    for network in (model.generator.synthesis, model.generator_ema.synthesis, model.discriminator):
        assert (network.resolution, network.alpha) == (8, 0.25)
    expected = source.state_dict()
    for name, tensor in model.state_dict().items():
        if not name.endswith(("level_state", "alpha_state")):
            assert torch.equal(tensor, expected[name]), name
