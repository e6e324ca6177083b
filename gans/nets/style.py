"""The mapping network of the style-based generators (StyleGAN, Karras et al. 2019, section 2; StyleGAN2, Karras et
al. 2020) and the two operations on its per-layer latents: truncation and style mixing.

The mapping network turns a latent z (and a class label c) into an intermediate latent w: z and the embedded label
are each normalised to unit second moment (the paper's pixel norm of z), concatenated, and passed through
``num_layers`` fully connected layers with leaky ReLU whose learning rate is multiplied by 0.01 (the paper's
section C.2 and the official ``lr_multiplier``). The generator's ``num_ws`` layers each take one w ([N, num_ws,
w_dim], all equal after the mapping); truncation pulls them towards the running mean ``w_avg`` and style mixing
takes the later ones from a second latent. Layout and state-dict names follow NVIDIA's stylegan2-ada-pytorch
``training/networks.py`` (``MappingNetwork``: ``embed``, ``fc0``.., buffer ``w_avg``), so its weights load by name.
"""

import torch
from torch import Tensor, nn

from gans.errors import ConfigurationError
from gans.nets.equalized import EqualizedLinear


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """``x / sqrt(mean(x^2) + eps)`` along ``dim``: the pixel norm of z (StyleGAN) and of the embedded label."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def truncate(ws: Tensor, w_avg: Tensor, psi: float, cutoff: int | None = None) -> Tensor:
    """The truncation trick in W (StyleGAN, section 3.3): ``w_avg + psi * (w - w_avg)`` for the layers before
    ``cutoff``; the other layers are left as they are. A pure function (``ws`` is not modified).

    Args:
        ws: per-layer latents [N, num_ws, w_dim] (or [N, w_dim], then ``cutoff`` must be ``None``).
        w_avg: the mean w [w_dim].
        psi: 1 leaves ``ws`` unchanged, 0 gives ``w_avg`` everywhere.
        cutoff: the number of leading layers truncated (the official ``truncation_cutoff``); ``None`` for all.

    Returns:
        A tensor of the shape of ``ws``.
    """
    if psi == 1:
        return ws
    if cutoff is None:
        return w_avg.lerp(ws, psi)
    return torch.cat([w_avg.lerp(ws[:, :cutoff], psi), ws[:, cutoff:]], dim=1)


def mix_styles(ws: Tensor, ws2: Tensor, crossover: int | Tensor) -> Tensor:
    """Style mixing (StyleGAN, section 3.1): the layers before ``crossover`` take ``ws``, the layers from
    ``crossover`` on take ``ws2``.

    Args:
        ws: per-layer latents of the first latent, [N, num_ws, w_dim].
        ws2: those of the second latent, same shape.
        crossover: the first layer taken from ``ws2``: an int, a scalar tensor (the official loss draws one per
            batch; a tensor keeps it on the device, no synchronisation) or a tensor [N] (one per sample).
            ``num_ws`` or more keeps ``ws``, 0 gives ``ws2``.

    Returns:
        [N, num_ws, w_dim].
    """
    layers = torch.arange(ws.shape[1], device=ws.device)  # [num_ws]
    crossover = torch.as_tensor(crossover, device=ws.device).reshape(-1, 1)  # [1 or N, 1]
    return torch.where((layers >= crossover).unsqueeze(-1), ws2, ws)


class MappingNetwork(nn.Module):
    """The mapping network z, c -> w of StyleGAN/StyleGAN2: [N, z_dim], [N, c_dim] -> [N, num_ws, w_dim] (or [N,
    w_dim] when ``num_ws`` is ``None``).

    Equal to the official stylegan2-ada-pytorch ``MappingNetwork``: the same arguments, parameters and state-dict
    keys (``embed`` when ``c_dim > 0``, ``fc0`` .. ``fc{num_layers-1}``, the buffer ``w_avg`` when ``num_ws`` and
    ``w_avg_beta`` are not ``None``). StyleGAN2's discriminator uses one with ``z_dim=0``, ``num_ws=None`` and
    ``w_avg_beta=None`` to map its labels.

    Args:
        z_dim: size of z; 0 for no latent (labels only).
        c_dim: size of the label c; 0 for none.
        w_dim: size of w.
        num_ws: the number of per-layer copies of w to output, ``None`` to return [N, w_dim].
        num_layers: fully connected layers (8 in both papers; the official ``cifar`` preset uses 2); 0 (the official
            legacy.py's converted conditional discriminators) outputs the normalised inputs, whose size must be
            ``w_dim``.
        embed_features: size of the embedded label, ``None`` for ``w_dim``.
        layer_features: size of the hidden layers, ``None`` for ``w_dim``.
        activation: the hidden layers' activation (a name of :data:`gans.nets.equalized.ACTIVATIONS`).
        lr_multiplier: learning-rate multiplier of the layers (0.01, StyleGAN's section C.2).
        w_avg_beta: decay of the running mean of w (``w_avg``), ``None`` to track none.

    Raises:
        ConfigurationError: neither z nor c (``z_dim`` and ``c_dim`` both 0), ``num_layers`` below 0, or 0 with
            inputs of another size than ``w_dim``.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ) -> None:
        super().__init__()
        if z_dim == 0 and c_dim == 0:
            raise ConfigurationError("z_dim=0 with c_dim=0: the mapping network needs a latent or a label")
        if num_layers < 0:
            raise ConfigurationError(f"num_layers={num_layers} is invalid; expected an integer >= 0")
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        embed_features = 0 if c_dim == 0 else w_dim if embed_features is None else embed_features
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        # No layer (the official legacy.py's converted conditional discriminators): the normalised inputs are w.
        if num_layers == 0 and features[0] != w_dim:
            raise ConfigurationError(
                f"num_layers=0 makes the {features[0]} normalised input features w, which has w_dim={w_dim}"
            )
        if c_dim > 0:
            self.embed = EqualizedLinear(c_dim, embed_features)
        for idx in range(num_layers):
            layer = EqualizedLinear(features[idx], features[idx + 1], activation=activation,
                                    lr_multiplier=lr_multiplier)
            self.add_module(f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor | None, c: Tensor | None = None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, update_emas: bool = False) -> Tensor:
        """Maps latents (and labels) to per-layer latents.

        Args:
            z: [N, z_dim] (ignored when ``z_dim`` is 0).
            c: [N, c_dim] labels (one-hot for classes); ignored when ``c_dim`` is 0.
            truncation_psi: :func:`truncate` towards ``w_avg``; 1 for none.
            truncation_cutoff: the number of leading layers truncated, ``None`` for all.
            update_emas: move ``w_avg`` towards this batch's mean w, ``w_avg <- lerp(mean(w), w_avg, w_avg_beta)``.
                The official stylegan2-ada-pytorch loss does so on every mapping in training mode except the
                second latent of style mixing; here the caller decides.

        Returns:
            ws [N, num_ws, w_dim] (w [N, w_dim] when ``num_ws`` is ``None``), float32.

        Raises:
            ConfigurationError: no labels for a conditional network, or labels of another shape than [N, c_dim].
        """
        if self.c_dim > 0 and c is None:
            raise ConfigurationError(f"c=None: the network is conditional (c_dim={self.c_dim}); pass labels [N, "
                                     f"{self.c_dim}]")
        if self.c_dim > 0 and (c.dim() != 2 or c.shape[1] != self.c_dim or (self.z_dim > 0 and len(c) != len(z))):
            # Class indices [N] (what the data modules hold) would fail deep inside the embedding's matmul.
            raise ConfigurationError(f"c={list(c.shape)} (its shape) does not fit: expected labels [N, {self.c_dim}] "
                                     "(one-hot for classes), N that of z")
        parts = []
        if self.z_dim > 0:
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas and self.w_avg_beta is not None and hasattr(self, "w_avg"):
            with torch.no_grad():
                # float32 whatever autocast made of the layers (bf16-mixed): the average is a float32 buffer.
                self.w_avg.copy_(x.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat(1, self.num_ws, 1)  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            if not hasattr(self, "w_avg"):
                raise ConfigurationError(f"truncation_psi={truncation_psi}: this mapping network tracks no mean w "
                                         f"(w_avg_beta={self.w_avg_beta}, num_ws={self.num_ws})")
            x = truncate(x, self.w_avg, truncation_psi, truncation_cutoff if self.num_ws is not None else None)
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"
