"""The base's shape for the coming families: phases as data, generator outputs as a structure, several named
networks, injected networks that load_gan rebuilds, stateful pieces in checkpoints, a model without z."""

import lightning as L
import pytest
import torch
from conftest import TINY, quiet_trainer, tiny_datamodule
from testdoubles import (
    LabelShiftDCGAN,
    PathLengthDCGAN,
    PoolingDCGAN,
    QHeadDCGAN,
    StagedDCGAN,
    TinyTranslation,
    WsGenerator,
)
from torch.utils.data import DataLoader, TensorDataset

from callbacks import IterationCheckpoint, SampleGrid
from callbacks.samples import to_grid
from gans import DCGAN, WGAN
from gans.base import load_gan
from gans.errors import ConfigurationError
from gans.latent import slerp
from gans.nets import ResNetGenerator
from gans.optim import with_default_spec
from gans.outputs import GeneratorOutput
from gans.phases import Phase, Schedule

WS_GENERATOR = {"class_path": "testdoubles.WsGenerator"}


def test_schedule_arithmetic_and_validation():
    d = Phase("D", "d", "d_loss", "d_loss")
    g = Phase("G", "g", "g_loss", "g_loss", every=3, fake="graph", iteration=True)
    d_reg = Phase("D_reg", "d", "d_reg_loss", "d_reg", every=4, lazy=True)
    g_reg = Phase("G_reg", "g", "g_reg_loss", "g_reg", every=2, clock="iteration", lazy=True)
    schedule = Schedule((d, d_reg, g, g_reg), ["g", "d"])
    batches = range(1, 13)
    assert [t for t in batches if schedule.due(d, t)] == list(batches)
    assert [t for t in batches if schedule.due(g, t)] == [3, 6, 9, 12]
    assert [t for t in batches if schedule.due(d_reg, t)] == [4, 8, 12]
    assert [t for t in batches if schedule.due(g_reg, t)] == [6, 12]  # every 2nd iteration
    assert schedule.batches_per_iteration == 3
    # c = main-phase runs per lazy run: D_reg spans 4 D steps, G_reg 2 G steps.
    assert schedule.lazy_ratios == {"d": pytest.approx(4 / 5), "g": pytest.approx(2 / 3)}
    with pytest.raises(ConfigurationError, match="exactly one must complete an iteration"):
        Schedule((d,), ["g", "d"])
    with pytest.raises(ConfigurationError, match="steps optimizer 'q'"):
        Schedule((d, g, Phase("Q", "q", "q_loss", "q_loss")), ["g", "d"])
    with pytest.raises(ConfigurationError, match="list it after 'G'"):
        Schedule((d, g_reg, g), ["g", "d"])
    with pytest.raises(ConfigurationError, match="needs a main phase"):
        Schedule((g, Phase("D_reg", "d", "d_reg_loss", "d_reg", lazy=True)), ["g", "d"])
    with pytest.raises(ConfigurationError, match="every=0"):
        Phase("D", "d", "d_loss", "d_loss", every=0)
    d_every_2 = Phase("D", "d", "d_loss", "d_loss", every=2)
    with pytest.raises(ConfigurationError, match="not a multiple of its main phase 'D'"):
        Schedule((d_every_2, Phase("D_reg", "d", "d_reg_loss", "d_reg", every=3, lazy=True), g), ["g", "d"])
    with pytest.raises(ConfigurationError, match="has a lazy phase already"):
        Schedule((d, d_reg, Phase("D_reg2", "d", "d_reg_loss", "d_reg", every=8, lazy=True), g), ["g", "d"])


def test_phase_windows_stage_a_schedule():
    """A first stage of 3 iterations of one phase alone, then D every batch and G every 2nd: the iteration count runs
    on through the switch, and the windowed phases' clocks start at their window."""
    pre = Phase("G_pre", "g", "pre_loss", "pre_loss", fake="graph", iteration=True, end=3)
    d = Phase("D", "d", "d_loss", "d_loss", start=3)
    d_reg = Phase("D_reg", "d", "d_reg_loss", "d_reg", every=2, lazy=True, start=3)
    g = Phase("G", "g", "g_loss", "g_loss", every=2, fake="graph", iteration=True, start=3)
    g_reg = Phase("G_reg", "g", "g_reg_loss", "g_reg", every=2, clock="iteration", lazy=True, start=3)
    schedule = Schedule((pre, d, d_reg, g, g_reg), ["g", "d"])
    batches = range(1, 12)
    assert [t for t in batches if schedule.due(pre, t)] == [1, 2, 3]
    assert [t for t in batches if schedule.due(d, t)] == list(range(4, 12))
    assert [t for t in batches if schedule.due(g, t)] == [5, 7, 9, 11]
    assert [t for t in batches if schedule.due(d_reg, t)] == [5, 7, 9, 11]  # every 2nd D step from the window's
    assert [t for t in batches if schedule.due(g_reg, t)] == [7, 11]  # every 2nd iteration of the window
    assert [t for t in batches if schedule.completes_iteration(t)] == [1, 2, 3, 5, 7, 9, 11]
    assert [schedule.iterations_done(t) for t in batches] == [1, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7]
    assert [schedule.iteration_of(t) for t in batches] == [0, 1, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    assert [schedule.first_batch(i) for i in range(6)] == [0, 1, 2, 3, 5, 7]
    assert schedule.iteration_phase_at(2) is pre and schedule.iteration_phase_at(3) is g
    assert schedule.iteration_phases == (pre, g) and schedule.batches_per_iteration == 2
    # Each lazy phase is corrected against the main phase of its own window (G, not the first stage's G_pre).
    assert schedule.lazy_ratios == {"d": pytest.approx(2 / 3), "g": pytest.approx(2 / 3)}
    # A phase without a window still runs from the first batch, whatever the stages.
    d_always = Phase("D", "d", "d_loss", "d_loss", every=2)
    assert [t for t in batches if Schedule((pre, d_always, g), ["g", "d"]).due(d_always, t)] == [2, 4, 6, 8, 10]
    # A window that closes: D only during iterations 3 and 4.
    d_window = Phase("D", "d", "d_loss", "d_loss", start=3, end=5)
    assert [t for t in batches if Schedule((pre, d_window, g), ["g", "d"]).due(d_window, t)] == [4, 5, 6, 7]


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        (((0, 3), (4, None)), "exactly one must complete an iteration at any time"),  # a gap
        (((0, 3), (2, None)), "exactly one must complete an iteration at any time"),  # an overlap
        (((0, 3), (3, 10)), "exactly one must complete an iteration at any time"),  # no phase after iteration 10
        (((1, None),), "exactly one must complete an iteration at any time"),  # none before iteration 1
    ],
)
def test_iteration_phases_must_follow_each_other(windows, message):
    phases = [
        Phase(f"G{i}", "g", "g_loss", "g_loss", fake="graph", iteration=True, start=start, end=end)
        for i, (start, end) in enumerate(windows)
    ]
    with pytest.raises(ConfigurationError, match=message):
        Schedule(phases, ["g"])


def test_phase_window_validation():
    with pytest.raises(ConfigurationError, match="start=-1"):
        Phase("D", "d", "d_loss", "d_loss", start=-1)
    with pytest.raises(ConfigurationError, match="end=2: phase 'D' must end after its start, iteration 2"):
        Phase("D", "d", "d_loss", "d_loss", start=2, end=2)
    pre = Phase("G_pre", "g", "pre_loss", "pre_loss", iteration=True, end=3)
    g = Phase("G", "g", "g_loss", "g_loss", iteration=True, start=3)
    g_reg = Phase("G_reg", "g", "g_reg_loss", "g_reg", clock="iteration", lazy=True, start=3)
    with pytest.raises(ConfigurationError, match="list it after 'G'"):  # the iteration phase of its own window
        Schedule((pre, g_reg, g), ["g"])
    Schedule((pre, Phase("G_reg", "g", "g_reg_loss", "g_reg", clock="iteration", lazy=True, end=3), g), ["g"])
    with pytest.raises(ConfigurationError, match="needs a main phase of optimizer 'd' in its window"):
        Schedule((pre, Phase("D", "d", "d_loss", "d_loss", end=3),
                  Phase("D_reg", "d", "d_reg_loss", "d_reg", lazy=True, start=3), g), ["g", "d"])


def staged_fit(data_dir, run_dir, max_steps, ckpt_path=None):
    L.seed_everything(0, verbose=False)
    model = StagedDCGAN(**TINY, pre_steps=2, n_critic=2)
    checkpoint = IterationCheckpoint(dirpath=run_dir / "ckpt", every_n_train_steps=1, save_last=False)
    trainer = quiet_trainer(run_dir, max_steps=max_steps, callbacks=[checkpoint], enable_checkpointing=True)
    trainer.fit(model, tiny_datamodule(data_dir), ckpt_path=ckpt_path)
    return model, trainer


def test_a_staged_schedule_trains_and_resumes_across_the_switch_exactly(synthetic_mnist, tmp_path):
    """G alone for 2 iterations, then D every batch and G every 2nd: max_steps counts the iterations of both stages,
    each network's optimizer steps only in its phases, and a run resumed from before the switch ends where the
    uninterrupted one does."""
    model, trainer = staged_fit(synthetic_mnist, tmp_path / "whole", max_steps=5)
    assert trainer.global_step == 5 and model.batches_seen == 2 + 3 * 2
    assert model.phase_batches == {"G_pre": [1, 2], "D": [3, 4, 5, 6, 7, 8], "G": [4, 6, 8]}
    g_optimizer, d_optimizer = trainer.optimizers
    assert int(g_optimizer.state[next(iter(model.generator.parameters()))]["step"]) == 2 + 3
    assert int(d_optimizer.state[next(iter(model.discriminator.parameters()))]["step"]) == 6

    staged_fit(synthetic_mnist, tmp_path / "part", max_steps=1)  # stopped in the first stage
    (path,) = (tmp_path / "part" / "ckpt").glob("*step=1*.ckpt")
    resumed, trainer = staged_fit(synthetic_mnist, tmp_path / "resumed", max_steps=5, ckpt_path=path)
    assert trainer.global_step == 5
    assert resumed.phase_batches == {"G_pre": [2], "D": [3, 4, 5, 6, 7, 8], "G": [4, 6, 8]}
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_g_reg_phase_reads_ws_runs_every_kth_iteration_and_is_corrected(synthetic_mnist, tmp_path):
    """StyleGAN2's schedule shape: a lazy G-regularisation phase every 2nd iteration, its loss reading the generator's
    ws; the generator's optimizer gets lr * 2/3 and beta ** (2/3); global_step still counts G steps only."""
    torch.manual_seed(0)
    model = PathLengthDCGAN(**{**TINY, "generator": WS_GENERATOR}, n_critic=2, g_reg_every=2)
    optimizers = {}

    class Record(L.Callback):
        def on_train_start(self, trainer, module):
            optimizers.update(zip(module.optimized_networks(), trainer.optimizers, strict=True))

    trainer = quiet_trainer(tmp_path, max_steps=4, callbacks=[Record()])
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    assert trainer.global_step == 4 and model.batches_seen == 8
    assert model.g_reg_batches == [4, 8]  # iterations 2 and 4, each the 2nd batch of its iteration
    assert {"train/g_reg", "train/pl", "train/g_loss", "train/d_loss"} <= trainer.callback_metrics.keys()
    assert float(trainer.callback_metrics["train/pl"]) > 0
    g_group, d_group = optimizers["g"].param_groups[0], optimizers["d"].param_groups[0]
    assert g_group["lr"] == pytest.approx(2e-4 * 2 / 3) and g_group["betas"] == pytest.approx((0.5 ** (2 / 3), 0.999 ** (2 / 3)))
    assert d_group["lr"] == pytest.approx(2e-4) and d_group["betas"] == (0.5, 0.999)
    # G's optimizer stepped once per iteration and once per G_reg: 4 + 2.
    assert int(optimizers["g"].state[next(iter(model.generator.parameters()))]["step"]) == 6


def test_every_discriminator_step_is_followed_by_after_d_step(synthetic_mnist, tmp_path):
    """WGAN's clipping follows the lazy D_reg step too; its gradient norm is logged under its own name."""
    torch.manual_seed(0)
    model = WGAN(**TINY, n_critic=1, r1_gamma=10.0, reg_every=2, clip_grad_norm=1e6)
    trainer = quiet_trainer(tmp_path, max_steps=2)
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    assert all(p.abs().max() <= model.clip_value for p in model.discriminator.parameters())
    assert {"train/d_reg_grad_norm", "train/d_grad_norm", "train/g_grad_norm"} <= trainer.callback_metrics.keys()


def test_a_checkpoint_from_before_lazy_phases_resumes_with_the_correction(synthetic_mnist, tmp_path):
    """A checkpoint written when lazy R1 was folded into the D loss holds D's uncorrected learning rate and betas: a run
    resumed from it trains with the D_reg phase and the corrected ones, and says so."""
    torch.manual_seed(0)
    kwargs = {**TINY, "discriminator": {"init_args": {"features": 4, "norm": None}}, "r1_gamma": 10.0, "reg_every": 4}
    trainer = quiet_trainer(tmp_path, max_steps=1)
    trainer.fit(DCGAN(**kwargs), tiny_datamodule(synthetic_mnist))
    trainer.save_checkpoint(tmp_path / "new.ckpt")
    checkpoint = torch.load(tmp_path / "new.ckpt", weights_only=True)
    checkpoint["gans"]["d_steps"] = checkpoint["gans"].pop("batches_seen")  # the old counter's name
    for group in checkpoint["optimizer_states"][1]["param_groups"]:
        group["lr"], group["betas"] = 2e-4, (0.5, 0.999)  # what the old code trained with
    torch.save(checkpoint, tmp_path / "old.ckpt")
    seen = []

    class Rates(L.Callback):
        def on_train_batch_start(self, trainer, module, *args):
            seen.append(trainer.optimizers[1].param_groups[0]["lr"])

    with pytest.warns(UserWarning, match="corrected by c/\\(c\\+1\\)"):
        quiet_trainer(tmp_path, max_steps=2, callbacks=[Rates()]).fit(
            DCGAN(**kwargs), tiny_datamodule(synthetic_mnist), ckpt_path=tmp_path / "old.ckpt"
        )
    assert seen == [pytest.approx(2e-4 * 4 / 5)]


def test_generator_outputs_reach_losses_samples_and_grids():
    torch.manual_seed(0)
    model = DCGAN(**{**TINY, "generator": WS_GENERATOR})
    output = model.sample_output(3)
    assert isinstance(output, GeneratorOutput) and output.images.shape == (3, 1, 8, 8)
    assert output.ws.shape == (3, 2, 8) and output.scales[0].shape == (3, 1, 4, 4)
    assert torch.equal(model.sample(z=torch.zeros(2, 8)), model.sample_output(z=torch.zeros(2, 8)).images)
    assert output.detach().ws.grad_fn is None
    grids = SampleGrid(num_samples=4, interpolation_rows=1, interpolation_steps=3).images(model)
    assert {"fixed", "interpolation", "scales"} <= grids.keys()
    assert grids["scales"].shape[1:] == grids["fixed"].shape[1:]  # two rows of two 8x8 images: the same grid size


def test_sample_grids_of_a_conditional_model_hold_each_rows_labels():
    """The callbacks ask the module for its inputs: an interpolation row keeps the labels of its start."""
    torch.manual_seed(0)
    model = LabelShiftDCGAN(**TINY)
    grid = SampleGrid(num_samples=4, interpolation_rows=2, interpolation_steps=3)
    grids = grid.images(model)
    assert {"fixed", "interpolation", "classes"} <= grids.keys()
    rng = torch.Generator().manual_seed(grid.seed)
    model.sample_inputs(4, generator=rng)  # the fixed grid's draw
    ends = model.sample_inputs(4, generator=rng)
    path = slerp(ends["z"][0::2], ends["z"][1::2], torch.linspace(0, 1, 3)).flatten(0, 1)
    expected = model.sample(z=path, labels=ends["labels"][0::2].repeat_interleave(3))
    torch.testing.assert_close(grids["interpolation"], to_grid(expected, 3))


def test_q_head_trains_with_the_generators_optimizer(synthetic_mnist, tmp_path):
    torch.manual_seed(0)
    model = QHeadDCGAN(**TINY)
    before = [p.detach().clone() for p in model.q_head.parameters()]
    trainer = quiet_trainer(tmp_path, max_steps=2)
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    g_params = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert all(id(p) in g_params for p in model.q_head.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, model.q_head.parameters(), strict=True))
    assert "train/q" in trainer.callback_metrics


def test_stateful_pieces_travel_with_checkpoints(synthetic_mnist, tmp_path):
    torch.manual_seed(0)
    model = PoolingDCGAN(**TINY)
    checkpoint = IterationCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_last=False)
    trainer = quiet_trainer(tmp_path, max_steps=3, callbacks=[checkpoint], enable_checkpointing=True)
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    (path,) = (tmp_path / "ckpt").glob("*.ckpt")
    loaded = load_gan(path)
    assert len(loaded.pool.images) == 3
    assert all(torch.equal(a, b) for a, b in zip(loaded.pool.images, model.pool.images, strict=True))


def test_a_swapped_network_is_configuration_that_load_gan_rebuilds(synthetic_mnist, tmp_path):
    torch.manual_seed(0)
    model = DCGAN(**{**TINY, "generator": {"class_path": "gans.nets.ResNetGenerator", "init_args": {"features": 4}}})
    assert isinstance(model.generator, ResNetGenerator)
    assert model.hparams["generator"] == {"class_path": "gans.nets.ResNetGenerator", "init_args": {"features": 4}}
    # A spec without class_path is the default network with other sizes, recorded whole.
    assert model.hparams["discriminator"]["class_path"] == "gans.nets.DCGANDiscriminator"
    checkpoint = IterationCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_last=False)
    quiet_trainer(tmp_path, max_steps=1, callbacks=[checkpoint], enable_checkpointing=True).fit(
        model, tiny_datamodule(synthetic_mnist)
    )
    loaded = load_gan(next((tmp_path / "ckpt").glob("*.ckpt")))
    assert isinstance(loaded.generator, ResNetGenerator)
    z = torch.randn(2, 8)
    torch.testing.assert_close(loaded.sample(z=z), model.sample(z=z))
    # A class or a partial from Python is recorded as a spec too.
    assert DCGAN(**{**TINY, "generator": WsGenerator}).hparams["generator"] == {
        "class_path": "testdoubles.WsGenerator", "init_args": {}
    }

    class NoSpecDefault:
        def __init__(self, generator=None) -> None:
            pass

    with pytest.raises(ConfigurationError, match="names no class_path"):
        with_default_spec(NoSpecDefault, "generator", {"init_args": {"features": 4}})


def test_translation_model_without_z_trains_and_samples(tmp_path):
    torch.manual_seed(0)
    source = torch.rand(16, 1, 8, 8) * 2 - 1
    loader = DataLoader(TensorDataset(source, source.flip(-1)), batch_size=8)
    model = TinyTranslation()
    assert model.sample_z(3).shape == (3, 0)
    trainer = quiet_trainer(tmp_path, max_steps=2)
    trainer.fit(model, loader)
    assert trainer.global_step == 2
    out = model.sample(z=model.sample_z(4), source=source[:4])
    assert out.shape == (4, 1, 8, 8) and torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.tanh(model.generator.conv(source[:4])))  # the source, translated
    # The callbacks ask the module for its inputs: the grid shows the translations of the sources it keeps.
    grids = SampleGrid(num_samples=4, nrow=4).images(model)
    assert set(grids) == {"fixed"}  # no latents to interpolate, no classes
    with torch.no_grad():
        expected = to_grid(torch.tanh(model.generator.conv(source[:4])), 4)
    torch.testing.assert_close(grids["fixed"], expected)
