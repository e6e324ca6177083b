"""The classic GANs and the remedies for mode collapse (issue 4): each variant trains, and each technique does
what its paper says (spectral norm, clipping, k_t, packing, minibatch layers, unrolling, lazy R1)."""

import math

import lightning as L
import pytest
import torch
from conftest import (
    MLP_TINY,
    TINY,
    inputs_for,
    quiet_trainer,
    tiny_data,
    tiny_datamodule,
    tiny_kwargs,
    tiny_net,
    variant_classes,
)
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from datamodules import GaussianMixtureDataModule
from datamodules.mixtures import mixture_modes, mode_coverage, sample_mixture
from gans import BEGAN, DCGAN, LSGAN, MLPGAN, WGAN, UnrolledGAN
from gans.base import load_gan
from gans.errors import ConfigurationError
from gans.losses import r1_penalty
from gans.nets import MinibatchDiscrimination, MinibatchStdDev, MLPDiscriminator, ResNetDiscriminator, pack
from gans.outputs import GeneratorOutput
from gans.unrolled import unrolled_update

DC = TINY
MLP = MLP_TINY
#: Every variant (the registry, none listed by hand) with its tiny sizes, and the features that are configuration of a
#: variant: loss and schedule choices, penalties, minibatch layers, packing, unrolling depth.
TINY_VARIANTS = {
    **{cls.__name__: (cls, tiny_kwargs(cls)) for cls in variant_classes()},
    "gan_minimax_k2": (MLPGAN, {**MLP, "loss": "minimax", "n_critic": 2}),
    "r1_r2_lazy": (DCGAN, {**DC, "discriminator": tiny_net(norm=None), "r1_gamma": 10.0, "r2_gamma": 1.0, "reg_every": 2}),
    "minibatch_discrimination": (DCGAN, {**DC, "discriminator": tiny_net(minibatch="discrimination")}),
    "minibatch_stddev": (MLPGAN, {**MLP, "discriminator": {"init_args": {"hidden": (16,), "minibatch": "stddev"}}}),
    "pacgan": (DCGAN, {**DC, "pack": 2}),
    "pacgan_mlp": (MLPGAN, {**MLP, "pack": 4}),
    "unrolled_2": (UnrolledGAN, {**DC, "unroll_steps": 2}),
}


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


@pytest.mark.parametrize("name", TINY_VARIANTS)
def test_variant_trains_and_reloads(name, synthetic_mnist, tmp_path):
    cls, kwargs = TINY_VARIANTS[name]
    model = cls(**kwargs)
    g0, d0 = flat(model.generator), flat(model.discriminator)
    trainer = quiet_trainer(tmp_path, fast_dev_run=model.n_critic, enable_checkpointing=False)
    trainer.fit(model, tiny_data(model, synthetic_mnist))
    assert trainer.global_step == 1 and model.batches_seen == model.n_critic
    assert not torch.equal(g0, flat(model.generator)) and not torch.equal(d0, flat(model.discriminator))
    assert all(torch.isfinite(v) for v in trainer.callback_metrics.values())
    cond = inputs_for(model, 4)
    images = model.sample(4, **cond)
    assert images.shape == (4, 1, 8, 8)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    loaded = load_gan(tmp_path / "model.ckpt")
    assert type(loaded) is cls
    z = model.sample_z(4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded.sample(z=z, **cond), model.eval().sample(z=z, **cond))


# ---------------------------------------------------------------------------------------------------------------
# Spectral normalisation and weight clipping
# ---------------------------------------------------------------------------------------------------------------


def test_spectral_norm_gives_largest_singular_value_one():
    torch.manual_seed(0)
    layers = [spectral_norm(torch.nn.Linear(40, 30)), spectral_norm(torch.nn.Conv2d(3, 8, 3))]
    for layer in layers:
        original = layer.parametrizations.weight.original
        with torch.no_grad():
            original.mul_(5.0)  # a raw weight far from 1: the normalisation has work to do
        assert torch.linalg.matrix_norm(original.detach().flatten(1), ord=2) > 3
        for _ in range(500):  # one power iteration per training forward pass
            layer(torch.randn(2, 40) if isinstance(layer, torch.nn.Linear) else torch.randn(2, 3, 8, 8))
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert abs(float(sigma) - 1.0) < 2e-3


@pytest.mark.parametrize("network", ["resnet", "mlp"])
def test_discriminators_are_spectrally_normalised(network):
    torch.manual_seed(0)
    if network == "resnet":
        d = ResNetDiscriminator(channels=1, image_size=16, features=8)
        x = torch.randn(4, 1, 16, 16)
    else:
        d = MLPDiscriminator((2,), (32, 32), pieces=5, input_dropout=0, dropout=0, spectral_norm=True)
        x = torch.randn(4, 2)
    for _ in range(300):
        d(x)
    layers = [m for m in d.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert len(layers) == (8 if network == "resnet" else 3)
    for layer in layers:  # every layer, shortcuts and the output included
        assert parametrize.is_parametrized(layer, "weight")
        assert abs(float(torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)) - 1.0) < 1e-2


def test_weight_clipping_keeps_every_critic_weight_within_c(synthetic_mnist, tmp_path):
    big_lr = {"class_path": "torch.optim.RMSprop", "init_args": {"lr": 0.05}}  # would leave [-c, c] at once
    model = WGAN(**DC, clip_value=0.01, d_optimizer=big_lr)
    seen = []

    class Check(L.Callback):
        def on_train_batch_end(self, trainer, module, *args):
            seen.append(max(float(p.detach().abs().max()) for p in module.discriminator.parameters()))

    trainer = quiet_trainer(tmp_path, max_steps=2, callbacks=[Check()])
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    assert len(seen) == 2 * model.n_critic
    assert all(value <= 0.01 + 1e-9 for value in seen)
    assert max(seen) == pytest.approx(0.01)  # the bound is reached: clipping acted


# ---------------------------------------------------------------------------------------------------------------
# BEGAN, LSGAN, R1/R2
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma, bound", [(0.01, 0.0), (100.0, 1.0)])
def test_began_k_stays_in_unit_interval(gamma, bound, synthetic_mnist, tmp_path):
    # A huge gain drives k against the lower bound (gamma ~ 0: fakes lose) or the upper one (gamma large).
    model = BEGAN(**tiny_kwargs(BEGAN), lambda_k=50.0, gamma=gamma, k_init=0.5)
    ks = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, *args):
            ks.append(float(module.k))

    trainer = quiet_trainer(tmp_path, max_steps=6, callbacks=[Record()])
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    assert all(0.0 <= k <= 1.0 for k in ks)
    assert ks[-1] == bound  # reached and held there by the clipping
    assert {"train/k", "train/m_global", "train/l_real", "train/l_fake"} <= trainer.callback_metrics.keys()
    assert "k" in dict(model.named_buffers())  # checkpointed with the weights


def test_began_k_update_follows_the_paper():
    model = BEGAN(**tiny_kwargs(BEGAN), lambda_k=0.1, gamma=0.5, k_init=0.3)
    model.after_d_step({"l_real": torch.tensor(0.4), "l_fake": torch.tensor(0.1)})
    assert float(model.k) == pytest.approx(0.3 + 0.1 * (0.5 * 0.4 - 0.1))
    real, fake = torch.randn(4, 1, 8, 8), GeneratorOutput(torch.randn(4, 1, 8, 8))
    terms = model.d_loss(real, fake)
    expected = terms["l_real"] - model.k * terms["l_fake"]
    assert float(terms["d_loss"]) == pytest.approx(float(expected))
    assert float(terms["m_global"]) == pytest.approx(float(terms["l_real"] + (0.5 * terms["l_real"] - terms["l_fake"]).abs()))


def test_lsgan_targets():
    model = LSGAN(**DC, a=-1.0, b=1.0, c=0.0)
    d_real, d_fake = torch.tensor([0.5, 2.0]), torch.tensor([-0.5, 1.0])
    assert float(model.d_adversarial(d_real, d_fake)) == pytest.approx(0.5 * (0.25 + 1) / 2 + 0.5 * (0.25 + 4) / 2)
    assert float(model.g_adversarial(d_fake)) == pytest.approx(0.5 * (0.25 + 1) / 2)


def test_lazy_r1_r2_every_k_steps_scaled_by_k():
    """Lazy regularisation is its own phase, D_reg, run on every k-th batch: the D loss carries no penalty, D_reg's
    loss is gamma / 2 * k times each penalty, and the discriminator's optimizer gets the official c/(c+1) correction."""
    torch.manual_seed(0)
    gamma1, gamma2, k = 10.0, 2.0, 4
    model = DCGAN(**{**DC, "discriminator": tiny_net(norm=None)}, r1_gamma=gamma1, r2_gamma=gamma2, reg_every=k)
    real, fake = torch.randn(8, 1, 8, 8), GeneratorOutput(torch.randn(8, 1, 8, 8))
    plain = model.d_adversarial(model.critic(real), model.critic(fake))
    d_reg = next(p for p in model.schedule.phases if p.name == "D_reg")
    assert d_reg.lazy and d_reg.optimizer == "d" and d_reg.fake == "detached"  # R2 needs fakes
    assert [t for t in range(1, 3 * k + 1) if model.schedule.due(d_reg, t)] == [k, 2 * k, 3 * k]
    terms = model.d_loss(real, fake)
    assert "r1" not in terms and "r2" not in terms
    assert float(terms["d_loss"]) == pytest.approx(float(plain), rel=1e-5)
    terms = model.d_reg_loss(real, fake)
    x = real.clone().requires_grad_(True)
    r1 = r1_penalty(model.critic(x), x)
    assert float(terms["r1"]) == pytest.approx(float(r1), rel=1e-5) and float(r1) > 0
    expected = gamma1 / 2 * k * terms["r1"] + gamma2 / 2 * k * terms["r2"]
    assert float(terms["d_reg"]) == pytest.approx(float(expected), rel=1e-5)
    # The discriminator steps (k+1)/k times per batch: lr * k/(k+1), beta ** (k/(k+1)); the generator's unchanged.
    g_opt, d_opt = (config["optimizer"] for config in model.configure_optimizers())
    ratio = k / (k + 1)
    assert d_opt.param_groups[0]["lr"] == pytest.approx(2e-4 * ratio)
    assert d_opt.param_groups[0]["betas"] == pytest.approx((0.5**ratio, 0.999**ratio))
    assert g_opt.param_groups[0]["lr"] == pytest.approx(2e-4) and g_opt.param_groups[0]["betas"] == (0.5, 0.999)


def test_every_step_r1_is_part_of_the_discriminator_loss():
    """reg_every=1 (the R1 paper): no D_reg phase, the penalty in every D loss, the optimizer uncorrected."""
    torch.manual_seed(0)
    model = DCGAN(**{**DC, "discriminator": tiny_net(norm=None)}, r1_gamma=10.0)
    assert [p.name for p in model.schedule.phases] == ["D", "G"]
    real, fake = torch.randn(8, 1, 8, 8), GeneratorOutput(torch.randn(8, 1, 8, 8))
    terms = model.d_loss(real, fake)
    plain = model.d_adversarial(model.critic(real), model.critic(fake))
    assert float(terms["d_loss"]) == pytest.approx(float(plain + 5.0 * terms["r1"]), rel=1e-5)
    assert model.configure_optimizers()[1]["optimizer"].param_groups[0]["lr"] == pytest.approx(2e-4)


def test_pack_joins_m_samples_along_channels():
    x = torch.randn(6, 3, 4, 4)
    packed = pack(x, 3)
    assert packed.shape == (2, 9, 4, 4)
    torch.testing.assert_close(packed[1], torch.cat([x[3], x[4], x[5]], dim=0))
    assert pack(torch.randn(8, 2), 4).shape == (2, 8)
    with pytest.raises(ValueError, match="pack=4.*batch of 6"):
        pack(torch.randn(6, 2), 4)
    # A packing discriminator judges m samples at once: one score per pack.
    assert DCGAN(**DC, pack=2).critic(torch.randn(6, 1, 8, 8)).shape == (3,)


def test_minibatch_discrimination_shape_and_closeness():
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(in_features=12, num_kernels=7, kernel_dim=3)
    x = torch.randn(5, 12)
    assert layer(x).shape == (5, 12 + 7)
    torch.testing.assert_close(layer(x)[:, :12], x)
    same = layer(x[:1].repeat(5, 1))[:, 12:]
    torch.testing.assert_close(same, torch.full((5, 7), 4.0))  # c_b = exp(0) = 1 with each of the 4 others
    far = layer(torch.eye(5, 12) * 1e3)[:, 12:]
    assert float(far.max()) < 1e-6


def test_minibatch_stddev_shape_and_value():
    torch.manual_seed(0)
    layer = MinibatchStdDev(group_size=4)
    x = torch.randn(8, 3, 5, 5)
    out = layer(x)
    assert out.shape == (8, 4, 5, 5)
    torch.testing.assert_close(out[:, :3], x)
    group = x[[1, 3, 5, 7]]  # sample i is in group i mod (N / G)
    expected = (group.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
    torch.testing.assert_close(out[3, 3], torch.full((5, 5), float(expected)))
    assert MinibatchStdDev(group_size=3)(torch.randn(6, 10)).shape == (6, 11)  # flat features


# ---------------------------------------------------------------------------------------------------------------
# Unrolled GAN
# ---------------------------------------------------------------------------------------------------------------


def test_unrolled_adam_step_is_adams_step():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.1, betas=(0.5, 0.9))
    for _ in range(3):  # some optimizer state to start from
        opt.zero_grad()
        net(torch.randn(4, 3)).square().sum().backward()
        opt.step()
    originals = dict(net.named_parameters())
    params = {n: p.detach().clone() for n, p in originals.items()}
    grads = {n: torch.randn_like(p) for n, p in params.items()}
    moments = {}
    for step in range(2):
        params, moments = unrolled_update(opt, originals, params, grads, moments, step)
    state_before = {n: opt.state[p]["step"].clone() for n, p in originals.items()}
    for _ in range(2):
        for n, p in originals.items():
            p.grad = grads[n].clone()
        opt.step()
    for n, p in originals.items():
        torch.testing.assert_close(params[n], p.detach(), atol=1e-6, rtol=1e-5)
    assert all(int(state_before[n]) == 3 for n in originals)  # the unrolling did not touch the optimizer


class GeneratorGradients(L.Callback):
    """Records the discriminator right after its step and the generator's gradients before its step."""

    def on_train_batch_start(self, trainer, module, *args):
        self.d_after_d_step = None
        original = module.after_d_step

        def snapshot(terms):
            original(terms)
            self.d_after_d_step = {k: v.clone() for k, v in module.discriminator.state_dict().items()}

        module.after_d_step = snapshot

    def on_before_optimizer_step(self, trainer, module, optimizer):
        if optimizer is trainer.optimizers[0]:
            self.g_grads = torch.cat([p.grad.flatten().clone() for p in module.generator.parameters()])

    def on_train_batch_end(self, trainer, module, *args):
        self.d_after_g_step = {k: v.clone() for k, v in module.discriminator.state_dict().items()}


def _one_iteration(cls, tmp_path, data_dir, **kwargs):
    L.seed_everything(0)
    model, probe = cls(**DC, **kwargs), GeneratorGradients()
    trainer = quiet_trainer(tmp_path, fast_dev_run=1, callbacks=[probe])
    trainer.fit(model, tiny_datamodule(data_dir))
    return probe


def test_unrolling_leaves_the_discriminator_unchanged_and_changes_the_generator_gradient(synthetic_mnist, tmp_path):
    unrolled = _one_iteration(UnrolledGAN, tmp_path, synthetic_mnist, unroll_steps=3)
    # D's weights and BatchNorm statistics after the G step are those its own step left.
    assert unrolled.d_after_d_step.keys() == unrolled.d_after_g_step.keys()
    for key, value in unrolled.d_after_d_step.items():
        torch.testing.assert_close(unrolled.d_after_g_step[key], value, rtol=0, atol=0)
    # K = 0 is exactly the plain GAN; K = 3 gives the generator another gradient (through the unrolled steps).
    plain = _one_iteration(DCGAN, tmp_path, synthetic_mnist)
    zero = _one_iteration(UnrolledGAN, tmp_path, synthetic_mnist, unroll_steps=0)
    torch.testing.assert_close(zero.g_grads, plain.g_grads)
    assert not torch.allclose(unrolled.g_grads, plain.g_grads, rtol=1e-3, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# The 2-D mixtures and mode coverage
# ---------------------------------------------------------------------------------------------------------------


def test_mixture_modes_and_coverage_measure():
    ring, grid = mixture_modes("ring"), mixture_modes("grid")
    assert ring.shape == (8, 2) and torch.allclose(ring.norm(dim=1), torch.full((8,), 2.0))
    assert grid.shape == (25, 2) and set(grid.flatten().tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    g = torch.Generator().manual_seed(0)
    real = sample_mixture("grid", 2500, g)
    modes, quality = mode_coverage(real, grid, 0.05)
    assert modes == 25 and quality == pytest.approx(0.989, abs=0.01)  # 3 std in 2-D holds 98.9% of the mass
    collapsed = grid[7] + 0.05 * torch.randn(2500, 2, generator=g)
    assert mode_coverage(collapsed, grid, 0.05)[0] == 1
    near = grid[:5] + 0.3  # 0.42 from the modes: too far for 3 std, within a radius of 0.5
    near = near.repeat_interleave(100, dim=0)
    assert mode_coverage(near, grid, 0.05) == (0, 0.0)
    assert mode_coverage(near, grid, 0.05, radius=0.5) == (5, 1.0)
    spread = torch.rand(2500, 2, generator=g) * 10 - 5  # uniform: covers nothing well
    assert mode_coverage(spread, grid, 0.05)[1] < 0.05


def test_mixture_datamodule_batches():
    data = GaussianMixtureDataModule("ring", num_samples=1000, batch_size=100, seed=3)
    data.setup("fit")
    batches = list(data.train_dataloader())
    assert len(batches) == 10 and batches[0].shape == (100, 2)
    assert torch.equal(torch.cat(batches).sort(dim=0).values, data.points.sort(dim=0).values)  # a permutation
    with pytest.raises(ValueError, match="mixture='spiral'"):
        GaussianMixtureDataModule("spiral")


def test_short_run_on_the_ring_covers_more_than_one_mode(tmp_path):
    L.seed_everything(0)
    adam = {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3, "betas": (0.5, 0.999)}}
    model = MLPGAN(
        latent_dim=2, data_shape=(2,), g_optimizer=adam, d_optimizer=adam,
        generator={"init_args": {"hidden": (64, 64, 64), "batch_norm": True, "tanh": False}},
        discriminator={"init_args": {"hidden": (64, 64), "input_dropout": 0, "dropout": 0}},
    )
    data = GaussianMixtureDataModule("ring", num_samples=20_000, batch_size=100)
    trainer = quiet_trainer(tmp_path, max_steps=800)
    trainer.fit(model, data)
    points = model.sample(2500, generator=torch.Generator().manual_seed(0))  # points are not clamped
    modes, quality = mode_coverage(points, data.modes, data.std, min_count=20)
    assert modes > 1, (modes, quality)
    assert math.isfinite(quality)


@pytest.mark.parametrize(
    "setting", [{"loss": "hinge"}, {"r1_gamma": 10.0}, {"r2_gamma": 1.0}, {"pack": 2}], ids=lambda s: next(iter(s))
)
def test_began_refuses_settings_it_would_ignore(setting):
    # Its losses are reconstruction errors balanced by k_t: an adversarial loss, score penalties or packing would be
    # accepted and then have no effect.
    name = next(iter(setting))
    with pytest.raises(ConfigurationError, match=rf"^{name}=.*BEGAN"):
        BEGAN(**setting)
    BEGAN(loss="non_saturating", r1_gamma=0.0, r2_gamma=0.0, pack=1)  # the defaults, named, are fine
