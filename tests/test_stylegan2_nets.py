"""The style-based networks (gans/nets/style.py, gans/nets/stylegan2.py) against NVIDIA's stylegan2-ada-pytorch.

Reference values marked "official" were computed with the official code (NVlabs/stylegan2-ada-pytorch at commit
d72cc7d0, its reference PyTorch ops on CPU), never imported here: the command is next to each.
"""

import math
import os
from pathlib import Path

import pytest
import torch

from gans.errors import ConfigurationError
from gans.nets.equalized import EqualizedLinear, bias_act
from gans.nets.resample import downsample2d, setup_filter, upsample2d
from gans.nets.style import MappingNetwork, mix_styles, normalize_2nd_moment, truncate
from gans.nets.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator, modulated_conv2d
from gans.official import read_snapshot
from gans.outputs import GeneratorOutput

# ---------------------------------------------------------------------------------------------------------------
# Mapping network, truncation, style mixing


@pytest.mark.parametrize(("z_dim", "c_dim", "num_ws", "shape"), [(16, 0, 5, (3, 5, 32)), (16, 4, 7, (3, 7, 32)),
                                                                  (0, 4, None, (3, 32))])
def test_mapping_network_shapes(z_dim, c_dim, num_ws, shape):
    mapping = MappingNetwork(z_dim, c_dim, 32, num_ws, num_layers=3)
    assert mapping(torch.randn(3, z_dim), torch.randn(3, c_dim)).shape == shape
    if num_ws is not None:  # every layer gets the same w before truncation and mixing
        ws = mapping(torch.randn(3, z_dim), torch.randn(3, c_dim))
        torch.testing.assert_close(ws, ws[:, :1].expand_as(ws))


def test_mapping_network_state_dict_and_outputs_are_the_officials():
    # official: torch.manual_seed(0); m = MappingNetwork(z_dim=4, c_dim=3, w_dim=4, num_ws=2, num_layers=2).eval();
    # m.w_avg.copy_(torch.tensor([0.5, -0.25, 1.0, 0.0])); z = torch.linspace(-1, 1, 8).reshape(2, 4);
    # c = torch.eye(3)[:2]; m(z, c)[:, 0]; m(z, c, truncation_psi=0.5, truncation_cutoff=1)[:, 0]
    # (the official classes draw their initial weights in the same order, so the same seed gives the same weights)
    torch.manual_seed(0)
    mapping = MappingNetwork(z_dim=4, c_dim=3, w_dim=4, num_ws=2, num_layers=2)
    assert list(mapping.state_dict()) == ["w_avg", "embed.weight", "embed.bias", "fc0.weight", "fc0.bias",
                                          "fc1.weight", "fc1.bias"]
    mapping.w_avg.copy_(torch.tensor([0.5, -0.25, 1.0, 0.0]))
    z, c = torch.linspace(-1, 1, 8).reshape(2, 4), torch.eye(3)[:2]
    w = torch.tensor([[0.187115, -0.024978, 0.158605, -0.043752], [-0.196228, 3.130171, 0.088407, -0.122131]])
    torch.testing.assert_close(mapping(z, c)[:, 0], w, atol=2e-6, rtol=1e-5)
    truncated = mapping(z, c, truncation_psi=0.5, truncation_cutoff=1)
    torch.testing.assert_close(truncated[:, 0], torch.tensor([[0.343558, -0.137489, 0.579302, -0.021876],
                                                              [0.151886, 1.440085, 0.544203, -0.061065]]),
                               atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(truncated[:, 1], w, atol=2e-6, rtol=1e-5)  # after the cutoff: untouched


def test_mapping_normalizes_z_and_the_embedded_label():
    # normalize_2nd_moment: a latent's scale does not matter; its output has unit mean square
    x = torch.randn(5, 12) * 3
    torch.testing.assert_close(normalize_2nd_moment(x).square().mean(dim=1), torch.ones(5))
    mapping = MappingNetwork(8, 3, 16, 4, num_layers=2)
    z, c = torch.randn(2, 8), torch.randn(2, 3)
    torch.testing.assert_close(mapping(z * 5, c * 0.1), mapping(z, c))


def test_discriminator_mapping_has_no_latent_and_no_mean():
    mapping = MappingNetwork(z_dim=0, c_dim=3, w_dim=8, num_ws=None, w_avg_beta=None)
    assert "w_avg" not in mapping.state_dict() and "embed.weight" in mapping.state_dict()
    assert len([k for k in mapping.state_dict() if k.startswith("fc")]) == 16  # 8 layers, weight and bias
    with pytest.raises(ConfigurationError, match="z_dim=0"):
        MappingNetwork(z_dim=0, c_dim=0, w_dim=8, num_ws=None)
    with pytest.raises(ConfigurationError, match="truncation_psi=0.5: .* no mean w"):
        mapping(None, torch.eye(3), truncation_psi=0.5)


def test_a_mapping_without_layers_as_the_published_conditional_discriminators():
    # The official legacy.py gives a converted TensorFlow discriminator (the published class-conditional CIFAR-10
    # pickle) mapping_kwargs num_layers=0: its label mapping is the normalised embedding alone. The official
    # MappingNetwork accepts it: m = MappingNetwork(z_dim=0, c_dim=3, w_dim=8, num_ws=None, num_layers=0,
    # w_avg_beta=None) has embed.weight/embed.bias only and returns normalize_2nd_moment(embed(c)).
    mapping = MappingNetwork(z_dim=0, c_dim=3, w_dim=8, num_ws=None, num_layers=0, w_avg_beta=None)
    assert list(mapping.state_dict()) == ["embed.weight", "embed.bias"]
    c = torch.eye(3)[:2]
    torch.testing.assert_close(mapping(None, c), normalize_2nd_moment(mapping.embed(c)))
    discriminator = StyleGAN2Discriminator(c_dim=3, img_resolution=8, img_channels=3, channel_base=64, channel_max=16,
                                           mapping_kwargs={"num_layers": 0, "lr_multiplier": 0.1})
    assert discriminator(torch.randn(2, 3, 8, 8), c).shape == (2, 1)
    # Without a layer the output is the input: its size must be w_dim's.
    with pytest.raises(ConfigurationError, match="num_layers=0"):
        MappingNetwork(z_dim=0, c_dim=3, w_dim=8, num_ws=None, num_layers=0, embed_features=4)
    with pytest.raises(ConfigurationError, match="num_layers=-1"):
        MappingNetwork(z_dim=4, c_dim=0, w_dim=8, num_ws=2, num_layers=-1)


def test_truncation_psi_0_gives_the_mean_and_psi_1_leaves_ws():
    torch.manual_seed(0)
    ws, w_avg = torch.randn(4, 6, 8), torch.randn(8)
    torch.testing.assert_close(truncate(ws, w_avg, 0.0), w_avg.expand_as(ws))
    assert torch.equal(truncate(ws, w_avg, 1.0), ws)
    torch.testing.assert_close(truncate(ws, w_avg, 0.7), w_avg + 0.7 * (ws - w_avg))
    cut = truncate(ws, w_avg, 0.0, cutoff=2)
    torch.testing.assert_close(cut[:, :2], w_avg.expand(4, 2, 8))
    assert torch.equal(cut[:, 2:], ws[:, 2:])  # layers from the cutoff on are not truncated
    assert not torch.equal(ws[:, :2], cut[:, :2])  # the input itself is left alone (a pure function)

    mapping = MappingNetwork(8, 0, 16, 6, num_layers=2)
    mapping.w_avg.normal_()
    z = torch.randn(3, 8)
    torch.testing.assert_close(mapping(z, truncation_psi=0), mapping.w_avg.expand(3, 6, 16))
    torch.testing.assert_close(mapping(z, truncation_psi=1), mapping(z))
    partial = mapping(z, truncation_psi=0, truncation_cutoff=4)
    torch.testing.assert_close(partial[:, :4], mapping.w_avg.expand(3, 4, 16))
    torch.testing.assert_close(partial[:, 4:], mapping(z)[:, 4:])


def test_style_mixing_takes_the_second_latent_from_the_crossover_layer_on():
    ws, ws2 = torch.zeros(3, 6, 4), torch.ones(3, 6, 4)
    for crossover in (0, 2, 5, 6):
        mixed = mix_styles(ws, ws2, crossover)
        assert mixed[:, :, 0].tolist() == [[float(i >= crossover) for i in range(6)]] * 3
    mixed = mix_styles(ws, ws2, torch.tensor(3))  # a tensor drawn on the device, as the official loss draws it
    assert mixed[0, :, 0].tolist() == [0, 0, 0, 1, 1, 1]
    per_sample = mix_styles(ws, ws2, torch.tensor([1, 4, 6]))
    assert per_sample[:, :, 0].tolist() == [[0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1], [0] * 6]


def test_w_avg_moves_towards_the_batch_mean_only_when_asked():
    torch.manual_seed(0)
    mapping = MappingNetwork(8, 0, 16, 3, num_layers=2, w_avg_beta=0.9)
    mapping.w_avg.fill_(1.0)
    z = torch.randn(5, 8)
    mapping(z)
    torch.testing.assert_close(mapping.w_avg, torch.ones(16))  # no update by default (evaluation, sampling)
    w = mapping(z)[:, 0]
    mapping(z, update_emas=True)
    torch.testing.assert_close(mapping.w_avg, 0.9 * torch.ones(16) + 0.1 * w.mean(dim=0))


def test_equalized_linear_fused_activation_is_the_official_fully_connected_layer():
    # bias_act: act(x W^T * lr / sqrt(fan_in) + b * lr) * sqrt(2) for lrelu: the gain after the activation
    torch.manual_seed(0)
    layer = EqualizedLinear(10, 6, activation="lrelu", lr_multiplier=0.01, bias_init=0.5)
    x = torch.randn(4, 10)
    pre = x @ (layer.weight * 0.01 / math.sqrt(10)).t() + layer.bias * 0.01
    torch.testing.assert_close(layer(x), torch.nn.functional.leaky_relu(pre, 0.2) * math.sqrt(2))
    torch.testing.assert_close(bias_act(torch.full((1, 2, 3), 5.0), torch.tensor([1.0, -7.0]), "relu", clamp=4),
                               torch.tensor([[[4.0] * 3, [0.0] * 3]]))
    with pytest.raises(ConfigurationError, match="activation='gelu'"):
        EqualizedLinear(3, 3, activation="gelu")


# ---------------------------------------------------------------------------------------------------------------
# StyleGAN2 generator and discriminator

TINY = {"channel_base": 128, "channel_max": 16}


def tiny_generator(resolution: int = 16, c_dim: int = 0, **synthesis_kwargs) -> StyleGAN2Generator:
    return StyleGAN2Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=resolution, img_channels=3,
                              mapping_kwargs={"num_layers": 2}, synthesis_kwargs={**TINY, **synthesis_kwargs})


def tiny_discriminator(resolution: int = 16, c_dim: int = 0, **kwargs) -> StyleGAN2Discriminator:
    return StyleGAN2Discriminator(c_dim=c_dim, img_resolution=resolution, img_channels=3, **TINY, **kwargs)


def deterministic_(module: torch.nn.Module) -> torch.nn.Module:
    """Every parameter and buffer but the resampling filters set to sin(0.7 k + index in the state dict): values
    that do not depend on a random generator, so the official code can compute the same network's outputs."""
    with torch.no_grad():
        for i, (name, t) in enumerate(module.state_dict().items()):
            if "resample_filter" not in name:
                scale = 100.0 if "mapping.fc" in name else 1.0  # the mapping stores its parameters / lr_multiplier
                t.copy_(scale * torch.sin(torch.arange(t.numel(), dtype=torch.float32) * 0.7 + i).reshape(t.shape))
    return module


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
@pytest.mark.parametrize("resolution", [4, 8, 32])
def test_generator_mapping_and_synthesis_shapes(architecture, resolution):
    generator = tiny_generator(resolution, c_dim=2, architecture=architecture)
    num_ws = 2 * int(math.log2(resolution)) - 2  # two per block, the last ToRGB's shared with nothing
    assert generator.num_ws == generator.synthesis.num_ws == num_ws
    z, c = torch.randn(3, 8), torch.eye(2)[[0, 1, 1]]
    ws = generator.mapping(z, c)
    assert ws.shape == (3, num_ws, 8)
    assert generator.synthesis(ws).shape == (3, 3, resolution, resolution)
    out = generator(z, c)
    assert isinstance(out, GeneratorOutput) and out.images.shape == (3, 3, resolution, resolution)
    assert out.ws.shape == (3, num_ws, 8)


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
@pytest.mark.parametrize(("resolution", "c_dim"), [(8, 0), (32, 0), (16, 3)])
def test_discriminator_shapes(architecture, resolution, c_dim):
    discriminator = tiny_discriminator(resolution, c_dim, architecture=architecture)
    c = torch.eye(3)[[0, 1, 2, 0, 1]] if c_dim else None
    assert discriminator(torch.randn(5, 3, resolution, resolution), c).shape == (5, 1)


def test_generator_and_discriminator_reproduce_the_official_outputs():
    # official (NVlabs/stylegan2-ada-pytorch d72cc7d0, training/networks.py), with deterministic_ as here and
    # z = cos(arange(16)).reshape(2, 8), c = [[1, 0, 0], [0, 0, 1]]:
    #   G = Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=8, img_channels=2, mapping_kwargs=dict(num_layers=2),
    #       synthesis_kwargs=dict(channel_base=64, channel_max=8, architecture=arch)).eval()
    #   G(z, c, truncation_psi=0.5, noise_mode='const').sum(dim=(2, 3)).flatten()
    #   D = Discriminator(c_dim=3, img_resolution=8, img_channels=2, architecture=arch, channel_base=64, channel_max=8,
    #       epilogue_kwargs=dict(mbstd_group_size=2, mbstd_num_channels=2)).eval()
    #   D(sin(arange(512) ** 1.5).reshape(4, 2, 8, 8), c.repeat(2, 1)).flatten()
    # The other architectures (skip G, resnet D) are the shared snapshot's (test_official_snapshot_is_reproduced).
    expected_images = {"orig": [-132.705338, -41.514385, -174.555084, -70.441879],
                       "resnet": [-9.249251, 26.001104, -10.027982, 21.714468]}
    expected_scores = {"orig": [6.011549, 5.060959, 5.166639, 6.199946],
                       "skip": [-18.572819, -18.824436, -18.978207, -18.296719]}
    z = torch.cos(torch.arange(16, dtype=torch.float32)).reshape(2, 8)
    c = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    for architecture, expected in expected_images.items():
        generator = StyleGAN2Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=8, img_channels=2,
                                       mapping_kwargs={"num_layers": 2},
                                       synthesis_kwargs={"channel_base": 64, "channel_max": 8,
                                                         "architecture": architecture})
        images = deterministic_(generator).eval()(z, c, truncation_psi=0.5, noise_mode="const").images
        torch.testing.assert_close(images.sum(dim=(2, 3)).flatten(), torch.tensor(expected), rtol=1e-5, atol=1e-4)
    x = torch.sin(torch.arange(512, dtype=torch.float32) ** 1.5).reshape(4, 2, 8, 8)
    for architecture, expected in expected_scores.items():
        discriminator = StyleGAN2Discriminator(c_dim=3, img_resolution=8, img_channels=2, architecture=architecture,
                                               channel_base=64, channel_max=8,
                                               epilogue_kwargs={"mbstd_group_size": 2, "mbstd_num_channels": 2})
        scores = deterministic_(discriminator).eval()(x, c.repeat(2, 1)).flatten()
        torch.testing.assert_close(scores, torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_state_dict_names_of_the_other_architectures_are_the_officials():
    # The snapshot checks the names of the default architectures (skip G, resnet D) by a strict load; these are the
    # official differences from them (official: set(Generator(z_dim=8, c_dim=c, w_dim=8, img_resolution=8,
    # img_channels=2, mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8,
    # architecture=arch)).state_dict()) minus that of skip, unconditional; likewise Discriminator against resnet).
    def g_keys(architecture, c_dim=0):
        return set(StyleGAN2Generator(8, c_dim, 8, 8, 2, mapping_kwargs={"num_layers": 2}, synthesis_kwargs={
            "channel_base": 64, "channel_max": 8, "architecture": architecture}).state_dict())

    def d_keys(architecture, c_dim=0):
        return set(StyleGAN2Discriminator(c_dim, 8, 2, architecture=architecture, channel_base=64,
                                          channel_max=8).state_dict())

    b4_torgb = {f"synthesis.b4.torgb.{k}" for k in ("affine.bias", "affine.weight", "bias", "weight")}
    assert (g_keys("orig") - g_keys("skip"), g_keys("skip") - g_keys("orig")) == (set(), b4_torgb)
    assert (g_keys("resnet") - g_keys("skip"), g_keys("skip") - g_keys("resnet")) == (
        {"synthesis.b8.skip.resample_filter", "synthesis.b8.skip.weight"}, b4_torgb)
    assert g_keys("skip", 3) - g_keys("skip") == {"mapping.embed.bias", "mapping.embed.weight"}
    b8_skip = {"b8.skip.resample_filter", "b8.skip.weight"}
    assert (d_keys("orig") - d_keys("resnet"), d_keys("resnet") - d_keys("orig")) == (set(), b8_skip)
    assert (d_keys("skip") - d_keys("resnet"), d_keys("resnet") - d_keys("skip")) == (
        {"b4.fromrgb.bias", "b4.fromrgb.resample_filter", "b4.fromrgb.weight"}, b8_skip)
    assert d_keys("resnet", 3) - d_keys("resnet") == {"mapping.embed.bias", "mapping.embed.weight"} | {
        f"mapping.fc{i}.{k}" for i in range(8) for k in ("bias", "weight")}


# Parameter counts of the official networks for the official train.py presets (z_dim = w_dim = 512, 3 channels,
# channel_max 512, channel_base = fmaps * 32768), computed with
#   G = Generator(z_dim=512, c_dim=c_dim, w_dim=512, img_resolution=res, img_channels=3,
#       mapping_kwargs=dict(num_layers=map), synthesis_kwargs=dict(channel_base=cbase, channel_max=512))
#   D = Discriminator(c_dim=c_dim, img_resolution=res, img_channels=3, architecture=arch, channel_base=cbase)
#   sum(p.numel() for p in G.parameters()), sum(p.numel() for p in D.parameters())
# in /work/ref/stylegan2-ada-pytorch (NVlabs, d72cc7d0); num_fp16_res, conv_clamp and mbstd add no parameters.
OFFICIAL_COUNTS = {  # preset: (resolution, c_dim, channel_base, mapping layers, D architecture, G count, D count)
    "paper256": (256, 0, 16384, 8, "resnet", 24_767_458, 24_001_089),
    "stylegan2-256": (256, 0, 32768, 8, "resnet", 30_034_338, 28_864_129),
    "auto-256": (256, 0, 16384, 2, "resnet", 23_191_522, 24_001_089),
    "paper512": (512, 0, 32768, 8, "resnet", 30_276_583, 28_982_849),
    "paper1024/stylegan2-1024": (1024, 0, 32768, 8, "resnet", 30_370_060, 29_012_513),
    "cifar (10 classes)": (32, 10, 32768, 2, "orig", 20_215_315, 23_089_664),
}


@pytest.mark.parametrize("preset", list(OFFICIAL_COUNTS))
def test_parameter_counts_equal_the_official_presets(preset):
    resolution, c_dim, channel_base, num_layers, architecture, g_count, d_count = OFFICIAL_COUNTS[preset]
    with torch.device("meta"):  # shapes only: no memory for 30M parameters, no time to initialise them
        generator = StyleGAN2Generator(512, c_dim, 512, resolution, 3, mapping_kwargs={"num_layers": num_layers},
                                       synthesis_kwargs={"channel_base": channel_base, "channel_max": 512,
                                                         "num_fp16_res": 4, "conv_clamp": 256})
        discriminator = StyleGAN2Discriminator(c_dim, resolution, 3, architecture=architecture,
                                               channel_base=channel_base, num_fp16_res=4, conv_clamp=256)
    assert sum(p.numel() for p in generator.parameters()) == g_count
    assert sum(p.numel() for p in discriminator.parameters()) == d_count


@pytest.mark.parametrize("fused_modconv", [True, False])
def test_demodulated_convolution_has_unit_standard_deviation_per_output_channel(fused_modconv):
    """Section 2.2: for inputs of unit variance, dividing each output channel by the L2 norm of its modulated weights
    gives outputs of unit standard deviation, whatever the weights and styles."""
    torch.manual_seed(0)
    weight = torch.randn(32, 64, 3, 3) * torch.rand(32, 1, 1, 1) * 5  # output channels of very different scales
    styles = torch.rand(8, 64) * 3
    x = torch.randn(8, 64, 48, 48)
    out = modulated_conv2d(x, weight, styles, padding=1, fused_modconv=fused_modconv)[:, :, 1:-1, 1:-1]
    std = out.std(dim=(2, 3))  # [N, O]: per sample and output channel, away from the zero padding
    torch.testing.assert_close(std.mean(dim=0), torch.ones(32), atol=0.04, rtol=0)  # ~0.01 sampling error
    torch.testing.assert_close(std, torch.ones(8, 32), atol=0.15, rtol=0)
    plain = modulated_conv2d(x, weight, styles, padding=1, demodulate=False, fused_modconv=fused_modconv)
    assert plain.std(dim=(2, 3)).max() > 5  # without demodulation the scales of the weights and styles go through


def test_fused_and_non_fused_modulated_convolutions_agree():
    torch.manual_seed(0)
    generator = tiny_generator(16, c_dim=2, architecture="resnet")
    for block in generator.synthesis.children():  # learned noise strengths, so the noise paths differ from zero
        for layer in (getattr(block, "conv0", None), block.conv1):
            if layer is not None:
                layer.noise_strength.data.fill_(0.5)
    z, c = torch.randn(3, 8), torch.eye(2)[[0, 1, 1]]
    fused = generator(z, c, noise_mode="const", fused_modconv=True).images
    torch.testing.assert_close(generator(z, c, noise_mode="const", fused_modconv=False).images, fused)
    generator.eval()  # the official default: fused in evaluation, not in training
    torch.testing.assert_close(generator(z, c, noise_mode="const").images, fused)


def test_noise_modes():
    torch.manual_seed(0)
    generator = tiny_generator(8).eval()
    ws = generator.mapping(torch.randn(2, 8))
    torch.testing.assert_close(generator.synthesis(ws, noise_mode="random"), generator.synthesis(ws, "none"))
    generator.synthesis.b8.conv1.noise_strength.data.fill_(1.0)
    const = generator.synthesis(ws, noise_mode="const")
    torch.testing.assert_close(generator.synthesis(ws, noise_mode="const"), const)  # reproducible
    assert not torch.allclose(generator.synthesis(ws, noise_mode="random"), const)
    assert not torch.allclose(generator.synthesis(ws, noise_mode="none"), const)
    with pytest.raises(ConfigurationError, match="noise_mode='fixed'"):
        generator.synthesis(ws, noise_mode="fixed")


def test_float16_layers_run_in_float32_on_the_cpu():
    torch.manual_seed(0)
    fp16 = tiny_generator(16, num_fp16_res=2, conv_clamp=256)
    fp32 = tiny_generator(16, conv_clamp=256)
    fp32.load_state_dict(fp16.state_dict())
    assert fp16.synthesis.b16.use_fp16 and fp16.synthesis.b8.use_fp16 and not fp16.synthesis.b4.use_fp16
    z = torch.randn(2, 8)
    images = fp16(z, noise_mode="const").images
    assert images.dtype == torch.float32
    torch.testing.assert_close(images, fp32(z, noise_mode="const").images)
    discriminator = tiny_discriminator(16, num_fp16_res=2)
    assert discriminator(images).dtype == torch.float32


def test_float16_path_agrees_with_float32(monkeypatch):
    """The official float16 path (pre-normalised modulation, clamping, channels-last), run on the CPU by letting the
    blocks pick float16 there as they do on CUDA: images close to the float32 ones at float16 precision."""
    from gans.nets import stylegan2

    torch.manual_seed(0)
    z = torch.randn(2, 8)
    reference_g = tiny_generator(16, conv_clamp=256).eval()
    reference_d = tiny_discriminator(16, conv_clamp=256).eval()
    images = reference_g(z, noise_mode="const").images
    scores = reference_d(images)
    monkeypatch.setattr(stylegan2, "block_dtype", lambda use_fp16, force_fp32, device: torch.float16
                        if use_fp16 and not force_fp32 else torch.float32)
    for fused in (True, False):
        fp16 = tiny_generator(16, num_fp16_res=2, conv_clamp=256, fp16_channels_last=True).eval()
        fp16.load_state_dict(reference_g.state_dict())
        half_images = fp16(z, noise_mode="const", fused_modconv=fused).images
        assert half_images.dtype == torch.float32  # ToRGB outputs are summed in float32
        torch.testing.assert_close(half_images, images, atol=0.02 * images.abs().max().item(), rtol=0)
    fp16_d = tiny_discriminator(16, num_fp16_res=2, conv_clamp=256, block_kwargs={"fp16_channels_last": True})
    fp16_d.load_state_dict(reference_d.state_dict())
    torch.testing.assert_close(fp16_d.eval()(images), scores, atol=0.02 * scores.abs().max().item(), rtol=0)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    generator, discriminator = tiny_generator(8, c_dim=2), tiny_discriminator(8, c_dim=2)
    for module in generator.modules():  # zero noise strengths would give zero gradients to noise_strength only
        if hasattr(module, "noise_strength"):
            module.noise_strength.data.fill_(0.1)
    c = torch.eye(2)[[0, 1, 0, 1]]
    discriminator(generator(torch.randn(4, 8), c).images, c).sum().backward()
    for name, p in [*generator.named_parameters(), *discriminator.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_second_order_gradients_for_r1_and_path_length():
    # R1 differentiates D's input gradient, path length the gradient of G's output with respect to ws: both need
    # every operation (filters, transposed and grouped convolutions, clamps) twice differentiable.
    torch.manual_seed(0)
    generator, discriminator = tiny_generator(8, conv_clamp=256), tiny_discriminator(8, conv_clamp=256)
    ws = generator.mapping(torch.randn(2, 8)).detach().requires_grad_(True)
    images = generator.synthesis(ws)  # training mode: the non-fused path
    (ws_grad,) = torch.autograd.grad((images * torch.randn_like(images)).sum(), ws, create_graph=True)
    ws_grad.square().sum().backward()
    assert generator.synthesis.b8.conv0.weight.grad.abs().sum() > 0
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    (x_grad,) = torch.autograd.grad(discriminator(x).sum(), x, create_graph=True)
    x_grad.square().sum().backward()
    assert discriminator.b8.conv0.weight.grad.abs().sum() > 0


def test_freeze_layers_keeps_the_first_layers_as_buffers_under_the_same_names():
    frozen = tiny_discriminator(16, block_kwargs={"freeze_layers": 2})
    trainable = tiny_discriminator(16)
    assert sorted(frozen.state_dict()) == sorted(trainable.state_dict())
    names = {name for name, _ in frozen.named_parameters()}
    assert "b16.fromrgb.weight" not in names and "b16.conv0.weight" not in names and "b16.conv1.weight" in names


def test_invalid_configurations_name_the_value():
    with pytest.raises(ConfigurationError, match="architecture='dense'"):
        tiny_generator(8, architecture="dense")
    with pytest.raises(ConfigurationError, match="img_resolution=48"):
        tiny_discriminator(48)
    with pytest.raises(ConfigurationError, match=r"c=None: .*\(c_dim=2\)"):
        tiny_generator(8, c_dim=2)(torch.randn(1, 8))
    with pytest.raises(ConfigurationError, match=r"c=None: .*\(c_dim=2\)"):
        tiny_discriminator(8, c_dim=2)(torch.randn(1, 3, 8, 8))


def test_filtered_resampling_keeps_a_constant_image():
    f = setup_filter([1, 3, 3, 1])
    torch.testing.assert_close(f.sum(), torch.tensor(1.0))
    x = torch.full((1, 2, 8, 8), 3.0)
    torch.testing.assert_close(upsample2d(x, f)[:, :, 2:-2, 2:-2], torch.full((1, 2, 12, 12), 3.0))
    torch.testing.assert_close(downsample2d(x, f)[:, :, 1:-1, 1:-1], torch.full((1, 2, 2, 2), 3.0))


# ---------------------------------------------------------------------------------------------------------------
# The shared official snapshot (GANS_DATA_DIR/stylegan2-official, its README): the official code's outputs


def snapshot_files() -> tuple[Path, Path] | None:
    folder = Path(os.environ.get("GANS_DATA_DIR", "")) / "stylegan2-official"
    pkl, expected = folder / "sg2_32.pkl", folder / "sg2_32.expected.pt"
    return (pkl, expected) if os.environ.get("GANS_DATA_DIR") and pkl.is_file() and expected.is_file() else None


@pytest.mark.skipif(snapshot_files() is None, reason="GANS_DATA_DIR lacks stylegan2-official/sg2_32.pkl and .pt")
def test_official_snapshot_is_reproduced():
    """Our networks built from the snapshot's ``init_kwargs`` load its state dicts strictly and compute what the
    official code computed from it (sg2_32.expected.pt: mapping, truncation, synthesis with const noise, D)."""
    pkl, expected_file = snapshot_files()
    snapshot = read_snapshot(pkl)
    expected = torch.load(expected_file, weights_only=True)
    nets = {}
    for name, cls in (("G", StyleGAN2Generator), ("G_ema", StyleGAN2Generator), ("D", StyleGAN2Discriminator)):
        official = snapshot[name]
        nets[name] = cls(*official.init_args, **official.init_kwargs).eval()
        nets[name].load_state_dict(official.state_dict, strict=True)
    generator, g_ema, discriminator = nets["G"], nets["G_ema"], nets["D"]
    assert {"G": sum(p.numel() for p in generator.parameters()),
            "D": sum(p.numel() for p in discriminator.parameters())} == expected["params"]
    z, c = expected["z"], expected["c"]
    with torch.no_grad():
        torch.testing.assert_close(g_ema.w_avg, expected["w_avg"])
        ws = g_ema.mapping(z, c, truncation_psi=1)
        torch.testing.assert_close(ws, expected["ws"])
        ws_psi07 = g_ema.mapping(z, c, truncation_psi=0.7)
        torch.testing.assert_close(ws_psi07, expected["ws_psi07"])
        # float32 tolerance relative to images of magnitude ~5 (random weights): summation order differs
        tolerance = {"rtol": 1e-5, "atol": 5e-5}
        torch.testing.assert_close(g_ema.synthesis(ws, noise_mode="const"), expected["img_ema"], **tolerance)
        torch.testing.assert_close(g_ema.synthesis(ws_psi07, noise_mode="const"), expected["img_ema_psi07"],
                                   **tolerance)
        out = generator(z, c, noise_mode="const")
        torch.testing.assert_close(out.images, expected["img_G"], **tolerance)
        torch.testing.assert_close(discriminator(expected["img_ema"][:4], c[:4]), expected["d_scores"], **tolerance)
