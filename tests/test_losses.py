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
