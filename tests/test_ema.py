"""Generator EMA: the decay formulas, the update, the callback in training, checkpoints and sampling."""

import copy

import lightning as L
import pytest
import torch
from conftest import TINY, quiet_trainer, tiny_datamodule
from torch import nn

from callbacks import GeneratorEMA, IterationCheckpoint
from callbacks.ema import ema_beta_from_half_life, ema_update
from gans import DCGAN, WGANGP
from gans.base import load_gan
from gans.sample import sample_to_file


def test_half_life_formula_by_hand():
    # 10 kimg half-life, batch 32, no ramp-up: beta = 0.5 ** (32 / 10000).
    assert ema_beta_from_half_life(32, 10.0, 10**6, None) == pytest.approx(0.5 ** (32 / 10000), rel=1e-12)
    # Ramp-up 0.05 after 64,000 images caps the half-life at 3,200 images: beta = 0.5 ** (32 / 3200) = 0.99309...
    assert ema_beta_from_half_life(32, 10.0, 64000, 0.05) == pytest.approx(0.9930925, abs=1e-7)
    # At the very start the average is the generator itself.
    assert ema_beta_from_half_life(32, 10.0, 0, 0.05) == 0.0
    # After a half-life's worth of steps the past weighs one half.
    assert ema_beta_from_half_life(100, 10.0, 10**7, 0.05) ** 100 == pytest.approx(0.5)


def test_update_averages_parameters_and_copies_buffers():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model[1].running_mean.fill_(5.0)
    before = [p.clone() for p in ema.parameters()]
    ema_update(ema, model, beta=0.9)
    for e, b, m in zip(ema.parameters(), before, model.parameters()):
        torch.testing.assert_close(e, 0.9 * b + 0.1 * m)
    assert torch.equal(ema[1].running_mean, torch.full((2,), 5.0))  # copied, not averaged


def test_update_is_a_lerp_bit_for_bit():
    # torch's EMA step must stay the plain lerp the average was defined with (resumed runs compare bit for bit).
    model, ema = nn.Linear(5, 3), nn.Linear(5, 3)
    before = [p.detach().clone() for p in ema.parameters()]
    for beta in (0.0, 0.3, 0.999):
        expected = [e.lerp(m.detach(), 1.0 - beta) for e, m in zip(ema.parameters(), model.parameters())]
        ema_update(ema, model, beta)
        assert all(torch.equal(e, x) for e, x in zip(ema.parameters(), expected, strict=True))
    assert not torch.equal(next(ema.parameters()), before[0])


def test_bad_arguments():
    for kwargs in ({"decay": 1.0}, {"decay": -0.1}, {"half_life_kimg": 0}, {"rampup": 0}, {"start_step": -1}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            GeneratorEMA(**kwargs)


class RecordEMA(GeneratorEMA):
    """Replays each update by hand from the weights before it, to check the callback does exactly that."""

    def on_train_batch_start(self, trainer, module, *args):
        super().on_train_batch_start(trainer, module, *args)
        self.before = copy.deepcopy(module.generator_ema.state_dict())

    def on_train_batch_end(self, trainer, module, outputs, batch, *args):
        stepped = trainer.global_step != self._step_before
        beta = self.beta(batch[0].shape[0], trainer.global_step) if stepped else None
        super().on_train_batch_end(trainer, module, outputs, batch, *args)
        after = module.generator_ema.state_dict()
        if not stepped:  # discriminator-only steps leave the average alone
            assert all(torch.equal(after[k], v) for k, v in self.before.items())
            return
        g = module.generator.state_dict()
        for name, value in self.before.items():
            if value.is_floating_point() and name in dict(module.generator.named_parameters()):
                torch.testing.assert_close(after[name], beta * value + (1 - beta) * g[name])
            else:
                assert torch.equal(after[name], g[name])
        self.updates = getattr(self, "updates", 0) + 1


@pytest.mark.parametrize("cls,kwargs", [(DCGAN, {}), (WGANGP, {"n_critic": 3})], ids=["dcgan", "wgan_gp"])
def test_callback_updates_after_each_generator_step(cls, kwargs, synthetic_mnist, tmp_path):
    model = cls(**TINY, **kwargs)
    ema = RecordEMA(half_life_kimg=0.01, rampup=None)  # beta = 0.5 ** (8 / 10) = 0.574: visible in 4 steps
    trainer = quiet_trainer(tmp_path, max_steps=4, callbacks=[ema])
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    assert ema.updates == 4 and model.images_seen == 4 * 8 * model.n_critic
    # The ramp-up counts the images the generator was trained on: 4 steps of 8 before step 5, whatever n_critic.
    assert GeneratorEMA(rampup=0.05).beta(8, 5) == pytest.approx(0.5 ** (8 / (4 * 8 * 0.05)))
    assert not all(torch.equal(a, b) for a, b in zip(model.generator_ema.parameters(), model.generator.parameters()))
    assert all(not p.requires_grad for p in model.generator_ema.parameters())
    # The EMA holds only generator weights (not D's), and sample() uses it unless told otherwise.
    assert sum(p.numel() for p in model.generator_ema.parameters()) == sum(p.numel() for p in model.generator.parameters())
    z = model.sample_z(4, torch.Generator().manual_seed(0))
    model.generator_ema.eval()
    model.generator.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.sample(z=z), model.generator_ema(z).clamp(-1, 1))
        torch.testing.assert_close(model.sample(z=z, ema=False), model.generator(z).clamp(-1, 1))


def test_resume_restores_the_ema_exactly(synthetic_mnist, tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    model = DCGAN(**TINY)
    checkpoint = IterationCheckpoint(dirpath=ckpt_dir, every_n_train_steps=3, save_last=False)
    trainer = quiet_trainer(tmp_path, max_steps=3, enable_checkpointing=True, callbacks=[GeneratorEMA(), checkpoint])
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    path = next(ckpt_dir.glob("*step=3*.ckpt"))
    saved = {k: v.clone() for k, v in model.generator_ema.state_dict().items()}

    # A fresh module and callback restored from the checkpoint hold the same average and counter.
    resumed_ema = GeneratorEMA()
    restored = {}

    class Grab(L.Callback):
        def on_train_start(self, trainer, module):
            restored.update({k: v.clone() for k, v in module.generator_ema.state_dict().items()})

    fresh = DCGAN(**TINY)
    trainer = quiet_trainer(tmp_path, max_steps=5, callbacks=[resumed_ema, Grab()])
    trainer.fit(fresh, tiny_datamodule(synthetic_mnist), ckpt_path=path)
    assert restored.keys() == saved.keys()
    assert all(torch.equal(restored[k], saved[k]) for k in saved)
    assert fresh.images_seen == 5 * 8  # 3 restored + 2 new steps of 8 images: the ramp-up's counter

    # load_gan rebuilds the EMA from the checkpoint, and gans.sample uses it unless --raw.
    loaded = load_gan(path)
    assert loaded.generator_ema is not None
    assert all(torch.equal(loaded.generator_ema.state_dict()[k], saved[k]) for k in saved)
    ema_images = sample_to_file(path, 4, tmp_path / "ema.pt", seed=1)
    raw_images = sample_to_file(path, 4, tmp_path / "raw.pt", seed=1, ema=False)
    z = loaded.sample_z(4, torch.Generator().manual_seed(1))
    torch.testing.assert_close(ema_images, loaded.sample(z=z))
    torch.testing.assert_close(raw_images, loaded.sample(z=z, ema=False))
    assert not torch.equal(ema_images, raw_images)


def test_a_checkpoint_without_ema_resumes_with_the_callback(synthetic_mnist, tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    model = DCGAN(**TINY)
    checkpoint = IterationCheckpoint(dirpath=ckpt_dir, every_n_train_steps=2, save_last=False)
    quiet_trainer(tmp_path, max_steps=2, enable_checkpointing=True, callbacks=[checkpoint]).fit(
        model, tiny_datamodule(synthetic_mnist)
    )
    path = next(ckpt_dir.glob("*step=2*.ckpt"))
    starts = {}

    class Grab(L.Callback):
        def on_train_start(self, trainer, module):
            starts.update(ema=copy.deepcopy(module.generator_ema.state_dict()), g=copy.deepcopy(module.generator.state_dict()))

    fresh = DCGAN(**TINY)
    quiet_trainer(tmp_path, max_steps=3, callbacks=[GeneratorEMA(), Grab()]).fit(
        fresh, tiny_datamodule(synthetic_mnist), ckpt_path=path
    )
    assert all(torch.equal(starts["ema"][k], starts["g"][k]) for k in starts["g"])  # the average starts at G
