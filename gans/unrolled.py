"""Unrolled GAN (Metz et al. 2017): the generator is trained against the discriminator as it will be after K more
of its own updates, and backpropagates through those updates."""

import functools

import torch
from torch import Tensor, nn
from torch.func import functional_call

from gans.dcgan import DCGAN
from gans.errors import ConfigurationError
from gans.outputs import GeneratorOutput


def unrolled_update(
    optimizer: torch.optim.Optimizer,
    originals: dict[str, nn.Parameter],
    params: dict[str, Tensor],
    grads: dict[str, Tensor],
    moments: dict[str, tuple[Tensor, Tensor]],
    step: int,
) -> tuple[dict[str, Tensor], dict[str, tuple[Tensor, Tensor]]]:
    """One differentiable step of the discriminator's own optimizer on the unrolled copies ``params``.

    Adam (the paper unrolls Adam) starts from the real optimizer's moments and step count, left untouched: the
    update is a function of ``grads``, which carry the generator's graph. Any other optimizer is unrolled as plain
    gradient descent at its learning rate.

    Args:
        optimizer: the discriminator's optimizer, read only.
        originals: the discriminator's parameters by name (to find their group and state).
        params: the unrolled parameters after ``step`` unrolled steps.
        grads: gradients of the discriminator loss w.r.t. ``params``, with ``create_graph=True``.
        moments: Adam's (exp_avg, exp_avg_sq) per name after ``step`` unrolled steps; empty at step 0.
        step: the number of unrolled steps taken so far.

    Returns:
        The parameters and the moments after one more step.
    """
    new_params, new_moments = {}, {}
    for name, p in params.items():
        original = originals[name]
        group = next(g for g in optimizer.param_groups if any(q is original for q in g["params"]))
        g = grads[name]
        if not isinstance(optimizer, torch.optim.Adam):
            new_params[name] = p - group["lr"] * g
            continue
        beta1, beta2 = group["betas"]
        state = optimizer.state.get(original, {})
        m, v = moments.get(name) or (state.get("exp_avg", torch.zeros_like(p)), state.get("exp_avg_sq", torch.zeros_like(p)))
        t = int(state.get("step", 0)) + step + 1
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        # sqrt(v + eps^2) rather than sqrt(v) + eps: the same value to ~eps, but a finite derivative where v = 0.
        denominator = (v / (1 - beta2**t) + group["eps"] ** 2).sqrt()
        new_params[name] = p - group["lr"] * (m / (1 - beta1**t)) / denominator
        new_moments[name] = (m, v)
    return new_params, new_moments


class UnrolledGAN(DCGAN):
    """The DCGAN networks (or any, assigned to ``discriminator``) trained as usual for the discriminator; the
    generator's loss is the adversarial loss of D_K, the discriminator after ``unroll_steps`` differentiable
    updates of its optimizer on the current real batch and the generator's fakes (the paper's surrogate loss
    f_K(theta_G, theta_D)). The gradient flows through the unrolled updates into the generator, which is what
    discourages it from collapsing onto the mode D currently prefers. The real discriminator is not changed by the
    unrolling: its updates are the usual ones, in the discriminator step. ``unroll_steps=0`` is the plain GAN.

    Args:
        unroll_steps: K, the number of unrolled discriminator updates (5 in the paper's 2-D experiments; 1 to 10).
        **kwargs: :class:`gans.dcgan.DCGAN`'s arguments.
    """

    def __init__(self, unroll_steps: int = 5, **kwargs) -> None:
        if unroll_steps < 0:
            raise ConfigurationError(f"unroll_steps={unroll_steps} must be >= 0")
        super().__init__(**kwargs)
        self.unroll_steps = unroll_steps

    def g_loss(self, real: Tensor, fake: GeneratorOutput, **cond: Tensor) -> dict[str, Tensor]:
        originals = dict(self.discriminator.named_parameters())
        # The unrolling starts from D's current weights as constants; buffers are copied so that BatchNorm's
        # running statistics of the real D are not updated by the unrolled passes.
        params = {name: p.detach().requires_grad_(True) for name, p in originals.items()}
        buffers = {name: b.clone() for name, b in self.discriminator.named_buffers()}
        real = real.detach()
        optimizer = self.trainer.optimizers[list(self.optimized_networks()).index("d")]
        moments: dict[str, tuple[Tensor, Tensor]] = {}
        for step in range(self.unroll_steps):
            unrolled = functools.partial(functional_call, self.discriminator, {**params, **buffers})
            d_real = self.critic(real, unrolled, **cond)
            d_fake = self.critic(fake, unrolled, **cond)
            loss = self.d_adversarial(d_real, d_fake)
            grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()), create_graph=True)))
            params, moments = unrolled_update(optimizer, originals, params, grads, moments, step)
        unrolled = functools.partial(functional_call, self.discriminator, {**params, **buffers})
        return {"g_loss": self.g_adversarial(self.critic(fake, unrolled, **cond))}
