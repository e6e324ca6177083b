"""MSG-GAN (Karnewar and Wang 2020): the networks' shapes and layers, the combine functions against their formulas,
the multi-scale paths (G's outputs to D, gradients back to every toRGB, real images as their pooled pyramid) and the
losses and penalties on pyramids. Training, resume, load_gan and export run in the variant registry's tests."""

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import quiet_trainer, tiny_datamodule, tiny_kwargs
from torch import nn

from callbacks import SampleGrid
from gans import DCGAN, MSGGAN
from gans.errors import ConfigurationError
from gans.losses import g_relativistic_hinge
from gans.nets import MSGDiscriminator, MSGGenerator, ScaleCombine
from gans.nets.equalized import EqualizedConv2d, EqualizedLinear, PixelNorm
from gans.nets.layers import MinibatchStdDev
from gans.nets.progan import progan_channels
from gans.outputs import GeneratorOutput

COMBINES = ("simple", "lin_cat", "cat_lin")


def tiny_model(**overrides) -> MSGGAN:
    torch.manual_seed(0)
    return MSGGAN(**tiny_kwargs(MSGGAN, **overrides))


@pytest.mark.parametrize("combine", COMBINES)
def test_discriminator_accepts_the_generators_outputs(combine):
    torch.manual_seed(0)
    generator = MSGGenerator(16, 3, 32, fmap_max=8)
    discriminator = MSGDiscriminator(3, 32, fmap_max=8, combine=combine)
    images = generator(torch.randn(6, 16))
    assert [tuple(x.shape) for x in images] == [(6, 3, side, side) for side in (4, 8, 16, 32)]
    scores = discriminator(images)
    assert scores.shape == (6,) and torch.isfinite(scores).all()
    with pytest.raises(ValueError, match=r"sides \[4, 8, 16, 32\], coarse to fine"):
        discriminator(images[::-1])
    with pytest.raises(ValueError, match="coarse to fine"):
        discriminator(images[1:])


def test_the_papers_widths_and_image_sizes():
    assert [progan_channels(side) for side in (4, 8, 16, 32, 64, 128, 256)] == [512, 512, 512, 512, 256, 128, 64]
    generator = MSGGenerator(512, 3, 128)
    assert [rgb.weight.shape[1] for rgb in generator.to_rgb] == [512, 512, 512, 512, 256, 128]
    for size in (2, 48):
        with pytest.raises(ConfigurationError, match=f"image_size={size} must be a power of two >= 4"):
            MSGGenerator(8, 1, size)
    with pytest.raises(ConfigurationError, match="combine='sum' is not one of"):
        MSGDiscriminator(1, 8, combine="sum")


def test_equalized_layers_pixel_norm_and_minibatch_stddev_are_used():
    generator, discriminator = MSGGenerator(8, 1, 16, fmap_max=4), MSGDiscriminator(1, 16, fmap_max=4)
    for network in (generator, discriminator):
        kinds = {type(m) for m in network.modules()}
        assert {EqualizedConv2d, EqualizedLinear} <= kinds
        assert not kinds & {nn.Conv2d, nn.Linear, nn.ConvTranspose2d}  # every weight has the run-time He scale
    layers = list(generator.modules())
    convs = [i for i, m in enumerate(layers) if isinstance(m, EqualizedConv2d) and m.weight.shape[-1] == 3]
    assert convs and all(isinstance(layers[i + 2], PixelNorm) for i in convs)  # conv, LeakyReLU, pixel norm
    assert isinstance(generator.normalize_z, PixelNorm) and PixelNorm not in {type(m) for m in discriminator.modules()}
    assert isinstance(discriminator.blocks[0][0], MinibatchStdDev)  # before the 4x4 block


@pytest.mark.parametrize("kind", COMBINES)
def test_combine_functions_follow_the_papers_formulas(kind):
    torch.manual_seed(0)
    combine = ScaleCombine(kind, 3, 5)
    x, o = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)

    def r(inputs):  # r': the 1x1 convolution, its weight scaled at run time by sqrt(2 / fan-in) (the authors' gain)
        weight = combine.linear.weight * (2 / combine.linear.weight[0].numel()) ** 0.5
        return F.conv2d(inputs, weight, combine.linear.bias)

    if kind == "simple":
        expected = torch.cat([x, o], 1)  # phi_simple = [x; o]
    elif kind == "lin_cat":
        expected = torch.cat([r(x), o], 1)  # phi_lin_cat = [r'(x); o]
    else:
        expected = r(torch.cat([x, o], 1))  # phi_cat_lin = r'([x; o])
    out = combine(x, o)
    assert out.shape[1] == combine.out_channels == {"simple": 8, "lin_cat": 10, "cat_lin": 5}[kind]
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("combine", COMBINES)
def test_gradients_reach_every_scales_to_rgb_from_the_discriminator(combine):
    """A coarse toRGB feeds nothing but D's input at its scale: a gradient there comes straight from D."""
    model = tiny_model(image_size=16, discriminator={"init_args": {"combine": combine}})
    model.g_loss(torch.rand(8, 1, 16, 16) * 2 - 1, model.generate(8))["g_loss"].backward()
    for side, to_rgb in zip((4, 8, 16), model.generator.to_rgb, strict=True):
        assert to_rgb.weight.grad is not None and to_rgb.weight.grad.abs().sum() > 0, side


def test_real_images_are_shown_as_their_average_pooled_pyramid():
    model = tiny_model(image_size=16)
    real = torch.rand(8, 1, 16, 16) * 2 - 1
    levels = model.pyramid(real)
    assert [x.shape[-1] for x in levels] == [4, 8, 16] and levels[-1] is real
    torch.testing.assert_close(levels[0], F.avg_pool2d(real, 4))  # the mean of each 4x4 block
    torch.testing.assert_close(model.critic(real), model.discriminator([F.avg_pool2d(real, 4), F.avg_pool2d(real, 2),
                                                                        real]))


def test_losses_score_the_generators_own_scales_not_a_pyramid_of_its_finest():
    model = tiny_model(loss="hinge")
    real, fake = torch.rand(8, 1, 8, 8) * 2 - 1, model.generate(8).detach()
    terms = model.d_loss(real, fake)
    assert terms["d_fake"] == model.critic(fake).mean()
    assert terms["d_fake"] != model.critic(fake.images).mean()  # what the base's d_loss would have scored
    torch.manual_seed(3)
    terms = model.evaluation_terms(real)
    torch.manual_seed(3)
    assert terms["d_fake"] == model.critic(model.sample_output(8)).mean()


def test_relativistic_hinge_is_the_default_and_its_generator_loss_scores_the_reals():
    model = tiny_model()
    assert model.hparams["loss"] == "relativistic_hinge"
    real, fake = torch.rand(8, 1, 8, 8) * 2 - 1, model.generate(8)
    expected = g_relativistic_hinge(model.critic(real), model.critic(fake))
    torch.testing.assert_close(model.g_loss(real, fake)["g_loss"], expected)
    assert tiny_model(loss="non_saturating").g_loss(real, fake)["g_loss"].requires_grad
    with pytest.raises(ConfigurationError, match="loss='relativistic_hinge' is relativistic"):
        DCGAN(loss="relativistic_hinge")


def test_r1_differentiates_the_whole_real_pyramid():
    """R1 = E[sum over the scales of ||grad_(x_s) D||^2], each scale an input of its own: against separate leaves."""
    model = tiny_model(image_size=16, r1_gamma=2.0)
    real, fake = torch.rand(8, 1, 16, 16) * 2 - 1, model.generate(8).detach()
    terms = model.d_loss(real, fake)
    leaves = [x.detach().requires_grad_(True) for x in model.pyramid(real)]
    grads = torch.autograd.grad(model.critic(leaves).sum(), leaves)
    expected = sum(g.flatten(1).square().sum(1) for g in grads).mean()
    torch.testing.assert_close(terms["r1"], expected)
    without = tiny_model(image_size=16).d_loss(real, fake)["d_loss"]  # the same weights (seeded) without R1
    torch.testing.assert_close(terms["d_loss"], without + 2.0 / 2 * expected)


def test_lazy_r1_r2_train_on_pyramids(synthetic_mnist, tmp_path):
    L.seed_everything(0, verbose=False)
    model = MSGGAN(**tiny_kwargs(MSGGAN, r1_gamma=1.0, r2_gamma=1.0, reg_every=2))
    trainer = quiet_trainer(tmp_path, max_steps=2)
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    assert {"train/r1", "train/r2", "train/d_reg"} <= trainer.callback_metrics.keys()
    assert all(torch.isfinite(v) for v in trainer.callback_metrics.values())


def test_samples_are_the_finest_images_and_the_grid_shows_every_scale():
    model = tiny_model(image_size=16)
    output = model.sample_output(3)
    assert isinstance(output, GeneratorOutput) and [s.shape for s in output.scales] == [(3, 1, 4, 4), (3, 1, 8, 8)]
    images = model.sample(3)
    assert images.shape == (3, 1, 16, 16) and images.min() >= -1 and images.max() <= 1
    grids = SampleGrid(num_samples=4, interpolation_rows=0).images(model)
    # The first row of the fixed grid (two images) at each of the three scales, upscaled to 16x16, 2 pixels apart.
    assert grids["fixed"].shape[-2:] == (2 * 18 + 2, 2 * 18 + 2) and grids["scales"].shape[-2:] == (3 * 18 + 2, 38)


def test_pacgan_packs_every_scale_alike():
    model = tiny_model(pack=2)
    assert model.discriminator.from_rgb[0].weight.shape[1] == 2  # the finest image's channels, packed
    real, fake = torch.rand(8, 1, 8, 8) * 2 - 1, model.generate(8).detach()
    assert model.critic(fake).shape == model.critic(real).shape == (4,)
    assert torch.isfinite(model.d_loss(real, fake)["d_loss"])
