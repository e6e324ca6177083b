"""ProGAN and progressive growing: the networks' fade-in, the schedule, training through every resolution, resume
and DDP exactness, the optimizers' state as networks grow, and the callbacks that follow the resolution."""

from itertools import pairwise
from typing import ClassVar

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import quiet_trainer, tiny_datamodule
from test_ddp import clean_distributed_env  # noqa: F401 (fixture)
from test_gan_ddp import SaveState
from test_resume import MemoryLogger

from callbacks import GANMetrics, GeneratorEMA, GrowthSchedule, IterationCheckpoint, ProgressiveGrowing, SampleGrid
from datamodules import MNISTDataModule
from gans import ProGAN, load_gan
from gans.errors import ConfigurationError
from gans.export import export_generator, load_exported
from gans.losses import drift_penalty
from gans.nets import EqualizedConv2d, EqualizedLinear, PixelNorm, ProGANDiscriminator, ProGANGenerator
from gans.nets.progan import progan_channels
from gans.progan import fade_reals

TINY_PROGAN = {
    "latent_dim": 8, "channels": 1, "image_size": 32,
    "generator": {"init_args": {"fmap_max": 8}}, "discriminator": {"init_args": {"fmap_max": 8}},
}


def test_equalized_layers_have_unit_output_variance_at_init():
    """Section 4.1: N(0, 1) weights scaled at run time by gain / sqrt(fan_in): unit-variance inputs give outputs of
    variance gain^2 (1 for gain 1) whatever the fan-in, and the parameters themselves stay N(0, 1)."""
    torch.manual_seed(0)
    for fan_in in (64, 512):
        linear = EqualizedLinear(fan_in, 256, gain=1.0)
        assert linear(torch.randn(4096, fan_in)).var().item() == pytest.approx(1.0, rel=0.05)
        assert linear.weight.std().item() == pytest.approx(1.0, rel=0.05)
    conv = EqualizedConv2d(128, 64, 3, gain=1.0)
    out = conv(torch.randn(32, 128, 16, 16))[:, :, 1:-1, 1:-1]  # away from the zero padding
    assert out.var().item() == pytest.approx(1.0, rel=0.05)
    assert EqualizedConv2d(128, 64, 3)(torch.randn(32, 128, 8, 8))[:, :, 1:-1, 1:-1].var().item() == pytest.approx(
        2.0, rel=0.05)  # the default He gain sqrt(2), for a LeakyReLU after it
    # The gain is applied in the forward pass, so the gradient of the stored weight is scaled by it too.
    layer = EqualizedLinear(100, 1, bias=False)
    layer(torch.ones(1, 100)).sum().backward()
    torch.testing.assert_close(layer.weight.grad, torch.full((1, 100), 0.1))


def test_pixel_norm_gives_unit_mean_square_per_pixel():
    x = torch.randn(2, 16, 3, 3) * 7
    assert torch.allclose(PixelNorm()(x).square().mean(dim=1), torch.ones(2, 3, 3), atol=1e-5)


def test_channel_widths_and_parameter_counts_are_the_papers():
    """Table 2: 512 feature maps up to 32x32, then 256, 128, 64, 32, 16; 23.1M parameters in each network."""
    assert [progan_channels(2**k) for k in range(2, 11)] == [512, 512, 512, 512, 256, 128, 64, 32, 16]
    for network in (ProGANGenerator(512, 3, 1024), ProGANDiscriminator(3, 1024)):
        assert round(sum(p.numel() for p in network.parameters()) / 1e5) == 231


def test_a_new_block_at_alpha_zero_computes_the_previous_resolution():
    """Figure 2: at alpha 0 G's output is exactly the previous resolution's upsampled, and D's score of an image is
    exactly its score of the image's 2x2 mean at the previous resolution; in between, the blend."""
    torch.manual_seed(0)
    g, d = ProGANGenerator(8, 3, 32, fmap_max=16), ProGANDiscriminator(3, 32, fmap_max=16, mbstd_group_size=2)
    z, image = torch.randn(4, 8), torch.randn(4, 3, 16, 16)
    for previous, resolution in ((4, 8), (8, 16)):
        g.grow(previous, 1.0)
        old = F.interpolate(g(z), scale_factor=2, mode="nearest")
        g.grow(resolution, 0.0)
        assert torch.equal(g(z), old)
        g.grow(resolution, 1.0)
        new = g(z)
        g.grow(resolution, 0.25)
        torch.testing.assert_close(g(z), torch.lerp(old, new, 0.25))
        x = F.avg_pool2d(image, 16 // resolution)  # the image at the new resolution
        d.grow(previous, 1.0)
        old_score = d(F.avg_pool2d(x, 2))
        d.grow(resolution, 0.0)
        assert torch.equal(d(x), old_score)
    with pytest.raises(ValueError, match="runs at 16x16"):
        d(torch.randn(4, 3, 32, 32))
    with pytest.raises(ConfigurationError, match="resolution=12"):
        g.grow(12)


def test_real_images_fade_like_the_fakes():
    real = torch.randn(2, 1, 16, 16)
    half = F.avg_pool2d(real, 2)
    torch.testing.assert_close(fade_reals(real, 8, 1.0), half)
    assert torch.equal(fade_reals(real, 8, 0.0), F.interpolate(F.avg_pool2d(half, 2), scale_factor=2))
    torch.testing.assert_close(fade_reals(real, 16, 0.5), 0.5 * real + 0.5 * F.interpolate(half, scale_factor=2))
    assert torch.equal(fade_reals(real, 4, 0.3), F.avg_pool2d(real, 4))  # the first resolution has no fade


def test_drift_penalty():
    assert drift_penalty(torch.tensor([1.0, -2.0, 3.0])).item() == pytest.approx(14 / 3)


@pytest.mark.parametrize(
    ("images", "expected"),
    [(0, (4, 1.0, "stabilize")), (99, (4, 1.0, "stabilize")), (100, (8, 0.0, "fade")), (150, (8, 0.5, "fade")),
     (199, (8, 0.99, "fade")), (200, (8, 1.0, "stabilize")), (300, (16, 0.0, "fade")), (375, (16, 0.75, "fade")),
     (400, (16, 1.0, "stabilize")), (10**9, (16, 1.0, "stabilize"))],
)
def test_alpha_follows_the_schedule(images, expected):
    schedule = GrowthSchedule((4, 8, 16), fade_images=100, stabilize_images=100)
    state = schedule.at(images)
    assert (state.resolution, state.alpha, state.phase) == pytest.approx(expected)
    assert schedule.images_to_final == 400


class Growth(L.Callback):
    """Records (images before the batch, resolution, alpha) of every training batch, and the Adam state's steps."""

    def __init__(self):
        self.states, self.adam_steps, self.lrs = [], [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.states.append((module.images_seen, module.resolution, module.alpha, module.generator_ema.resolution
                            if module.generator_ema is not None else None))

    def on_train_batch_end(self, trainer, module, *args):
        g_optimizer = trainer.optimizers[0]
        self.lrs.append([opt.param_groups[0]["lr"] for opt in trainer.optimizers])
        self.adam_steps.append({name: int(g_optimizer.state[p]["step"]) for name, p in module.generator.named_parameters()
                                if p in g_optimizer.state})


def data(data_dir):
    return MNISTDataModule(data_dir=str(data_dir), batch_size=4, image_size=32)


def grow(data_dir, run_dir, max_steps, ckpt_path=None, callbacks=(), **growing):
    L.seed_everything(0, verbose=False)
    model = ProGAN(**TINY_PROGAN)
    if ckpt_path is not None:
        torch.manual_seed(12345)  # other global RNG state, as in a fresh process
    growing = ProgressiveGrowing(fade_kimg=0.016, stabilize_kimg=0.016, **growing)
    logger, record = MemoryLogger(), Growth()
    trainer = quiet_trainer(
        run_dir, max_steps=max_steps, enable_checkpointing=True, logger=logger, log_every_n_steps=1,
        callbacks=[growing, GeneratorEMA(decay=0.9), record, *callbacks,
                   IterationCheckpoint(dirpath=run_dir / "ckpt", every_n_train_steps=1000)],
    )
    trainer.fit(model, data(data_dir), ckpt_path=ckpt_path)
    return model, trainer, record, logger.rows


def test_a_short_run_grows_through_every_resolution(synthetic_mnist, tmp_path):
    """Batches of 4, 16 images per phase: 4 batches at 4x4, then per resolution 4 of fade and 4 of stabilization, up
    to 32x32; the EMA generator follows, the learning rate is the resolution's, and the old layers' Adam state carries
    on while new layers start theirs."""
    model, trainer, record, _ = grow(synthetic_mnist, tmp_path, max_steps=24, lr={8: 0.002, 16: 0.0005})
    assert [r for _, r, _, _ in record.states] == [4] * 4 + [8] * 8 + [16] * 8 + [32] * 4
    fade = [0, 0.25, 0.5, 0.75]
    assert [a for _, _, a, _ in record.states] == [1] * 4 + (fade + [1] * 4) * 2 + fade
    assert all(ema == r for _, r, _, ema in record.states)
    assert {k: float(trainer.callback_metrics[f"growth/{k}"]) for k in ("resolution", "alpha", "fading")} == {
        "resolution": 32, "alpha": 0.75, "fading": 1}
    assert [lrs[0] for lrs in record.lrs] == [1e-3] * 4 + [0.002] * 8 + [0.0005] * 8 + [1e-3] * 4  # 32: configured
    # Adam's state per layer counts the steps it took part in: the 4x4 layers all 24, toRGB at 4x4 only until 8x8
    # was faded in (8: its state kept, not reset), each later block from its fade on.
    steps = record.adam_steps[-1]
    assert steps["dense.weight"] == 24 and steps["blocks.0.2.weight"] == 24 and steps["to_rgb.0.weight"] == 8
    assert steps["blocks.1.1.weight"] == 20 and steps["to_rgb.1.weight"] == 12
    assert steps["blocks.2.1.weight"] == 12 and steps["to_rgb.2.weight"] == 12
    assert steps["blocks.3.1.weight"] == 4 and steps["to_rgb.3.weight"] == 4
    assert [s for s in record.adam_steps[3] if s.startswith(("blocks.1", "to_rgb.1"))] == []  # none before its fade
    assert (model.resolution, model.alpha) == (32, 0.75)


def test_optimizer_state_reset_at_every_phase_as_the_official_code(synthetic_mnist, tmp_path):
    """reset_optimizer_state=True (the official reset_opt_for_new_lod): Adam starts over at every fade and
    stabilization, so a layer's step count is the batches since the phase began."""
    _, _, record, _ = grow(synthetic_mnist, tmp_path, max_steps=10, reset_optimizer_state=True)
    assert [steps["dense.weight"] for steps in record.adam_steps] == [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]
    assert "to_rgb.0.weight" not in record.adam_steps[-1]  # unused at 8x8 once stable: no state after the reset


def test_each_resolution_gets_its_batch_size(synthetic_mnist, tmp_path):
    """batch_size={4: 8, 16: 2}: two batches of 8 at 4x4, batches of the data module's 4 at 8x8, of 2 at 16x16, across
    the epochs of the 96 synthetic images; alpha follows the images shown whatever the batch."""
    _, _, record, _ = grow(synthetic_mnist, tmp_path, max_steps=20, batch_size={4: 8, 16: 2})
    images = [n for n, *_ in record.states]
    sizes = [b - a for a, b in pairwise(images)]
    assert sizes == [8, 8] + [4] * 8 + [2] * 9
    assert [(r, a) for _, r, a, _ in record.states[9:12]] == [(8, 1.0), (16, 0.0), (16, 0.125)]


def test_the_run_ends_fully_grown_with_alpha_one(synthetic_mnist, tmp_path):
    model, _, record, _ = grow(synthetic_mnist, tmp_path, max_steps=25)
    assert record.states[-1][1:3] == (32, 1.0) and (model.resolution, model.alpha) == (32, 1.0)
    assert model.sample(2).shape == (2, 1, 32, 32)


def test_resume_in_the_middle_of_a_fade_repeats_the_run_bit_for_bit(synthetic_mnist, tmp_path):
    _, _, whole, whole_rows = grow(synthetic_mnist, tmp_path / "whole", max_steps=10)
    part, *_ = grow(synthetic_mnist, tmp_path / "part", max_steps=6)  # its last batch ran at 8x8, alpha 0.25
    checkpoint = tmp_path / "part" / "ckpt" / "last.ckpt"
    loaded = load_gan(checkpoint)  # the checkpoint remembers its resolution and alpha, the EMA generator's too
    assert (loaded.resolution, loaded.alpha, loaded.generator_ema.resolution) == (8, 0.25, 8)
    z = torch.randn(2, 8)
    assert torch.equal(loaded.sample(z=z), part.sample(z=z)) and loaded.sample(z=z).shape == (2, 1, 8, 8)
    export_generator(loaded, tmp_path / "g.safetensors")
    exported = load_exported(tmp_path / "g.safetensors")  # the generator alone: the critic follows it
    assert torch.equal(exported.sample(z=z), part.sample(z=z))
    assert exported.critic(exported.sample(z=z)).shape == (2,) and exported.discriminator.resolution == 8
    _, _, resumed, resumed_rows = grow(synthetic_mnist, tmp_path / "part", max_steps=10, ckpt_path=checkpoint)
    assert resumed.states[0][1:3] == (8, 0.5)
    assert resumed.states == whole.states[6:]
    assert resumed_rows == whole_rows[6:]  # every loss, penalty and growth value, bit for bit


def test_two_processes_keep_alpha_and_parameters_identical(synthetic_mnist, tmp_path, clean_distributed_env):  # noqa: F811
    L.seed_everything(0, verbose=False)
    model = ProGAN(**TINY_PROGAN)
    trainer = quiet_trainer(tmp_path, devices=2, strategy="gan_ddp_spawn", max_steps=4,
                            callbacks=[ProgressiveGrowing(fade_kimg=0.016, stabilize_kimg=0.016),
                                       GeneratorEMA(decay=0.9), SaveState(tmp_path, "progan")])
    trainer.fit(model, data(synthetic_mnist))
    ranks = [torch.load(tmp_path / f"progan_rank{r}.pt")["state"] for r in (0, 1)]
    # Batches of 4 on each of 2 processes: the 4th starts after 24 images, 8 into the 16 of 8x8's fade.
    assert float(ranks[0]["generator.alpha_state"]) == 0.5 and int(ranks[0]["generator.level_state"]) == 1
    for name, tensor in ranks[0].items():
        assert torch.equal(tensor, ranks[1][name]), name


def test_metrics_and_samples_follow_the_resolution(synthetic_mnist, tmp_path):
    """FID while the model is at 4x4: the samples are upscaled to the data's 32x32 before the feature extractor."""
    metrics = GANMetrics(every_n_steps=2, num_samples=8, metrics=["fid"], batch_size=4,
                         feature_extractor="test_progan.SizeRecorder", cache_dir=str(tmp_path / "cache"))
    model, _, _, _ = grow(synthetic_mnist, tmp_path, max_steps=2, callbacks=[metrics])
    assert model.resolution == 4 and SizeRecorder.sizes and set(SizeRecorder.sizes) == {32}
    assert "fid" in metrics.last
    grid = SampleGrid(num_samples=4, nrow=2).images(model)["fixed_ema"]  # the grids show the 4x4 samples
    assert grid.shape == (3, 2 + 2 * (4 + 2), 2 + 2 * (4 + 2))


class SizeRecorder(torch.nn.Module):
    """A feature extractor that records the image sizes it is given."""

    sizes: ClassVar[list[int]] = []

    def forward(self, images):
        SizeRecorder.sizes.append(images.shape[-1])
        return F.adaptive_avg_pool2d(images.float(), 2).flatten(1)


def test_growing_needs_a_growing_model(synthetic_mnist, tmp_path):
    from gans import DCGAN
    trainer = quiet_trainer(tmp_path, max_steps=1, callbacks=[ProgressiveGrowing()])
    with pytest.raises(ConfigurationError, match="^model=DCGAN cannot grow"):
        trainer.fit(DCGAN(latent_dim=8, channels=1, image_size=8), tiny_datamodule(synthetic_mnist))
    trainer = quiet_trainer(tmp_path, max_steps=1, callbacks=[ProgressiveGrowing(batch_size={8: 128})])
    with pytest.raises(ConfigurationError, match=r"^batch_size=\{8: 128\}: 128 images .* more than the 96 training"):
        trainer.fit(ProGAN(**TINY_PROGAN), data(synthetic_mnist))
    with pytest.raises(ConfigurationError, match="start_resolution=64"):
        ProgressiveGrowing(start_resolution=64).setup(quiet_trainer(tmp_path), ProGAN(**TINY_PROGAN), "fit")
    with pytest.raises(ConfigurationError, match="fade_kimg=-1"):
        ProgressiveGrowing(fade_kimg=-1)
