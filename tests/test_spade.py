"""SPADE / GauGAN (Park et al. 2019): the spatially-adaptive normalization against a batch norm with the class's scale
and bias, the generator's shapes and parameter counts against NVlabs/SPADE's, the label maps' encoding, the loss
terms, and training on synthetic label-map pairs."""

import lightning as L
import pytest
import torch
from conftest import quiet_trainer, tiny_pairs
from torch import nn

from gans import GauGAN, load_gan
from gans.errors import ConfigurationError, MissingFileError
from gans.losses import d_hinge, feature_matching, g_hinge
from gans.nets import SPADE, SPADEGenerator
from gans.nets.patchgan import MultiscaleDiscriminator
from gans.nets.spade import num_upsamplings
from gans.spade import SPADE_DISCRIMINATOR, label_colours, one_hot

#: Parameters of NVlabs/SPADE's networks (commit fecacc9), counted by building its ``SPADEGenerator(opt)`` and
#: ``MultiscaleDiscriminator(opt)`` with the options of its data sets (``print_network``'s sum of ``numel``):
#: cityscapes (label_nc 35 + the instance-edge channel = 36, ``num_upsampling_layers="more"``), ADE20K (150 classes +
#: "don't care" = 151, no instance map, "normal"), and "most" on 36 channels; ngf = ndf = 64, ``norm_G`` spectral
#: SPADE, ``norm_D`` spectralinstance, num_D 2, n_layers_D 4. The discriminator sees the label map and the image:
#: 36 + 3 and 151 + 3 channels.
REFERENCE_G = {(36, "more"): 93_048_003, (151, "normal"): 96_492_483, (36, "most"): 93_570_659}
REFERENCE_D = {39: 5_601_410, 154: 5_836_930}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny_gaugan(**kwargs) -> GauGAN:
    args = {"channels": 3, "num_classes": 3, "image_size": 16, "vgg_weights": None,
            "generator": {"init_args": {"features": 4, "embedding": 8}}, "discriminator": {"init_args": {"features": 4, "n_layers": 1}}}
    return GauGAN(**{**args, **kwargs})


# ----------------------------------------------------------------------------------------------------------------
# The normalization
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_spade_with_a_constant_label_map_is_a_norm_with_that_class_scale_and_bias(norm):
    """The issue's check: a label map of one class c everywhere makes gamma and beta constant over space (away from
    the zero padding of the two stacked 3x3 convolutions, 2 pixels at every border), equal to the class's values
    computed from the weights by hand, so SPADE is the affine batch (instance) norm of scale 1 + gamma_c and bias
    beta_c."""
    torch.manual_seed(0)
    channels, classes, c = 5, 4, 2
    spade = SPADE(channels, classes, norm=norm, embedding=16)
    for conv in (spade.shared[0], spade.gamma, spade.beta):  # nonzero biases, so they are checked too
        nn.init.normal_(conv.bias)
    x = torch.randn(6, channels, 12, 12) * 3 + 1
    labels = torch.full((6, 1, 6, 6), c)  # a coarser map: SPADE resizes it to x's size (nearest)
    out = spade(x, one_hot(labels, classes))

    # A 3x3 convolution of a constant map inside its padding is the map times the sum of the kernel's taps.
    shared = torch.relu(spade.shared[0].weight[:, c].sum(dim=(1, 2)) + spade.shared[0].bias)  # [embedding]
    gamma = spade.gamma.weight.sum(dim=(2, 3)) @ shared + spade.gamma.bias  # [channels]
    beta = spade.beta.weight.sum(dim=(2, 3)) @ shared + spade.beta.bias
    affine = (nn.BatchNorm2d if norm == "batch" else nn.InstanceNorm2d)(channels, affine=True)
    with torch.no_grad():
        affine.weight.copy_(1 + gamma)
        affine.bias.copy_(beta)
    expected = affine(x)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    torch.testing.assert_close(out[inner], expected[inner], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(out, spade.norm(x), atol=1e-2)  # the modulation does something


def test_spade_resizes_the_label_map_by_nearest_neighbour():
    spade = SPADE(2, 3, embedding=4)
    labels = torch.tensor([[0, 1], [2, 0]]).view(1, 1, 2, 2)
    big = labels.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)  # [1, 1, 8, 8]
    gamma, beta = spade.modulation(one_hot(labels, 3), (8, 8))
    gamma_big, beta_big = spade.modulation(one_hot(big, 3), (8, 8))
    assert torch.equal(gamma, gamma_big) and torch.equal(beta, beta_big)


# ----------------------------------------------------------------------------------------------------------------
# The generator and discriminator
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "mode", "expected"), [
    (8, "normal", 3), (16, "normal", 4), (256, "normal", 5), (256, "more", 6), (512, "more", 6), (512, "most", 7),
    (48, "normal", 4), (12, "most", 2), (7, "normal", 0),
])
def test_upsamplings_are_the_reference_count_or_as_many_as_divide_the_size(size, mode, expected):
    assert num_upsamplings(size, mode) == expected


@pytest.mark.parametrize(("size", "mode"), [(8, "normal"), (32, "most"), (48, "normal")])
def test_generator_shapes(size, mode):
    torch.manual_seed(0)
    g = SPADEGenerator(5, 3, size, features=4, num_upsampling_layers=mode, embedding=8)
    segmap = one_hot(torch.randint(5, (2, 1, size, size)), 5)
    out = g(segmap)
    assert out.shape == (2, 3, size, size) and out.abs().max() <= 1 and torch.isfinite(out).all()
    wide = g(torch.cat([segmap, segmap], dim=3))  # any size 2**u divides: cityscapes' 2:1
    assert wide.shape == (2, 3, size, 2 * size)


def test_generator_refuses_a_map_its_upsamplings_cannot_reach_and_a_bad_mode():
    g = SPADEGenerator(2, 1, 16, features=2)
    with pytest.raises(ValueError, match="multiple of 16"):
        g(torch.zeros(1, 2, 24, 24))
    with pytest.raises(ConfigurationError, match="num_upsampling_layers='some'"):
        SPADEGenerator(2, 1, 16, num_upsampling_layers="some")
    with pytest.raises(ConfigurationError, match="norm='group'"):
        SPADEGenerator(2, 1, 16, norm="group")


def test_parameter_counts_are_the_reference():
    # Spectral normalisation keeps the generator's count (its ``original`` replaces the weight; u and v are buffers),
    # checked on a small one; the reference's sizes are built without it, on the meta device (no memory, no
    # initialisation: the power iterations of its registration are slow there).
    assert count(SPADEGenerator(5, 3, 64, features=4)) == count(SPADEGenerator(5, 3, 64, features=4, spectral_norm=False))
    with torch.device("meta"):
        for (semantic, mode), expected in REFERENCE_G.items():
            assert count(SPADEGenerator(semantic, 3, 512, num_upsampling_layers=mode, spectral_norm=False)) == expected
    for channels, expected in REFERENCE_D.items():
        assert count(MultiscaleDiscriminator(channels, 256, **SPADE_DISCRIMINATOR["init_args"])) == expected


# ----------------------------------------------------------------------------------------------------------------
# The label maps
# ----------------------------------------------------------------------------------------------------------------


def test_label_maps_are_one_hot_encoded_for_both_networks():
    model = tiny_gaugan(num_classes=4)
    labels = torch.randint(4, (3, 1, 16, 16))
    semantics = model.semantics(labels)
    assert semantics.shape == (3, 4, 16, 16) and semantics.dtype == torch.float32
    assert torch.equal(semantics.sum(dim=1), torch.ones(3, 16, 16))
    assert torch.equal(semantics.argmax(dim=1, keepdim=True), labels)
    assert model.generator.fc.in_channels == 4
    assert model.discriminator.discriminators[0].blocks[0][0].in_channels == 4 + 3  # one-hot and image
    with pytest.raises(ValueError, match="class 4, outside the model's 0..3"):
        model.semantics(torch.full((1, 1, 16, 16), 4))


def test_random_sources_are_valid_label_maps_and_grids_colour_them():
    model = tiny_gaugan(num_classes=6)
    source = model.random_source(4, torch.Generator().manual_seed(0))
    assert source.shape == (4, 1, 16, 16) and source.dtype == torch.int64
    assert source.min() >= 0 and source.max() < 6 and len(source.unique()) == 6
    shown = model.show_source(source)
    assert shown.shape == (4, 3, 16, 16) and shown.min() >= -1 and shown.max() <= 1
    colours = label_colours(6).float() / 127.5 - 1
    assert torch.equal(shown[0, :, 0, 0], colours[source[0, 0, 0, 0]])
    assert len(label_colours(151).unique(dim=0)) == 151  # ADE20K's classes all apart
    assert label_colours(3).tolist() == [[128, 0, 0], [0, 128, 0], [128, 128, 0]]  # the reference's first colours


def test_an_image_source_is_thresholded_into_two_classes_or_used_as_it_is():
    image = torch.full((2, 3, 16, 16), -1.0)
    image[:, :, 4:8] = 1.0  # white rows on black
    model = tiny_gaugan(num_classes=None, source_channels=3, threshold=0.0)
    semantics = model.semantics(image)
    assert semantics.shape == (2, 2, 16, 16) and model.generator.fc.in_channels == 2
    assert torch.equal(semantics[:, 1], (image[:, 0] > 0).float())
    assert torch.equal(model.show_source(image), image)
    plain = tiny_gaugan(num_classes=None, source_channels=3)
    assert torch.equal(plain.semantics(image), image) and plain.generator.fc.in_channels == 3


def test_inconsistent_source_settings_are_refused():
    with pytest.raises(ConfigurationError, match="^source_channels=5"):
        tiny_gaugan(num_classes=3, source_channels=5)
    with pytest.raises(ConfigurationError, match="^threshold=0.0"):
        tiny_gaugan(num_classes=3, threshold=0.0)
    with pytest.raises(ConfigurationError, match="^lambda_vgg=-1"):
        tiny_gaugan(lambda_vgg=-1)
    with pytest.raises(ConfigurationError, match="^r1_gamma=1"):
        tiny_gaugan(r1_gamma=1)


# ----------------------------------------------------------------------------------------------------------------
# Losses and training
# ----------------------------------------------------------------------------------------------------------------


def test_losses_are_per_scale_hinge_feature_matching_and_vgg():
    """With random VGG weights injected (``vgg_weights=None``): every term present and finite, the totals the sums of
    the reference's weighting."""
    torch.manual_seed(0)
    model = tiny_gaugan()
    source = model.random_source(4)
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    fake = model.generate(4, source=source)
    g = model.g_loss(real, fake, source=source)
    assert {"g_loss", "g_adversarial", "g_feature_matching", "g_vgg"} <= set(g)
    assert all(torch.isfinite(v) for v in g.values()) and g["g_vgg"] > 0 and g["g_feature_matching"] > 0
    torch.testing.assert_close(g["g_loss"], g["g_adversarial"] + 10 * g["g_feature_matching"] + 10 * g["g_vgg"])

    d_fake = model.discriminate(fake.images, source)
    d_real = model.discriminate(real, source)
    assert len(d_real) == 2 and d_real[1][-1].shape[-1] < d_real[0][-1].shape[-1]  # two scales, halving
    torch.testing.assert_close(g["g_adversarial"], (g_hinge(d_fake[0][-1]) + g_hinge(d_fake[1][-1])) / 2)
    torch.testing.assert_close(g["g_feature_matching"], feature_matching(d_real, d_fake))
    d = model.d_loss(real, fake, source=source)
    expected = (d_hinge(d_real[0][-1], d_fake[0][-1]) + d_hinge(d_real[1][-1], d_fake[1][-1])) / 2
    torch.testing.assert_close(d["d_loss"], expected)

    off = tiny_gaugan(lambda_vgg=0, lambda_feat=0)
    assert off.vgg is None and set(off.g_loss(real, fake, source=source)) == {"g_loss", "g_adversarial"}


def test_fast_dev_run_on_label_map_pairs(tmp_path):
    L.seed_everything(0, verbose=False)
    model = tiny_gaugan(num_classes=5, lambda_vgg=0)
    data = tiny_pairs(model, batch_size=4)
    trainer = quiet_trainer(tmp_path, fast_dev_run=1)
    trainer.fit(model, data)
    assert trainer.global_step == 1 and model.batches_seen == 1  # iterations: one D and one G step each
    assert model.fixed.source.dtype == torch.int64  # the grids' sources are the label maps
    source = model.random_source(3)
    images = model.sample(source=source)
    assert images.shape == (3, 3, 16, 16) and torch.isfinite(images).all()
    grid, columns = model.sample_grid({"source": model.fixed.source[:2]}, images[:2], 2)
    assert columns == 3 and grid.shape == (6, 3, 16, 16)  # coloured map | output | target
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    loaded = load_gan(tmp_path / "model.ckpt")
    assert type(loaded) is GauGAN and loaded.num_classes == 5 and torch.equal(loaded.sample(source=source), images)


def test_missing_vgg_weights_stop_the_run_before_its_first_step(tmp_path):
    model = tiny_gaugan(vgg_weights=str(tmp_path / "vgg19.pth"))
    trainer = quiet_trainer(tmp_path, fast_dev_run=1)
    with pytest.raises(MissingFileError, match="^vgg_weights="):
        trainer.fit(model, tiny_pairs(model, batch_size=2))
    assert model.batches_seen == 0
