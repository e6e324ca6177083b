"""Mixed precision and the speed options: every variant trains under bf16-mixed; input-gradient penalties follow
PyTorch's AMP recipe so that fp16 gradients do not underflow; gradients are clipped after unscaling; Adam is fused
unless configured otherwise; channels_last and compile keep the math."""

import pytest
import torch
from conftest import TINY, quiet_trainer, tiny_data, tiny_datamodule
from test_classic import DC, TINY_VARIANTS, flat

from gans import DCGAN, WGANGP
from gans.losses import gradient_penalty, r1_penalty
from gans.optim import fused_where_supported

VARIANTS = {**TINY_VARIANTS, "wgan_gp": (WGANGP, {**DC, "n_critic": 2})}


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_trains_under_bf16_mixed(name, synthetic_mnist, tmp_path):
    cls, kwargs = VARIANTS[name]
    model = cls(**kwargs)
    g0, d0 = flat(model.generator), flat(model.discriminator)
    trainer = quiet_trainer(tmp_path, fast_dev_run=2 * model.n_critic, precision="bf16-mixed")
    trainer.fit(model, tiny_data(model, synthetic_mnist))
    assert trainer.global_step == 2
    assert not torch.equal(g0, flat(model.generator)) and not torch.equal(d0, flat(model.discriminator))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    assert all(torch.isfinite(v) for v in trainer.callback_metrics.values())


def test_scaled_penalty_does_not_underflow_in_fp16():
    # D(x) = sum(x * a * a) with a = 1e-4: the input gradient a^2 = 1e-8 is below fp16's smallest subnormal (6e-8).
    a = torch.tensor(1e-4, dtype=torch.float16)
    x = torch.ones(4, 3, dtype=torch.float16, requires_grad=True)
    expected = 3 * float(a.double() ** 2) ** 2  # ||grad||^2 per sample, in float64
    assert r1_penalty((x * a * a).sum(1), x) == 0  # unscaled: the gradient underflows to zero
    scaled = r1_penalty((x * a * a).sum(1), x, scale=8192.0)  # 8192 * 1e-8 is a normal fp16 number
    assert scaled.dtype == torch.float32 and float(scaled) == pytest.approx(expected, rel=1e-2)


def test_the_scale_does_not_change_a_float32_penalty():
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1))
    real, fake, eps = torch.randn(5, 3, 2, 2), torch.randn(5, 3, 2, 2), torch.rand(5)
    plain = gradient_penalty(critic, real, fake, eps)
    torch.testing.assert_close(gradient_penalty(critic, real, fake, eps, scale=1024.0), plain)


def tiny_dcgan_run(data_dir, root, max_steps, **options):
    """A tiny DCGAN from seed 0 trained ``max_steps`` iterations with the module ``options``."""
    torch.manual_seed(0)
    model = DCGAN(**TINY, **options)
    quiet_trainer(root, max_steps=max_steps).fit(model, tiny_datamodule(data_dir))
    return model


def test_channels_last_keeps_the_math(synthetic_mnist, tmp_path):
    plain = tiny_dcgan_run(synthetic_mnist, tmp_path / "a", 3, channels_last=False)
    cl = tiny_dcgan_run(synthetic_mnist, tmp_path / "b", 3, channels_last=True)
    conv = next(p for p in cl.discriminator.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(flat(cl), flat(plain), rtol=1e-4, atol=1e-5)


def test_fp16_with_a_grad_scaler_calibrates_instead_of_stopping(synthetic_mnist, tmp_path):
    # Lightning turns precision="16-mixed" on CPU into bf16; the plugin given explicitly runs fp16 autocast with a
    # GradScaler on CPU, as on a GPU. Its first generator step overflows (scale 65536): the scaler skips it and lowers
    # the scale, and the module leaves that to it instead of stopping (nonfinite="stop" is the default).
    from lightning.pytorch.plugins.precision import MixedPrecision

    model = WGANGP(**TINY, n_critic=2, r1_gamma=1.0)  # the gradient penalty and R1 under the AMP recipe
    plugin = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu"))
    trainer = quiet_trainer(tmp_path, max_steps=3, plugins=[plugin])
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    assert trainer.global_step == 3 and plugin.scaler.get_scale() < 65536.0
    assert torch.isfinite(flat(model)).all()
    assert torch.isfinite(trainer.callback_metrics["train/gp"]) and torch.isfinite(trainer.callback_metrics["train/r1"])


def test_fp16_penalties_are_finite_from_the_first_critic_step(synthetic_mnist, tmp_path):
    # At the GradScaler's default start, 65536, a penalty that seeds each float16 score's gradient with the scale gets
    # inf (float16's largest is 65504): the gradient penalty and R1 were NaN and the first critic step was skipped.
    from lightning.pytorch.plugins.precision import MixedPrecision

    torch.manual_seed(0)
    model = WGANGP(**TINY, n_critic=2, r1_gamma=10.0)
    plugin = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu"))
    first, d_loss = {}, model.d_loss

    def first_critic_step(real, fake, **cond):
        terms = d_loss(real, fake, **cond)
        first.setdefault("terms", {"scale": torch.tensor(plugin.scaler.get_scale()), **terms})
        return terms

    model.d_loss = first_critic_step
    trainer = quiet_trainer(tmp_path, max_steps=3, plugins=[plugin])
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    assert first["terms"]["scale"] == 65536.0
    assert all(torch.isfinite(first["terms"][name]) for name in ("gp", "r1", "d_loss"))
    # No step was skipped for a non-finite loss (the scaler may still skip one whose loss gradient overflows).
    assert trainer.global_step == 3 and model.skipped_steps == 0
    assert torch.isfinite(trainer.callback_metrics["train/gp"]) and torch.isfinite(trainer.callback_metrics["train/r1"])


def test_compiled_networks_train_like_eager_ones(synthetic_mnist, tmp_path):
    eager = tiny_dcgan_run(synthetic_mnist, tmp_path / "a", 2)
    compiled = tiny_dcgan_run(synthetic_mnist, tmp_path / "b", 2, compile=["generator", "discriminator"])
    assert compiled.generator._compiled_call_impl is not None  # it did run compiled
    torch.testing.assert_close(flat(compiled), flat(eager), rtol=1e-4, atol=1e-5)
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints keep their keys

    penalised = WGANGP(**TINY, n_critic=1, compile=["discriminator"])
    with pytest.raises(RuntimeError, match=r"double backward through a compiled network .* compile only the generator"):
        quiet_trainer(tmp_path / "c", max_steps=1).fit(penalised, tiny_datamodule(synthetic_mnist))


class StepRecordingSGD(torch.optim.SGD):
    """Plain SGD (no momentum) that records the norm of each step's update divided by the learning rate: the
    gradient the step applied, unscaled or not."""

    def __init__(self, params, lr=1e-2, fused=None):
        super().__init__(params, lr=lr, fused=fused)
        self.applied = []

    @torch.no_grad()
    def step(self, closure=None):
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        before = [p.clone() for p in params]
        out = super().step(closure)
        lr = self.param_groups[0]["lr"]
        self.applied.append(float(torch.cat([(b - p).flatten() for b, p in zip(before, params)]).norm() / lr))
        return out


@pytest.mark.parametrize("setting", ["fp32", "fp16", "fp16_fused"])
def test_gradients_are_clipped_after_unscaling(setting, synthetic_mnist, tmp_path):
    # A clip far below the tiny DCGAN's gradient norms: every applied step has exactly that norm. Clipping the
    # GradScaler's scaled gradients (scale 2^16 at first, still > 2^10 after the overflows) would leave steps
    # thousands of times smaller; Lightning does not unscale a fused optimizer's gradients before the hook.
    from lightning.pytorch.plugins.precision import MixedPrecision

    clip, fused = 1e-4, setting == "fp16_fused"
    opt = {"class_path": f"{__name__}.StepRecordingSGD", "init_args": {"fused": fused}}
    torch.manual_seed(0)
    model = DCGAN(**TINY, clip_grad_norm=clip, g_optimizer=opt, d_optimizer=opt)
    plugins = [MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu"))] if setting != "fp32" else []
    trainer = quiet_trainer(tmp_path, max_steps=6, plugins=plugins)
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    g_opt, d_opt = trainer.optimizers
    # A fused step that the scaler found non-finite runs but changes nothing (it skips inside the kernel).
    g_applied, d_applied = ([a for a in optimizer.applied if a > 0] for optimizer in (g_opt, d_opt))
    assert g_opt.defaults["fused"] == fused and len(g_applied) >= 3 and len(d_applied) >= 3
    for applied in g_applied + d_applied:
        assert applied == pytest.approx(clip, rel=1e-2)
    assert trainer.callback_metrics["train/d_grad_norm"] > clip  # the norm before clipping


def test_adam_is_fused_unless_the_configuration_chose(synthetic_mnist, tmp_path):
    net = torch.nn.Linear(3, 2)
    groups = [{"params": [net.weight], "lr": 0.1}, {"params": [net.bias]}]
    adam = fused_where_supported(torch.optim.Adam(groups, lr=3e-4, betas=(0.0, 0.9), weight_decay=0.5, amsgrad=True))
    assert adam.defaults["fused"] and adam._step_supports_amp_scaling
    assert [(g["lr"], g["betas"], g["weight_decay"], g["amsgrad"], g["fused"]) for g in adam.param_groups] == [
        (0.1, (0.0, 0.9), 0.5, True, True), (3e-4, (0.0, 0.9), 0.5, True, True),
    ]
    adamw = fused_where_supported(torch.optim.AdamW(net.parameters(), lr=3e-4))
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["fused"] and adamw.defaults["decoupled_weight_decay"]
    for kept in (
        torch.optim.Adam(net.parameters(), fused=False),
        torch.optim.Adam(net.parameters(), foreach=True),
        torch.optim.SGD(net.parameters(), lr=0.1),
        torch.optim.Adam(torch.nn.Linear(3, 2, device="meta").parameters()),  # a device without fused kernels
    ):
        assert fused_where_supported(kept) is kept

    unfused = {"class_path": "torch.optim.Adam", "init_args": {"lr": 2e-4, "fused": False}}
    model = DCGAN(**TINY, d_optimizer=unfused)
    trainer = quiet_trainer(tmp_path, max_steps=1)
    trainer.fit(model, tiny_datamodule(synthetic_mnist))
    g_opt, d_opt = trainer.optimizers
    assert g_opt.defaults["fused"] is True and d_opt.defaults["fused"] is False


def test_a_checkpoint_of_unfused_adam_resumes_with_the_fused_step(synthetic_mnist, tmp_path):
    # A checkpoint written before Adam was fused by default holds parameter groups with fused=None; loading them must
    # not switch the run back to the unfused step, which fails when the fp16 GradScaler hands it its scale.
    from lightning.pytorch.plugins.precision import MixedPrecision

    trainer = quiet_trainer(tmp_path, max_steps=1)
    trainer.fit(DCGAN(**TINY), tiny_datamodule(synthetic_mnist))
    trainer.save_checkpoint(tmp_path / "old.ckpt")
    checkpoint = torch.load(tmp_path / "old.ckpt", weights_only=True)
    for state in checkpoint["optimizer_states"]:
        for group in state["param_groups"]:
            group["fused"] = None
    torch.save(checkpoint, tmp_path / "old.ckpt")

    plugin = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu"))
    trainer = quiet_trainer(tmp_path, max_steps=4, plugins=[plugin])
    model = DCGAN(**TINY)
    trainer.fit(model, tiny_datamodule(synthetic_mnist), ckpt_path=tmp_path / "old.ckpt")
    assert trainer.global_step == 4 and torch.isfinite(flat(model)).all()
    assert all(group["fused"] for optimizer in trainer.optimizers for group in optimizer.param_groups)
