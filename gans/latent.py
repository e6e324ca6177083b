"""Operations on latent vectors shared by sampling, dashboards and editing."""

import torch
from torch import Tensor


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between latents a and b [..., d] at fractions t [T] -> [..., T, d].

    For Gaussian latents, straight lines pass through the low-probability region near the origin; the great circle
    keeps the norm typical (White 2016, "Sampling generative networks"). Falls back to a straight line where a and
    b are (anti)parallel.
    """
    a, b = a.unsqueeze(-2), b.unsqueeze(-2)  # [..., 1, d]
    t = t.to(a).view(-1, 1)  # [T, 1]
    cos = (torch.nn.functional.normalize(a, dim=-1) * torch.nn.functional.normalize(b, dim=-1)).sum(-1, keepdim=True)
    omega = torch.acos(cos.clamp(-1.0, 1.0))  # [..., 1, 1]
    sin = torch.sin(omega)
    linear = (1 - t) * a + t * b
    spherical = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / sin.clamp(min=1e-7)
    return torch.where(sin.abs() < 1e-6, linear, spherical)


def split_inputs(inputs: dict[str, Tensor], size: int) -> list[dict[str, Tensor]]:
    """The keyword inputs of ``GAN.sample`` (``z``, labels, source images, each [n, ...]) cut into batches of at most
    ``size`` examples, each input cut alike."""
    names = list(inputs)
    return [dict(zip(names, parts, strict=True)) for parts in zip(*(inputs[k].split(size) for k in names), strict=True)]
