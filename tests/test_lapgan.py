"""LAPGAN: the Laplacian pyramid, the networks of each level, the coarse-to-fine sampling chain, what each level's
discriminator judges, which levels train. Training, resume and the load_gan/export round trip of the tiny model are
``tests/test_variants.py``'s (LAPGAN is found there by the registry); its config is instantiated by
``tests/test_cli.py``."""

import lightning as L
import pytest
import torch
from conftest import quiet_trainer, tiny_datamodule, tiny_kwargs
from torch import nn

from callbacks import IterationCheckpoint
from gans import LAPGAN
from gans.errors import ConfigurationError
from gans.nets import LaplacianDiscriminator, LaplacianGenerator, pack
from gans.pyramid import downsample, gaussian_pyramid, laplacian_pyramid, pyramid_sides, reconstruct, upsample

BATCH = 8


def tiny(**overrides) -> LAPGAN:
    """8x8 images, levels of 2x2, 4x4 and 8x8, 4 feature maps, 16 hidden units."""
    return LAPGAN(**tiny_kwargs(LAPGAN, **overrides))


def flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


# ---------------------------------------------------------------------------------------------------------------
# The pyramid
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_laplacian_pyramid_reconstructs_the_image_from_its_bands(levels):
    """I_K = u(...u(I_0) + h_1 ...) + h_K. The decomposition subtracts what reconstruction adds back, so it is exact in
    real arithmetic; in float32 each level rounds one subtraction and one addition of values up to 2 in magnitude
    (2.4e-7 apart at most), and the upsampling of an already-rounded image carries that on at most once per level:
    1e-6 bounds four levels. In float64 the same bound is 1e-15."""
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    pyramid = laplacian_pyramid(x, levels)
    sides = [32 // 2 ** (levels - 1 - k) for k in range(levels)]
    assert [tuple(t.shape) for t in pyramid] == [(4, 3, s, s) for s in sides]
    assert torch.allclose(reconstruct(pyramid), x, rtol=0, atol=1e-6)
    assert torch.allclose(reconstruct(laplacian_pyramid(x.double(), levels)), x.double(), rtol=0, atol=1e-15)
    # The coarsest entry is the Gaussian pyramid's, each band the detail that its level adds.
    images = gaussian_pyramid(x, levels)
    assert torch.equal(pyramid[0], images[0]) and torch.equal(images[-1], x)
    for k in range(1, levels):
        assert torch.equal(images[k - 1], downsample(images[k]))
        assert torch.equal(pyramid[k], images[k] - upsample(images[k - 1]))


def test_pyramid_operators_blur_decimate_and_expand():
    """d is the [1, 3, 3, 1] / 8 triangle blur and a decimation; u a bilinear expansion; both keep constant images
    (so a constant image has zero bands) and the range of their input."""
    impulse = torch.zeros(1, 1, 16, 16)
    impulse[..., 7, 7] = 1.0
    # Output pixel j averages input pixels 2j-1 ... 2j+2 with weights 1, 3, 3, 1 (/ 8): input 7 reaches outputs 3 and 4.
    weights = torch.tensor([0.0, 3.0, 1.0]) / 8  # outputs 2, 3, 4
    assert torch.allclose(downsample(impulse)[0, 0, 2:5, 2:5], torch.outer(weights, weights))
    assert upsample(impulse).shape == (1, 1, 32, 32)
    constant = torch.full((2, 1, 16, 16), 0.3)
    assert all(band.abs().max() < 1e-6 for band in laplacian_pyramid(constant, 4)[1:])
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    for y in (downsample(x), upsample(x)):
        assert y.min() >= x.min() - 1e-6 and y.max() <= x.max() + 1e-6


def test_pyramid_sides_and_sizes_it_cannot_halve():
    assert pyramid_sides(32, 3) == [8, 16, 32] and pyramid_sides(64, 4) == [8, 16, 32, 64] and pyramid_sides(8, 1) == [8]
    assert pyramid_sides(24, 4) == [3, 6, 12, 24]  # any coarsest side, as the paper's 28x28 crops would need
    with pytest.raises(ValueError, match="image_size=28 cannot be halved 3 times"):
        pyramid_sides(28, 4)
    with pytest.raises(ValueError, match="levels=0"):
        pyramid_sides(32, 0)
    with pytest.raises(ConfigurationError, match=r"^image_size=36 cannot be halved 3 times"):
        LAPGAN(image_size=36, levels=4)


# ---------------------------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_size,channels,levels", [(8, 1, 3), (32, 1, 3), (64, 3, 4)])
def test_network_shapes_per_level(image_size, channels, levels):
    torch.manual_seed(0)
    g = LaplacianGenerator(16, channels, image_size, levels, hidden=(32,), features=8)
    d = LaplacianDiscriminator(channels, image_size, levels, hidden=(32,), features=8)
    sides = pyramid_sides(image_size, levels)
    assert g.latent_shapes == [(16,), *((1, s, s) for s in sides[1:])]
    z = torch.rand(5, g.z_dim) * 2 - 1
    assert g.z_dim == 16 + sum(s * s for s in sides[1:])
    output = g(z)
    assert output.images.shape == (5, channels, image_size, image_size)
    assert [tuple(s.shape) for s in output.scales] == [(5, channels, s, s) for s in sides[:-1]]
    assert output.scales[0].abs().max() <= 1  # G_0's tanh; the bands are unbounded
    noise = g.split(z)
    for k, side in enumerate(sides[1:], start=1):
        assert g.levels[k](torch.zeros(5, channels, side, side), noise[k]).shape == (5, channels, side, side)
    d.eval()  # no dropout: the same scores twice
    scores = torch.stack([d.levels[k](image) for k, image in enumerate([*output.scales, output.images])])
    assert scores.shape == (levels, 5)
    assert torch.equal(d([*output.scales, output.images]), scores.mean(0))
    assert torch.equal(d(output.images), d(gaussian_pyramid(output.images, levels)))
    with pytest.raises(ValueError, match=f"z has 3 values per sample; this LAPGAN's chain takes {g.z_dim}"):
        g(torch.zeros(5, 3))


def test_default_networks_are_the_papers():
    """G_0 1200-1200 ReLU, D_0 600-600 ReLU with dropout; each G_k three convolutions (128, 128, C maps), each D_k two
    of 128 maps, the second strided."""
    model = LAPGAN(channels=3)
    g0, d0 = model.generator.levels[0], model.discriminator.levels[0]
    assert [m.out_features for m in g0.modules() if isinstance(m, nn.Linear)] == [1200, 1200, 3 * 8 * 8]
    assert [m.out_features for m in d0.modules() if isinstance(m, nn.Linear)] == [600, 600, 1]
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in d0.modules()) == 2
    for k in (1, 2):
        g_convs = [m for m in model.generator.levels[k].modules() if isinstance(m, nn.Conv2d)]
        assert [(c.in_channels, c.out_channels) for c in g_convs] == [(4, 128), (128, 128), (128, 3)]  # l_k + z_k plane
        d_convs = [m for m in model.discriminator.levels[k].modules() if isinstance(m, nn.Conv2d)]
        assert [(c.in_channels, c.out_channels, c.stride) for c in d_convs] == [(3, 128, (1, 1)), (128, 128, (2, 2))]
    assert model.generator.z_dim == 100 + 16 * 16 + 32 * 32


def test_the_coarsest_level_has_the_reference_codes_initialisation():
    """G_0's weights ~ N(0, 0.05), D_0's ~ N(0, 0.005), biases 0: G_0's samples differ from the start (with PyTorch's
    default they hardly depend on z_0 and the coarsest level collapsed)."""
    torch.manual_seed(0)
    model = LAPGAN()
    for network, std in ((model.generator.levels[0], 0.05), (model.discriminator.levels[0], 0.005)):
        linears = [m for m in network.modules() if isinstance(m, nn.Linear)]
        weights = torch.cat([m.weight.flatten() for m in linears])
        assert weights.std().item() == pytest.approx(std, rel=0.02) and abs(weights.mean().item()) < std / 100
        assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in linears)
    coarse = model.sample_output(256, generator=torch.Generator().manual_seed(0)).scales[0]  # [256, 1, 8, 8]
    assert coarse.std(0).mean() > 0.2  # the spread over z of each pixel: 0.26; 0.04 with PyTorch's default initialisation


# ---------------------------------------------------------------------------------------------------------------
# Sampling and the discriminators' inputs
# ---------------------------------------------------------------------------------------------------------------


def test_sampling_runs_the_chain_coarse_to_fine():
    """I_0 = G_0(z_0), I_k = u(I_{k-1}) + G_k(u(I_{k-1}), z_k), checked against each level's own network; a finer
    level's noise changes that level and the finer ones only."""
    torch.manual_seed(0)
    model = tiny()
    z = model.sample_z(4, torch.Generator().manual_seed(0))
    assert z.shape == (4, model.generator.z_dim) and z.min() >= -1 and z.max() <= 1
    output = model.sample_output(z=z)
    z0, z1, z2 = model.generator.split(z)
    g0, g1, g2 = model.generator.levels
    with torch.no_grad():
        i0 = g0(z0)
        i1 = upsample(i0) + g1(upsample(i0), z1)
        i2 = upsample(i1) + g2(upsample(i1), z2)
    assert torch.equal(output.scales[0], i0) and torch.equal(output.scales[1], i1)
    assert torch.equal(output.images, i2.clamp(-1, 1))
    assert torch.equal(model.sample(z=z), output.images)
    other = z.clone()
    other[:, -64:] = -other[:, -64:]  # the 8x8 level's noise plane
    changed = model.sample_output(z=other)
    assert torch.equal(changed.scales[0], output.scales[0]) and torch.equal(changed.scales[1], output.scales[1])
    assert not torch.equal(changed.images, output.images)


class Recorder(nn.Module):
    """A test double for one level's discriminator: records what it is given, scores it by its mean times a weight."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return x.flatten(1).mean(1) * self.weight


def test_each_discriminator_judges_its_levels_real_image_against_a_fake_on_the_same_real_low_pass():
    """D_0 gets the real I_0 and G_0(z_0); D_k the real I_k = h_k + l_k and l_k + G_k(l_k, z_k), l_k = u(real I_{k-1})
    (the band added to the low-pass image, as the paper does); the losses sum over the levels."""
    torch.manual_seed(0)
    model = tiny()
    recorders = [Recorder() for _ in range(3)]
    model.discriminator.levels = nn.ModuleList(recorders)
    real = torch.rand(BATCH, 1, 8, 8) * 2 - 1
    images = gaussian_pyramid(real, 3)
    torch.manual_seed(1)
    z = model.sample_z(BATCH)
    torch.manual_seed(1)
    terms = model.d_loss(real, None)
    noise = model.generator.split(z)
    for k, recorder in enumerate(recorders):
        assert len(recorder.inputs) == 2
        d_real, d_fake = recorder.inputs
        assert torch.equal(d_real, images[k])
        with torch.no_grad():
            expected = model.generator.levels[0](noise[0]) if k == 0 else (
                upsample(images[k - 1]) + model.generator.levels[k](upsample(images[k - 1]), noise[k])
            )
        assert torch.equal(d_fake, expected)
    per_level = [terms[f"d_loss_{side}"] for side in (2, 4, 8)]
    assert torch.allclose(terms["d_loss"], sum(per_level))
    for recorder in recorders:
        recorder.inputs.clear()
    model.g_loss(real, None)
    assert all(len(recorder.inputs) == 1 for recorder in recorders)  # each level's fake alone


def test_critic_scores_a_generator_outputs_own_chain_and_the_pyramid_of_images():
    torch.manual_seed(0)
    model = tiny().eval()  # no dropout: the same scores twice
    output = model.sample_output(4)
    levels = model.discriminator.levels
    expected = torch.stack([levels[k](image) for k, image in enumerate([*output.scales, output.images])]).mean(0)
    assert torch.equal(model.critic(output), expected)
    real = torch.rand(4, 1, 8, 8) * 2 - 1
    expected = torch.stack([levels[k](image) for k, image in enumerate(gaussian_pyramid(real, 3))]).mean(0)
    assert torch.equal(model.critic(real), expected)
    # PacGAN's packs: each level's D judges 2 samples stacked along the channels, at every level.
    packed = tiny(pack=2).eval()
    levels = packed.discriminator.levels
    expected = torch.stack([levels[k](pack(image, 2)) for k, image in enumerate(gaussian_pyramid(real, 3))]).mean(0)
    assert packed.critic(real).shape == (2,) and torch.allclose(packed.critic(real), expected, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Which levels train
# ---------------------------------------------------------------------------------------------------------------


def level_grads(model: LAPGAN, network: str) -> list[bool]:
    """Per level of ``network``: whether every parameter has a finite, nonzero gradient (False: none has one)."""
    result = []
    for level in getattr(model, network).levels:
        grads = [p.grad for p in level.parameters()]
        assert all(g is None for g in grads) or all(g is not None for g in grads)
        result.append(all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads))
    return result


@pytest.mark.parametrize("train_levels,trained", [(None, [True, True, True]), ([4], [False, True, False]),
                                                  ([2, 8], [True, False, True])])
def test_only_the_trained_levels_get_gradients(train_levels, trained):
    torch.manual_seed(0)
    model = tiny(train_levels=train_levels)
    real = torch.rand(BATCH, 1, 8, 8) * 2 - 1
    terms = model.d_loss(real, None)
    terms["d_loss"].backward()
    assert level_grads(model, "discriminator") == trained
    assert all(p.grad is None for p in model.generator.parameters())  # the D loss does not reach G
    model.zero_grad(set_to_none=True)
    model.g_loss(real, None)["g_loss"].backward()
    assert level_grads(model, "generator") == trained
    sides = {f"d_loss_{s}" for s, t in zip((2, 4, 8), trained, strict=True) if t}
    assert {name for name in terms if name.startswith("d_loss_")} == sides


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")  # the second run resumes there
def test_train_levels_one_at_a_time_by_resuming(synthetic_mnist, tmp_path):
    """The paper's level-by-level training: a run of the 2x2 level, then a run resumed from its checkpoint that trains
    the 8x8 level alone; each run changes its own level's networks and no other's."""

    def fit(train_levels, max_steps, ckpt_path=None):
        L.seed_everything(0, verbose=False)
        model = tiny(train_levels=train_levels)
        checkpoint = IterationCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1000)
        trainer = quiet_trainer(tmp_path, max_steps=max_steps, enable_checkpointing=True, callbacks=[checkpoint])
        trainer.fit(model, tiny_datamodule(synthetic_mnist), ckpt_path=ckpt_path)
        return model

    L.seed_everything(0, verbose=False)
    start = tiny()
    first = fit([2], 2)
    second = fit([8], 4, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    for network in ("generator", "discriminator"):
        before, after, final = (getattr(m, network).levels for m in (start, first, second))
        assert not torch.equal(flat(before[0]), flat(after[0])) and torch.equal(flat(after[0]), flat(final[0]))
        assert torch.equal(flat(before[1]), flat(final[1]))
        assert torch.equal(flat(before[2]), flat(after[2])) and not torch.equal(flat(after[2]), flat(final[2]))


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")  # the second run resumes there
def test_train_levels_change_on_the_command_line_when_resuming(synthetic_mnist, tmp_path):
    """The README's level-by-level recipe through train.py: a resumed run takes the train_levels it is given, not the
    checkpoint's (the model's other arguments come from the checkpoint)."""
    from gans.cli import main

    args = ["--config", "configs/lapgan_fashion_mnist.yaml", f"--data.init_args.data_dir={synthetic_mnist}",
            "--data.init_args.dataset=mnist", "--data.init_args.download=false", "--data.init_args.batch_size=8",
            "--model.init_args.generator.init_args.hidden=[16]", "--model.init_args.generator.init_args.features=4",
            "--model.init_args.discriminator.init_args.hidden=[16]",
            "--model.init_args.discriminator.init_args.features=4", "--metrics=false", "--samples=null",
            "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}"]
    first = main(["fit", *args, "--model.init_args.train_levels=[8]", "--trainer.max_steps=1"])
    second = main(["fit", *args, "--model.init_args.train_levels=[16]", "--trainer.max_steps=2", "--ckpt_path=last"])
    assert first.model.trained == [0] and second.model.trained == [1] and second.trainer.global_step == 2


@pytest.mark.parametrize("kwargs,message", [
    ({"train_levels": [5]}, r"^train_levels=\[5\]: expected sides of the pyramid's levels, some of \[2, 4, 8\]"),
    ({"train_levels": []}, r"^train_levels=\[\]"),
    ({"r1_gamma": 10.0}, r"^r1_gamma=10.0: LAPGAN has no R1/R2 penalty"),
    ({"latent_dim": 0}, r"^latent_dim=0 must be at least 1"),
])
def test_bad_values_are_named(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        tiny(**kwargs)


def test_data_of_another_size_is_named():
    model = tiny()
    expected = r"^image_size=8 and channels=1: LAPGAN makes images of shape \(1, 8, 8\) but the data gives \(1, 16, 16\)"
    with pytest.raises(ConfigurationError, match=expected):
        model.d_loss(torch.zeros(2, 1, 16, 16), None)
