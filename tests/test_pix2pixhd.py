"""Pix2PixHD (Wang et al. 2018): the coarse-to-fine generator against the reference's architecture, the inputs (one-hot
labels, instance-boundary map), the multi-scale discriminator and feature matching, and the two-stage schedule
(the local enhancer's G1 from a global checkpoint, frozen for ``fix_global_epochs``). fast_dev_run, resume and
load_gan of the default configuration run in the variant registry's tests."""

import pytest
import torch
from torch import nn

from gans.errors import ConfigurationError
from gans.nets.pix2pixhd import GlobalGenerator, LocalEnhancer, ResidualBlock, downsamplings


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Parameters of the reference's networks (NVIDIA/pix2pixHD at 14b3b3c, models/networks.py, built with its
# GlobalGenerator(input_nc, 3, 64, 4, 9, instance norm) and LocalEnhancer(input_nc, 3, 32, 4, 9, 1, 3, instance norm),
# its defaults and the 1024p scripts' --ngf 32) for Cityscapes' 35 labels + the edge map (36 inputs) and for RGB.
REFERENCE_COUNTS = {
    ("global", 36): 182_546_755,
    ("local", 36): 182_857_059,
    ("global", 3): 182_443_267,
    ("local", 3): 182_701_827,
}


@pytest.mark.parametrize(("kind", "source_channels"), sorted(REFERENCE_COUNTS))
def test_default_generators_have_the_reference_parameter_counts(kind, source_channels):
    # The meta device: the counts without allocating 700 MB.
    with torch.device("meta"):
        network = GlobalGenerator(source_channels, 3, 512) if kind == "global" else LocalEnhancer(source_channels, 3, 1024)
    assert count(network) == REFERENCE_COUNTS[kind, source_channels]


def test_global_generator_layers_follow_the_paper():
    generator = GlobalGenerator(5, 3, 64, features=4, n_blocks=2)
    assert generator.n_downsampling == 4
    convs = [m for m in generator.body if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.out_channels) for c in convs] == [
        ((7, 7), (1, 1), 4), ((3, 3), (2, 2), 8), ((3, 3), (2, 2), 16), ((3, 3), (2, 2), 32), ((3, 3), (2, 2), 64),
    ]
    assert sum(isinstance(m, ResidualBlock) for m in generator.body) == 2
    ups = [m for m in generator.body if isinstance(m, nn.ConvTranspose2d)]
    assert [(u.in_channels, u.out_channels, u.stride) for u in ups] == [(64, 32, (2, 2)), (32, 16, (2, 2)),
                                                                         (16, 8, (2, 2)), (8, 4, (2, 2))]
    assert all(isinstance(m, nn.InstanceNorm2d) and not m.affine for m in generator.modules()
               if isinstance(m, nn.modules.instancenorm._InstanceNorm))
    assert isinstance(generator.head[-1], nn.Tanh) and generator.head[1].kernel_size == (7, 7)
    out = generator(torch.randn(2, 5, 64, 64))
    assert out.shape == (2, 3, 64, 64) and out.abs().max() <= 1


@pytest.mark.parametrize(("image_size", "expected"), [(8, 2), (16, 3), (32, 4), (512, 4), (24, 3), (6, 1)])
def test_downsamplings_adapt_to_small_images_capped_at_the_papers(image_size, expected):
    assert downsamplings(image_size, None, cap=4) == expected
    assert image_size // 2**expected >= 2
    if image_size > 32:  # the count alone: a forward pass at 512 is slow on a CPU
        return
    out = GlobalGenerator(1, 1, image_size, features=2, n_blocks=1)(torch.randn(2, 1, image_size, image_size))
    assert out.shape == (2, 1, image_size, image_size)


def test_downsamplings_that_do_not_fit_are_refused():
    with pytest.raises(ConfigurationError, match=r"^n_downsampling=3 does not fit images of side 8"):
        GlobalGenerator(1, 1, 8, n_downsampling=3)
    with pytest.raises(ConfigurationError, match=r"^n_local_enhancers=2 does not fit images of side 8"):
        LocalEnhancer(1, 1, 8, n_local_enhancers=2)


@pytest.mark.parametrize("n_local_enhancers", [1, 2])
def test_local_enhancer_output_shape_and_widths(n_local_enhancers):
    torch.manual_seed(0)
    enhancer = LocalEnhancer(4, 3, 16, features=2, n_blocks=1, n_local_enhancers=n_local_enhancers, n_blocks_local=2)
    # G1 is 2 ** n_local_enhancers times as wide, on images as many times halved.
    assert enhancer.global_body[1].out_channels == 2 * 2**n_local_enhancers
    assert [e.front[1].out_channels for e in enhancer.enhancers] == [2 * 2 ** (n_local_enhancers - n)
                                                                     for n in range(1, n_local_enhancers + 1)]
    assert all(sum(isinstance(m, ResidualBlock) for m in e.back) == 2 for e in enhancer.enhancers)
    out = enhancer(torch.randn(2, 4, 16, 16))
    assert out.shape == (2, 3, 16, 16) and out.abs().max() <= 1
    # The registry's 8x8 images: G1 on 4x4 with one downsampling.
    assert LocalEnhancer(1, 1, 8, features=4)(torch.randn(2, 1, 8, 8)).shape == (2, 1, 8, 8)


def test_local_enhancer_sums_g1_features_with_its_front_end():
    """The forward pass is head(back(front(x) + G1_body(avgpool(x)))), as the paper's Figure 3."""
    torch.manual_seed(0)
    enhancer = LocalEnhancer(2, 1, 16, features=2, n_blocks=1, n_blocks_local=1).eval()
    x = torch.randn(1, 2, 16, 16)
    coarse = nn.functional.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    stage = enhancer.enhancers[0]
    expected = enhancer.head(stage.back(stage.front(x) + enhancer.global_body(coarse)))
    torch.testing.assert_close(enhancer(x), expected)


def test_g1_loads_from_a_global_generator():
    torch.manual_seed(0)
    trained = GlobalGenerator(3, 1, 8, features=8, n_blocks=2)
    enhancer = LocalEnhancer(3, 1, 16, features=4, n_blocks=2)
    enhancer.load_global_generator(trained.state_dict())
    for (name, ours), (_, theirs) in zip(enhancer.global_body.named_parameters(), trained.body.named_parameters(),
                                         strict=True):
        assert torch.equal(ours, theirs), name
    # G1 inside the enhancer is the global generator's body: same features on the same (downsampled) input.
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(enhancer.global_body(x), trained.body(x))
    with pytest.raises(ConfigurationError, match="do not fit the local enhancer's G1"):
        enhancer.load_global_generator(GlobalGenerator(3, 1, 8, features=4, n_blocks=2).state_dict())


def test_reference_initialisation():
    torch.manual_seed(0)
    generator = GlobalGenerator(3, 3, 64, features=16, norm="batch")
    weights = torch.cat([m.weight.flatten() for m in generator.modules() if isinstance(m, nn.Conv2d)])
    assert abs(weights.std().item() - 0.02) < 1e-3 and abs(weights.mean().item()) < 1e-4
    scales = torch.cat([m.weight for m in generator.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(scales.mean().item() - 1) < 5e-3 and 0.01 < scales.std().item() < 0.03
