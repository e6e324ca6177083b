"""CycleGAN (Zhu et al. 2017): the ResNet translator, the history pool, the cycle and identity losses, the model."""

import pytest
import torch

from gans.errors import ConfigurationError
from gans.image_pool import ImagePool
from gans.losses import cycle_consistency, identity_mapping
from gans.nets.cyclegan import ResnetTranslator

# ---------------------------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------------------------


def test_translator_has_the_reference_parameter_count():
    # The authors' code prints "[Network G_A] Total number of parameters : 11.378 M" for resnet_9blocks, ngf 64, RGB:
    # c7s1-64 (3*64*49 + 64) + d128 (64*128*9 + 128) + d256 (128*256*9 + 256) + 9 blocks of two 256->256 3x3 convs
    # + u128 (256*128*9 + 128) + u64 (128*64*9 + 64) + c7s1-3 (64*3*49 + 3); instance norms have no parameters.
    expected = (3 * 64 * 49 + 64) + (64 * 128 * 9 + 128) + (128 * 256 * 9 + 256) + 9 * 2 * (256 * 256 * 9 + 256)
    expected += (256 * 128 * 9 + 128) + (128 * 64 * 9 + 64) + (64 * 3 * 49 + 3)
    assert expected == 11_378_179
    g = ResnetTranslator(3, 3, 256)
    assert g.n_blocks == 9
    assert sum(p.numel() for p in g.parameters()) == expected


def test_translator_layers_and_block_count():
    assert ResnetTranslator(3, 3, 128).n_blocks == 6  # the paper: 6 blocks at 128x128, 9 at 256x256
    g = ResnetTranslator(3, 3, 64, n_blocks=2)
    assert sum(isinstance(m, torch.nn.ReflectionPad2d) for m in g.modules()) == 2 + 2 * 2
    norms = [m for m in g.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert len(norms) == 3 + 2 * 2 + 2 and not any(n.affine or n.track_running_stats for n in norms)
    assert not any(isinstance(m, torch.nn.Dropout) for m in g.modules())  # CycleGAN's --no_dropout
    assert sum(isinstance(m, torch.nn.Dropout) for m in ResnetTranslator(3, 3, 64, n_blocks=2, dropout=True).modules())
    convs = [m for m in g.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 256, 256, 256, 128, 64, 3]
    batch = ResnetTranslator(3, 3, 64, n_blocks=2, norm="batch")
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in batch.modules()) == 3 + 2 * 2 + 2


def test_translator_init_is_normal_002():
    torch.manual_seed(0)
    g = ResnetTranslator(3, 3, 256)
    weight = g.net[4].weight  # the first downsampling, 64 x 128 x 3 x 3... values
    assert weight.mean().abs() < 1e-3
    assert weight.std().item() == pytest.approx(0.02, rel=0.03)
    assert torch.count_nonzero(g.net[4].bias) == 0


@pytest.mark.parametrize("size,source_channels,channels", [(8, 1, 1), (16, 3, 1), (32, 1, 3)])
def test_translator_shapes(size, source_channels, channels):
    g = ResnetTranslator(source_channels, channels, size, features=4)
    out = g(torch.randn(3, source_channels, size, size))
    assert out.shape == (3, channels, size, size)
    assert out.abs().max() <= 1.0  # tanh
    assert g(torch.randn(2, source_channels, size + 4, 2 * size)).shape == (2, channels, size + 4, 2 * size)


@pytest.mark.parametrize("kwargs", [{"image_size": 10}, {"image_size": 8, "features": 0}, {"image_size": 8,
                                    "n_blocks": -1}, {"image_size": 8, "norm": "layer"}])
def test_translator_refuses_bad_values(kwargs):
    with pytest.raises(ConfigurationError, match=next(iter(kwargs.keys() - {"image_size"}), "image_size")):
        ResnetTranslator(1, 1, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# The pool
# ---------------------------------------------------------------------------------------------------------------


def constant_images(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()


def test_pool_stores_and_returns_new_images_until_full():
    pool = ImagePool(4)
    out = pool(constant_images([0, 1, 2]))
    assert torch.equal(out, constant_images([0, 1, 2])) and len(pool) == 3
    # The fourth fills the pool and comes back; the fifth may already be swapped.
    assert torch.equal(pool(constant_images([3])), constant_images([3])) and len(pool) == 4


def test_pool_returns_a_stored_image_half_the_time_once_full():
    torch.manual_seed(0)
    pool = ImagePool(50)
    pool(constant_images(range(50)))
    queries = 2000
    stored = set(range(50))
    swapped = 0
    for value in range(50, 50 + queries):
        out = pool(constant_images([value]))[0, 0, 0, 0].item()
        if out != value:
            swapped += 1
            # The returned image was in the pool and the new one took its place.
            assert out in stored
            stored.remove(out)
            stored.add(value)
        assert sorted(int(t[0, 0, 0]) for t in pool._images) == sorted(stored)
    # Binomial(2000, 0.5): standard deviation 22, so +-100 is 4.5 sigma.
    assert abs(swapped - queries / 2) < 100


def test_pool_of_size_zero_is_no_pool():
    images = torch.randn(3, 1, 2, 2, requires_grad=True)
    out = ImagePool(0)(images)
    assert torch.equal(out, images) and not out.requires_grad
    with pytest.raises(ConfigurationError, match="pool_size=-1"):
        ImagePool(-1)


def test_pool_contents_restore_from_its_state_dict():
    torch.manual_seed(1)
    pool = ImagePool(5)
    pool(torch.randn(7, 3, 4, 4))
    state = pool.state_dict()
    restored = ImagePool(5)
    restored.load_state_dict(state)
    assert len(restored) == 5
    queries = torch.randn(6, 3, 4, 4)
    torch.manual_seed(2)
    expected = pool(queries)
    torch.manual_seed(2)
    assert torch.equal(restored(queries), expected)
    assert all(torch.equal(a, b) for a, b in zip(pool._images, restored._images, strict=True))
    with pytest.raises(ConfigurationError, match="pool_size=2"):
        ImagePool(2).load_state_dict(state)


# ---------------------------------------------------------------------------------------------------------------
# The losses
# ---------------------------------------------------------------------------------------------------------------


def test_cycle_and_identity_losses_hand_computed():
    real = torch.tensor([[0.5, -1.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    other = torch.tensor([[0.25, -0.5], [1.0, 1.0]]).view(1, 1, 2, 2)
    # |0.25 - 0.5| + |-0.5 + 1| + |1 - 0| + |1 - 1| = 0.25 + 0.5 + 1 + 0 = 1.75, over 4 values.
    assert cycle_consistency(real, other).item() == pytest.approx(1.75 / 4)
    assert identity_mapping(real, other).item() == pytest.approx(1.75 / 4)
    assert cycle_consistency(real, real).item() == 0.0
    reconstructed = real.clone().requires_grad_(True)
    cycle_consistency(real, reconstructed + 0.1).backward()
    assert torch.allclose(reconstructed.grad, torch.full_like(real, 1 / 4))  # d|x|/dx = sign, averaged over 4
