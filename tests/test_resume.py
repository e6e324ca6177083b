"""A run stopped at a checkpoint and resumed reaches the same iteration count, with optimizer state restored."""

import lightning as L
import torch
from conftest import TINY, quiet_trainer, tiny_datamodule

from callbacks import IterationCheckpoint
from gans import WGANGP


class OptimizerStateAtStart(L.Callback):
    """Records the step count and first moment of each optimizer when (re)starting training."""

    def on_train_start(self, trainer, module):
        self.state = []
        for opt, net in zip(trainer.optimizers, (module.generator, module.discriminator)):
            param_state = opt.state.get(next(iter(net.parameters())), {})
            self.state.append((int(param_state.get("step", 0)), param_state.get("exp_avg", torch.empty(0)).clone()))
        self.d_steps = module.d_steps


def run(tmp_path, max_steps, ckpt_path=None):
    model = WGANGP(**TINY, n_critic=2)
    start = OptimizerStateAtStart()
    checkpoint = IterationCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2)
    trainer = quiet_trainer(tmp_path, max_steps=max_steps, enable_checkpointing=True, callbacks=[start, checkpoint])
    trainer.fit(model, tiny_datamodule(tmp_path), ckpt_path=ckpt_path)
    return trainer, model, start


def test_resume_from_checkpoint(synthetic_mnist):
    tmp_path = synthetic_mnist
    trainer, model, _ = run(tmp_path, max_steps=4)
    assert trainer.global_step == 4 and model.d_steps == 8
    mid = tmp_path / "ckpt" / "epoch=0-step=2.ckpt"
    saved = torch.load(mid, weights_only=True)
    assert saved["global_step"] == 2 and saved["gans"]["d_steps"] == 4

    trainer, model, start = run(tmp_path, max_steps=4, ckpt_path=mid)
    # Counters and optimizer state come back as saved...
    assert start.d_steps == 4
    assert [steps for steps, _ in start.state] == [2, 4]  # G took 2 steps, D 2 x n_critic
    for (_, exp_avg), saved_opt in zip(start.state, saved["optimizer_states"]):
        assert torch.equal(exp_avg, saved_opt["state"][0]["exp_avg"])
    # ...and the run finishes the same number of iterations as the uninterrupted one.
    assert trainer.global_step == 4 and model.d_steps == 8
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_resume_last_continues_training(synthetic_mnist):
    tmp_path = synthetic_mnist
    run(tmp_path, max_steps=2)
    trainer, model, start = run(tmp_path, max_steps=5, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert start.d_steps == 4 and [s for s, _ in start.state] == [2, 4]
    assert trainer.global_step == 5 and model.d_steps == 10
