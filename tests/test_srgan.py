"""SRGAN (Ledig et al. 2017): the SRResNet generator and its sub-pixel upsampling, the discriminator, the content
losses, the MSE pre-training stage before the adversarial one, and resuming across the switch."""

from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import quiet_trainer, same, tiny_pairs
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks import IterationCheckpoint, SampleGrid
from gans import SRGAN
from gans.base import load_gan
from gans.errors import ConfigurationError
from gans.nets import SRDiscriminator, SRResNet
from gans.nets.srgan import SubPixelBlock
from gans.srgan import luma


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks gain nothing from intra-op threads, whose spin-waits slow them down on a busy machine (see
    tests/test_variants.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_NETS = {
    "generator": {"init_args": {"features": 4, "n_blocks": 2}},
    "discriminator": {"init_args": {"features": 4}},
}


def tiny_srgan(**kwargs) -> SRGAN:
    return SRGAN(**{"channels": 3, "image_size": 16, "scale": 4, "pretrain_steps": 0, **TINY_NETS, **kwargs})


def sr_pairs(n: int = 16, size: int = 16, scale: int = 4, seed: int = 0) -> TensorDataset:
    """Smooth random high-resolution images and their bicubic downsamples, (lr, hr) in [-1, 1]."""
    rng = torch.Generator().manual_seed(seed)
    hr = F.interpolate(torch.rand(n, 3, size // 4, size // 4, generator=rng), size=size, mode="bilinear") * 2 - 1
    lr = F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True).clamp(-1, 1)
    return TensorDataset(lr, hr)


# ---------------------------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------------------------


def test_sub_pixel_block_doubles_the_size_by_rearranging_channels():
    torch.manual_seed(0)
    block = SubPixelBlock(3)
    x = torch.randn(2, 3, 5, 7)
    out = block(x)
    assert out.shape == (2, 3, 10, 14)
    # Pixel (2i + a, 2j + b) of channel c is channel 4c + 2a + b of the convolution at (i, j), then PReLU.
    conv = block.conv(x)
    for c, a, b in ((0, 0, 0), (1, 0, 1), (2, 1, 0), (2, 1, 1)):
        expected = F.prelu(conv[:, 4 * c + 2 * a + b : 4 * c + 2 * a + b + 1], block.act.weight[c : c + 1])
        torch.testing.assert_close(out[:, c : c + 1, a::2, b::2], expected)


@pytest.mark.parametrize(("scale", "blocks"), [(2, 1), (4, 2), (8, 3)])
def test_srresnet_upsamples_by_scale_with_log2_sub_pixel_blocks(scale, blocks):
    torch.manual_seed(0)
    generator = SRResNet(3, 1, 8 * scale, scale=scale, features=4, n_blocks=2)
    assert len(generator.upsample) == blocks
    out = generator(torch.rand(2, 3, 8, 6) * 2 - 1)  # any size: the network is convolutional
    assert out.shape == (2, 1, 8 * scale, 6 * scale) and out.abs().max() <= 1
    # The registry's 8x8 targets at scale 4: 2x2 inputs.
    assert SRResNet(1, 1, 8, features=4)(torch.rand(3, 1, 2, 2)).shape == (3, 1, 8, 8)
    assert not isinstance(SRResNet(1, 1, 8, output="identity").output, nn.Tanh)


def test_srresnet_has_the_papers_layers_and_parameter_count():
    generator = SRResNet(3, 3, 96)
    f = 64
    conv = lambda k, c_in, c_out: k * k * c_in * c_out + c_out
    block = 2 * conv(3, f, f) + 2 * 2 * f + f  # two convs, two BNs (scale, shift), a channel-wise PReLU
    expected = (
        conv(9, 3, f) + f  # 9x9 head and its PReLU
        + 16 * block
        + conv(3, f, f) + 2 * f  # the conv and BN before the long skip
        + 2 * (conv(3, f, 4 * f) + f)  # two sub-pixel blocks: conv to 256, shuffle, PReLU
        + conv(9, f, 3)
    )
    assert sum(p.numel() for p in generator.parameters()) == expected == 1_550_659  # SRResNet: ~1.5M
    assert len(generator.blocks) == 16 and generator.head[0].kernel_size == (9, 9)
    assert generator.tail.kernel_size == (9, 9)


def test_discriminator_has_the_papers_layers_and_judges_any_size():
    torch.manual_seed(0)
    d = SRDiscriminator(3, 96)
    convs = [m for m in d.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2] * 4 and all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.features) == 7 and isinstance(d.features[1], nn.LeakyReLU)
    assert all(m.negative_slope == 0.2 for m in d.modules() if isinstance(m, nn.LeakyReLU))
    dense = [m for m in d.head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in dense] == [(512 * 6 * 6, 1024), (1024, 1)]  # 96 / 16 = 6
    assert d(torch.rand(2, 3, 96, 96)).shape == (2,)
    assert SRDiscriminator(1, 8, features=4)(torch.rand(5, 1, 8, 8)).shape == (5,)
    assert SRDiscriminator(3, 40, features=4)(torch.rand(2, 3, 40, 24)).shape == (2,)


def test_bad_sizes_and_choices_are_refused():
    with pytest.raises(ConfigurationError, match="scale=3"):
        SRResNet(3, 3, 96, scale=3)
    with pytest.raises(ConfigurationError, match="image_size=10 is not a multiple of scale=4"):
        SRResNet(3, 3, 10)
    with pytest.raises(ConfigurationError, match="content_loss='vgg33'"):
        tiny_srgan(content_loss="vgg33")
    with pytest.raises(ConfigurationError, match="scale=3"):
        tiny_srgan(scale=3)
    with pytest.raises(ConfigurationError, match="y_metrics=True"):
        tiny_srgan(image_size=8, y_metrics=True)
    with pytest.raises(ConfigurationError, match="pretrain_steps=-1"):
        tiny_srgan(pretrain_steps=-1)


# ---------------------------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------------------------


def test_mse_content_and_generator_loss_against_hand_computed_values():
    model = tiny_srgan()
    fake = torch.tensor([0.5, -0.25, 1.0, 0.0]).view(1, 1, 2, 2)
    real = torch.tensor([0.0, 0.25, 1.0, -1.0]).view(1, 1, 2, 2)
    assert float(model.content(fake, real)) == pytest.approx((0.25 + 0.25 + 0 + 1) / 4)
    torch.manual_seed(0)
    source, real = sr_pairs(4).tensors
    fake = model.generate(4, source=source)
    terms = model.g_loss(real, fake, source=source)
    d_fake = model.discriminator(fake.images)
    content = ((fake.images - real) ** 2).mean()
    adversarial = -torch.log(torch.sigmoid(d_fake)).mean()  # non-saturating: -log D(G(lr))
    torch.testing.assert_close(terms["content"], content.detach())
    torch.testing.assert_close(terms["g_adversarial"], adversarial.detach())
    torch.testing.assert_close(terms["g_loss"], content + 1e-3 * adversarial)
    # The first stage is the pixel MSE alone, whatever the content loss of the second.
    torch.testing.assert_close(model.pretrain_loss(real, fake, source=source)["content"], content)


def test_vgg_content_loss_against_a_direct_call_of_torchvision(tmp_path):
    """Random VGG19 weights given by path (no download here): VGG22 is the MSE of the feature maps after the ReLU of
    conv2_2 (torchvision's features[8]) of ImageNet-normalised [0, 1] images, rescaled by 1/12.75."""
    from torchvision.models import vgg19

    torch.manual_seed(0)
    vgg = vgg19(weights=None)
    torch.save(vgg.features.state_dict(), tmp_path / "vgg19.pth")
    model = tiny_srgan(content_loss="vgg22", vgg_weights=str(tmp_path / "vgg19.pth"))
    fake, real = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    features = vgg.features[:9].eval()
    with torch.no_grad():
        phi_fake = features(((fake + 1) / 2 - mean) / std)
        phi_real = features(((real + 1) / 2 - mean) / std)
        expected = ((phi_fake / 12.75 - phi_real / 12.75) ** 2).mean()
    torch.testing.assert_close(model.content(fake, real), expected)
    assert tiny_srgan(content_loss="vgg54").vgg.layers == ["relu5_4"]  # phi_5,4: built lazily, nothing loaded here


def test_vgg_content_loss_without_weights_stops_the_run_with_one_message(tmp_path):
    model = tiny_srgan(content_loss="vgg54", vgg_weights=str(tmp_path / "missing.pth"))
    loader = DataLoader(sr_pairs(8), batch_size=4)
    with pytest.raises(ConfigurationError, match="vgg_weights=.*missing.pth.* does not exist"):
        quiet_trainer(tmp_path, max_steps=1).fit(model, loader)


# ---------------------------------------------------------------------------------------------------------------
# The stages
# ---------------------------------------------------------------------------------------------------------------


class StepCounts(L.Callback):
    """After every batch: (iterations, G's optimizer steps, D's optimizer steps, D unchanged since the start)."""

    def __init__(self) -> None:
        self.rows, self.d_start = [], None

    def on_train_start(self, trainer, module) -> None:
        self.d_start = [p.detach().clone() for p in module.discriminator.parameters()]

    def on_train_batch_end(self, trainer, module, *args) -> None:
        g, d = (int(o.state[o.param_groups[0]["params"][0]]["step"]) if o.state else 0 for o in trainer.optimizers)
        same_d = all(torch.equal(a, b) for a, b in zip(self.d_start, module.discriminator.parameters(), strict=True))
        self.rows.append((trainer.global_step, g, d, same_d))


def test_pretraining_runs_alone_for_pretrain_steps_then_d_and_g_alternate(tmp_path):
    torch.manual_seed(0)
    model = tiny_srgan(pretrain_steps=3)
    assert [p.name for p in model.schedule.phases] == ["G_pre", "D", "G"]
    counts = StepCounts()
    trainer = quiet_trainer(tmp_path, max_steps=6, callbacks=[counts])
    trainer.fit(model, DataLoader(sr_pairs(16), batch_size=4))
    assert counts.rows == [
        (1, 1, 0, True), (2, 2, 0, True), (3, 3, 0, True), (4, 4, 1, False), (5, 5, 2, False), (6, 6, 3, False)
    ]
    assert model.batches_seen == 6
    assert {"train/content", "train/d_loss", "train/g_adversarial"} <= set(trainer.callback_metrics)


def fit(run_dir, max_steps, ckpt_path=None):
    L.seed_everything(0, verbose=False)
    model = SRGAN(channels=1, image_size=8, scale=4, pretrain_steps=2, **TINY_NETS)
    checkpoint = IterationCheckpoint(dirpath=run_dir / "ckpt", every_n_train_steps=1, save_last=False)
    trainer = quiet_trainer(run_dir, max_steps=max_steps, callbacks=[checkpoint], enable_checkpointing=True)
    trainer.fit(model, tiny_pairs(model, batch_size=4), ckpt_path=ckpt_path)
    return model


def test_resume_across_the_stage_switch_is_exact(tmp_path):
    whole = fit(tmp_path / "whole", 4)
    (path,) = (tmp_path / "whole" / "ckpt").glob("*step=1*.ckpt")  # in the pre-training stage
    resumed = fit(tmp_path / "resumed", 4, ckpt_path=path)
    assert resumed.global_step == 4 and resumed.batches_seen == 4
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert same(a, b), name
    loaded = load_gan(next((tmp_path / "resumed" / "ckpt").glob("*step=4*.ckpt")))
    assert type(loaded) is SRGAN and loaded.pretrain_steps == 2 and loaded.scale == 4


# ---------------------------------------------------------------------------------------------------------------
# Data, grids and evaluation
# ---------------------------------------------------------------------------------------------------------------


class SRPairs(L.LightningDataModule):
    batch_kind = "paired"

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.image_shape, self.source_shape = (3, 16, 16), (3, 16 // scale, 16 // scale)
        self.train, self.held = sr_pairs(16), sr_pairs(8, seed=1)

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=4)

    def val_dataloader(self):
        return DataLoader(self.held, batch_size=4)


def test_fast_dev_run_on_synthetic_super_resolution_data_with_the_papers_measures(tmp_path):
    torch.manual_seed(0)
    model = tiny_srgan(pretrain_steps=1, y_metrics=True)
    trainer = quiet_trainer(tmp_path, fast_dev_run=2)
    trainer.fit(model, SRPairs())
    assert trainer.global_step == 2
    assert {"val/l1", "val/psnr", "val/ssim", "val/psnr_y", "val/ssim_y"} <= set(trainer.callback_metrics)
    # The grid: the bicubic upscaling of the source | the output | the target, all at the target's size.
    grid, per_row = model.sample_grid(model.sample_inputs(2), model.sample(**model.sample_inputs(2)), 4)
    assert per_row == 3 and grid.shape == (6, 3, 16, 16)
    bicubic = F.interpolate(model.fixed.source[:2], scale_factor=4, mode="bicubic").clamp(-1, 1)
    torch.testing.assert_close(grid[0::3], bicubic)
    torch.testing.assert_close(grid[2::3], model.fixed.target[:2])
    assert SampleGrid(num_samples=2).images(model)["fixed"].shape[-2:] == (2 * 18 + 2, 3 * 18 + 2)


def test_the_y_channel_measure_is_the_papers():
    assert luma(torch.ones(1, 3, 1, 1)).item() == pytest.approx(235 / 255)
    assert luma(torch.zeros(1, 3, 1, 1)).item() == pytest.approx(16 / 255)
    torch.manual_seed(0)
    model = tiny_srgan(y_metrics=True)
    source, real = sr_pairs(4).tensors
    terms = model.evaluation_terms(real, source=source)
    fake = (model.sample(source=source) + 1) / 2
    y = lambda x: (65.481 * x[:, 0] + 128.553 * x[:, 1] + 24.966 * x[:, 2] + 16)[:, None, 4:-4, 4:-4] / 255
    mse = (y(fake) - y((real + 1) / 2)).square().mean(dim=(1, 2, 3))  # per image, then averaged, as the paper
    torch.testing.assert_close(terms["psnr_y"], (-10 * torch.log10(mse)).mean())


def test_a_data_module_of_another_scale_is_refused(tmp_path):
    model = tiny_srgan()
    with pytest.raises(ConfigurationError, match="scale=4: the data module makes 8-pixel sources of 16-pixel images"):
        quiet_trainer(tmp_path, max_steps=1).fit(model, SRPairs(scale=2))


def test_the_cpu_config_trains_on_a_folder_and_upscales_a_folder_of_inputs(hr_images, tmp_path):
    """configs/srgan_silhouettes.yaml end to end on DIV2K-layout files: the model sized from the crops, both stages,
    the paper's measures on validation, then predict writes each input's upscaling under its name, 4x its size."""
    from PIL import Image

    from gans.cli import main

    config = [
        "--config", str(Path(__file__).parents[1] / "configs/srgan_silhouettes.yaml"), f"--data.init_args.data_dir={hr_images}",
        "--data.init_args.train_folder=DIV2K_train_HR", "--data.init_args.val_folder=DIV2K_valid_HR",
        "--data.init_args.crop_size=16", "--data.init_args.batch_size=2", "--metrics=false",
        "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}",
    ]
    cli = main(["fit", *config, "--trainer.max_steps=2", "--model.init_args.pretrain_steps=1",
                "--trainer.val_check_interval=2"])
    assert (cli.model.image_size, cli.model.source_channels, cli.trainer.global_step) == (16, 3, 2)
    assert [p.name for p in cli.model.schedule.phases] == ["G_pre", "D", "G"]
    assert {"val/psnr_y", "val/ssim_y", "train/content", "train/d_loss"} <= set(cli.trainer.callback_metrics)
    inputs = tmp_path / "lr"
    inputs.mkdir()
    Image.new("RGB", (7, 5), (200, 30, 90)).save(inputs / "small.png")
    cli = main(["predict", *config, f"--data.init_args.predict_dir={inputs}",
                f"--ckpt_path={next(tmp_path.rglob('last.ckpt'))}"])
    (written,) = Path(cli.trainer.log_dir).rglob("small.png")
    assert Image.open(written).size == (28, 20)
