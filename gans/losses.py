"""Adversarial losses and gradient penalties as pure functions of tensors.

Discriminator outputs are raw logits (no sigmoid): the log-sigmoid losses are written with ``softplus``, which is
numerically stable for logits of any size. Every loss returns a scalar averaged over the batch.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from gans.errors import ConfigurationError

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


def d_relativistic_hinge(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Relativistic average hinge discriminator loss (RaHinge; Jolicoeur-Martineau 2019, MSG-GAN's loss): each score
    judged against the other kind's mean, E_x[relu(1 - (D(x) - E[D(G(z))]))] + E_z[relu(1 + (D(G(z)) - E[D(x)]))]."""
    return F.relu(1.0 - (d_real - d_fake.mean())).mean() + F.relu(1.0 + (d_fake - d_real.mean())).mean()


def g_relativistic_hinge(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """RaHinge generator loss: the discriminator's with real and fake swapped, E_z[relu(1 - (D(G(z)) - E[D(x)]))] +
    E_x[relu(1 + (D(x) - E[D(G(z))]))]; it needs D's scores of real images too."""
    return d_relativistic_hinge(d_fake, d_real)


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


#: Relativistic losses (Jolicoeur-Martineau 2019): the generator's loss too takes (d_real, d_fake), so only a variant
#: whose generator loss scores real images takes these names (``gans.MSGGAN``).
RELATIVISTIC_LOSSES: dict[str, tuple[DLoss, DLoss]] = {
    "relativistic_hinge": (d_relativistic_hinge, g_relativistic_hinge),
}


def adversarial_loss(name: str) -> tuple[DLoss, GLoss]:
    """Returns the (discriminator loss, generator loss) pair registered under ``name``."""
    try:
        return ADVERSARIAL_LOSSES[name]
    except KeyError:
        if name in RELATIVISTIC_LOSSES:
            raise ConfigurationError(
                f"loss={name!r} is relativistic: its generator loss needs the scores of real images, which this "
                "variant's generator step does not compute (gans.MSGGAN does)"
            )
        raise ConfigurationError(
            f"loss={name!r} is not a known adversarial loss; expected one of {sorted(ADVERSARIAL_LOSSES)}"
        )


# ---------------------------------------------------------------------------------------------------------------
# Gradient penalties. All use autograd.grad(create_graph=True), never backward(create_graph=True): the penalty's
# own gradient needs the double backward, and DDP only supports the former.
# ---------------------------------------------------------------------------------------------------------------


#: The largest upstream gradient an input-gradient penalty feeds into its network's backward (2**10). PyTorch's AMP
#: recipe scales the outputs by the GradScaler's scale before differentiating them, but that scale is calibrated for the
#: loss's backward, where each score receives scale * dloss/dscore (about scale / N for a batch mean); differentiating a
#: sum of scores (or a weighted sum: path length) hands each score the scale itself, and any scale from 65520 up, the
#: GradScaler's default start 65536 included, is infinite in float16. Casting the scores to float32 first does not help:
#: the gradient is cast back to float16 where it enters the half-precision network. So the scale is capped here: 2**10
#: still lifts input gradients 1024-fold above float16's underflow and leaves a factor 64 for gradients that grow inside
#: the network (at initialisation they only shrink on the way to the input). Nor does the upstream gradient go below
#: about 1: a scale below 1 no longer guards against underflow but causes it, and the one scaler of both networks may
#: have been lowered by the generator's backward. In between the scaler's scale is followed, so that a penalty whose
#: backward overflows all the same is corrected by the scaler lowering its scale, as the loss is.
PENALTY_SEED_MAX = 2.0**10


def input_gradient(
    outputs: Tensor, inputs: Tensor, scale: float | Tensor = 1.0, weights: Tensor | None = None
) -> Tensor:
    """The gradient of ``sum(weights * outputs)`` w.r.t. ``inputs``, with ``create_graph=True`` so that a penalty on
    it trains the network (the double backward; DDP supports this, not ``backward(create_graph=True)``).

    Under fp16 mixed precision it follows PyTorch's AMP recipe for gradient penalties (the upstream gradient is
    multiplied by the GradScaler's scale before the backward, so that small gradients do not underflow in half
    precision, and the result divided by it after), with the multiplier clamped so that the largest upstream gradient
    lies between about 1 and ``PENALTY_SEED_MAX`` (see there why): the result is finite at any scale the scaler
    reaches and does not depend on the scale.

    Args:
        outputs: what is differentiated, any shape and float dtype (float16/bfloat16 under autocast); summing the
            per-sample scores gives each sample its own input gradient, since samples do not interact in D.
        inputs: the tensor the outputs were computed from, with ``requires_grad``.
        scale: the fp16 GradScaler's current scale, 1 without one; any positive value.
        weights: the upstream gradient of each output element, shaped like ``outputs`` (path length's random image);
            ones when ``None``.

    Returns:
        The gradient, float32 (so that squaring it cannot overflow), shaped like ``inputs``.
    """
    weights = torch.ones_like(outputs, dtype=torch.float32) if weights is None else weights.float()
    peak = weights.detach().abs().amax().clamp_min(torch.finfo(torch.float32).tiny)
    # A power of two that brings the largest weight into (1/2, 1], so that weights * seed peaks within
    # (1/2, PENALTY_SEED_MAX]; powers of two, so that multiplying and dividing by the seed are exact.
    unit = torch.exp2(torch.floor(-torch.log2(peak)))
    seed = torch.as_tensor(scale, dtype=torch.float32, device=outputs.device).clamp(unit, unit * PENALTY_SEED_MAX)
    (grad,) = torch.autograd.grad(outputs, inputs, grad_outputs=(weights * seed).to(outputs.dtype), create_graph=True)
    return grad.float() / seed


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
    grad = input_gradient(discriminator(x_hat), x_hat, scale).flatten(1)  # [N, C*H*W]
    return (grad.norm(2, dim=1) - 1).square().mean()


def drift_penalty(d_real: Tensor) -> Tensor:
    """ProGAN's drift term (Karras et al. 2018, appendix A.1): E_real[D(x)^2], which keeps a Wasserstein critic's
    outputs from drifting far from zero. Multiply by epsilon (0.001 in the paper) in the caller."""
    return d_real.square().mean()


def r1_penalty(d_real: Tensor, real: Tensor, scale: float | Tensor = 1.0) -> Tensor:
    """R1 penalty (Mescheder et al. 2018): E_real[||grad_x D(x)||^2]. Multiply by gamma / 2 in the caller.

    ``real`` must have had ``requires_grad_(True)`` before ``d_real = D(real)`` was computed. ``scale``: the fp16
    GradScaler's current scale (1 without one).
    """
    return input_gradient(d_real, real, scale).flatten(1).square().sum(dim=1).mean()


def r2_penalty(d_fake: Tensor, fake: Tensor, scale: float | Tensor = 1.0) -> Tensor:
    """R2 penalty (Mescheder et al. 2018): the same zero-centred penalty on generated samples."""
    return input_gradient(d_fake, fake, scale).flatten(1).square().sum(dim=1).mean()


def path_lengths(images: Tensor, ws: Tensor, noise: Tensor | None = None, scale: float | Tensor = 1.0) -> Tensor:
    """Per-sample path lengths of StyleGAN2's path-length regularization (Karras et al. 2020, section 3.2):
    ``||J_w^T y||_2`` with ``y`` a random image, for the ``ws`` [N, num_ws, w_dim] that made ``images`` [N, C, H, W].
    As the official code: ``y ~ N(0, I) / sqrt(H * W)`` (so the length does not grow with the resolution), and the
    squared gradient is summed over ``w_dim`` and averaged over the layers before the square root.

    Args:
        images: the generator's output, with its graph to ``ws``.
        ws: the per-layer latents the images were made from (a tensor of that graph).
        noise: ``y``, shaped like ``images``; drawn when ``None``.
        scale: the fp16 GradScaler's current scale (1 without one): see :func:`input_gradient`.

    Returns:
        The lengths [N], float32, differentiable (``create_graph``) so that a penalty on them trains the generator.
    """
    if noise is None:
        noise = torch.randn_like(images, dtype=torch.float32) / math.sqrt(images.shape[2] * images.shape[3])
    grad = input_gradient(images, ws, scale, weights=noise)  # [N, num_ws, w_dim]
    return grad.square().sum(dim=2).mean(dim=1).sqrt()


def path_length_penalty(
    lengths: Tensor, pl_mean: Tensor, decay: float = 0.01, batch_mean: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """StyleGAN2's path-length penalty ``E[(||J_w^T y|| - a)^2]`` with the target ``a`` the moving average of the
    lengths: ``a = lerp(pl_mean, mean(lengths), decay)``, updated before the penalty uses it, as in the official code
    (whose penalty also differentiates through ``a``'s share of this batch). Multiply by the weight (2) in the caller.

    Args:
        lengths: per-sample path lengths [N] (:func:`path_lengths`).
        pl_mean: the moving average so far, a scalar (0 before the first update).
        decay: weight of this batch's mean in the update (0.01).
        batch_mean: the mean length to move towards; ``lengths.mean()`` when ``None`` (under data parallelism, the
            mean over all processes, so that every process keeps the same average).

    Returns:
        The penalty (a scalar) and the updated average ``a``, detached, to store for the next call.
    """
    target = pl_mean.lerp(lengths.mean() if batch_mean is None else batch_mean, decay)
    return (lengths - target).square().mean(), target.detach()


# ---------------------------------------------------------------------------------------------------------------
# Translation losses
# ---------------------------------------------------------------------------------------------------------------


def feature_matching(real: list[list[Tensor]], fake: list[list[Tensor]], layer_weight: float = 1.0) -> Tensor:
    """The discriminator feature-matching loss of pix2pixHD (Wang et al. 2018, eq. 4) and SPADE: for each of the
    ``num_D`` discriminators and each of its intermediate layers (the last entry, the scores, excluded), the mean
    absolute difference between the layer's activations on the fake and on the real image (detached: only G learns
    from it), summed over layers times ``layer_weight`` and averaged over the discriminators.

    Args:
        real: per discriminator, its blocks' outputs on the real pair (``MultiscaleDiscriminator.features``).
        fake: the same on the fake pair, with G's graph.
        layer_weight: pix2pixHD's 4 / (n_layers_D + 1); SPADE's 1. Multiply by lambda (10) in the caller.
    """
    total = fake[0][0].new_zeros(())
    for real_layers, fake_layers in zip(real, fake, strict=True):
        for r, f in zip(real_layers[:-1], fake_layers[:-1], strict=True):
            total = total + layer_weight * F.l1_loss(f, r.detach())
    return total / len(fake)


# ---------------------------------------------------------------------------------------------------------------
# Reconstruction losses of unpaired translation (CycleGAN, Zhu et al. 2017).
# ---------------------------------------------------------------------------------------------------------------


def cycle_consistency(real: Tensor, reconstructed: Tensor) -> Tensor:
    """Cycle-consistency loss (Zhu et al. 2017, eq. 2): E[||F(G(x)) - x||_1], the mean absolute difference between
    the images and their round trip through both generators. Multiply by lambda (10 in the paper) in the caller."""
    return (reconstructed - real).abs().mean()


def identity_mapping(real: Tensor, mapped: Tensor) -> Tensor:
    """Identity-mapping loss (Zhu et al. 2017, section 5.2, after Taigman et al. 2017): E[||G(y) - y||_1], a generator
    fed an image of its own target domain should return it, which keeps the colours of the input. Multiply by
    0.5 * lambda in the caller (the authors' code)."""
    return (mapped - real).abs().mean()
