"""StyleGAN2's training (gans.StyleGAN2): the official schedule of phases, the lazy terms with their weights and the
optimizers' lr/beta correction, path length and its moving average, style mixing, truncation, the conditional model,
mixed precision, two processes, and the official presets as configs. fast_dev_run, resume, load_gan, export and
pickling are the registry's (tests/test_variants.py, test_gan_ddp.py, test_precision.py)."""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from conftest import quiet_trainer, tiny_datamodule, tiny_kwargs
from test_ddp import clean_distributed_env  # noqa: F401 (fixture)

from gans import GANDDPStrategy, StyleGAN2
from gans.errors import ConfigurationError
from gans.losses import path_length_penalty, path_lengths
from gans.style import draw_crossover
from gans.stylegan2 import PRESETS, auto_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Networks this small gain nothing from intra-op threads on a busy machine (see test_variants.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides) -> StyleGAN2:
    return StyleGAN2(**tiny_kwargs(StyleGAN2, **overrides))


# ---------------------------------------------------------------------------------------------------------------
# Path length, by hand
# ---------------------------------------------------------------------------------------------------------------


def test_path_length_penalty_by_hand():
    # A "generator" linear in ws [2, num_ws=2, w_dim=2]: image pixels (3 w[0,0], 4 w[1,1]). With the random image
    # y = (1, 1), J^T y has the entries 3 (layer 0) and 4 (layer 1): squares summed over w_dim (9, 16), averaged over
    # the layers (12.5), square root. With y = (2, 0): 6 at layer 0 only: (36 + 0) / 2 = 18.
    ws = torch.randn(2, 2, 2).requires_grad_(True)
    images = torch.stack([3 * ws[:, 0, 0], 4 * ws[:, 1, 1]], dim=1).view(2, 1, 1, 2)
    noise = torch.tensor([[1.0, 1.0], [2.0, 0.0]]).view(2, 1, 1, 2)
    lengths = path_lengths(images, ws, noise)
    torch.testing.assert_close(lengths, torch.tensor([math.sqrt(12.5), math.sqrt(18.0)]))
    # The target moves from 1 towards the mean length (3.88908) by 1%: 1.0288909; the penalty is the mean squared
    # distance to it, ((3.53553 - 1.02889)^2 + (4.24264 - 1.02889)^2) / 2 = 8.305724.
    penalty, pl_mean = path_length_penalty(lengths, torch.tensor(1.0), decay=0.01)
    torch.testing.assert_close(pl_mean, torch.tensor(1.0288909))
    torch.testing.assert_close(penalty, torch.tensor(8.305724))
    assert not pl_mean.requires_grad  # stored for the next call; a linear G's lengths are constants (no graph)
    # A mean over all processes replaces the batch's in the update (data parallelism).
    _, moved = path_length_penalty(lengths, torch.tensor(1.0), decay=0.5, batch_mean=torch.tensor(3.0))
    torch.testing.assert_close(moved, torch.tensor(2.0))


def test_path_length_noise_is_scaled_by_the_resolution():
    # Official: y ~ N(0, I) / sqrt(H W), so that a generator whose images are a fixed linear map of w has a length
    # independent of the number of pixels: here ||J^T y||^2 = sum(y^2) ~ H W / (H W) = 1 per layer and dim.
    torch.manual_seed(0)
    ws = torch.randn(64, 1, 1).requires_grad_(True)
    images = ws.view(64, 1, 1, 1).expand(64, 1, 32, 32)
    torch.testing.assert_close(path_lengths(images, ws).square().mean(), torch.tensor(1.0), rtol=0.05, atol=0)


# ---------------------------------------------------------------------------------------------------------------
# The schedule
# ---------------------------------------------------------------------------------------------------------------


class Record(L.Callback):
    def __init__(self) -> None:
        self.steps: list[float] = []

    def on_before_optimizer_step(self, trainer, module, optimizer):
        self.steps.append(module.batches_seen)


def record_phases(model: StyleGAN2) -> list[tuple[int, str, dict]]:
    """Wraps the phases' loss methods to record (batch, phase, terms) of every run."""
    calls = []
    for phase in model.schedule.phases:
        original = getattr(model, phase.loss)

        def wrapped(real, fake, _name=phase.name, _original=original, **cond):
            terms = _original(real, fake, **cond)
            calls.append((model.batches_seen, _name, {k: v.detach().clone() for k, v in terms.items()}))
            return terms

        setattr(model, phase.loss, wrapped)
    return calls


def test_official_schedule_lazy_weights_and_correction(synthetic_mnist, tmp_path):
    """16 batches: G and D every batch, G_reg (path length) every 4th iteration, D_reg (R1) every 16th batch, in the
    official order; the lazy terms weighted by their intervals; the optimizers corrected by c/(c+1)."""
    L.seed_everything(0, verbose=False)
    model = tiny(r1_gamma=0.5)
    calls = record_phases(model)
    trainer = quiet_trainer(tmp_path, max_steps=16)
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    assert trainer.global_step == 16 and model.batches_seen == 16
    ran = {name: [batch for batch, phase, _ in calls if phase == name] for name in ("G", "G_reg", "D", "D_reg")}
    assert ran == {"G": list(range(1, 17)), "G_reg": [4, 8, 12, 16], "D": list(range(1, 17)), "D_reg": [16]}
    assert [phase for batch, phase, _ in calls if batch == 16] == ["G", "G_reg", "D", "D_reg"]
    for _, phase, terms in calls:
        if phase == "G_reg":  # pl_weight 2 times the interval 4
            torch.testing.assert_close(terms["g_reg"], terms["pl_penalty"] * 2 * 4)
        if phase == "D_reg":  # gamma / 2 times the interval 16
            torch.testing.assert_close(terms["d_reg"], terms["r1"] * 0.5 / 2 * 16)
        if phase == "G":
            assert terms.keys() == {"g_loss"}
    g_opt, d_opt = (opt.param_groups[0] for opt in trainer.optimizers)
    assert g_opt["lr"] == pytest.approx(0.0025 * 4 / 5) and d_opt["lr"] == pytest.approx(0.0025 * 16 / 17)
    assert g_opt["betas"] == pytest.approx((0.0, 0.99 ** (4 / 5))) and g_opt["eps"] == 1e-8
    assert d_opt["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))


def test_without_lazy_intervals_the_terms_join_the_main_phases(synthetic_mnist, tmp_path):
    """pl_every=1 and reg_every=1 (the official Gboth/Dboth): no reg phases, no correction, the terms in G and D."""
    L.seed_everything(0, verbose=False)
    model = tiny(pl_every=1, reg_every=1)
    assert [p.name for p in model.schedule.phases] == ["G", "D"] and model.schedule.lazy_ratios == {}
    calls = record_phases(model)
    trainer = quiet_trainer(tmp_path, max_steps=1)
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    (_, _, g_terms), (_, _, d_terms) = calls
    assert {"pl_penalty", "pl_mean"} <= g_terms.keys() and "r1" in d_terms
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.0025
    # Off: no path length at all (the cifar preset), no R1 phase without R1.
    assert [p.name for p in tiny(pl_weight=0.0, r1_gamma=0.0).schedule.phases] == ["G", "D"]


def test_an_interval_whose_term_is_off_still_corrects_the_optimizer(synthetic_mnist, tmp_path):
    """The official training_loop corrects a network's Adam by c/(c+1) for G_reg_interval 4 and D_reg_interval 16
    whether or not path length or R1 is on: its cifar preset (pl_weight 0) trains G at lr 0.0025 * 4/5, betas 0.99 **
    (4/5). pl_every=1 (the official G_reg_interval None) corrects nothing."""
    L.seed_everything(0, verbose=False)
    model = tiny(pl_weight=0.0, r1_gamma=0.0)
    trainer = quiet_trainer(tmp_path, max_steps=1)
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    g_opt, d_opt = (opt.param_groups[0] for opt in trainer.optimizers)
    assert g_opt["lr"] == pytest.approx(0.0025 * 4 / 5) and g_opt["betas"] == pytest.approx((0.0, 0.99 ** (4 / 5)))
    assert d_opt["lr"] == pytest.approx(0.0025 * 16 / 17) and d_opt["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))
    assert [p.name for p in model.schedule.phases] == ["G", "D"]  # nothing more runs
    unlazy = tiny(pl_weight=0.0, pl_every=1, r1_gamma=0.0, reg_every=1)
    assert unlazy.schedule.lazy_ratios == {}


def test_r2_alone_is_lazy_with_reg_every():
    model = tiny(r1_gamma=0.0, r2_gamma=1.0, reg_every=4)
    assert [p.name for p in model.schedule.phases] == ["G", "G_reg", "D", "D_reg"]
    assert model.schedule.lazy_ratios["d"] == pytest.approx(4 / 5)


def test_pl_mean_moves_by_the_decay_and_is_checkpointed(tmp_path):
    torch.manual_seed(0)
    model = tiny()
    real = torch.randn(8, 1, 8, 8)
    assert model.pl_mean.item() == 0.0
    for _ in range(2):
        before = model.pl_mean.clone()
        terms = model.g_reg_loss(real, None)
        # lerp(previous, this batch's mean length, 0.01); the penalty is pl_weight * interval times its value.
        torch.testing.assert_close(model.pl_mean, before + 0.01 * (terms["pl_length"] - before))
        torch.testing.assert_close(terms["pl_mean"], model.pl_mean)
        torch.testing.assert_close(terms["g_reg"].detach(), terms["pl_penalty"] * 8)
    assert "pl_mean" in model.state_dict()
    # Its own half batch (pl_batch_shrink 2), whose graph reaches the generator's weights.
    grads = torch.autograd.grad(terms["g_reg"], [p for p in model.generator.parameters()], allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


# ---------------------------------------------------------------------------------------------------------------
# Style mixing and truncation
# ---------------------------------------------------------------------------------------------------------------


def test_crossover_is_drawn_with_the_mixing_probability():
    torch.manual_seed(0)
    draws = torch.stack([draw_crossover(6, 0.9) for _ in range(4000)])
    mixed = draws < 6
    assert abs(mixed.float().mean().item() - 0.9) < 0.02
    assert set(draws[mixed].tolist()) == {1, 2, 3, 4, 5}  # uniform over the layers after the first
    assert (draws == 6).any() and (torch.stack([draw_crossover(6, 0.0) for _ in range(50)]) == 6).all()


def distinct_layers(ws: torch.Tensor) -> list[int]:
    """Where consecutive layers of the (per-batch equal) ws change: the crossover layers."""
    return [i for i in range(1, ws.shape[1]) if not torch.equal(ws[:, i], ws[:, i - 1])]


def test_style_mixing_takes_the_second_latent_after_the_crossover():
    torch.manual_seed(0)
    model = tiny(style_mixing_prob=1.0)
    num_ws = model.num_ws
    for _ in range(10):
        z = torch.randn(4, 8)
        torch.manual_seed(1)
        ws = model.run_generator(z, None).ws  # [4, num_ws, 8]
        (crossover,) = distinct_layers(ws)  # one switch, after at least one layer of the first latent
        assert 1 <= crossover < num_ws
        torch.testing.assert_close(ws[:, :crossover], model.generator.mapping(z, None)[:, :crossover])
        assert not torch.allclose(ws[:, crossover:], model.generator.mapping(z, None)[:, crossover:])
    unmixed = tiny(style_mixing_prob=0.0)
    assert distinct_layers(unmixed.run_generator(torch.randn(4, 8), None).ws) == []


def test_truncation_through_the_module():
    torch.manual_seed(0)
    model = tiny()
    model.generate(8)  # moves w_avg away from 0
    assert model.w_avg.abs().sum() > 0
    z = torch.randn(3, 8)
    plain = model.sample_output(z=z)
    torch.testing.assert_close(plain.ws, model.mapping(z))
    torch.testing.assert_close(model.sample_output(z=z, truncation_psi=1).images, plain.images)
    zero = model.sample_output(z=z, truncation_psi=0)
    torch.testing.assert_close(zero.ws, model.w_avg.expand(3, model.num_ws, -1))
    torch.testing.assert_close(zero.images[0].expand_as(zero.images), zero.images)  # one image: w_avg's
    torch.testing.assert_close(zero.images, model.synthesis(zero.ws).clamp(-1, 1))
    half = model.sample_output(z=z, truncation_psi=0.5, truncation_cutoff=1).ws
    torch.testing.assert_close(half[:, 0], model.w_avg.lerp(plain.ws[:, 0], 0.5))
    torch.testing.assert_close(half[:, 1:], plain.ws[:, 1:])
    # const noise (the default) is reproducible; random noise is not (once the noise strengths, 0 at first, are not);
    # a bad mode is named.
    with torch.no_grad():
        for name, p in model.generator.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(1.0)
    assert torch.equal(model.sample(z=z), model.sample(z=z))
    assert not torch.equal(model.sample(z=z, noise_mode="random"), model.sample(z=z, noise_mode="random"))
    with pytest.raises(ConfigurationError, match="noise_mode='fixed'"):
        model.sample(z=z, noise_mode="fixed")


# ---------------------------------------------------------------------------------------------------------------
# Conditional model, precision, processes
# ---------------------------------------------------------------------------------------------------------------


def test_conditional_training_step(synthetic_mnist, tmp_path):
    L.seed_everything(0, verbose=False)
    model = tiny(num_classes=10)
    assert model.batch_kinds == ("labelled",)
    trainer = quiet_trainer(tmp_path, fast_dev_run=1)
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    assert trainer.global_step == 1 and torch.isfinite(trainer.callback_metrics["train/d_loss"])
    assert torch.equal(model.sample_conditions()["labels"], torch.arange(10))
    inputs = model.sample_inputs(6, torch.Generator().manual_seed(0))
    assert inputs["labels"].shape == (6,) and model.sample(**inputs).shape == (6, 1, 8, 8)
    # The label changes the image (c goes through the mapping), and D scores images with their labels.
    z = inputs["z"][:1].repeat(2, 1)
    images = model.sample(z=z, labels=torch.tensor([0, 1]))
    assert not torch.equal(images[0], images[1])
    assert model.critic(images, labels=torch.tensor([0, 1])).shape == (2,)
    c = model.one_hot(torch.tensor([3]), 1)
    assert c.shape == (1, 10) and c[0, 3] == 1 and c.sum() == 1
    vectors = torch.rand(2, 10)  # label vectors (attributes) are c as they are
    assert torch.equal(model.one_hot(vectors, 2), vectors)
    with pytest.raises(ConfigurationError, match="num_classes=10"):
        model.one_hot(torch.rand(2, 40), 2)
    with pytest.raises(ConfigurationError, match="num_classes=10"):
        model.one_hot(torch.tensor([10]), 1)
    with pytest.raises(ConfigurationError, match="num_classes=10"):
        model.sample(2)


def test_penalties_train_under_bf16_mixed(synthetic_mnist, tmp_path):
    L.seed_everything(0, verbose=False)
    model = tiny(pl_every=2, reg_every=2)
    trainer = quiet_trainer(tmp_path, fast_dev_run=2, precision="bf16-mixed")
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    metrics = trainer.callback_metrics
    assert {"train/g_reg", "train/d_reg", "train/pl_penalty"} <= metrics.keys()
    assert all(torch.isfinite(v) for v in metrics.values()) and model.pl_mean > 0


def test_path_length_is_finite_under_fp16_with_a_grad_scaler(synthetic_mnist, tmp_path):
    # fp16 autocast with a GradScaler on CPU (as on a GPU): path length differentiates sum(noise * images), whose
    # upstream gradient follows the AMP recipe (gans.losses.input_gradient), finite from the scaler's start 65536.
    from lightning.pytorch.plugins.precision import MixedPrecision

    L.seed_everything(0, verbose=False)
    model = tiny(pl_every=1)
    calls = record_phases(model)
    plugin = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu"))
    trainer = quiet_trainer(tmp_path, max_steps=2, plugins=[plugin])
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    g_terms = [terms for _, phase, terms in calls if phase == "G"]
    assert all(torch.isfinite(terms["pl_penalty"]) for terms in g_terms) and model.skipped_steps == 0
    assert torch.isfinite(model.pl_mean) and model.pl_mean > 0


class SaveState(L.Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_end(self, trainer, module):
        state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        torch.save(state, self.out / f"rank{trainer.global_rank}.pt")


def test_two_processes_stay_identical(synthetic_mnist, tmp_path, clean_distributed_env):  # noqa: F811
    """gan_ddp on two CPU processes: path length (with its all-reduced moving average) and R1 every 2nd step; the
    networks, the EMA, w_avg and pl_mean are the same on both ranks."""
    from callbacks import GeneratorEMA

    os.environ.pop("MASTER_PORT", None)
    L.seed_everything(0, verbose=False)
    model = tiny(pl_every=2, reg_every=2)
    trainer = quiet_trainer(tmp_path, devices=2, strategy=GANDDPStrategy(start_method="spawn"), max_steps=2,
                            callbacks=[GeneratorEMA(half_life_kimg=0.05), SaveState(tmp_path)])
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert ranks[0]["pl_mean"] > 0 and ranks[0]["generator.mapping.w_avg"].abs().sum() > 0
    for name, tensor in ranks[0].items():
        assert torch.equal(tensor, ranks[1][name]), name


def test_bad_values_are_named():
    for kwargs, message in (({"pl_decay": 2.0}, "pl_decay=2.0"), ({"style_mixing_prob": -0.1}, "style_mixing_prob"),
                            ({"pl_every": 0}, "pl_every=0"), ({"num_classes": 3, "pack": 2}, "pack=2"),
                            ({"pl_weight": -1.0}, "pl_weight=-1.0")):
        with pytest.raises(ConfigurationError, match=message):
            tiny(**kwargs)


# ---------------------------------------------------------------------------------------------------------------
# The official presets
# ---------------------------------------------------------------------------------------------------------------


def test_auto_config_is_the_official_formula():
    # stylegan2-ada-pytorch train.py, cfg 'auto', by hand: 256x256 on 8 GPUs: batch min(8 * 16, 64) = 64, group
    # min(64 / 8, 4) = 4, half widths, gamma 0.0002 * 65536 / 64 = 0.2048, EMA 64 * 10 / 32 = 20 kimg.
    spec = auto_config(256, 8)
    assert spec == {"ref_gpus": 8, "kimg": 25000, "mb": 64, "mbstd": 4, "fmaps": 0.5, "lrate": 0.0025,
                    "gamma": pytest.approx(0.2048), "ema": 20.0, "ramp": 0.05, "map": 2, "channel_base": 16384}
    assert auto_config(1024, 1) == {**auto_config(1024, 1), "mb": 4, "mbstd": 4, "fmaps": 1, "lrate": 0.002,
                                    "channel_base": 32768}
    assert auto_config(64, 1)["mb"] == 32 and auto_config(64, 1)["gamma"] == pytest.approx(0.0256)
    with pytest.raises(ConfigurationError, match="gpus=0"):
        auto_config(64, 0)


def config_values(path: Path) -> dict:
    """A StyleGAN2 config's values in the terms of the official presets."""
    config = yaml.safe_load(path.read_text())
    model = config["model"]["init_args"]
    g, d = model["generator"]["init_args"], model["discriminator"]["init_args"]
    ema = config.get("ema") or {}
    batch = config["data"]["init_args"]["batch_size"]
    gpus = config["trainer"].get("devices", 1)
    # What a config leaves out is the default: StyleGAN2's, its networks' (the official ones'), GeneratorEMA's.
    defaults = inspect.signature(StyleGAN2).parameters
    lrates = [model.get(name, defaults[name].default)["init_args"]["lr"] for name in ("g_optimizer", "d_optimizer")]
    bases = [net.get("synthesis_kwargs", net).get("channel_base", 32768) for net in (g, d)]
    assert lrates[0] == lrates[1] and bases[0] == bases[1]
    for net in (g.get("synthesis_kwargs", {}), d):  # the official mixed precision
        assert net["num_fp16_res"] == 4 and net["conv_clamp"] == 256
    return {
        "mb": batch * gpus,
        "mbstd": d.get("epilogue_kwargs", {}).get("mbstd_group_size", 4),
        "channel_base": bases[0],
        "lrate": lrates[0],
        "gamma": model.get("r1_gamma", defaults["r1_gamma"].default),
        "ema": ema.get("half_life_kimg", 10.0),
        "ramp": ema.get("rampup", 0.05),
        "map": g.get("mapping_kwargs", {}).get("num_layers", 8),
        "kimg": config["trainer"]["max_steps"] * batch * gpus / 1000,
    }


def preset_values(spec: dict) -> dict:
    keys = ("mb", "mbstd", "lrate", "gamma", "ema", "ramp", "map", "kimg")
    return {**{k: spec[k] for k in keys}, "channel_base": int(spec["fmaps"] * 32768)}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_configs_hold_the_official_values(name):
    assert config_values(ROOT / f"configs/stylegan2_{name}.yaml") == pytest.approx(preset_values(PRESETS[name]))


@pytest.mark.parametrize("resolution", [64, 128, 256])
def test_celeba_configs_follow_auto(resolution):
    values = config_values(ROOT / f"configs/stylegan2_celeba{resolution}.yaml")
    expected = preset_values(auto_config(resolution, 1))
    # The CelebA runs are shorter than the preset's 25M images (a few M suffice for 202k faces).
    values.pop("kimg"), expected.pop("kimg")
    assert values == pytest.approx(expected)


def test_the_official_kwargs_dicts_take_typed_values_from_the_command_line(tmp_path):
    # The README's `--model.init_args.generator.init_args.synthesis_kwargs.channel_base` (and the other official
    # `*_kwargs`) reached the networks as the strings the shell gave, and the run ended in a TypeError traceback.
    from gans.cli import main

    gen, disc = "--model.init_args.generator.init_args", "--model.init_args.discriminator.init_args"
    cli = main(
        ["--config", str(Path(__file__).resolve().parents[1] / "configs/stylegan2_fashion_mnist.yaml"),
         f"{gen}.synthesis_kwargs.channel_base=512", f"{gen}.synthesis_kwargs.conv_clamp=256",
         f"{gen}.synthesis_kwargs.architecture=resnet", f"{gen}.mapping_kwargs.num_layers=1",
         f"{gen}.mapping_kwargs.lr_multiplier=0.1", f"{disc}.epilogue_kwargs.mbstd_group_size=2",
         f"{disc}.block_kwargs.freeze_layers=0", f"{disc}.mapping_kwargs.num_layers=1",
         "--metrics=false", "--data.init_args.download=false", f"--trainer.default_root_dir={tmp_path}"],
        run=False,
    )
    generator, discriminator = cli.model.generator, cli.model.discriminator
    expected = StyleGAN2(latent_dim=128, w_dim=128, channels=1, image_size=32, generator={"init_args": {
        "synthesis_kwargs": {"channel_base": 512, "channel_max": 64, "conv_clamp": 256, "architecture": "resnet"},
        "mapping_kwargs": {"num_layers": 1, "lr_multiplier": 0.1}}}, discriminator={"init_args": {
            "channel_base": 1024, "channel_max": 64, "epilogue_kwargs": {"mbstd_group_size": 2}}})
    assert {k: v.shape for k, v in generator.state_dict().items()} == {
        k: v.shape for k, v in expected.generator.state_dict().items()}
    assert generator.mapping.num_layers == 1 and discriminator.b4.mbstd.group_size == 2
    assert generator.synthesis.b32.torgb.conv_clamp == 256
    z = torch.randn(2, 128)
    assert torch.isfinite(cli.model.sample(z=z)).all()


def test_mapping_refuses_labels_of_the_wrong_shape_with_a_message():
    # Class indices [N] given to a conditional model's documented mapping(z, c) failed deep inside a matmul.
    model = tiny(num_classes=3).eval()
    z = torch.randn(2, model.hparams.latent_dim)
    one_hot = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    assert model.mapping(z, one_hot).shape == (2, model.num_ws, model.hparams.w_dim)
    for bad in (torch.tensor([0, 2]), one_hot[:, :2], one_hot[:1]):
        with pytest.raises(ConfigurationError, match=rf"^c=\[{', '.join(map(str, bad.shape))}\] \(its shape\)"):
            model.mapping(z, bad)
