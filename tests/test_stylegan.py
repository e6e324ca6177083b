"""StyleGAN (v1): the synthesis network's layers (AdaIN, noise, blurred and fused resampling), shapes at every
resolution and growth stage, the official parameter counts, style mixing and truncation in the module, growth with
the fade-in callback, and two processes under gan_ddp."""

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import quiet_trainer
from test_ddp import clean_distributed_env  # noqa: F401 (fixture)
from test_gan_ddp import SaveState

from callbacks import GeneratorEMA, ProgressiveGrowing
from datamodules import MNISTDataModule
from gans import StyleGAN, load_gan
from gans.errors import ConfigurationError
from gans.nets import StyleGANDiscriminator, StyleGANGenerator
from gans.nets.stylegan import AdaIN, DownConv2d, NoiseInput, UpConv2d, blur, instance_norm
from gans.sample import Controls, sample_to_file

TINY_STYLEGAN = {
    "latent_dim": 8, "channels": 1, "image_size": 16,
    "generator": {"init_args": {"fmap_max": 8, "mapping_layers": 2}},
    "discriminator": {"init_args": {"fmap_max": 8}},
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: intra-op threads only spin on a shared machine
    yield
    torch.set_num_threads(threads)


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_are_the_official_networks():
    """The totals the official code prints for the FFHQ 1024x1024 networks (NVlabs/stylegan README's
    ``Gs.print_layers()``: 26,219,627; ``D.print_layers()``: 23,087,249), with the paper's defaults."""
    generator, discriminator = StyleGANGenerator(512, 3, 1024), StyleGANDiscriminator(3, 1024)
    assert parameter_count(generator) == 26_219_627 and parameter_count(discriminator) == 23_087_249
    assert parameter_count(generator.mapping) == 8 * (512 * 512 + 512) and generator.num_ws == 18
    # Upsampling and downsampling fused into the convolutions from 128x128 on (the official fused_scale="auto").
    assert [block.conv0.fused for block in generator.synthesis.blocks[1:]] == [False] * 4 + [True] * 4
    assert [block[3].fused for block in discriminator.blocks[1:]] == [False] * 4 + [True] * 4


@pytest.mark.parametrize("image_size", [8, 32, 128])
def test_shapes_at_every_resolution_and_stage(image_size):
    torch.manual_seed(0)
    generator = StyleGANGenerator(8, 3, image_size, fmap_max=8, mapping_layers=2)
    discriminator = StyleGANDiscriminator(3, image_size, fmap_max=8)
    num_ws = 2 * image_size.bit_length() - 4  # 2 * log2(image_size) - 2
    assert generator.num_ws == generator.synthesis.num_ws == num_ws
    z = torch.randn(4, 8)
    for resolution in generator.resolutions:
        for alpha in (0.0, 0.5, 1.0):
            generator.grow(resolution, alpha)
            discriminator.grow(resolution, alpha)
            out = generator(z)
            assert out.images.shape == (4, 3, resolution, resolution) and out.ws.shape == (4, num_ws, 8)
            assert discriminator(out.images).shape == (4,)
            assert generator.synthesis.num_ws_used == 2 * generator.resolutions.index(resolution) + 2
    with pytest.raises(ValueError, match=rf"\[N, {num_ws}, 8\]"):
        generator.synthesis(torch.randn(4, num_ws - 1, 8))


def test_fused_resampling_computes_the_separate_operations():
    """The fused transposed and strided convolutions equal nearest upsampling + 3x3 convolution and 3x3 convolution +
    2x2 average pooling, as the official fused_scale does."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6)
    up, down = UpConv2d(3, 5, fused=False), DownConv2d(3, 5, fused=False)
    torch.nn.init.normal_(down.bias)
    separate = up(x), down(x)
    up.fused = down.fused = True
    torch.testing.assert_close(up(x), separate[0])
    torch.testing.assert_close(down(x), separate[1])
    torch.testing.assert_close(separate[0], F.conv2d(F.interpolate(x, scale_factor=2), up.weight * up.weight_gain,
                                                     padding=1))


def test_blur_is_the_normalised_binomial_filter():
    x = torch.zeros(1, 2, 5, 5)
    x[0, 1, 2, 2] = 16.0
    expected = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]])
    out = blur(x)
    assert torch.equal(out[0, 1, 1:4, 1:4], expected) and out[0, 0].abs().sum() == 0 and out.sum() == 16


def test_adain_normalises_each_channel_then_applies_the_style():
    torch.manual_seed(0)
    adain = AdaIN(3, 4)
    torch.nn.init.normal_(adain.affine.bias)
    x, w = torch.randn(2, 3, 5, 5) * 3 + 1, torch.randn(2, 4)
    style = w @ (adain.affine.weight * adain.affine.weight_gain).t() + adain.affine.bias  # [N, 2C], by hand
    scale, bias = style[:, :3] + 1, style[:, 3:]
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = (x - mean).square().mean(dim=(2, 3), keepdim=True).sqrt()
    expected = scale[:, :, None, None] * (x - mean) / std + bias[:, :, None, None]
    torch.testing.assert_close(adain(x, w), expected)
    normalised = instance_norm(x)
    torch.testing.assert_close(normalised.mean(dim=(2, 3)), torch.zeros(2, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(normalised.var(dim=(2, 3), unbiased=False), torch.ones(2, 3))
    # A fresh layer's scale is 1 + A(w)_s with a zero bias (the official style_mod): the affine map starts unbiased.
    assert torch.equal(AdaIN(3, 4).affine.bias, torch.zeros(6))


def test_noise_scales_start_at_zero_and_noise_acts_only_through_them():
    torch.manual_seed(0)
    generator = StyleGANGenerator(8, 1, 16, fmap_max=8, mapping_layers=2)
    noises = [m for m in generator.modules() if isinstance(m, NoiseInput)]
    assert len(noises) == generator.num_ws and all(torch.equal(n.weight, torch.zeros_like(n.weight)) for n in noises)
    z = torch.randn(3, 8)
    ws = generator.mapping(z)
    outputs = [generator.synthesis(ws, noise_mode=mode) for mode in ("random", "random", "const", "none")]
    assert all(torch.equal(outputs[0], out) for out in outputs[1:])  # zero scales: no noise reaches the images
    images = generator.synthesis(ws, noise_mode="random")
    images.sum().backward()
    assert all(n.weight.grad.abs().sum() > 0 for n in noises)  # yet each scale learns
    with torch.no_grad():
        noises[-1].weight.fill_(0.5)
    first, second = (generator.synthesis(ws, noise_mode="random") for _ in range(2))
    assert not torch.equal(first, second)
    assert torch.equal(generator.synthesis(ws, noise_mode="const"), generator.synthesis(ws, noise_mode="const"))
    assert torch.equal(generator.synthesis(ws, noise_mode="none"), outputs[0])
    # One noise image per sample, shared by every channel of the layer.
    layer = NoiseInput(4, 8)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    added = layer(torch.zeros(2, 4, 8, 8))
    torch.testing.assert_close(added / torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1), added[:, :1].expand(2, 4,
                               8, 8))


def test_a_new_block_at_alpha_zero_computes_the_previous_resolution():
    torch.manual_seed(0)
    generator, discriminator = StyleGANGenerator(8, 3, 16, fmap_max=8), StyleGANDiscriminator(3, 16, fmap_max=8)
    for noise in (m for m in generator.modules() if isinstance(m, NoiseInput)):
        torch.nn.init.normal_(noise.weight)  # noise that matters, fixed (const) so that the passes compare
    z, image = torch.randn(4, 8), torch.randn(4, 3, 16, 16)
    for previous, resolution in ((4, 8), (8, 16)):
        generator.grow(previous)
        old = F.interpolate(generator(z, noise_mode="const").images, scale_factor=2, mode="nearest")
        generator.grow(resolution, 0.0)
        assert torch.equal(generator(z, noise_mode="const").images, old)
        generator.grow(resolution, 1.0)
        new = generator(z, noise_mode="const").images
        generator.grow(resolution, 0.25)
        torch.testing.assert_close(generator(z, noise_mode="const").images, torch.lerp(old, new, 0.25))
        x = F.avg_pool2d(image, 16 // resolution)
        discriminator.grow(previous)
        old_score = discriminator(F.avg_pool2d(x, 2))
        discriminator.grow(resolution, 0.0)
        assert torch.equal(discriminator(x), old_score)


class RecordMapping(torch.nn.Module):
    """Wraps a mapping network and records each call's latents, output and whether it updated w_avg."""

    def __init__(self, mapping: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = mapping, []

    def forward(self, z, c=None, **kwargs):
        ws = self.inner(z, c, **kwargs)
        self.calls.append((z, ws.detach(), kwargs.get("update_emas", False)))
        return ws


def crossovers(model: StyleGAN, draws: int) -> list[int]:
    """The crossover layer of each of ``draws`` training batches (``num_ws`` when a batch was not mixed), checked
    against the two mapped latents."""
    recorder = RecordMapping(model.generator.mapping)
    model.generator.mapping = recorder
    found = []
    try:
        for _ in range(draws):
            recorder.calls.clear()
            ws = model.generate(3).ws
            (z, first, updated), *rest = recorder.calls
            assert updated and all(not u for _, _, u in rest)  # w_avg follows the first latents only
            layer = next((i for i in range(ws.shape[1]) if not torch.equal(ws[:, i], first[:, i])), ws.shape[1])
            assert torch.equal(ws[:, :layer], first[:, :layer])
            if rest:
                (z2, second, _), = rest
                assert not torch.equal(z2, z) and torch.equal(ws[:, layer:], second[:, layer:])
            found.append(layer)
    finally:
        model.generator.mapping = recorder.inner
    return found


def test_style_mixing_takes_the_second_latent_from_the_crossover_layer():
    torch.manual_seed(0)
    model = StyleGAN(**{**TINY_STYLEGAN, "image_size": 32})
    found = crossovers(model, 100)  # 8 layers at 32x32
    mixed = [c for c in found if c < 8]
    assert 78 <= len(mixed) <= 99  # 90% of the batches (binomial: 90 +- 3)
    assert set(mixed) == set(range(1, 8))  # layer 0 always from the first latent
    model.set_growth(8, 0.5)  # 4 layers in use: the crossover falls among them
    assert set(crossovers(model, 60)) == {1, 2, 3, 8}
    model = StyleGAN(**{**TINY_STYLEGAN, "style_mixing_prob": 0.0})
    assert set(crossovers(model, 10)) == {model.num_ws}


def test_w_avg_tracks_the_mean_w_of_the_training_batches():
    torch.manual_seed(0)
    model = StyleGAN(**TINY_STYLEGAN, style_mixing_prob=0.0)
    assert torch.equal(model.w_avg, torch.zeros(8))
    torch.manual_seed(1)
    fake = model.generate(16)
    torch.testing.assert_close(model.w_avg, 0.005 * fake.ws[:, 0].detach().mean(dim=0))
    before = model.w_avg.clone()
    model.sample(4)  # sampling leaves it alone
    assert torch.equal(model.w_avg, before)


def test_truncation_towards_the_mean_w():
    torch.manual_seed(0)
    model = StyleGAN(**TINY_STYLEGAN)
    with torch.no_grad():
        model.generator.mapping.w_avg.normal_()
    z = torch.randn(5, 8)
    plain = model.sample_output(z=z)
    assert torch.equal(model.sample_output(z=z, truncation_psi=1.0).ws, plain.ws)
    centre = model.sample_output(z=z, truncation_psi=0.0)
    assert torch.equal(centre.ws, model.w_avg.expand(5, model.num_ws, 8))
    assert torch.equal(centre.images, centre.images[:1].expand(5, -1, -1, -1))  # const noise: one image
    half = model.sample_output(z=z, truncation_psi=0.5, truncation_cutoff=2).ws
    torch.testing.assert_close(half[:, :2], model.w_avg.lerp(plain.ws[:, :2], 0.5))
    assert torch.equal(half[:, 2:], plain.ws[:, 2:])
    # The editing surface gives the same: mapping with truncation, then synthesis of those ws.
    ws = model.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.equal(ws, half)
    torch.testing.assert_close(model.synthesis(ws).clamp(-1, 1), model.sample(z=z, truncation_psi=0.5,
                                                                             truncation_cutoff=2))
    ws = ws.detach().requires_grad_(True)
    model.synthesis(ws).sum().backward()
    assert ws.grad.abs().sum() > 0  # differentiable for projection
    for bad, message in (({"noise_mode": "fixed"}, "^noise_mode='fixed'"), ({"truncation_cutoff": -1},
                                                                             "^truncation_cutoff=-1")):
        with pytest.raises(ConfigurationError, match=message):
            model.sample(2, **bad)


def test_configuration_errors_name_the_value():
    with pytest.raises(ConfigurationError, match="^style_mixing_prob=1.5"):
        StyleGAN(**TINY_STYLEGAN, style_mixing_prob=1.5)
    progan = {"class_path": "gans.nets.ProGANGenerator", "init_args": {"fmap_max": 8}}
    with pytest.raises(ConfigurationError, match="^generator=ProGANGenerator is not style-based"):
        StyleGAN(**{**TINY_STYLEGAN, "generator": progan})


def data(data_dir):
    return MNISTDataModule(data_dir=str(data_dir), batch_size=4, image_size=16)


def test_grows_with_the_fade_in_callback_and_reloads(synthetic_mnist, tmp_path):
    """Batches of 4, 16 images per phase: 4x4 stabilized, then 8x8 and 16x16 faded in and stabilized; the EMA
    generator follows (its w_avg a copy of the generator's); a checkpoint remembers the stage."""
    L.seed_everything(0, verbose=False)
    model = StyleGAN(**TINY_STYLEGAN)
    trainer = quiet_trainer(tmp_path, max_steps=15, callbacks=[
        ProgressiveGrowing(fade_kimg=0.016, stabilize_kimg=0.016, reset_optimizer_state=True),
        GeneratorEMA(half_life_kimg=0.01, rampup=None),
    ])
    trainer.fit(model, data(synthetic_mnist))
    assert (model.resolution, model.alpha) == (16, 0.5) and model.generator_ema.resolution == 16
    assert torch.equal(model.w_avg, model.generator.mapping.w_avg) and model.w_avg.abs().sum() > 0
    assert model.sample(2).shape == (2, 1, 16, 16)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    loaded = load_gan(tmp_path / "model.ckpt")
    z = torch.randn(3, 8)
    assert (loaded.resolution, loaded.alpha) == (16, 0.5)
    assert torch.equal(loaded.sample(z=z, truncation_psi=0.7, truncation_cutoff=2),
                       model.sample(z=z, truncation_psi=0.7, truncation_cutoff=2))
    # gans.sample's --trunc reaches the generator: psi 0 makes every sample the mean w's image.
    images = sample_to_file(tmp_path / "model.ckpt", 3, tmp_path / "s.pt", controls=Controls(truncation_psi=0.0))
    assert images.shape == (3, 1, 16, 16) and torch.equal(images, images[:1].expand(3, -1, -1, -1))


def test_two_processes_stay_identical(synthetic_mnist, tmp_path, clean_distributed_env):  # noqa: F811
    """gan_ddp_spawn: every parameter and buffer (w_avg, the growth state, the noise images) equal on both ranks."""
    L.seed_everything(0, verbose=False)
    model = StyleGAN(**TINY_STYLEGAN)
    trainer = quiet_trainer(tmp_path, devices=2, strategy="gan_ddp_spawn", max_steps=3,
                            callbacks=[ProgressiveGrowing(fade_kimg=0.016, stabilize_kimg=0.016),
                                       GeneratorEMA(decay=0.9), SaveState(tmp_path, "stylegan")])
    trainer.fit(model, data(synthetic_mnist))
    ranks = [torch.load(tmp_path / f"stylegan_rank{r}.pt")["state"] for r in (0, 1)]
    # Batches of 4 on each of 2 processes: the 3rd starts after 16 images, at the start of 8x8's fade.
    assert int(ranks[0]["generator.synthesis.level_state"]) == 1
    assert ranks[0]["generator.mapping.w_avg"].abs().sum() > 0
    for name, tensor in ranks[0].items():
        assert torch.equal(tensor, ranks[1][name]), name
