"""Augmentation before the discriminator: the ADA pipeline (equal to the official one), DiffAugment, and the callbacks
that put them in front of any variant's discriminator (ADA's adaptive p: its rule, its resume, its DDP agreement)."""

import math
import os
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from conftest import TINY, quiet_trainer, tiny_data, tiny_datamodule, tiny_kwargs
from test_ddp import clean_distributed_env  # noqa: F401 (fixture)
from test_resume import fit

from callbacks import ADA, DiffAugment
from gans import BEGAN, DCGAN, LAPGAN, MSGGAN, Pix2Pix
from gans.augment import DIFFAUGMENT_POLICIES, PRESETS, AugmentPipe
from gans.augment import DiffAugment as DiffAugmentModule
from gans.errors import ConfigurationError


def pipe(p: float = 1.0, **multipliers: float) -> AugmentPipe:
    augment = AugmentPipe(**multipliers)
    augment.p.fill_(p)
    return augment


def smooth_images(n: int, c: int, size: int) -> torch.Tensor:
    """A deterministic test pattern in [-0.8, 0.8] (no RNG), [n, c, size, size]."""
    return torch.sin(torch.arange(n * c * size * size, dtype=torch.float32).reshape(n, c, size, size) * 0.37) * 0.8


# ----------------------------------------------------------------------------------------------------------------------
# AugmentPipe
# ----------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_is_the_identity_at_p_zero(preset):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 24, 24)
    assert torch.equal(pipe(0.0, **PRESETS[preset])(x), x)
    assert torch.equal(pipe(0.0, **PRESETS[preset])(x[:, :1]), x[:, :1])


def test_the_official_pipeline_gives_the_same_images():
    # Reference values computed with NVIDIA's stylegan2-ada-pytorch (its CPU reference path) by
    #   cd /work/ref/stylegan2-ada-pytorch && python -c "from training.augment import AugmentPipe; ..."
    # on smooth_images(2, 3, 8) with the bgc multipliers, p = 0.5, torch.manual_seed(1) (the same draws in the same
    # order), and on smooth_images(1, 1, 24) with bgc + imgfilter and debug_percentile=0.3 (no randomness used):
    # y.flatten()[::23] and y.sum(), resp. y.flatten()[::41] and y.sum().
    bgc = pipe(0.5, **PRESETS["bgc"])
    torch.manual_seed(1)
    y = bgc(smooth_images(2, 3, 8))
    expected = [
        0.6926947832107544, 0.08999602496623993, 0.7603448629379272, -0.16005995869636536, 0.9811174869537354,
        -0.36112016439437866, 1.0696520805358887, -0.515954852104187, 1.0498521327972412, -0.24399210512638092,
        0.05386143922805786, -0.22316619753837585, -0.5551275014877319, -0.1349300742149353, -0.2993977963924408,
        -0.47824934124946594, -0.33026379346847534,
    ]
    torch.testing.assert_close(y.flatten()[::23], torch.tensor(expected), rtol=0, atol=2e-5)
    assert y.sum().item() == pytest.approx(14.20670223236084, abs=1e-3)
    y = pipe(1.0, **PRESETS["bgcf"])(smooth_images(1, 1, 24), debug_percentile=0.3)
    expected = [
        -0.2717546224594116, -0.49171531200408936, -0.2672208249568939, 0.4758586883544922, 0.23832741379737854,
        0.27524709701538086, -0.4989296495914459, -0.07115092128515244, -0.3206312656402588, 0.35446983575820923,
        -0.4580720365047455, 0.0446576327085495, -0.5067210793495178, 0.1681748777627945, 0.21933141350746155,
    ]
    torch.testing.assert_close(y.flatten()[::41], torch.tensor(expected), rtol=0, atol=2e-5)
    assert y.sum().item() == pytest.approx(-35.379764556884766, abs=1e-3)


def low_frequency_images(n: int, c: int, size: int) -> torch.Tensor:
    """Random sums of slow waves (under 0.3 radians per pixel): the band where the official resampling is exact."""
    torch.manual_seed(0)
    coords = torch.arange(size, dtype=torch.float32)
    freq, phase = torch.rand(4, n, c, 1, 1) * 0.3, torch.rand(4, n, c, 1, 1) * 6.3
    return (torch.sin(coords[None, :] * freq[0] + phase[0]) * torch.cos(coords[:, None] * freq[1] + phase[1])
            + torch.sin(coords[:, None] * freq[2] + coords[None, :] * freq[3] + phase[2]))


def test_xflip_flips_or_keeps_each_sample():
    # As the official pipeline, blits go through the same resampling as the other geometric transforms; sym6 is not a
    # symmetric filter, so a flip also shifts the phase of frequencies near Nyquist. On slow waves it is a flip.
    x = low_frequency_images(16, 3, 16)
    y = pipe(xflip=1)(x)
    flipped = [torch.allclose(a, b.flip(-1), atol=0.1) for a, b in zip(y, x, strict=True)]
    kept = [torch.allclose(a, b, atol=1e-5) for a, b in zip(y, x, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))  # each sample one or the other
    assert 0 < sum(flipped) < 16  # a fair coin per sample at p = 1
    torch.testing.assert_close(pipe(xflip=1)(x, debug_percentile=0.75), x.flip(-1), rtol=0, atol=0.1)


def test_rotate90_rotates_by_quarter_turns():
    x = low_frequency_images(2, 3, 16)
    for percentile, quarter_turns in ((0.0, 0), (0.3, 1), (0.6, 2), (0.9, 3)):
        y = pipe(rotate90=1)(x, debug_percentile=percentile)
        # Counter-clockwise as displayed (rows downwards), as torch.rot90 from the row axis towards the column axis.
        torch.testing.assert_close(y, torch.rot90(x, quarter_turns, dims=(2, 3)), rtol=0, atol=0.1)


def test_integer_translation_moves_pixels():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    # The 0.75 percentile of U[-0.125, 0.125] is 0.0625: 2 pixels right and down.
    y = pipe(xint=1)(x, debug_percentile=0.75)
    torch.testing.assert_close(y[:, :, 2:, 2:], x[:, :, :-2, :-2], rtol=0, atol=1e-5)


@pytest.mark.parametrize("transform", ["scale", "rotate", "aniso", "xfrac", "bg"])
def test_geometric_transforms_keep_a_constant_image_constant(transform):
    torch.manual_seed(0)
    multipliers = PRESETS["bg"] if transform == "bg" else {transform: 1}
    y = pipe(**multipliers)(torch.full((8, 3, 16, 16), 0.3))
    # Reflection padding fills what moves in from outside; away from the borders the image stays 0.3.
    torch.testing.assert_close(y[:, :, 4:-4, 4:-4], torch.full_like(y[:, :, 4:-4, 4:-4], 0.3), rtol=0, atol=1e-4)


def test_geometric_transforms_are_the_same_for_all_channels():
    torch.manual_seed(0)
    gray = torch.randn(8, 1, 16, 16)
    y = pipe(**PRESETS["bg"], cutout=1)(gray.repeat(1, 5, 1, 1))  # any number of channels, all the same
    assert not torch.allclose(y[:, :1], gray)
    for channel in range(1, 5):
        assert torch.equal(y[:, channel], y[:, 0])


def test_brightness_adds_and_contrast_scales_per_sample():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 6, 6)
    shift = pipe(brightness=1)(x) - x
    assert torch.allclose(shift, shift[:, :1, :1, :1].expand_as(shift), atol=1e-6)
    assert shift.flatten(1)[:, 0].abs().min() > 0  # p = 1: every sample
    ratio = pipe(contrast=1)(x) / x
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio), atol=1e-4)


def luma_and_chroma(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    luma = x.mean(dim=1, keepdim=True)
    return luma, x - luma


def test_luma_flip_inverts_luma_and_keeps_chroma():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 6, 6)
    luma, chroma = luma_and_chroma(x)
    y_luma, y_chroma = luma_and_chroma(pipe(lumaflip=1)(x, debug_percentile=0.75))
    torch.testing.assert_close(y_luma, -luma, rtol=0, atol=1e-5)
    torch.testing.assert_close(y_chroma, chroma, rtol=0, atol=1e-5)
    gray = pipe(lumaflip=1)(x[:, :1], debug_percentile=0.75)
    torch.testing.assert_close(gray, -x[:, :1], rtol=0, atol=1e-5)


def test_hue_rotates_and_saturation_scales_chroma_keeping_luma():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 6, 6)
    luma, chroma = luma_and_chroma(x)
    y_luma, y_chroma = luma_and_chroma(pipe(hue=1)(x))
    torch.testing.assert_close(y_luma, luma, rtol=0, atol=1e-5)
    torch.testing.assert_close(y_chroma.norm(dim=1), chroma.norm(dim=1), rtol=1e-4, atol=1e-5)  # a rotation
    assert not torch.allclose(y_chroma, chroma, atol=1e-3)
    y_luma, y_chroma = luma_and_chroma(pipe(saturation=1)(x))
    torch.testing.assert_close(y_luma, luma, rtol=0, atol=1e-5)
    ratio = y_chroma / chroma
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio), atol=1e-3)
    gray = x[:, :1]
    assert torch.equal(pipe(hue=1, saturation=1)(gray), gray)  # RGB only


@pytest.mark.parametrize("augment", [pipe(**PRESETS["bgcfnc"]), DiffAugmentModule("color,translation,cutout")],
                         ids=["ada_bgcfnc", "diffaugment"])
def test_gradients_reach_the_input(augment):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 24, 24, requires_grad=True)
    y = augment(x)
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_the_pipe_refuses_color_on_other_channel_counts_small_images_and_bad_multipliers():
    with pytest.raises(ValueError, match="RGB"):
        pipe(brightness=1)(torch.zeros(2, 6, 8, 8))
    with pytest.raises(ValueError, match="at least 22 pixels"):
        pipe(imgfilter=1)(torch.zeros(2, 3, 21, 21))
    with pytest.raises(ConfigurationError, match=r"^xflip=-1"):
        AugmentPipe(xflip=-1)


# ----------------------------------------------------------------------------------------------------------------------
# DiffAugment
# ----------------------------------------------------------------------------------------------------------------------

def test_diffaugment_color_by_its_definitions():
    brightness, saturation, contrast = DIFFAUGMENT_POLICIES["color"]
    torch.manual_seed(0)
    x = torch.randn(64, 3, 5, 5)
    shift = brightness(x) - x
    assert torch.allclose(shift, shift[:, :1, :1, :1].expand_as(shift), atol=1e-6)
    assert shift.min() >= -0.5 and shift.max() < 0.5 and shift.std() > 0.2  # U[-0.5, 0.5)
    y = saturation(x)
    mean = x.mean(dim=1, keepdim=True)
    torch.testing.assert_close(y.mean(dim=1, keepdim=True), mean, rtol=0, atol=1e-5)
    factor = ((y - mean) / (x - mean)).flatten(1)
    assert torch.allclose(factor, factor[:, :1], atol=1e-3) and factor.min() >= 0 and factor.max() < 2
    y = contrast(x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    factor = ((y - mean) / (x - mean)).flatten(1)
    assert torch.allclose(factor, factor[:, :1], atol=1e-3) and factor.min() >= 0.5 and factor.max() < 1.5


def test_diffaugment_translation_shifts_by_whole_pixels_with_zero_fill():
    torch.manual_seed(0)
    x = torch.rand(64, 2, 16, 16) + 1  # no zeros of its own
    y = DiffAugmentModule("translation")(x)
    shifts = set()
    for a, b in zip(y, x, strict=True):
        padded = torch.nn.functional.pad(b, [2, 2, 2, 2])  # 16 / 8 = 2 pixels at most
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(a, padded[:, 2 + dy:18 + dy, 2 + dx:18 + dx])]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) > 10  # the 25 shifts are all drawn


def test_diffaugment_rounds_the_sizes_as_the_authors():
    # The authors' DiffAugment_pytorch.py: shift = int(28 * 1/8 + 0.5) = 4 pixels at 28x28 (MNIST's size), cutout
    # int(7 * 1/2 + 0.5) = 4 pixels a side at 7x7; flooring gave 3 and 3.
    torch.manual_seed(0)
    x = torch.rand(256, 1, 28, 28) + 1
    y = DiffAugmentModule("translation")(x)
    zero_rows = (y[:, 0] == 0).all(dim=2).sum(dim=1)  # rows of zero fill: |dy|
    assert zero_rows.max() == 4
    small = torch.rand(256, 1, 7, 7) + 1
    sides = (DiffAugmentModule("cutout")(small)[:, 0] == 0).any(dim=1).sum(dim=1)  # columns hit by the cutout
    assert sides.max() == 4


def test_diffaugment_cutout_zeroes_a_square_of_half_the_side():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 16, 16) + 1
    y = DiffAugmentModule("cutout")(x)
    zero = y == 0
    assert torch.equal(zero[:, :1].expand_as(zero), zero)  # the same for all channels
    assert torch.equal(y[~zero], x[~zero])
    for mask in zero[:, 0]:
        rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
        assert mask.sum() == len(rows) * len(cols) and len(rows) <= 8 and len(cols) <= 8  # a rectangle, clipped
    full = [bool((m.any(dim=1).sum() == 8) & (m.any(dim=0).sum() == 8)) for m in zero[:, 0]]
    assert any(full)


def test_diffaugment_refuses_an_unknown_policy():
    with pytest.raises(ConfigurationError, match=r"^policy='color,zoom': unknown 'zoom'"):
        DiffAugment(policy="color,zoom")
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(DiffAugmentModule("")(x), x)


# ----------------------------------------------------------------------------------------------------------------------
# The callbacks' hook
# ----------------------------------------------------------------------------------------------------------------------

def hooked(callback, model):
    callback.setup(SimpleNamespace(), model, "fit")
    return model.discriminator


def test_the_hook_augments_in_training_mode_only():
    model = DCGAN(**TINY)
    x = torch.randn(4, 1, 8, 8)
    torch.manual_seed(0)
    clean = [model.discriminator.train()(x), model.discriminator.eval()(x)]
    callback = DiffAugment(policy="translation,cutout")
    discriminator = hooked(callback, model)
    torch.manual_seed(0)
    assert not torch.allclose(discriminator.train()(x), clean[0])
    assert torch.equal(discriminator.eval()(x), clean[1])
    callback.teardown(SimpleNamespace(), model, "fit")
    torch.manual_seed(0)
    assert torch.equal(discriminator.train()(x), clean[0])  # no trace left after fitting


def test_half_precision_images_keep_their_dtype():
    x = smooth_images(2, 3, 16)
    torch.manual_seed(0)
    full = pipe(**PRESETS["bgc"])(x)
    torch.manual_seed(0)
    half = pipe(**PRESETS["bgc"])(x.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, rtol=0, atol=0.05)  # computed in float32, rounded once


def test_mixed_precision_autocast_does_not_reach_the_pipeline():
    # Under bf16-mixed/16-mixed the discriminator, and its pre-hook, run inside an autocast, which would compute the
    # sampling matrices and the resampling convolutions in half precision: grid positions off by pixels at 64x64.
    x = smooth_images(2, 3, 64)
    for preset in ("bgc", "bgcfnc"):
        torch.manual_seed(0)
        full = pipe(1.0, **PRESETS[preset])(x)
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = pipe(1.0, **PRESETS[preset])(x)
        assert mixed.dtype == torch.float32
        torch.testing.assert_close(mixed, full, rtol=0, atol=1e-5)


def test_an_image_filter_on_images_too_small_is_refused():
    model = DCGAN(**TINY)  # 8x8
    hooked(ADA(preset="bgcf"), model).train()
    with pytest.raises(ConfigurationError, match=r"^ADA\(preset='bgcf'\): DCGAN's discriminator sees images of 8x8"):
        model.critic(torch.zeros(4, 1, 8, 8))


def test_packed_samples_are_augmented_one_by_one():
    model = DCGAN(**TINY, pack=2)
    callback = ADA(p=1.0, fixed=True)
    seen = []
    hooked(callback, model).train()
    model.discriminator.register_forward_pre_hook(lambda network, args: seen.append(args[0]))  # after the callback's
    samples = torch.randn(8, 1, 8, 8)
    torch.manual_seed(0)
    model.critic(samples)  # packs 2 by 2: D's input [4, 2, 8, 8]
    torch.manual_seed(0)
    expected = callback.augmentation(samples).reshape(4, 2, 8, 8)
    torch.testing.assert_close(seen[-1], expected, rtol=0, atol=0)


def test_a_translation_pair_moves_together_and_color_is_refused():
    model = Pix2Pix(**tiny_kwargs(Pix2Pix))
    seen = []
    hooked(ADA(preset="bg", p=1.0, fixed=True), model).train()
    model.discriminator.register_forward_pre_hook(lambda network, args: seen.append(args[0]))  # after the callback's
    image = torch.randn(4, 1, 8, 8)
    model.critic(image, source=image)  # source and image identical: they must stay identical
    assert seen[-1].shape == (4, 2, 8, 8) and torch.equal(seen[-1][:, 0], seen[-1][:, 1])
    assert not torch.allclose(seen[-1][:, :1], image, atol=1e-3)
    model = Pix2Pix(**tiny_kwargs(Pix2Pix))
    hooked(DiffAugment(policy="color,translation"), model).train()
    with pytest.raises(ConfigurationError, match=r"Pix2Pix's discriminator sees 2 channels per sample.*color"):
        model.critic(image, source=image)


@pytest.mark.parametrize("cls,message", [
    (MSGGAN, "MSGGAN's discriminator takes list, not one batch of images"),
    (BEGAN, "BEGAN's discriminator returns an image of its input's shape"),
    (LAPGAN, "LAPGAN runs its discriminator's layers directly"),
])
def test_variants_whose_discriminator_cannot_be_augmented_are_refused(cls, message, synthetic_mnist, tmp_path):
    # The three ways a discriminator escapes the hook: another input than one image batch (MSG-GAN's pyramid, the 2-D
    # mixtures' points), an auto-encoder (BEGAN), layers run without the discriminator's forward (LAPGAN, Pix2PixHD,
    # SPADE); each stops the run with one message naming the variant, never a silent run without augmentation.
    model = cls(**tiny_kwargs(cls))
    trainer = quiet_trainer(tmp_path, fast_dev_run=1, callbacks=[DiffAugment(policy="translation")])
    with pytest.raises(ConfigurationError, match=rf"^DiffAugment\(policy='translation'\): {message}"):
        trainer.fit(model, tiny_data(model, synthetic_mnist))


# ----------------------------------------------------------------------------------------------------------------------
# ADA's adaptive p
# ----------------------------------------------------------------------------------------------------------------------

class FakeRun:
    """What ADA reads from the trainer and the module: iterations, images seen, a one-process reduce, the log."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size, self.global_step, self.images_seen, self.logged = batch_size, 0, 0, {}
        self.strategy = SimpleNamespace(reduce=lambda tensor, reduce_op: tensor)
        self.device = torch.device("cpu")
        self.pack = 1

    def log(self, name, value):
        self.logged[name] = value

    def optimized_networks(self):
        return {"g": ("generator",), "d": ("discriminator",)}

    discriminator = torch.nn.Linear(1, 1)

    def iterate(self, callback: ADA, d_real_sign: float) -> None:
        self.global_step += 1
        self.images_seen += self.batch_size
        callback.on_train_batch_end(self, self, {"d_real_sign": torch.tensor(d_real_sign)}, None, 0)


def test_p_rises_when_d_overfits_falls_otherwise_and_stays_in_0_1():
    callback = ADA(p=0.0, target=0.6, interval=2, kimg=0.1)
    run = FakeRun(batch_size=8)
    callback.setup(run, run, "fit")
    callback.on_train_start(run, run)
    step = 8 * 2 / (0.1 * 1000)  # batch_size * interval / (kimg * 1000)
    run.iterate(callback, 0.9)
    assert callback.p == 0.0  # adjusted every 2 iterations only
    run.iterate(callback, 0.5)  # r_t = 0.7 > 0.6 over the interval
    assert callback.p == pytest.approx(step) and run.logged["train/ada_rt"] == pytest.approx(0.7)
    run.iterate(callback, 0.5)
    run.iterate(callback, 0.6)  # r_t = 0.55 < 0.6
    assert callback.p == pytest.approx(0.0, abs=1e-7)
    for _ in range(4):
        run.iterate(callback, 0.0)
    assert callback.p == 0.0  # clamped at 0
    for _ in range(2 * math.ceil(1 / step) + 4):
        run.iterate(callback, 1.0)
    assert callback.p == 1.0 and run.logged["train/ada_p"] == 1.0  # clamped at 1


def test_processes_synchronise_once_per_adjustment_and_rank_0_keeps_the_partial_sums():
    # The official code sums the signs on the device and synchronises once per interval: a reduce every batch would
    # stall a GPU pipeline every iteration.
    callback = ADA(p=0.5, target=0.6, interval=4, kimg=0.1)
    run = FakeRun(batch_size=8)
    reduced = []
    run.strategy = SimpleNamespace(reduce=lambda tensor, reduce_op: reduced.append(tensor.tolist()) or tensor)
    callback.setup(run, run, "fit")
    callback.on_train_start(run, run)
    for sign in (1.0, 0.5, 0.0, 0.5, 1.0, 1.0):
        run.iterate(callback, sign)
    assert reduced == [[2.0, 4.0]] and run.logged["train/ada_rt"] == pytest.approx(0.5)
    state = callback.state_dict()
    assert (state["sign_sum"], state["sign_count"]) == (2.0, 2)  # between two adjustments
    # A resume on two processes: rank 0 continues from the saved partial sums, rank 1 from none (they are rank 0's).
    for rank, expected in ((0, [2.0, 2.0]), (1, [0.0, 0.0])):
        resumed = ADA(p=0.5, target=0.6, interval=4, kimg=0.1)
        resumed.load_state_dict(state)
        run.global_rank = rank
        resumed.setup(run, run, "fit")
        resumed.on_train_start(run, run)
        assert resumed.state_dict()["p"] == callback.p
        assert [resumed.state_dict()["sign_sum"], resumed.state_dict()["sign_count"]] == expected


def test_fixed_p_and_a_variant_without_d_real_sign(synthetic_mnist, tmp_path):
    run = FakeRun(batch_size=4)
    fixed = ADA(p=0.3, fixed=True)
    fixed.setup(run, run, "fit")
    for _ in range(8):
        run.iterate(fixed, 1.0)
    assert fixed.p == pytest.approx(0.3)

    class NoSign(DCGAN):
        def d_loss(self, real, fake, **cond):
            return {k: v for k, v in super().d_loss(real, fake, **cond).items() if k != "d_real_sign"}

    trainer = quiet_trainer(tmp_path, max_steps=2, callbacks=[ADA(interval=2)])
    with pytest.raises(ConfigurationError, match=r"NoSign's discriminator phase reports no d_real_sign"):
        trainer.fit(NoSign(**TINY), tiny_datamodule(synthetic_mnist))


@pytest.mark.parametrize("kwargs,message", [
    ({"preset": "bgx"}, r"^ADA\(preset='bgx'\): expected one of blit"),
    ({"p": 1.5}, r"^ADA\(p=1.5\)"),
    ({"target": -0.1}, r"^ADA\(target=-0.1\)"),
    ({"interval": 0}, r"^ADA\(interval=0\)"),
    ({"kimg": 0}, r"^ADA\(kimg=0\)"),
])
def test_ada_refuses_bad_values(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        ADA(**kwargs)


def test_ada_and_diffaugment_through_fast_dev_run(synthetic_mnist, tmp_path):
    # With R1: its gradient w.r.t. the clean reals goes through the augmentation, and its backward through that twice.
    for callback in (ADA(p=1.0, interval=1, kimg=1.0), DiffAugment()):
        model = DCGAN(**TINY, r1_gamma=1.0)
        quiet_trainer(tmp_path, fast_dev_run=1, callbacks=[callback]).fit(model, tiny_datamodule(synthetic_mnist))
        assert all(torch.isfinite(p).all() for p in model.discriminator.parameters())


def test_p_is_restored_on_resume(synthetic_mnist, tmp_path):
    # 6 iterations at once, and 3 then 3 more from the checkpoint (stopped between two adjustments): the same p, r_t and
    # losses step for step, the same networks.
    def make():
        return DCGAN(**TINY)

    def callbacks():
        return [ADA(p=0.2, interval=2, kimg=0.05)]

    whole_cb = callbacks()
    whole, whole_rows = fit(synthetic_mnist, tmp_path / "whole", make, 6, callbacks=whole_cb)
    part = tmp_path / "part"
    fit(synthetic_mnist, part, make, 3, callbacks=callbacks(), every=1000)
    torch.manual_seed(12345)
    resumed_cb = callbacks()
    resumed, resumed_rows = fit(synthetic_mnist, part, make, 6, ckpt_path=part / "ckpt" / "last.ckpt",
                                callbacks=resumed_cb)
    assert [row for row in whole_rows if row[0] >= 3] == resumed_rows
    assert any("train/ada_rt" in values for _, values in resumed_rows)
    p_values = {values["train/ada_p"] for _, values in whole_rows}
    assert len(p_values) > 1  # p moved
    assert resumed_cb[0].p == whole_cb[0].p
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


class RecordP(L.Callback):
    def __init__(self, out) -> None:
        self.out = out

    def on_train_end(self, trainer, module):
        ada = next(c for c in trainer.callbacks if isinstance(c, ADA))
        torch.save({"p": ada.p, "state": ada.state_dict()}, self.out / f"p{trainer.global_rank}.pt")


def test_p_is_identical_on_every_process(synthetic_mnist, tmp_path, clean_distributed_env):  # noqa: F811
    from lightning.pytorch.strategies import DDPStrategy

    L.seed_everything(0, verbose=False)
    ada = ADA(p=0.5, interval=1, kimg=1.0, target=0.5)
    trainer = quiet_trainer(tmp_path, devices=2, max_steps=3, callbacks=[ada, RecordP(tmp_path)],
                            strategy=DDPStrategy(find_unused_parameters=True, start_method="spawn"))
    trainer.fit(DCGAN(**TINY), tiny_datamodule(synthetic_mnist))
    rank0, rank1 = (torch.load(tmp_path / f"p{rank}.pt") for rank in (0, 1))
    assert rank0 == rank1
    # 3 adjustments of 2 processes * 8 images / 1000 images each: p moved by a multiple of 0.016 from 0.5.
    moved = (rank0["p"] - 0.5) / 0.016
    assert rank0["p"] != 0.5 and moved == pytest.approx(round(moved), abs=1e-5)
    assert os.environ.get("MASTER_PORT")  # the fixture's port was used

