"""What the style-based GANs (StyleGAN, StyleGAN2) add to ``gans.base.GAN`` for sampling and for the editing tools:
the official ``generate.py`` controls on ``sample``/``sample_output`` (truncation and noise mode), and the mapping,
the synthesis, the tracked mean w and the number of per-layer latents as documented methods.

A mixin (listed before the base class) rather than a base of its own: StyleGAN also mixes in ProGAN's growth
(``gans.progan.Progressive``), and neither belongs in ``gans.base``. The generator network must have ``mapping``
(``gans.nets.style.MappingNetwork``), ``synthesis`` (taking ``ws`` and ``noise_mode``), ``num_ws`` and a forward
``(z, c, truncation_psi=, truncation_cutoff=, noise_mode=)`` returning a ``GeneratorOutput`` with ``ws``.
The variant sets ``style_mixing_prob``, which :meth:`StyleBased.run_generator` (its training fakes) reads.
"""

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from gans.errors import ConfigurationError
from gans.nets.style import mix_styles
from gans.nets.stylegan2 import check_noise_mode
from gans.outputs import GeneratorOutput

NoiseMode = Literal["const", "random", "none"]


def draw_crossover(num_ws: int, probability: float, device: torch.device | None = None,
                   used: int | None = None) -> Tensor:
    """The crossover layer of style mixing for one batch, as the official ``run_G`` draws it: uniform in
    ``[1, used)`` with ``probability``, else ``num_ws`` (no mixing); ``used`` is the number of layers the synthesis
    runs now (a growing StyleGAN's current resolution), ``num_ws`` when ``None``. A 0-d int64 tensor on ``device``: no
    synchronisation with an accelerator."""
    used = num_ws if used is None else used
    crossover = torch.randint(1, max(used, 2), (), device=device)
    mixed = torch.rand((), device=device) < probability
    return torch.where(mixed & (used > 1), crossover, torch.full_like(crossover, num_ws))


def check_truncation(truncation_psi: float, truncation_cutoff: int | None) -> None:
    """Refuses truncation values that give no image: a psi that is not finite (NaN or infinite ws turn every pixel into
    NaN, written without a word) and a negative cutoff (which would slice from the end). Any finite psi is accepted,
    as ``generate.py`` accepts it: above 1 extrapolates away from the mean w, below 0 past it.

    Raises:
        ConfigurationError: the message names the value.
    """
    if not math.isfinite(truncation_psi):
        raise ConfigurationError(f"truncation_psi={truncation_psi} must be a finite number (1: no truncation)")
    if truncation_cutoff is not None and truncation_cutoff < 0:
        raise ConfigurationError(f"truncation_cutoff={truncation_cutoff} must be >= 0 (a number of layers)")


class StyleBased:
    """Sampling controls and the editing surface of a style-based GAN (see the module docstring)."""

    #: What the generator gets besides z while ``sample_output`` runs; none (random noise) otherwise.
    _sampling: dict[str, Any] | None = None

    def sampling_controls(self) -> dict[str, Any]:
        """The keyword arguments of the generator's forward for the sample being drawn (``truncation_psi``,
        ``truncation_cutoff``, ``noise_mode``): those given to :meth:`sample_output` while it runs, else none."""
        return dict(self._sampling or {})

    def sample_output(
        self,
        n: int | None = None,
        z: Tensor | None = None,
        generator: torch.Generator | None = None,
        ema: bool = True,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: NoiseMode = "const",
        **cond: Tensor,
    ) -> GeneratorOutput:
        """``GAN.sample_output`` with the controls of the official ``generate.py``.

        Args:
            n: number of samples; may be omitted when ``z`` is given.
            z: latents [n, latent_dim]; drawn from ``generator`` (or the global RNG) when ``None``.
            generator: a ``torch.Generator`` seeding the latents.
            ema: decode with the EMA generator when there is one.
            truncation_psi: the truncation trick (StyleGAN, section 3.3): the ws of the first ``truncation_cutoff``
                layers become ``w_avg + psi * (w - w_avg)``; 1 (the default) leaves them unchanged, 0 gives every
                sample the mean w.
            truncation_cutoff: the number of leading layers truncated (the StyleGAN paper's figures: 8); ``None``:
                all.
            noise_mode: ``"const"`` (the default: each noise input's fixed image, so a latent always gives the same
                image), ``"random"`` or ``"none"``.
            **cond: conditioning (a conditional model's labels).

        Returns:
            The images, clamped to [-1, 1], and their (truncated) ``ws``.

        Raises:
            ConfigurationError: an unknown ``noise_mode``, a ``truncation_psi`` that is not a finite number or a
                negative ``truncation_cutoff``.
        """
        check_noise_mode(noise_mode)
        check_truncation(truncation_psi, truncation_cutoff)
        self._sampling = {"truncation_psi": truncation_psi, "truncation_cutoff": truncation_cutoff,
                          "noise_mode": noise_mode}
        try:
            return super().sample_output(n, z, generator, ema, **cond)
        finally:
            self._sampling = None

    def metric_sample_options(self) -> dict[str, Any]:
        """Random noise for the metrics' samples: the official metrics (``metrics/metric_utils.py``) run G with its
        default ``noise_mode="random"``, the distribution it was trained for; ``sample``'s default, ``"const"``, is
        ``generate.py``'s, for pictures that a latent always gives alike."""
        return {"noise_mode": "random"}

    def run_generator(self, z: Tensor, c: Tensor | None = None) -> GeneratorOutput:
        """The training generator on latents, as the official ``run_G``: the mapping (which moves ``w_avg``), then,
        with ``style_mixing_prob``, the layers from a random crossover on taken from a second latent's ws (whose
        mapping does not move ``w_avg``), then the synthesis with random noise. ``ws`` are those the synthesis got."""
        network = self.generator
        # The mapping in float32 under an autocast too (mixed precision), as the official code runs it: ws and the
        # running mean w_avg keep their precision.
        with torch.autocast(z.device.type, enabled=False):
            ws = network.mapping(z, c, update_emas=True)  # [N, num_ws, w_dim]
            if self.style_mixing_prob > 0:
                used = getattr(network.synthesis, "num_ws_used", None)  # a growing synthesis's layers in use
                crossover = draw_crossover(ws.shape[1], self.style_mixing_prob, ws.device, used)
                ws = mix_styles(ws, network.mapping(torch.randn_like(z), c), crossover)
        return GeneratorOutput(images=network.synthesis(ws, noise_mode="random"), ws=ws)

    def style_network(self, ema: bool = True) -> nn.Module:
        """The EMA generator when there is one and ``ema``, else the trained generator."""
        return self.generator_ema if ema and self.generator_ema is not None else self.generator

    @property
    def num_ws(self) -> int:
        """The number of per-layer latents the synthesis network takes (ws [N, num_ws, w_dim])."""
        return self.generator.num_ws

    @property
    def w_avg(self) -> Tensor:
        """The tracked mean w [w_dim], the centre of truncation: the EMA generator's when there is one (it copies
        the generator's)."""
        return self.style_network().mapping.w_avg

    def mapping(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, ema: bool = True) -> Tensor:
        """The per-layer latents ws [N, num_ws, w_dim] of latents z [N, latent_dim] (and labels c [N, c_dim] for a
        conditional network), truncated as :meth:`sample_output` does; ``w_avg`` is not moved. The EMA generator's
        mapping when there is one and ``ema``.

        Raises:
            ConfigurationError: a ``truncation_psi`` that is not a finite number or a negative ``truncation_cutoff``.
        """
        check_truncation(truncation_psi, truncation_cutoff)
        return self.style_network(ema).mapping(
            z.to(self.device), None if c is None else c.to(self.device), truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff,
        )

    def synthesis(self, ws: Tensor, noise_mode: NoiseMode = "const", ema: bool = True) -> Tensor:
        """Images [N, C, H, W] of per-layer latents ws [N, num_ws, w_dim] (each layer its own w: style mixing,
        editing), not clamped, differentiable w.r.t. ``ws`` (projection optimises them). The EMA generator's
        synthesis when there is one and ``ema``."""
        return self.style_network(ema).synthesis(ws.to(self.device), noise_mode=noise_mode)
