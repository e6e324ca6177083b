"""Shapes and initialisation of the networks."""

import pytest
import torch

from gans.nets import DCGANDiscriminator, DCGANGenerator, MinibatchStdDev
from gans.nets.layers import minibatch_group_size


@pytest.mark.parametrize("image_size,channels", [(8, 1), (32, 1), (64, 3)])
def test_dcgan_shapes(image_size, channels):
    g = DCGANGenerator(latent_dim=16, channels=channels, image_size=image_size, features=8)
    d = DCGANDiscriminator(channels=channels, image_size=image_size, features=8)
    images = g(torch.randn(5, 16))
    assert images.shape == (5, channels, image_size, image_size)
    assert images.abs().max() <= 1.0  # Tanh output
    assert d(images).shape == (5,)


def test_dcgan_64_is_the_paper_network():
    g = DCGANGenerator(latent_dim=100, channels=3, image_size=64, features=64)
    convs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [512, 256, 128, 64, 3]
    d = DCGANDiscriminator(channels=3, image_size=64, features=64)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    # BatchNorm everywhere but the generator output and the discriminator input (the paper).
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules()) == 4
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules()) == 3
    assert sum(isinstance(m, torch.nn.LeakyReLU) and m.negative_slope == 0.2 for m in d.modules()) == 4


def test_dcgan_init_std():
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=100, image_size=64, features=64)
    weight = g.net[0].weight  # 100 x 512 x 4 x 4 values
    assert weight.mean().abs() < 1e-3
    assert weight.std().item() == pytest.approx(0.02, rel=0.02)


@pytest.mark.parametrize("norm,layer", [(None, None), ("layer", torch.nn.GroupNorm), ("batch", torch.nn.BatchNorm2d)])
def test_discriminator_norms(norm, layer):
    d = DCGANDiscriminator(image_size=32, features=8, norm=norm)
    norms = [m for m in d.modules() if isinstance(m, (torch.nn.GroupNorm, torch.nn.BatchNorm2d))]
    assert all(isinstance(m, layer) for m in norms) and (len(norms) == 2) == (layer is not None)
    assert d(torch.randn(3, 1, 32, 32)).shape == (3,)


@pytest.mark.parametrize("image_size", [4, 28, 48])
def test_unsupported_image_size(image_size):
    with pytest.raises(ValueError, match=f"image_size={image_size}.*power of two"):
        DCGANGenerator(image_size=image_size)


def test_unknown_norm():
    with pytest.raises(ValueError, match="norm='instance'"):
        DCGANDiscriminator(norm="instance")


@pytest.mark.parametrize(
    ("batch", "group_size", "expected"),
    [(8, 4, 4), (64, 4, 4), (3, 4, 3), (1, 4, 1), (30, 4, 3), (6, 4, 3), (10, 4, 2), (30, 8, 6), (7, 4, 1)],
)
def test_minibatch_group_size_is_the_largest_divisor_up_to_the_group_size(batch, group_size, expected):
    assert minibatch_group_size(batch, group_size) == expected


def stddev_with_groups_of(x: torch.Tensor, g: int) -> torch.Tensor:
    """The layer's extra feature, computed sample by sample: sample i shares a group with i + N/G, i + 2N/G, ..."""
    n = x.shape[0]
    stats = []
    for i in range(n):
        group = x[i % (n // g) :: n // g]  # [G, C, H, W]
        stats.append((group.var(dim=0, unbiased=False) + 1e-8).sqrt().mean())
    return torch.stack(stats).view(n, 1, 1, 1).expand(n, 1, *x.shape[2:])


@pytest.mark.parametrize("batch", [4, 8, 12, 2, 1, 30, 6, 7])
def test_minibatch_stddev_takes_groups_that_divide_the_batch(batch):
    # When the group size divides the batch the groups are those of the paper's layer, as before; otherwise the
    # largest divisor below it (the paper's layer, NVIDIA's and StudioGAN's fail on such batches).
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 4, 4)
    out = MinibatchStdDev(group_size=4)(x)
    assert out.shape == (batch, 4, 4, 4)
    torch.testing.assert_close(out[:, :3], x)
    torch.testing.assert_close(out[:, 3:], stddev_with_groups_of(x, minibatch_group_size(batch, 4)))
    if batch % min(4, batch) == 0:  # the batches the layer accepted before: the same groups
        assert minibatch_group_size(batch, 4) == min(4, batch)


def test_validate_with_a_batch_that_is_not_a_multiple_of_the_stddev_group(synthetic_mnist, tmp_path):
    from conftest import TINY, quiet_trainer, tiny_datamodule, tiny_net

    from gans import DCGAN

    # 96 held-out images in batches of 30: 30, 30, 30 and 6, none a multiple of the group size 4.
    model = DCGAN(**{**TINY, "discriminator": tiny_net(minibatch="stddev")})
    trainer = quiet_trainer(tmp_path, limit_val_batches=1.0)
    (metrics,) = trainer.validate(model, datamodule=tiny_datamodule(synthetic_mnist, batch_size=30))
    assert trainer.validate_loop.batch_progress.total.completed == 4
    assert all(torch.isfinite(torch.tensor(value)) for value in metrics.values()) and "val/d_loss" in metrics
