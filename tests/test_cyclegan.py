"""CycleGAN (Zhu et al. 2017): the ResNet translator, the history pool, the cycle and identity losses, the model."""

import lightning as L
import pytest
import torch
from conftest import quiet_trainer, same
from torch.utils.data import DataLoader, TensorDataset

from callbacks import IterationCheckpoint
from gans import CycleGAN, load_gan
from gans.errors import ConfigurationError
from gans.image_pool import ImagePool
from gans.losses import cycle_consistency, identity_mapping
from gans.nets.cyclegan import ResnetTranslator
from gans.outputs import GeneratorOutput

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
        assert sorted(pool.get_extra_state()["images"][:, 0, 0, 0].tolist()) == sorted(stored)
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
    assert torch.equal(pool.get_extra_state()["images"], restored.get_extra_state()["images"])
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


# ---------------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------------


def tiny_cyclegan(**kwargs) -> CycleGAN:
    args = {"channels": 3, "source_channels": 3, "image_size": 8, "num_fixed": 2, "pool_size": 3,
            "generator": {"init_args": {"features": 4, "n_blocks": 1}},
            "discriminator": {"init_args": {"features": 4, "n_layers": 1}}}
    return CycleGAN(**{**args, **kwargs})


class UnpairedData(L.LightningDataModule):
    """Random unpaired batches (a, b) at 8x8 in a fixed order, b of another distribution than a: 4 training pairs (an
    epoch of 2 batches: a resumed run starts at an epoch boundary, as a plain DataLoader cannot resume mid-epoch), 4
    held out."""

    batch_kind = "unpaired"

    def __init__(self, batch_size: int = 2) -> None:
        super().__init__()
        rng = torch.Generator().manual_seed(0)
        a, b = torch.rand(8, 3, 8, 8, generator=rng) - 1, torch.rand(8, 3, 8, 8, generator=rng)
        self.train, self.held = TensorDataset(a[:4], b[:4]), TensorDataset(a[4:], b[4:])
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.held, batch_size=self.batch_size)


def test_networks_losses_and_schedule():
    torch.manual_seed(0)
    model = tiny_cyclegan(source_channels=1, lambda_identity=0)
    assert model.optimized_networks() == {"g": ("generator", "generator_ba"), "d": ("discriminator", "discriminator_a")}
    assert [p.name for p in model.schedule.phases] == ["G", "D"]  # the authors' order: generators first
    assert isinstance(model.generator, ResnetTranslator) and isinstance(model.generator_ba, ResnetTranslator)
    a, b = torch.rand(2, 1, 8, 8) * 2 - 1, torch.rand(2, 3, 8, 8) * 2 - 1
    assert model.generator(a).shape == b.shape and model.generator_ba(b).shape == a.shape
    # Unconditional PatchGANs, D_B on images of B and D_A on images of A.
    assert model.critic(b).shape == (2, 1, 2, 2) and model.critic(a, model.discriminator_a).shape == (2, 1, 2, 2)

    fake = GeneratorOutput(model.generator(a))
    terms = {name: value.item() for name, value in model.g_loss(b, fake, source=a).items()}
    fake_a = model.generator_ba(b)
    # The least-squares G terms without LSGAN's 1/2 (the authors' MSE), the cycles with lambda 10, no identity.
    assert terms["g_gan_b"] == pytest.approx(((model.critic(fake.images) - 1) ** 2).mean().item(), rel=1e-5)
    assert terms["g_gan_a"] == pytest.approx(((model.critic(fake_a, model.discriminator_a) - 1) ** 2).mean().item(),
                                             rel=1e-5)
    assert terms["cycle_a"] == pytest.approx((model.generator_ba(fake.images) - a).abs().mean().item(), rel=1e-5)
    assert terms["cycle_b"] == pytest.approx((model.generator(fake_a) - b).abs().mean().item(), rel=1e-5)
    expected = terms["g_gan_a"] + terms["g_gan_b"] + 10 * (terms["cycle_a"] + terms["cycle_b"])
    assert terms["g_loss"] == pytest.approx(expected, rel=1e-5) and "idt_a" not in terms

    # D judges the G phase's fakes, through the pools (filling them).
    d_terms = {name: value.item() for name, value in model.d_loss(b, None, source=a).items()}
    d_b = 0.5 * ((model.critic(b) - 1) ** 2).mean() + 0.5 * (model.critic(fake.images) ** 2).mean()
    assert d_terms["d_b"] == pytest.approx(d_b.item(), rel=1e-5)
    assert d_terms["d_loss"] == pytest.approx(d_terms["d_a"] + d_terms["d_b"], rel=1e-6)
    assert len(model.pool_a) == len(model.pool_b) == 2


def test_identity_terms_weigh_half_lambda():
    torch.manual_seed(0)
    model = tiny_cyclegan(lambda_cycle=4.0)
    a, b = torch.rand(2, 3, 8, 8) * 2 - 1, torch.rand(2, 3, 8, 8) * 2 - 1
    fake = GeneratorOutput(model.generator(a))
    terms = {name: value.item() for name, value in model.g_loss(b, fake, source=a).items()}
    assert terms["idt_b"] == pytest.approx((model.generator(b) - b).abs().mean().item(), rel=1e-5)
    assert terms["idt_a"] == pytest.approx((model.generator_ba(a) - a).abs().mean().item(), rel=1e-5)
    rest = terms["g_gan_a"] + terms["g_gan_b"] + 4 * (terms["cycle_a"] + terms["cycle_b"])
    assert terms["g_loss"] == pytest.approx(rest + 4 * 0.5 * (terms["idt_a"] + terms["idt_b"]), rel=1e-5)


@pytest.mark.parametrize("kwargs,name", [
    ({"loss": "hinge"}, "loss"), ({"n_critic": 5}, "n_critic"), ({"r1_gamma": 1.0}, "r1_gamma"),
    ({"lambda_cycle": -1.0}, "lambda_cycle"), ({"lambda_identity": -0.5}, "lambda_identity"),
    ({"pool_size": -1}, "pool_size"),
    ({"source_channels": 1}, "lambda_identity"), ({"predict_direction": "AtoA"}, "predict_direction"),
])
def test_refuses_what_it_does_not_take(kwargs, name):
    with pytest.raises(ConfigurationError, match=f"^{name}="):
        tiny_cyclegan(**kwargs)


def test_translates_both_ways_and_shows_both_cycles():
    torch.manual_seed(0)
    model = tiny_cyclegan(source_channels=1, lambda_identity=0)
    a, b = torch.rand(3, 1, 8, 8) * 2 - 1, torch.rand(3, 3, 8, 8) * 2 - 1
    assert torch.equal(model.predict_step(a, 0), model.sample(source=a))
    model.predict_direction = "BtoA"  # on a loaded model: python train.py predict --model.init_args.predict_direction
    back = model.predict_step((b,), 0)
    assert back.shape == (3, 1, 8, 8) and torch.equal(back, model.generator_ba.eval()(b).clamp(-1, 1))
    model.fixed.keep(a[:2], b[:2])
    inputs = model.sample_inputs(2)
    grid, per_row = model.sample_grid(inputs, model.sample(**inputs), 2)
    assert per_row == 6 and grid.shape == (12, 3, 8, 8)
    fake_b = model.translate(a[:2], "AtoB")
    assert torch.equal(grid[1], fake_b[0]) and torch.equal(grid[2], model.translate(fake_b, "BtoA")[0].expand(3, 8, 8))
    assert torch.equal(grid[3], b[0]) and torch.equal(grid[6], a[1].expand(3, 8, 8))
    # Sources that were not kept: their b is unknown, the A cycle alone.
    grid, per_row = model.sample_grid({"source": a}, model.sample(source=a), 2)
    assert per_row == 3 and grid.shape == (9, 3, 8, 8)


def test_fast_dev_run_on_unpaired_data_and_load_gan(tmp_path):
    model = tiny_cyclegan()
    trainer = quiet_trainer(tmp_path, fast_dev_run=2, limit_val_batches=1)
    trainer.fit(model, UnpairedData())
    assert trainer.global_step == 2 and model.batches_seen == 2
    logged = {k for k in trainer.callback_metrics if k.startswith("train/")}
    terms = ("g_gan_a", "g_gan_b", "cycle_a", "cycle_b", "idt_a", "idt_b", "d_a", "d_b")
    assert {f"train/{t}" for t in terms} <= logged
    assert len(model.pool_a) == len(model.pool_b) == 3  # two batches of 2: full, and one query past it
    assert {"val/l1", "val/psnr", "val/ssim"} <= set(trainer.callback_metrics)

    trainer.save_checkpoint(tmp_path / "model.ckpt")
    loaded = load_gan(tmp_path / "model.ckpt")
    assert type(loaded) is CycleGAN and len(loaded.pool_a) == 3
    a = torch.rand(2, 3, 8, 8) * 2 - 1
    assert torch.equal(loaded.sample(source=a), model.sample(source=a))
    assert torch.equal(loaded.translate(a, "BtoA"), model.translate(a, "BtoA"))
    for name, value in model.state_dict().items():
        assert same(value, loaded.state_dict()[name]), name


def fit(data, run_dir, max_steps, ckpt_path=None) -> CycleGAN:
    torch.manual_seed(0)
    model = tiny_cyclegan()
    checkpoint = IterationCheckpoint(dirpath=run_dir / "ckpt", every_n_train_steps=1000)  # saves when the run ends
    trainer = quiet_trainer(run_dir, max_steps=max_steps, enable_checkpointing=True, callbacks=[checkpoint])
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return model


def test_resume_is_exact_with_the_pools_in_the_checkpoint(tmp_path):
    whole = fit(UnpairedData(), tmp_path / "whole", 4)
    fit(UnpairedData(), tmp_path / "part", 2)
    saved = torch.load(tmp_path / "part" / "ckpt" / "last.ckpt", weights_only=False)["state_dict"]
    assert len(saved["pool_a._extra_state"]["images"]) == 3  # full after 2 batches of 2
    resumed = fit(UnpairedData(), tmp_path / "part", 4, ckpt_path=tmp_path / "part" / "ckpt" / "last.ckpt")
    assert whole.state_dict().keys() == resumed.state_dict().keys()
    for name, value in whole.state_dict().items():
        assert same(value, resumed.state_dict()[name]), name
    # The pools swapped images (else their equality would prove little): the last queries' draws were replayed.
    assert not torch.equal(whole.pool_b.get_extra_state()["images"], saved["pool_b._extra_state"]["images"])


def test_predict_translates_a_folder_of_a_images_under_their_names(unpaired_set, tmp_path):
    from callbacks import PredictionWriter
    from datamodules import UnpairedImageDataModule

    data = UnpairedImageDataModule(data_dir=str(unpaired_set), load_size=8, crop_size=8, batch_size=2,
                                   predict_dir=str(unpaired_set / "testA"))
    torch.manual_seed(0)
    model = tiny_cyclegan()
    out = tmp_path / "out"
    trainer = quiet_trainer(tmp_path, callbacks=[PredictionWriter(output_dir=str(out), grid_size=0)])
    (translated,) = [torch.cat(trainer.predict(model, data))]
    names = sorted(p.stem for p in (unpaired_set / "testA").iterdir())
    assert sorted(p.stem for p in out.glob("*.png")) == names and translated.shape == (len(names), 3, 8, 8)
    data.setup("predict")
    sources = torch.stack([data.splits["predict"][i][0] for i in range(len(names))])
    torch.testing.assert_close(translated, model.sample(source=sources))  # G: A -> B
    with pytest.raises(ConfigurationError, match=r"^image folder .*nope does not exist") as err:
        UnpairedImageDataModule(data_dir=str(unpaired_set), predict_dir=str(tmp_path / "nope")).setup("predict")
    assert err.value.argument == "predict_dir"
