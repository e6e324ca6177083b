"""Discriminator layers against mode collapse that any discriminator can use, and PacGAN's packing."""

import torch
from torch import Tensor, nn

from gans.errors import ConfigurationError


def pack(x: Tensor, m: int) -> Tensor:
    """PacGAN (Lin et al. 2018): joins ``m`` consecutive samples into one discriminator input along the first
    feature axis, [N, C, ...] -> [N / m, m * C, ...] (for points, [N, d] -> [N / m, m * d]). The ``m`` samples of a
    pack are all real or all fake, so D judges ``m`` samples at once and sees their lack of diversity."""
    if m == 1:
        return x
    n = x.shape[0]
    if n % m:
        raise ConfigurationError(
            f"pack={m}: the batch of {n} samples does not split into packs of {m}; use a batch size divisible by {m}"
        )
    return x.reshape(n // m, m * x.shape[1], *x.shape[2:])


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination (Salimans et al. 2016, section 3.2): features [N, A] -> [N, A + B].

    ``M_i = f(x_i) T`` reshaped to B kernels of C dimensions, ``c_b(x_i, x_j) = exp(-||M_ib - M_jb||_1)`` and
    ``o(x_i)_b = sum_j c_b(x_i, x_j)`` over the other samples j of the batch, concatenated to the features: a sample
    close to many others (a collapsed batch) gets large outputs.

    Args:
        in_features: A, the size of the input features.
        num_kernels: B (100 in the paper's code).
        kernel_dim: C (5 in the paper's code).
    """

    def __init__(self, in_features: int, num_kernels: int = 100, kernel_dim: int = 5) -> None:
        super().__init__()
        self.num_kernels, self.kernel_dim = num_kernels, kernel_dim
        self.T = nn.Parameter(torch.randn(in_features, num_kernels * kernel_dim) * 0.05)

    def forward(self, x: Tensor) -> Tensor:
        m = (x @ self.T).view(-1, self.num_kernels, self.kernel_dim).transpose(0, 1).contiguous()  # [B, N, C]
        # cdist never forms the [N, N, B, C] differences: a fifth of the memory, ~3x faster at N = 512 on a CPU.
        l1 = torch.cdist(m, m, p=1)  # [B, N, N]
        o = torch.exp(-l1).sum(dim=2).t() - 1.0  # [N, B]; minus exp(0) = 1, the sample itself
        return torch.cat([x, o], dim=1)


def minibatch_group_size(batch: int, group_size: int) -> int:
    """The samples per group of :class:`MinibatchStdDev` for a batch of ``batch``: the largest divisor of ``batch``
    that is at most ``group_size`` (``group_size`` itself whenever it divides the batch, the whole batch when that is
    smaller). NVIDIA's ProGAN/StyleGAN layers and StudioGAN's take ``min(group_size, batch)`` and fail unless it
    divides the batch; a data set's last batch and validation batches often do not (30 = 3 * 10 takes groups of 3 for
    ``group_size=4``). A prime batch larger than ``group_size`` gets groups of 1, whose statistic is a constant."""
    return next(g for g in range(min(group_size, batch), 0, -1) if batch % g == 0)


class MinibatchStdDev(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, section 3; StyleGAN2's with channel groups): [N, C, ...] ->
    [N, C + num_channels, ...].

    The batch is split into groups of ``group_size`` and the channels into ``num_channels`` groups of ``C /
    num_channels``; within a group of samples, the standard deviation of every feature at every position over the
    group's samples is averaged over each channel group's features and positions into one number per channel group,
    appended to each sample of the group as an extra constant feature map (for flat features [N, C], extra features).
    ProGAN's layer is ``num_channels=1``; the official StyleGAN2 ``MinibatchStdLayer`` takes both arguments.

    Args:
        group_size: samples per group (4 in the papers), ``None`` for the whole batch; when it does not divide the
            batch, the largest group size that does (:func:`minibatch_group_size`), so that any batch size works.
        num_channels: the number of statistics (channel groups); it must divide the input's channels.
    """

    def __init__(self, group_size: int | None = 4, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: Tensor) -> Tensor:
        n, c = x.shape[:2]
        g = n if self.group_size is None else minibatch_group_size(n, self.group_size)
        f = self.num_channels
        # [G, N/G, F, C/F, ...]: sample i is in group i mod N/G, as in the official layers
        groups = x.reshape(g, n // g, f, c // f, *x.shape[2:])
        std = (groups.var(dim=0, unbiased=False) + 1e-8).sqrt()  # [N/G, F, C/F, ...]
        stat = std.flatten(2).mean(dim=2)  # [N/G, F]
        stat = stat.repeat(g, 1).view(n, f, *([1] * (x.dim() - 2))).expand(n, f, *x.shape[2:])  # [N, F, ...]
        return torch.cat([x, stat], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


def minibatch_layer(kind: str | None, features: int) -> tuple[nn.Module, int]:
    """The minibatch layer named ``kind`` (``"stddev"``, ``"discrimination"`` or ``None``) for ``features`` input
    features, and the number of features it outputs."""
    if kind is None:
        return nn.Identity(), features
    if kind == "stddev":
        return MinibatchStdDev(), features + 1
    if kind == "discrimination":
        layer = MinibatchDiscrimination(features)
        return layer, features + layer.num_kernels
    raise ConfigurationError(
        f"minibatch={kind!r} is not a minibatch layer; expected 'stddev', 'discrimination' or None"
    )
