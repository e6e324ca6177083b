"""Pix2PixHD (Wang et al. 2018): the coarse-to-fine generator against the reference's architecture, the inputs (one-hot
labels, instance-boundary map), the multi-scale discriminator and feature matching, and the two-stage schedule
(the local enhancer's G1 from a global checkpoint, frozen for ``fix_global_epochs``). fast_dev_run, resume and
load_gan of the default configuration run in the variant registry's tests."""

import lightning as L
import pytest
import torch
from conftest import quiet_trainer, tiny_kwargs, tiny_pairs
from torch import nn

from datamodules import PairedImageDataModule
from gans import Pix2PixHD
from gans.errors import ConfigurationError, MissingFileError
from gans.losses import feature_matching
from gans.nets.pix2pixhd import GlobalGenerator, LocalEnhancer, ResidualBlock, downsamplings
from gans.pix2pixhd import instance_edges, one_hot_labels


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Networks this small gain nothing from intra-op threads, and on a busy machine their spin-waits slow them down
    many times (as tests/test_variants.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


# ---------------------------------------------------------------------------------------------------------------
# The model: inputs, discriminators, losses
# ---------------------------------------------------------------------------------------------------------------


def tiny_model(local: bool = False, **overrides) -> Pix2PixHD:
    """The registry's tiny Pix2PixHD; ``local``: with a local enhancer 2 features wide (4 in its G1)."""
    torch.manual_seed(0)
    kwargs = tiny_kwargs(Pix2PixHD, **overrides)
    if local:
        kwargs["generator"] = {"class_path": "gans.nets.LocalEnhancer", "init_args": {"features": 2}}
    return Pix2PixHD(**kwargs)


def test_one_hot_labels():
    labels = torch.tensor([[[[0, 2], [1, 2]]]])  # [1, 1, 2, 2]
    expected = torch.tensor([[[[1.0, 0], [0, 0]], [[0, 0], [1, 0]], [[0, 1], [0, 1]]]])
    assert torch.equal(one_hot_labels(labels, 3), expected)
    assert torch.equal(one_hot_labels(labels.float(), 3), expected)  # class indices carried as floats
    with pytest.raises(ConfigurationError, match=r"^source_channels=2: the label map holds classes 0..2"):
        one_hot_labels(labels, 2)


def test_instance_edges_mark_both_sides_of_every_boundary():
    instance = torch.tensor([
        [1, 1, 1, 1, 5],
        [1, 1, 1, 1, 5],
        [2, 2, 1, 1, 5],
        [2, 2, 1, 1, 5],
    ])[None, None]
    expected = torch.tensor([
        [0, 0, 0, 1, 1],
        [1, 1, 0, 1, 1],
        [1, 1, 1, 1, 1],
        [0, 1, 1, 1, 1],
    ], dtype=torch.float32)[None, None]
    assert torch.equal(instance_edges(instance), expected)
    assert not instance_edges(torch.full((2, 1, 3, 3), 7)).any()


def test_label_sources_are_one_hot_with_the_edge_map_for_g_and_d():
    model = tiny_model(source_type="labels", source_channels=3, instance_maps=True)
    labels = torch.tensor([[[[0, 1], [2, 2]]]])
    instance = torch.tensor([[[[4, 4], [4, 9]]]])
    source = model.with_edges(labels, instance)
    assert source.shape == (1, 2, 2, 2)
    encoded = model.encode(source)
    assert torch.equal(encoded[:, :3], one_hot_labels(labels, 3))
    assert torch.equal(encoded[:, 3:], instance_edges(instance))
    # G takes the 3 classes + the edge map; D those and the image.
    assert model.generator.body[1].in_channels == 4
    assert model.discriminator.discriminators[0].blocks[0][0].in_channels == 5
    _, cond = model.unpack((labels, torch.zeros(1, 1, 2, 2), instance))
    assert torch.equal(cond["source"], source)
    with pytest.raises(ConfigurationError, match="instance_maps=True: the batches hold no instance maps"):
        model.unpack((labels, torch.zeros(1, 1, 2, 2)))
    with pytest.raises(ValueError, match="takes sources of 2 channels"):
        model.encode(labels.float())


def test_multiscale_discriminator_scores_three_halving_scales():
    model = tiny_model(image_size=32)
    source, image = model.random_source(2), torch.rand(2, 1, 32, 32) * 2 - 1
    scales = model.judge(image, source)
    assert len(scales) == 3
    pair = torch.cat([source, image], dim=1)
    for k, (layers, discriminator) in enumerate(zip(scales, model.discriminator.discriminators, strict=True)):
        side = [32, 16, 8][k]  # the input average-pooled 3x3, stride 2, once per scale
        assert layers[-1].shape == (2, 1, discriminator.output_size(side), discriminator.output_size(side))
        scaled = pair
        for _ in range(k):
            scaled = nn.functional.avg_pool2d(scaled, 3, 2, 1, count_include_pad=False)
        torch.testing.assert_close(layers[-1], discriminator(scaled))
    # critic: every scale's patch scores side by side.
    scores = model.critic(image, source=source)
    assert scores.shape == (2, 1, 1, sum(layers[-1][0].numel() for layers in scales))


def test_feature_matching_against_its_formula():
    # Two discriminators, two intermediate layers each (the last entry, the scores, is left out); constant maps,
    # so every L1 distance is the difference of the constants.
    def maps(*values):
        return [torch.full((1, 2, 3, 3), float(v)) for v in values]

    real = [maps(1, 2, 100), maps(0, -1, 100)]
    fake = [maps(1.5, 0, -50), maps(3, -1, -50)]
    # (1 / num_D) * sum_D sum_layers w * |fake - real|, w = 4 / (n_layers_D + 1) = 2 for 2 intermediate layers
    expected = 0.5 * (2 * 0.5 + 2 * 2 + 2 * 3 + 2 * 0)
    assert feature_matching(real, fake, 4 / 2).item() == pytest.approx(expected)


def test_generator_loss_is_the_references():
    """G's loss: sum_k MSE(D_k(x, G(x)), 1) + 10 * (1/num_D) sum_k sum_l 4/(n_layers_D + 1) * L1(D_k^l(fake),
    D_k^l(real)); D's: sum_k (MSE(D_k(real), 1) + MSE(D_k(fake), 0)) / 2."""
    model = tiny_model(image_size=16, discriminator={"init_args": {"n_layers": 2}})
    real, source = torch.rand(2, 1, 16, 16) * 2 - 1, model.random_source(2)
    fake = model.generate(2, source=source)
    terms = model.g_loss(real, fake, source=source)
    fake_layers, real_layers = model.judge(fake, source), model.judge(real, source)
    gan = sum(((layers[-1] - 1) ** 2).mean() for layers in fake_layers)
    feat = sum(4 / 3 * (f - r).abs().mean() for fl, rl in zip(fake_layers, real_layers) for f, r in zip(fl[:-1], rl[:-1]))
    feat = feat / 3
    torch.testing.assert_close(terms["g_gan"], gan)
    torch.testing.assert_close(terms["g_feat"], feat)
    torch.testing.assert_close(terms["g_loss"], gan + 10 * feat)
    d_terms = model.d_loss(real, fake, source=source)
    d = sum(((r[-1] - 1) ** 2).mean() / 2 + (f[-1] ** 2).mean() / 2 for r, f in zip(real_layers, fake_layers))
    torch.testing.assert_close(d_terms["d_loss"], d)


def test_vgg_loss_joins_the_generator_loss():
    model = tiny_model()
    # A stand-in for VGG19 (whose 140M parameters take seconds to build): the wiring, not the features.
    model.vgg = lambda fake, real: (fake - real).square().mean()
    real, source = torch.rand(1, 1, 8, 8) * 2 - 1, model.random_source(1)
    fake = model.generate(1, source=source)
    terms = model.g_loss(real, fake, source=source)
    torch.testing.assert_close(terms["g_vgg"], model.vgg(fake.images, real))
    torch.testing.assert_close(terms["g_loss"], terms["g_gan"] + 10 * terms["g_feat"] + 10 * terms["g_vgg"])


def test_vgg_weights_off_missing_or_given(tmp_path):
    assert tiny_model().vgg is None and tiny_model(vgg_weights="x.pth", lambda_vgg=0).vgg is None
    model = tiny_model(vgg_weights=str(tmp_path / "vgg19.pth"))
    with pytest.raises(MissingFileError, match=r"^vgg_weights='.*vgg19.pth' does not exist"):
        quiet_trainer(tmp_path, fast_dev_run=1).fit(model, tiny_pairs(model))
    model = tiny_model()
    with pytest.warns(UserWarning, match=r"the VGG perceptual loss is off \(vgg_weights=None\)"):
        quiet_trainer(tmp_path, fast_dev_run=1).fit(model, tiny_pairs(model))


def test_fast_dev_run_on_label_maps_with_instances(label_map_pairs, tmp_path):
    data = PairedImageDataModule(
        data_dir=str(label_map_pairs), layout="folders", folder_a="{split}_label", folder_b="{split}_img",
        instance_folder="{split}_inst", source_type="labels", num_classes=4, load_size=10, crop_size=8, batch_size=2,
        seed=0,
    )
    model = tiny_model(source_type="labels", source_channels=4, channels=3, instance_maps=True, lambda_vgg=0)
    trainer = quiet_trainer(tmp_path, fast_dev_run=1, limit_val_batches=1)
    trainer.fit(model, data)
    assert trainer.global_step == 1
    logged = trainer.callback_metrics
    assert {"train/g_gan", "train/g_feat", "train/d_loss", "val/l1", "val/psnr", "val/ssim"} <= set(logged)
    # The kept sources are the label maps with their boundaries, shown in class colours for the grids.
    assert model.fixed.source.shape == (2, 2, 8, 8)
    grid, per_row = model.sample_grid({"source": model.fixed.source}, model.sample(source=model.fixed.source), 2)
    assert grid.shape == (6, 3, 8, 8) and per_row == 3
    batch = next(iter(data.val_dataloader()))
    assert model.predict_step(batch, 0).shape == (2, 3, 8, 8)
    with pytest.raises(ConfigurationError, match="instance_maps=True: the batches hold no instance maps"):
        model.predict_step(batch[:1], 0)


# ---------------------------------------------------------------------------------------------------------------
# The coarse-to-fine schedule
# ---------------------------------------------------------------------------------------------------------------


def test_stage_arguments_are_checked(tmp_path):
    with pytest.raises(ConfigurationError, match=r"^stage='local' trains a local enhancer"):
        tiny_model(stage="local")
    with pytest.raises(ConfigurationError, match=r"^global_checkpoint='g.ckpt' and fix_global_epochs=0 belong to"):
        tiny_model(global_checkpoint="g.ckpt")
    with pytest.raises(ConfigurationError, match=r"^fix_global_epochs=2 keeps G1 fixed, but it was not trained"):
        tiny_model(local=True, stage="local", fix_global_epochs=2)
    model = tiny_model(local=True, stage="local", image_size=16, global_checkpoint=str(tmp_path / "missing.ckpt"))
    with pytest.raises(MissingFileError, match=r"^global_checkpoint='.*missing.ckpt' does not exist"):
        model.load_global_checkpoint()


class Snapshots(L.Callback):
    """G1's and the enhancer's parameters at the start and at the end of every epoch."""

    def __init__(self) -> None:
        self.snapshots: list[tuple[torch.Tensor, torch.Tensor]] = []

    def snapshot(self, module) -> None:
        g1 = torch.cat([p.detach().flatten().clone() for p in module.generator.global_parameters()])
        enhancer = torch.cat([p.detach().flatten().clone() for p in module.generator.enhancers.parameters()])
        self.snapshots.append((g1, enhancer))

    def on_train_start(self, trainer, module) -> None:
        self.snapshot(module)

    def on_train_epoch_end(self, trainer, module) -> None:
        self.snapshot(module)


def test_local_stage_loads_g1_from_a_global_checkpoint_and_keeps_it_fixed(tmp_path):
    # Stage 1: the global generator at half the final side (8 for 16).
    L.seed_everything(0, verbose=False)
    first = Pix2PixHD(**tiny_kwargs(Pix2PixHD, lambda_vgg=0))
    trainer = quiet_trainer(tmp_path / "global", max_steps=2)
    trainer.fit(first, tiny_pairs(first, batch_size=4))
    trainer.save_checkpoint(tmp_path / "global.ckpt")
    trained = [p.detach().clone() for p in first.generator.body.parameters()]

    # Stage 2: the local enhancer at 16, G1 fixed for the first of two epochs.
    local = tiny_model(local=True, image_size=16, lambda_vgg=0, stage="local",
                       global_checkpoint=str(tmp_path / "global.ckpt"), fix_global_epochs=1)
    assert local.generator.global_body[1].out_channels == 4  # G1 is twice as wide: the global run's 4 features
    snapshots = Snapshots()
    trainer = quiet_trainer(tmp_path / "local", max_epochs=2, callbacks=[snapshots])
    trainer.fit(local, tiny_pairs(local, batch_size=16))  # 32 pairs: 2 iterations an epoch
    (g1_start, enhancer_start), (g1_epoch1, enhancer_epoch1), (g1_epoch2, _) = snapshots.snapshots
    # G1 came from the global run, unchanged through the fixed epoch while the enhancer trained, then trained too.
    assert torch.equal(g1_start, torch.cat([p.flatten() for p in trained]))
    assert torch.equal(g1_epoch1, g1_start) and not torch.equal(enhancer_epoch1, enhancer_start)
    assert not torch.equal(g1_epoch2, g1_epoch1)
    assert all(p.requires_grad for p in local.generator.global_parameters())
