"""Adversarial losses and gradient penalties as pure functions of tensors.

Discriminator outputs are raw logits (no sigmoid): the log-sigmoid losses are written with ``softplus``, which is
numerically stable for logits of any size. Every loss returns a scalar averaged over the batch.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

# ---------------------------------------------------------------------------------------------------------------
# Adversarial losses: (discriminator loss, generator loss) pairs.
# ---------------------------------------------------------------------------------------------------------------


def d_logistic(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Discriminator loss of the original GAN (Goodfellow et al. 2014): -log D(x) - log(1 - D(G(z))).

    With D = sigmoid(logit): -log sigmoid(l) = softplus(-l) and -log(1 - sigmoid(l)) = softplus(l).
    """
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


def g_minimax(d_fake: Tensor) -> Tensor:
    """Generator loss of the minimax game: minimise log(1 - D(G(z))) = -softplus(logit).

    Saturates (vanishing gradient) when D confidently rejects the fakes, which is why the paper proposes
    :func:`g_nonsaturating` for practice.
    """
    return -F.softplus(d_fake).mean()


def g_nonsaturating(d_fake: Tensor) -> Tensor:
    """Non-saturating generator loss: minimise -log D(G(z)) = softplus(-logit)."""
    return F.softplus(-d_fake).mean()


def d_wasserstein(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Critic loss of WGAN (Arjovsky et al.): E[D(G(z))] - E[D(x)], the negative Wasserstein estimate."""
    return d_fake.mean() - d_real.mean()


def g_wasserstein(d_fake: Tensor) -> Tensor:
    """Generator loss of WGAN: -E[D(G(z))]."""
    return -d_fake.mean()


def d_hinge(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Hinge discriminator loss (Lim & Ye; Miyato et al.): E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
    return F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()


def g_hinge(d_fake: Tensor) -> Tensor:
    """Generator loss paired with the hinge discriminator loss: -E[D(G(z))]."""
    return -d_fake.mean()


def d_least_squares(d_real: Tensor, d_fake: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """LSGAN discriminator loss (Mao et al.): 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2]."""
    return 0.5 * (d_real - b).square().mean() + 0.5 * (d_fake - a).square().mean()


def g_least_squares(d_fake: Tensor, c: float = 1.0) -> Tensor:
    """LSGAN generator loss: 1/2 E[(D(G(z)) - c)^2]."""
    return 0.5 * (d_fake - c).square().mean()


DLoss = Callable[[Tensor, Tensor], Tensor]
GLoss = Callable[[Tensor], Tensor]

#: Names accepted by the ``loss`` argument of the GAN modules, each mapped to its (D loss, G loss) pair.
ADVERSARIAL_LOSSES: dict[str, tuple[DLoss, GLoss]] = {
    "minimax": (d_logistic, g_minimax),
    "non_saturating": (d_logistic, g_nonsaturating),
    "wasserstein": (d_wasserstein, g_wasserstein),
    "hinge": (d_hinge, g_hinge),
    "least_squares": (d_least_squares, g_least_squares),
}


def adversarial_loss(name: str) -> tuple[DLoss, GLoss]:
    """Returns the (discriminator loss, generator loss) pair registered under ``name``."""
    try:
        return ADVERSARIAL_LOSSES[name]
    except KeyError:
        raise ValueError(f"loss={name!r} is not a known adversarial loss; expected one of {sorted(ADVERSARIAL_LOSSES)}")


# ---------------------------------------------------------------------------------------------------------------
# Gradient penalties. All use autograd.grad(create_graph=True), never backward(create_graph=True): the penalty's
# own gradient needs the double backward, and DDP only supports the former.
# ---------------------------------------------------------------------------------------------------------------


def _input_gradient(outputs: Tensor, inputs: Tensor, scale: float | Tensor = 1.0) -> Tensor:
    # Summing the per-sample outputs gives each sample's own input gradient, since samples do not interact in D.
    # Under fp16 mixed precision the outputs are multiplied by the GradScaler's scale before the backward, so that
    # small gradients do not underflow in half precision, and the gradient divided by it after (PyTorch's AMP
    # recipe for gradient penalties); in float32, so that its square does not overflow.
    (grad,) = torch.autograd.grad(outputs.sum() * scale, inputs, create_graph=True)
    return grad.flatten(1).float() / scale  # [N, C*H*W]


def gradient_penalty(
    discriminator: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    eps: Tensor | None = None,
    scale: float | Tensor = 1.0,
) -> Tensor:
    """WGAN-GP two-sided penalty (Gulrajani et al.): E[(||grad_x D(x_hat)||_2 - 1)^2].

    ``x_hat = eps * real + (1 - eps) * fake`` with one ``eps ~ U[0, 1]`` per sample. Multiply by lambda (10 in the
    paper) in the caller.

    Args:
        discriminator: maps a batch of inputs to one score per sample.
        real: real batch, [N, ...].
        fake: generated batch of the same shape (detached from the generator).
        eps: interpolation weights, [N]; drawn uniformly when ``None``.
        scale: the fp16 GradScaler's current scale (1 without one); the value does not depend on it.
    """
    if eps is None:
        eps = torch.rand(real.shape[0], device=real.device, dtype=real.dtype)
    eps = eps.view(-1, *([1] * (real.dim() - 1)))  # [N, 1, 1, 1]
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    grad = _input_gradient(discriminator(x_hat), x_hat, scale)
    return (grad.norm(2, dim=1) - 1).square().mean()


def r1_penalty(d_real: Tensor, real: Tensor, scale: float | Tensor = 1.0) -> Tensor:
    """R1 penalty (Mescheder et al. 2018): E_real[||grad_x D(x)||^2]. Multiply by gamma / 2 in the caller.

    ``real`` must have had ``requires_grad_(True)`` before ``d_real = D(real)`` was computed. ``scale``: the fp16
    GradScaler's current scale (1 without one).
    """
    return _input_gradient(d_real, real, scale).square().sum(dim=1).mean()


def r2_penalty(d_fake: Tensor, fake: Tensor, scale: float | Tensor = 1.0) -> Tensor:
    """R2 penalty (Mescheder et al. 2018): the same zero-centred penalty on generated samples."""
    return _input_gradient(d_fake, fake, scale).square().sum(dim=1).mean()
