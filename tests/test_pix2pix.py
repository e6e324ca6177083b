"""Pix2Pix (Isola et al. 2017): the U-Net generator, the 70x70 PatchGAN, the objective, test-time noise, training."""

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image
from torch import nn

from gans import Pix2Pix
from gans.errors import ConfigurationError
from gans.nets.patchgan import PatchDiscriminator, receptive_field
from gans.nets.unet import UNetGenerator
from gans.outputs import GeneratorOutput
from gans.pix2pix import stochastic_inference

# ---------------------------------------------------------------------------------------------------------------
# U-Net
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [8, 32, 64, 256])
def test_unet_shapes(size):
    g = UNetGenerator(source_channels=3, channels=2, image_size=size, features=2)
    assert g.num_downs == size.bit_length() - 1  # log2: a 1x1 bottleneck
    out = g(torch.randn(2, 3, size, size))
    assert out.shape == (2, 2, size, size)
    assert out.abs().max() <= 1  # tanh


def test_unet_shallower_than_the_bottleneck_takes_any_multiple():
    g = UNetGenerator(1, 1, image_size=48, features=4, num_downs=4)
    assert g(torch.randn(1, 1, 48, 48)).shape == (1, 1, 48, 48)
    # 48 is no power of two: the default depth log2(48) cannot halve it down to 1x1.
    with pytest.raises(ConfigurationError, match="image_size=48"):
        UNetGenerator(1, 1, image_size=48)
    with pytest.raises(ConfigurationError, match="num_downs=1"):
        UNetGenerator(1, 1, image_size=8, num_downs=1)


def test_unet_skips_carry_the_input():
    # The decoder sees each encoder level's input: an output pixel depends on its own input pixel through the
    # outermost skip, even where the bottleneck carries nothing of it.
    g = UNetGenerator(1, 1, image_size=16, features=4, dropout=0.0).eval()
    x = torch.randn(1, 1, 16, 16, requires_grad=True)
    g(x)[0, 0, 5, 5].backward()
    assert x.grad[0, 0, 5, 5] != 0


def test_unet_256_parameter_count_is_the_reference():
    # The authors' unet_256 (ngf 64, batch norm, RGB to RGB): pix2pix prints "[Network G] Total number of parameters :
    # 54.414 M" for facades. Counted by hand from their UnetSkipConnectionBlock (no conv bias before a batch norm,
    # none on the innermost map's missing norm, the outermost transposed conv with its bias):
    down_convs = 16 * (3 * 64 + 64 * 128 + 128 * 256 + 256 * 512 + 4 * 512 * 512)
    down_norms = 2 * (128 + 256 + 4 * 512)  # every encoder level but the outermost and the innermost
    up_convs = 16 * (512 * 512 + 3 * 1024 * 512 + 1024 * 256 + 512 * 128 + 256 * 64 + 128 * 3) + 3
    up_norms = 2 * (4 * 512 + 256 + 128 + 64)
    expected = down_convs + down_norms + up_convs + up_norms
    assert expected == 54_413_955  # 54.414 M
    g = UNetGenerator(3, 3, image_size=256, features=64)
    assert g.num_downs == 8
    assert sum(p.numel() for p in g.parameters()) == expected
    # unet_128 is the same network one level shallower (its 7 downsamplings).
    assert UNetGenerator(3, 3, image_size=128).num_downs == 7


def test_unet_dropout_and_bias_follow_the_reference():
    g = UNetGenerator(3, 3, image_size=256, features=4)
    dropouts = [m for m in g.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 8 - 5 and all(m.p == 0.5 for m in dropouts)  # the num_downs - 5 inner 8x blocks
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    # Batch norm: only the output layer keeps a bias; instance norm (no affine shift): every convolution does.
    assert [m.bias is not None for m in convs].count(True) == 1
    instance = UNetGenerator(3, 3, image_size=256, features=4, norm="instance")
    assert all(m.bias is not None for m in instance.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in instance.modules())


def test_unet_init_is_normal_002():
    g = UNetGenerator(3, 3, image_size=64, features=64)
    weights = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(weights.std().item() - 0.02) < 1e-3 and abs(weights.mean().item()) < 1e-3
    scales = torch.cat([m.weight for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(scales.mean().item() - 1) < 0.01 and 0.01 < scales.std().item() < 0.03


# ---------------------------------------------------------------------------------------------------------------
# The discriminator and the objective
# ---------------------------------------------------------------------------------------------------------------


def tiny_pix2pix(image_size: int = 8, **kwargs) -> Pix2Pix:
    return Pix2Pix(
        channels=1, source_channels=2, image_size=image_size, generator={"init_args": {"features": 2}},
        discriminator={"init_args": {"features": 2, "n_layers": 1}}, **kwargs,
    )


def test_patchgan_sees_70x70_patches():
    model = Pix2Pix(channels=3, image_size=256, generator={"init_args": {"features": 1}},
                    discriminator={"init_args": {"features": 2}})
    d = model.discriminator
    assert isinstance(d, PatchDiscriminator)
    assert d.blocks[0][0].in_channels == 6  # conditioned: source and image stacked
    # Computed from the layers: 4x4 convolutions of strides 2, 2, 2, 1, 1.
    assert receptive_field(d.modules()) == 70
    assert d(torch.randn(1, 6, 256, 256)).shape == (1, 1, 30, 30)  # the paper's 30x30 map of patch scores


class ImageAsLogits(nn.Module):
    """A discriminator whose logit map is the image channel of its (source, image) input, so that the losses of
    known images can be computed by hand."""

    def forward(self, x):
        return x[:, -1:]


def test_losses_against_hand_computed_values():
    model = tiny_pix2pix()
    model.discriminator = ImageAsLogits()
    source = torch.zeros(2, 2, 8, 8)
    real = torch.full((2, 1, 8, 8), 0.5)
    fake = GeneratorOutput.of(torch.zeros(2, 1, 8, 8))
    log2 = math.log(2)
    d = model.d_loss(real, fake, source=source)
    # The reference's vanilla GAN loss, halved: 0.5 * (BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)), logits 0.5 and 0.
    assert d["d_loss"].item() == pytest.approx(0.5 * (math.log1p(math.exp(-0.5)) + log2))
    g = model.g_loss(real, fake, source=source)
    # BCE(D(x, G(x)), 1) + 100 * mean |y - G(x)| = log 2 + 100 * 0.5.
    assert g["g_gan"].item() == pytest.approx(log2)
    assert g["g_l1"].item() == pytest.approx(0.5)
    assert g["g_loss"].item() == pytest.approx(log2 + 50)
    model.lambda_l1, model.d_loss_weight = 0.0, 1.0
    assert model.g_loss(real, fake, source=source)["g_loss"].item() == pytest.approx(log2)
    assert model.d_loss(real, fake, source=source)["d_loss"].item() == pytest.approx(2 * d["d_loss"].item())
    with pytest.raises(ConfigurationError, match="lambda_l1=-1"):
        tiny_pix2pix(lambda_l1=-1)


# ---------------------------------------------------------------------------------------------------------------
# Test-time noise: dropout and batch statistics
# ---------------------------------------------------------------------------------------------------------------


def test_dropout_and_batch_statistics_stay_on_at_test_time():
    torch.manual_seed(0)
    model = tiny_pix2pix(image_size=64)  # 6 downsamplings: one dropout level
    model.eval()
    assert any(isinstance(m, nn.Dropout) for m in model.generator.modules())
    norms = [m for m in model.generator.modules() if isinstance(m, nn.BatchNorm2d)]
    before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    source = torch.rand(2, 2, 64, 64) * 2 - 1
    a, b = model.sample(source=source), model.sample(source=source)
    assert not torch.equal(a, b)  # dropout is the model's noise
    assert not model.generator.training and all(m.track_running_stats for m in norms)
    after = model.generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running statistics (and their count) untouched
    # Seeded, the masks repeat, and the caller's random stream does not move.
    state = torch.get_rng_state()
    seeded = model.sample(source=source, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(seeded, model.sample(source=source, generator=torch.Generator().manual_seed(3)))
    # Batch statistics: each image of a batch of one is normalised by its own statistics, not the running ones.
    model.test_time_noise = False
    c, d = model.sample(source=source), model.sample(source=source)
    assert torch.equal(c, d)  # eval mode: deterministic, with the running statistics
    with stochastic_inference(model.generator):
        for m in model.generator.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        noiseless = model.generator(source)
    assert not torch.allclose(noiseless, c, atol=1e-3)  # batch statistics differ from the (initial) running ones


# ---------------------------------------------------------------------------------------------------------------
# Training on a paired folder
# ---------------------------------------------------------------------------------------------------------------


def write_ab_folder(root: Path, split: str, n: int, size: int = 16) -> None:
    """``n`` pix2pix-layout PNGs (A | B side by side, B the negative of A) under ``root / split``."""
    folder = root / split
    folder.mkdir(parents=True)
    rng = torch.Generator().manual_seed(len(split))
    for i in range(n):
        a = torch.randint(0, 256, (size, size, 3), generator=rng, dtype=torch.uint8)
        Image.fromarray(torch.cat([a, 255 - a], dim=1).numpy()).save(folder / f"{i}.png")


def test_fast_dev_run_on_a_paired_folder(tmp_path):
    from datamodules import PairedImageDataModule

    write_ab_folder(tmp_path / "ab", "train", 4)
    write_ab_folder(tmp_path / "ab", "val", 2)
    data = PairedImageDataModule(data_dir=str(tmp_path / "ab"), load_size=18, crop_size=16, batch_size=2, seed=0)
    model = Pix2Pix(channels=3, image_size=16, generator={"init_args": {"features": 2}},
                    discriminator={"init_args": {"features": 2, "n_layers": 1}})
    trainer = L.Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, data)
    logged = trainer.logged_metrics
    for name in ("train/g_loss", "train/g_gan", "train/g_l1", "train/d_loss", "val/l1", "val/psnr", "val/ssim"):
        assert torch.isfinite(logged[name]), name
    assert trainer.global_step == 2
    assert len(model.fixed) == 4  # sources kept for the grids
