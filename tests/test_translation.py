"""The pieces every translation variant shares: the Translation base (kept examples, grids, evaluation, metrics'
real images), the PatchGAN discriminators, feature matching, the VGG perceptual loss and pix2pix's linear decay."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import quiet_trainer, same, tiny_pairs
from torch import Tensor, nn
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from callbacks import IterationCheckpoint, SampleGrid
from callbacks.samples import to_grid
from gans.base import load_gan
from gans.errors import ConfigurationError, MissingFileError
from gans.losses import feature_matching
from gans.nets.patchgan import MultiscaleDiscriminator, PatchDiscriminator, receptive_field
from gans.optim import LinearDecay
from gans.perceptual import VGG19_LAYERS, VGGFeatures, VGGLoss
from gans.translation import FixedExamples, Translation, as_rgb

# ---------------------------------------------------------------------------------------------------------------
# A minimal translation variant over the base: a 3x3 conv generator and the pix2pix PatchGAN
# ---------------------------------------------------------------------------------------------------------------


class Conv(nn.Module):
    def __init__(self, source_channels: int, channels: int, image_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(source_channels, channels, 3, padding=1)

    def forward(self, source: Tensor) -> Tensor:
        return torch.tanh(self.conv(source))


class ConvTranslation(Translation):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.generator = self.build_network("generator", Conv, self.source_channels, self.channels, self.image_size)
        self.discriminator = PatchDiscriminator(self.source_channels + self.channels, self.image_size, 4, 1, "none")


def tiny_model(**kwargs) -> ConvTranslation:
    return ConvTranslation(channels=1, source_channels=2, image_size=8, num_fixed=6, **kwargs)


def test_translation_refuses_latents_and_packing():
    with pytest.raises(ConfigurationError, match="latent_dim=4: a translation model has no latent"):
        ConvTranslation(latent_dim=4)
    with pytest.raises(ConfigurationError, match="pack=2"):
        ConvTranslation(pack=2)


def test_sampling_needs_sources_and_translates_them():
    torch.manual_seed(0)
    model = tiny_model()
    with pytest.raises(TypeError, match="needs the source images"):
        model.sample(4)
    source = model.random_source(4, torch.Generator().manual_seed(0))
    assert source.shape == (4, 2, 8, 8) and source.min() >= -1 and source.max() <= 1
    torch.testing.assert_close(model.sample(source=source), torch.tanh(model.generator.conv(source)))
    with pytest.raises(ConfigurationError, match="keeps 0 sources and 3 were asked"):
        model.sample_inputs(3)


def test_kept_examples_grid_and_checkpoint(tmp_path):
    L.seed_everything(0, verbose=False)
    model = tiny_model()
    data = tiny_pairs(model, batch_size=4)
    checkpoint = IterationCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1000)
    trainer = quiet_trainer(tmp_path, max_steps=3, enable_checkpointing=True, callbacks=[checkpoint])
    trainer.fit(model, data)
    sources, targets = next(iter(data.train_dataloader())), next(iter(data.train_dataloader()))[1]
    first_two = torch.cat([b[0] for b in list(data.train_dataloader())[:2]])  # 4 + 2 of the first two batches
    assert len(model.fixed) == 6 and torch.equal(model.fixed.source, first_two[:6])
    assert torch.equal(model.fixed.target[:4], targets)
    del sources
    # The grid: rows of input | output | target for the kept sources.
    grids = SampleGrid(num_samples=4, interpolation_rows=2).images(model)
    assert set(grids) == {"fixed"}  # no latents to interpolate
    source, target = model.fixed.source[:4], model.fixed.target[:4]
    output = model.sample(source=source)
    expected = torch.stack([as_rgb(source), as_rgb(output), as_rgb(target)], dim=1).flatten(0, 1)
    torch.testing.assert_close(grids["fixed"], to_grid(expected, 3))
    # More inputs than kept: drawn from the attached data module's training pairs.
    inputs = model.sample_inputs(10, torch.Generator().manual_seed(0))
    pool = data.train_dataloader().dataset.tensors[0]
    assert inputs["source"].shape == (10, 2, 8, 8) and inputs["z"].shape == (10, 0)
    assert all(any(torch.equal(s, p) for p in pool) for s in inputs["source"])
    # The kept examples travel with the checkpoint (extra state) and load_gan.
    loaded = load_gan(tmp_path / "ckpt" / "last.ckpt")
    assert same(loaded.fixed.get_extra_state(), model.fixed.get_extra_state())
    assert torch.equal(loaded.sample_inputs(6)["source"], model.fixed.source)


def test_fixed_examples_stop_at_capacity():
    kept = FixedExamples(3)
    kept.keep(torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2))
    kept.keep(torch.full((2, 1, 2, 2), 5.0), torch.full((2, 1, 2, 2), 6.0))
    kept.keep(torch.full((2, 1, 2, 2), 7.0), torch.full((2, 1, 2, 2), 8.0))
    assert len(kept) == 3 and kept.source[:, 0, 0, 0].tolist() == [0, 0, 5] and kept.target[2, 0, 0, 0] == 6


def test_evaluation_terms_are_l1_psnr_and_ssim_of_the_translations():
    torch.manual_seed(0)
    model = tiny_model().eval()
    source = model.random_source(4, torch.Generator().manual_seed(1))
    target = torch.rand(4, 1, 16, 16)[..., :8, :8] * 2 - 1
    terms = model.evaluation_terms(target, source=source)
    fake = model.sample(source=source)
    torch.testing.assert_close(terms["l1"], (fake - target).abs().mean())
    psnr = PeakSignalNoiseRatio(data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3))((fake + 1) / 2, (target + 1) / 2)
    ssim = StructuralSimilarityIndexMeasure(data_range=1.0)((fake + 1) / 2, (target + 1) / 2)
    torch.testing.assert_close(terms["psnr"], psnr)
    torch.testing.assert_close(terms["ssim"], ssim)
    mse = ((fake - target) / 2).square().mean(dim=(1, 2, 3))  # per image
    torch.testing.assert_close(terms["psnr"], (-10 * torch.log10(mse)).mean())  # PSNR's definition, data range 1
    # Per image, then averaged: the value does not depend on how the images are batched.
    halves = [model.evaluation_terms(target[i : i + 2], source=source[i : i + 2])["psnr"] for i in (0, 2)]
    torch.testing.assert_close(terms["psnr"], sum(halves) / 2)
    perfect = model.evaluation_terms(fake, source=source)
    assert perfect["l1"] == 0 and perfect["ssim"] > 0.999
    assert {"d_loss", "d_real", "d_fake"} <= terms.keys()


def test_validation_logs_the_translation_terms(tmp_path):
    model = tiny_model()
    trainer = quiet_trainer(tmp_path, limit_val_batches=2)
    (val,) = trainer.validate(model, tiny_pairs(model))
    assert {"val/l1", "val/psnr", "val/ssim", "val/d_real", "val/d_fake"} <= val.keys()


def test_predict_translates_each_source(tmp_path):
    model = tiny_model()
    source = model.random_source(5, torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(source, batch_size=2)
    trainer = quiet_trainer(tmp_path)
    out = torch.cat(trainer.predict(model, loader))
    torch.testing.assert_close(out, model.sample(source=source))


def test_metric_images_are_the_targets():
    model = tiny_model()
    item = (torch.zeros(2, 2, 8, 8), torch.ones(2, 1, 8, 8))
    assert torch.equal(model.metric_images(item), item[1])
    from gans import DCGAN

    assert torch.equal(DCGAN.metric_images(None, item), item[0])


# ---------------------------------------------------------------------------------------------------------------
# PatchGAN
# ---------------------------------------------------------------------------------------------------------------


def test_patchgan_receptive_field_is_70_computed_from_its_layers():
    d = PatchDiscriminator(6, 256)
    # 1 + 3 * (1 + 2 + 4 + 8 + 8): three stride-2 4x4 convolutions, then two of stride 1 (pix2pix's 70x70 PatchGAN).
    assert receptive_field(d.modules()) == 70 == d.receptive_field
    assert PatchDiscriminator(6, 256, n_layers=1).receptive_field == 16  # the "16x16 PatchGAN" of the paper
    assert d(torch.zeros(1, 6, 256, 256)).shape == (1, 1, 30, 30)
    # Empirically: a score changes only with the pixels of its 70x70 window.
    x = torch.randn(1, 6, 256, 256, requires_grad=True)
    d.eval()(x)[0, 0, 10, 10].backward()
    rows, cols = x.grad[0].abs().sum(0).nonzero(as_tuple=True)
    assert rows.max() - rows.min() + 1 <= 70 and cols.max() - cols.min() + 1 <= 70


def test_patchgan_parameter_count_is_pix2pix():
    # pix2pix's basic D for 3+3 channels with batch norm: 2,768,705 parameters (its log: "Total number of parameters:
    # 2.769 M"); by hand: convs 6*64*16+64, 64*128*16, 128*256*16, 256*512*16, 512*16+1 and BN 2*(128+256+512).
    expected = (6 * 64 * 16 + 64) + 64 * 128 * 16 + 128 * 256 * 16 + 256 * 512 * 16 + (512 * 16 + 1) + 2 * (128 + 256 + 512)
    assert sum(p.numel() for p in PatchDiscriminator(6, 256).parameters()) == expected == 2_768_705


def test_multiscale_discriminator_returns_three_halving_scales():
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(4, 64, features=8)
    x = torch.randn(2, 4, 64, 64)
    scores = d(x)
    # Inputs 64, 32, 16; each 4x4 conv with padding 2 maps s to (s + 4 - 4) // stride + 1: strides 2, 2, 2, 1, 1 give
    # 64 -> 33 -> 17 -> 9 -> 10 -> 11, 32 -> 17 -> 9 -> 5 -> 6 -> 7, 16 -> 9 -> 5 -> 3 -> 4 -> 5.
    assert [s.shape for s in scores] == [(2, 1, 11, 11), (2, 1, 7, 7), (2, 1, 5, 5)]
    features = d.features(x)
    assert len(features) == 3 and all(len(f) == 5 for f in features)
    half = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    torch.testing.assert_close(scores[1], d.discriminators[1](half))
    with pytest.raises(ConfigurationError, match="too small"):
        PatchDiscriminator(3, 4, n_layers=3)


def test_feature_matching_against_its_formula():
    real = [[torch.tensor([1.0, 2.0]), torch.tensor([0.0]), torch.tensor([9.0])],
            [torch.tensor([4.0]), torch.tensor([5.0])]]
    fake = [[torch.tensor([2.0, 0.0], requires_grad=True), torch.tensor([3.0]), torch.tensor([-9.0])],
            [torch.tensor([1.0]), torch.tensor([0.0])]]
    # Scale 1: mean(|1|, |2|) = 1.5 and |3| = 3; scale 2: |3|; scores excluded; the mean over 2 discriminators.
    assert float(feature_matching(real, fake).detach()) == pytest.approx((1.5 + 3 + 3) / 2)
    assert float(feature_matching(real, fake, layer_weight=2.0).detach()) == pytest.approx(7.5)
    feature_matching(real, fake).backward()
    assert fake[0][0].grad is not None


# ---------------------------------------------------------------------------------------------------------------
# VGG perceptual loss
# ---------------------------------------------------------------------------------------------------------------


def test_vgg_layer_table_matches_torchvision():
    from torchvision.models import vgg19

    layers = vgg19().features
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    assert [VGG19_LAYERS[n] for n in VGG19_LAYERS if n.startswith("conv")] == convs
    assert all(isinstance(layers[VGG19_LAYERS[n]], nn.ReLU) for n in VGG19_LAYERS if n.startswith("relu"))
    # pix2pixHD's slices end at relu1_1 .. relu5_1: features[0:2], [2:7], [7:12], [12:21], [21:30].
    assert [VGG19_LAYERS[f"relu{b}_1"] + 1 for b in range(1, 6)] == [2, 7, 12, 21, 30]
    assert VGG19_LAYERS["relu5_4"] == 35 and VGG19_LAYERS["relu2_2"] == 8


def test_vgg_loss_against_a_direct_computation(tmp_path):
    from torchvision.models import vgg19

    torch.manual_seed(0)
    reference = vgg19().features.eval()
    torch.save(reference.state_dict(), tmp_path / "vgg.pth")
    fake, real = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    srgan = VGGLoss.srgan("relu2_2", weights=str(tmp_path / "vgg.pth"))
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    phi = reference[:9]
    expected = F.mse_loss(phi(((fake + 1) / 2 - mean) / std) / 12.75, phi(((real + 1) / 2 - mean) / std) / 12.75)
    torch.testing.assert_close(srgan(fake, real), expected, rtol=1e-4, atol=1e-6)
    hd = VGGLoss.pix2pixhd(weights=str(tmp_path / "vgg.pth"))
    slices, weights = [(0, 2), (2, 7), (7, 12), (12, 21), (21, 30)], [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0]
    x, y, expected = fake, real, 0.0
    for (a, b), w in zip(slices, weights):
        x, y = reference[a:b](x), reference[a:b](y)
        expected = expected + w * F.l1_loss(x, y)
    torch.testing.assert_close(hd(fake, real), expected, rtol=1e-4, atol=1e-6)
    assert VGGLoss.srgan().network is None  # lazy: nothing loaded until the first use


def test_vgg_weights_missing_are_named(tmp_path):
    with pytest.raises(MissingFileError, match="vgg_weights='.*nope.pth' does not exist"):
        VGGFeatures(["relu1_1"], weights=str(tmp_path / "nope.pth"))
    (tmp_path / "photo.jpg").write_bytes(b"not a tensor file")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    for wrong in ("photo.jpg", "other.pt"):
        with pytest.raises(ConfigurationError, match=rf"^vgg_weights='.*{wrong}' is not a state dict of torchvision's"):
            VGGFeatures(["relu1_1"], weights=str(tmp_path / wrong))
    with pytest.raises(ConfigurationError, match="layers=\\['relu9_9'\\]"):
        VGGFeatures(["relu9_9"], weights=None)
    features = VGGFeatures(["relu1_1", "relu2_1"], weights=None)
    out = features(torch.zeros(1, 1, 16, 16))  # grey images are repeated to three channels
    assert [o.shape for o in out] == [(1, 64, 16, 16), (1, 128, 8, 8)]
    assert not any(p.requires_grad for p in features.parameters()) and not features.train().training


# ---------------------------------------------------------------------------------------------------------------
# pix2pix's linear decay
# ---------------------------------------------------------------------------------------------------------------


def test_linear_decay_follows_the_reference_rule():
    params = [nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.Adam(params, lr=2e-4)
    scheduler = LinearDecay(optimizer, constant=3, decay=4)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(7):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    # The reference's lambda_rule(epoch) = 1 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1), epoch 0-based.
    expected = [2e-4 * (1 - max(0, e + 1 - 3) / 5) for e in range(8)]
    assert rates == pytest.approx(expected) and rates[-1] == 0 and scheduler.total_steps == 7
    with pytest.raises(ConfigurationError, match="decay=0"):
        LinearDecay(optimizer, 3, 0)


def test_fid_compares_translations_of_training_sources_with_the_targets(tmp_path):
    from testdoubles import TinyFeatures

    from callbacks import GANMetrics
    from callbacks.metrics import feature_statistics, frechet_distance, to_uint8_rgb

    L.seed_everything(0, verbose=False)
    model = tiny_model()
    data = tiny_pairs(model)
    metric = GANMetrics(every_n_steps=2, num_samples=24, metrics=["fid"], batch_size=10, cache_dir=str(tmp_path),
                        feature_extractor="testdoubles.TinyFeatures")
    quiet_trainer(tmp_path, max_steps=2, callbacks=[metric]).fit(model, data)
    # The callback's fakes: 24 training sources drawn with its seed (more than the 6 kept), translated.
    inputs = model.sample_inputs(24, torch.Generator().manual_seed(metric.seed))
    extractor = TinyFeatures().requires_grad_(False)
    fake, _ = extractor(to_uint8_rgb(model.sample(**inputs)))
    sources, targets = data.train_dataloader().dataset.tensors
    assert all(any(torch.equal(s, p) for p in sources) for s in inputs["source"])
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(metric.seed))
    real, _ = extractor(to_uint8_rgb(targets[order]))  # the targets, not the sources
    expected = frechet_distance(*feature_statistics(real), *feature_statistics(fake))
    assert metric.last["fid"] == pytest.approx(expected, rel=1e-6)


def test_spade_discriminators_are_initialised_as_its_generator():
    # SPADE initialises D with Xavier-normal weights of gain 0.02 (its first conv: std 0.02 * sqrt(2 / (fan_in +
    # fan_out))); pix2pix's N(0, 0.02) otherwise.
    torch.manual_seed(0)
    xavier = PatchDiscriminator(38, 256, init="xavier").blocks[0][0].weight.detach()
    expected = 0.02 * (2 / (38 * 16 + 64 * 16)) ** 0.5
    assert float(xavier.std()) == pytest.approx(expected, rel=0.05)
    normal = PatchDiscriminator(38, 256).blocks[0][0].weight.detach()
    assert float(normal.std()) == pytest.approx(0.02, rel=0.05)
    with pytest.raises(ConfigurationError, match="init='kaiming'"):
        PatchDiscriminator(3, 64, init="kaiming")
