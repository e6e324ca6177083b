"""Losses against hand-computed values, and penalties under double backward."""

import math

import pytest
import torch

from gans import losses

D_REAL = torch.tensor([2.0, -1.0])
D_FAKE = torch.tensor([0.5, -3.0])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_logistic_and_generator_losses():
    # D: -log sigmoid(real) - log(1 - sigmoid(fake)) averaged = mean softplus(-real) + mean softplus(fake).
    expected_d = (softplus(-2.0) + softplus(1.0)) / 2 + (softplus(0.5) + softplus(-3.0)) / 2
    assert losses.d_logistic(D_REAL, D_FAKE).item() == pytest.approx(expected_d, rel=1e-6)
    # Minimax G minimises log(1 - sigmoid(fake)); non-saturating G minimises -log sigmoid(fake).
    expected_minimax = (math.log(1 - 1 / (1 + math.exp(-0.5))) + math.log(1 - 1 / (1 + math.exp(3.0)))) / 2
    assert losses.g_minimax(D_FAKE).item() == pytest.approx(expected_minimax, rel=1e-6)
    expected_ns = (-math.log(1 / (1 + math.exp(-0.5))) - math.log(1 / (1 + math.exp(3.0)))) / 2
    assert losses.g_nonsaturating(D_FAKE).item() == pytest.approx(expected_ns, rel=1e-6)


def test_logistic_losses_are_stable_for_large_logits():
    big = torch.tensor([200.0, -200.0])
    for value in (losses.d_logistic(big, big), losses.g_minimax(big), losses.g_nonsaturating(big)):
        assert torch.isfinite(value)
    # softplus(200) = 200: a confidently rejected fake costs its logit, not inf.
    assert losses.g_nonsaturating(torch.tensor([-200.0])).item() == pytest.approx(200.0)


def test_wasserstein_hinge_least_squares():
    assert losses.d_wasserstein(D_REAL, D_FAKE).item() == pytest.approx((0.5 - 3.0) / 2 - (2.0 - 1.0) / 2)
    assert losses.g_wasserstein(D_FAKE).item() == pytest.approx(-(0.5 - 3.0) / 2)
    # relu(1 - [2, -1]) = [0, 2]; relu(1 + [0.5, -3]) = [1.5, 0].
    assert losses.d_hinge(D_REAL, D_FAKE).item() == pytest.approx(1.0 + 0.75)
    assert losses.g_hinge(D_FAKE).item() == pytest.approx(1.25)
    # 0.5 * mean((real - 1)^2) + 0.5 * mean((fake - 0)^2) = 0.5 * (1 + 4) / 2 + 0.5 * (0.25 + 9) / 2.
    assert losses.d_least_squares(D_REAL, D_FAKE).item() == pytest.approx(1.25 + 2.3125)
    assert losses.d_least_squares(D_REAL, D_FAKE, a=-1.0, b=1.0).item() == pytest.approx(1.25 + 0.5 * (2.25 + 4) / 2)
    assert losses.g_least_squares(D_FAKE).item() == pytest.approx(0.5 * (0.25 + 16) / 2)
    assert losses.g_least_squares(D_FAKE, c=0.0).item() == pytest.approx(0.5 * (0.25 + 9) / 2)


def test_relativistic_average_hinge():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([0.5, -0.5])  # mean real 1, mean fake 0
    # D: relu(1 - (real - 0)) = [0, 1], relu(1 + (fake - 1)) = [0.5, 0]: 0.5 + 0.25.
    assert losses.d_relativistic_hinge(real, fake).item() == pytest.approx(0.75)
    # G: relu(1 - (fake - 1)) = [1.5, 2.5], relu(1 + (real - 0)) = [3, 1]: 2 + 2.
    assert losses.g_relativistic_hinge(real, fake).item() == pytest.approx(4.0)
    pair = (losses.d_relativistic_hinge, losses.g_relativistic_hinge)
    assert losses.RELATIVISTIC_LOSSES["relativistic_hinge"] == pair
    # Its generator loss takes the real scores, which the generator step of the base does not compute.
    with pytest.raises(ValueError, match="loss='relativistic_hinge' is relativistic"):
        losses.adversarial_loss("relativistic_hinge")


def test_loss_registry_and_unknown_name():
    assert losses.adversarial_loss("hinge") == (losses.d_hinge, losses.g_hinge)
    with pytest.raises(ValueError, match="'hindge'.*expected one of"):
        losses.adversarial_loss("hindge")


def quadratic_d(weight: torch.Tensor):
    """D(x) = sum(w * x^2) per sample: grad_x D = 2 w x, known in closed form."""
    return lambda x: (weight * x.square()).flatten(1).sum(1)


def test_gradient_penalty_hand_computed():
    weight = torch.tensor(0.5)
    real = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    fake = torch.zeros(2, 2)
    eps = torch.tensor([1.0, 0.5])
    # x_hat = [[3, 4], [0, 0.5]]; grad = 2 * 0.5 * x_hat = x_hat; norms 5 and 0.5; penalty mean(16, 0.25).
    gp = losses.gradient_penalty(quadratic_d(weight), real, fake, eps=eps)
    assert gp.item() == pytest.approx((16 + 0.25) / 2)


def test_r1_r2_hand_computed():
    weight = torch.tensor(1.0)
    real = torch.tensor([[1.0, 2.0], [0.0, 3.0]], requires_grad=True)
    # grad = 2x = [[2, 4], [0, 6]]; squared norms 20 and 36.
    assert losses.r1_penalty(quadratic_d(weight)(real), real).item() == pytest.approx(28.0)
    fake = torch.tensor([[1.0, 0.0]], requires_grad=True)
    assert losses.r2_penalty(quadratic_d(weight)(fake), fake).item() == pytest.approx(4.0)


def test_penalties_double_backward_reach_the_discriminator_weights():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.LeakyReLU(0.2), torch.nn.Linear(8, 1))
    real, fake = torch.randn(4, 3), torch.randn(4, 3)
    d = lambda x: net(x).flatten()
    real_g = real.clone().requires_grad_(True)
    for penalty in (losses.gradient_penalty(d, real, fake), losses.r1_penalty(d(real_g), real_g)):
        net.zero_grad()
        penalty.backward()
        # grad_x D = W2 diag(leaky'(W1 x + b1)) W1 depends on the weights only (leaky' is piecewise constant).
        weights = [net[0].weight.grad, net[2].weight.grad]
        assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in weights)


def test_r1_gradient_matches_finite_differences():
    # d/dw of E[||grad_x D||^2] for D(x) = sum(w * x^2): ||2 w x||^2 = 4 w^2 |x|^2, derivative 8 w |x|^2.
    weight = torch.tensor(0.3, requires_grad=True)
    x = torch.tensor([[1.0, 2.0]], requires_grad=True)
    penalty = losses.r1_penalty(quadratic_d(weight)(x), x)
    (grad,) = torch.autograd.grad(penalty, weight)
    assert grad.item() == pytest.approx(8 * 0.3 * 5.0, rel=1e-6)


def small_critic() -> torch.nn.Module:
    """A convolutional critic [N, 1, 16, 16] -> [N] whose scores come out in half precision under autocast."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 4, 2, 1), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(8, 16, 4, 2, 1),
        torch.nn.LeakyReLU(0.2), torch.nn.Flatten(), torch.nn.Linear(16 * 4 * 4, 1), torch.nn.Flatten(0),
    )


def penalties(critic, real, fake, eps, scale):
    """WGAN-GP, R1 and R2 of ``critic``, and the critic's weight gradients of their sum as a GradScaler makes them
    (the loss multiplied by ``scale``, then divided again)."""
    real_g, fake_g = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
    values = torch.stack([
        losses.gradient_penalty(critic, real, fake, eps, scale=scale),
        losses.r1_penalty(critic(real_g), real_g, scale=scale),
        losses.r2_penalty(critic(fake_g), fake_g, scale=scale),
    ])
    # The last bias does not reach an input gradient: its gradient is zero.
    params = list(critic.parameters())
    scaled = torch.autograd.grad(values.sum() * scale, params, allow_unused=True, materialize_grads=True)
    return values, torch.cat([g.flatten() for g in scaled]) / scale


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("scale", [2.0**-20, 1.0, 2.0**10, 65536.0, 2.0**24, 2.0**40])
def test_half_precision_penalties_are_finite_and_equal_float32_at_any_scale(dtype, scale):
    # The GradScaler starts at 65536 and grows without bound while the loss does not overflow. A penalty that hands
    # each half-precision score that scale as its gradient gets inf from 65520 up (float16's largest is 65504).
    critic = small_critic()
    real, fake, eps = torch.randn(6, 1, 16, 16), torch.randn(6, 1, 16, 16), torch.rand(6)
    expected, expected_grads = penalties(critic, real, fake, eps, 1.0)
    with torch.autocast("cpu", dtype=dtype):
        assert critic(real).dtype == dtype
        values, grads = penalties(critic, real, fake, eps, scale)
    assert values.dtype == torch.float32 and torch.isfinite(values).all()
    torch.testing.assert_close(values, expected, rtol=2e-2, atol=0.0)
    if 1.0 <= scale <= 65536.0:  # outside, the scaled weight gradients of the loss (not the penalty's own backward)
        # under- or overflow in float16, which is what the GradScaler is there to correct
        assert torch.isfinite(grads).all()
        torch.testing.assert_close(grads, expected_grads, rtol=5e-2, atol=5e-2 * float(expected_grads.abs().max()))


@pytest.mark.parametrize("peak", [1e-4, 1.0, 300.0])
@pytest.mark.parametrize("scale", [1.0, 65536.0, 2.0**24])
def test_weighted_input_gradient_stays_in_float16_range(peak, scale):
    # Path length differentiates sum(noise * images): the upstream gradient of an output is its weight times the
    # scale, kept within PENALTY_SEED_MAX whatever the weights' size (300 * 2**10 alone would overflow float16).
    critic = small_critic()
    x, weights = torch.randn(6, 1, 16, 16), torch.randn(6) * peak
    x32 = x.clone().requires_grad_(True)
    expected = losses.input_gradient(critic(x32), x32, weights=weights)
    x16 = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.float16):
        grad = losses.input_gradient(critic(x16), x16, scale=scale, weights=weights)
    assert grad.dtype == torch.float32 and grad.shape == x.shape and torch.isfinite(grad).all()
    # Per sample, as penalties use it: a float16 forward flips a few leaky-ReLU slopes, which moves single elements.
    norm = lambda g: g.flatten(1).norm(dim=1)
    torch.testing.assert_close(norm(grad), norm(expected), rtol=2e-2, atol=0.0)
