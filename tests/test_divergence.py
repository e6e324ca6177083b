"""Non-finite losses and gradients: stop with a message that names them, or skip the step and count it; under DDP
every process takes the same decision."""

from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import TINY, quiet_trainer
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import DDPStrategy
from test_ddp import clean_distributed_env  # noqa: F401 (fixture)
from testdoubles import NaNTermOnRankOne
from torch.utils.data import DataLoader, TensorDataset

from gans import DCGAN


def parameters(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


def poisoned_loader(poison: slice, n: int = 32, batch_size: int = 8) -> DataLoader:
    images = torch.zeros(n, 1, 8, 8)
    images[poison] = float("nan")
    return DataLoader(TensorDataset(images), batch_size=batch_size)


def test_nonfinite_loss_stops_with_name_network_and_iteration(tmp_path):
    model = DCGAN(**TINY)
    d0 = parameters(model.discriminator)
    trainer = quiet_trainer(tmp_path, max_steps=5)
    with pytest.raises(FloatingPointError, match=r"train/d_loss became nan in the discriminator's step at iteration 1 "):
        trainer.fit(model, poisoned_loader(slice(8, 16)))  # the second batch poisons D(real)
    # The poisoned step was not applied: only the first iteration changed D.
    assert torch.isfinite(parameters(model.discriminator)).all() and not torch.equal(d0, parameters(model.discriminator))


class PoisonGeneratorGradient(L.Callback):
    """From iteration ``at`` on, the gradient of the generator's first weight becomes NaN (the losses stay finite)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_start(self, trainer, module):
        weight = next(module.generator.parameters())
        weight.register_hook(lambda grad: grad * float("nan") if trainer.global_step >= self.at else grad)


def test_nonfinite_gradient_stops_with_network_and_parameter(tmp_path):
    model = DCGAN(**TINY)
    trainer = quiet_trainer(tmp_path, max_steps=5, callbacks=[PoisonGeneratorGradient(at=2)])
    name = next(n for n, _ in model.named_parameters() if n.startswith("generator."))
    with pytest.raises(FloatingPointError, match=rf"the generator's gradient of train/g_loss = .* became non-finite "
                                                 rf"at iteration 2 .*first in {name}"):
        trainer.fit(model, poisoned_loader(slice(0, 0)))
    assert trainer.global_step == 2 and torch.isfinite(parameters(model.generator)).all()


def test_skip_drops_the_step_counts_it_and_goes_on(tmp_path):
    model = DCGAN(**TINY, nonfinite="skip")
    logger = CSVLogger(tmp_path, name="log")
    trainer = quiet_trainer(tmp_path, max_steps=4, logger=logger, log_every_n_steps=1)
    with pytest.warns(UserWarning, match=r"Skipped the step: train/d_loss became nan .* Steps skipped so far: 1"):
        trainer.fit(model, poisoned_loader(slice(8, 16)))  # batch 2 of 4 is poisoned
    # D's step on the poisoned batch was skipped; G's step of that iteration was applied (its loss is finite), so
    # the run still made its 4 iterations, in the 4 batches of the epoch, with all weights finite.
    assert model.skipped_steps == 1 and trainer.global_step == 4 and model.batches_seen == 4
    assert torch.isfinite(parameters(model)).all()
    rows = (Path(logger.log_dir) / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("train/skipped_steps")
    assert [float(r.split(",")[column]) for r in rows[1:] if r.split(",")[column]] == [0.0, 1.0, 1.0, 1.0]


class PoisonGradientEntries(L.Callback):
    """From iteration ``at`` on, three entries of the generator's first weight's gradient become NaN, +inf and -inf
    (the losses stay finite); records that gradient as the generator's optimizer step receives it."""

    def __init__(self, at: int) -> None:
        self.at, self.applied = at, []

    def on_train_start(self, trainer, module):
        self.weight = next(module.generator.parameters())

        def poison(grad):
            if trainer.global_step < self.at:
                return grad
            grad = grad.clone()
            grad.view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
            return grad

        self.weight.register_hook(poison)
        generator_optimizer = next(opt for opt in trainer.optimizers
                                   if any(p is self.weight for group in opt.param_groups for p in group["params"]))
        # The gradient the step used (torch's step calls Lightning's closure and hooks inside it, so only after the
        # step is it final).
        generator_optimizer.register_step_post_hook(
            lambda optimizer, args, kwargs: self.applied.append(self.weight.grad.detach().clone()))


def test_sanitize_applies_the_step_with_nan_as_0_and_inf_as_1e5(tmp_path):
    # StyleGAN2-ADA's training loop: nan_to_num(grad, nan=0, posinf=1e5, neginf=-1e5) before every step.
    model = DCGAN(**TINY, nonfinite="sanitize")
    poison = PoisonGradientEntries(at=1)
    trainer = quiet_trainer(tmp_path, max_steps=3, callbacks=[poison])
    trainer.fit(model, poisoned_loader(slice(0, 0)))
    assert trainer.global_step == 3 and model.skipped_steps == 0
    assert torch.isfinite(parameters(model)).all()
    sanitized = [g.view(-1)[:3].tolist() for g in poison.applied[1:]]
    assert sanitized == [[0.0, 1e5, -1e5]] * 2  # iterations 1 and 2, applied (the weights moved, finite)
    assert torch.isfinite(poison.applied[0]).all()


@pytest.mark.parametrize("fused", [True, False])
def test_sanitize_under_fp16_leaves_overflow_to_the_grad_scaler(fused, tmp_path):
    # The GradScaler must see an overflow to skip the step and lower its scale. Lightning leaves a fused optimizer's
    # gradients scaled until its step: sanitized before the scaler's check, the overflow was hidden, the scale stayed
    # at 65536 and the sanitized gradients (1e5 / 65536) were applied.
    from lightning.pytorch.plugins import MixedPrecision

    adam = {"class_path": "torch.optim.Adam", "init_args": {"lr": 2e-4, "betas": (0.5, 0.999), "fused": fused}}
    model = DCGAN(**TINY, nonfinite="sanitize", g_optimizer=adam, d_optimizer=adam)
    poison = PoisonGradientEntries(at=1)
    weights = []

    class Weights(L.Callback):
        def on_train_batch_end(self, trainer, module, *args):
            weights.append(parameters(module.generator))

    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0**16))
    trainer = quiet_trainer(tmp_path, max_steps=3, callbacks=[poison, Weights()], plugins=[plugin])
    trainer.fit(model, poisoned_loader(slice(0, 0)))
    assert plugin.scaler.get_scale() < 2.0**16  # the overflowing steps lowered the scale
    assert len(weights) >= 3 and torch.equal(weights[0], weights[-1])  # and were skipped: G is as after iteration 0
    assert torch.isfinite(weights[-1]).all()


def test_stylegan2_sanitizes_by_default_as_the_official_loop():
    from conftest import tiny_kwargs

    from gans import StyleGAN2

    assert StyleGAN2(**tiny_kwargs(StyleGAN2)).guard.nonfinite == "sanitize"
    assert StyleGAN2(**tiny_kwargs(StyleGAN2), nonfinite="stop").guard.nonfinite == "stop"


def test_skip_limit_stops_a_run_that_only_skips(tmp_path):
    model = DCGAN(**TINY, nonfinite="skip", skip_limit=3)
    trainer = quiet_trainer(tmp_path, max_steps=10)
    with pytest.raises(FloatingPointError, match=r"3 of the discriminator.s steps in a row were skipped \(skip_limit=3\)"):
        trainer.fit(model, poisoned_loader(slice(0, 32)))
    assert model.skipped_steps == 3


class PoisonRankOneSecondBatch(L.Callback):
    """With ``poison``, rank 1's second batch of real images turns to NaN; saves each rank's skip count and parameters
    at the end."""

    def __init__(self, out: Path, poison: bool) -> None:
        self.out, self.poison = out, poison

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.poison and trainer.global_rank == 1 and batch_idx == 1:
            batch[0].fill_(float("nan"))

    def on_train_end(self, trainer, module):
        state = {"skipped": module.skipped_steps, "params": parameters(module)}
        torch.save(state, self.out / f"skips_rank{trainer.global_rank}.pt")


@pytest.mark.parametrize("make_model,poison", [
    # rank 1's NaN images make NaN gradients, which DDP's all-reduce spreads to rank 0
    (lambda: DCGAN(**TINY, nonfinite="skip"), True),
    # a NaN term on rank 1 with finite gradients everywhere: only the processes' explicit agreement makes rank 0 skip
    (lambda: NaNTermOnRankOne(**TINY, nonfinite="skip"), False),
], ids=["nan_images", "nan_term"])
def test_ddp_processes_skip_together(make_model, poison, tmp_path, clean_distributed_env):  # noqa: F811 (fixture)
    model = make_model()
    trainer = quiet_trainer(
        tmp_path, devices=2, strategy=DDPStrategy(find_unused_parameters=True, start_method="spawn"), max_steps=4,
        callbacks=[PoisonRankOneSecondBatch(tmp_path, poison)],
    )
    trainer.fit(model, poisoned_loader(slice(0, 0), batch_size=4))
    rank0, rank1 = (torch.load(tmp_path / f"skips_rank{r}.pt") for r in (0, 1))
    assert rank0["skipped"] == rank1["skipped"] == 1  # rank 0's losses were finite, and it skipped with rank 1
    assert torch.equal(rank0["params"], rank1["params"]) and torch.isfinite(rank0["params"]).all()
