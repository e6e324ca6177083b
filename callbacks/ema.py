"""An exponential moving average of the generator's weights (Karras et al. 2018, Yazici et al. 2019).

Only the generator is averaged: not the discriminator, not metric networks (Lightning's ``WeightAveraging`` averages
the whole module and counts both optimizers' steps). The average lives on the GAN module as ``generator_ema``, so
it is saved in and restored from checkpoints with the rest of the weights, and ``sample()``, validation, the
metrics callback and ``gans.sample`` use it by default.
"""

from typing import Any

import lightning as L
import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn
from typing_extensions import override

from gans.errors import ConfigurationError


def ema_beta_from_half_life(batch_size: int, half_life_kimg: float, images_seen: int, rampup: float | None) -> float:
    """StyleGAN2-ADA's EMA decay per generator step: the average's weight on its past halves every
    ``half_life_kimg`` thousand images; with ``rampup`` the half-life is at most ``rampup * images_seen`` (so the
    average follows the generator closely at the start of training, when the early weights are useless).

    Args:
        batch_size: images per generator step, summed over all processes.
        half_life_kimg: half-life of the average in thousands of images.
        images_seen: images the generator has been trained on before this step.
        rampup: ramp-up ratio (StyleGAN2-ADA: 0.05), or ``None`` for none.
    """
    half_life = half_life_kimg * 1000.0
    if rampup is not None:
        half_life = min(half_life, images_seen * rampup)
    return 0.5 ** (batch_size / max(half_life, 1e-8))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """``ema <- beta * ema + (1 - beta) * model`` for parameters; buffers (BatchNorm statistics, counters) are
    copied, since an average of running statistics is not the statistics of the averaged network."""
    ema_params = list(ema.parameters())
    params = [p.detach() for p in model.parameters()]
    if len(ema_params) != len(params):
        raise RuntimeError("generator_ema no longer matches the generator's parameters (did the generator grow?)")
    if ema_params:
        # torch's own EMA step (a fused lerp over all parameters): ema + (1 - beta) * (model - ema).
        get_ema_multi_avg_fn(beta)(ema_params, params, None)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        ema_buffer.copy_(buffer)


class GeneratorEMA(L.Callback):
    """Keeps ``module.generator_ema``, the exponential moving average of ``module.generator``, updated after
    every generator step.

    Give either a constant ``decay`` (e.g. 0.999, as in ProGAN and BigGAN) or, as StyleGAN2 does, a half-life in
    thousands of images with a ramp-up; the half-life form does not depend on the batch size. Every process
    applies the same update to the same (DDP-synchronised) weights, so the average is identical on all ranks.

    Args:
        decay: constant weight of the past per generator step, in [0, 1); ``None`` uses the half-life.
        half_life_kimg: half-life in thousands of images (StyleGAN2: 10).
        rampup: StyleGAN2-ADA's ramp-up ratio; the half-life is at most ``rampup`` times the images the generator has
            been trained on (generator steps times the batch; with ``n_critic`` 1, the module's ``images_seen``, as
            StyleGAN2-ADA's ``cur_nimg``). ``None`` for none.
        start_step: generator steps before the average starts; until then it copies the generator.
    """

    def __init__(
        self,
        decay: float | None = None,
        half_life_kimg: float = 10.0,
        rampup: float | None = 0.05,
        start_step: int = 0,
    ) -> None:
        if decay is not None and not 0.0 <= decay < 1.0:
            raise ConfigurationError(
                f"GeneratorEMA(decay={decay}): expected a value in [0, 1), or None to use half_life_kimg"
            )
        if half_life_kimg <= 0:
            raise ConfigurationError(f"GeneratorEMA(half_life_kimg={half_life_kimg}): expected a positive number")
        if rampup is not None and rampup <= 0:
            raise ConfigurationError(f"GeneratorEMA(rampup={rampup}): expected a positive number or None")
        if start_step < 0:
            raise ConfigurationError(f"GeneratorEMA(start_step={start_step}): expected an integer >= 0")
        self.decay = decay
        self.half_life_kimg = half_life_kimg
        self.rampup = rampup
        self.start_step = start_step
        self._step_before = 0

    @override
    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        # Before Lightning restores a checkpoint, so the restored state dict finds generator_ema to load into.
        if not hasattr(module, "attach_ema"):
            raise TypeError(f"GeneratorEMA needs a gans.GAN module with attach_ema(); got {type(module).__name__}")
        module.attach_ema()

    def beta(self, batch_size: int, step: int) -> float:
        """The decay of the update after generator step ``step`` (1-based), for ``batch_size`` images per step (all
        processes): the generator has been trained on ``(step - 1) * batch_size`` images before it."""
        if step <= self.start_step:
            return 0.0
        if self.decay is not None:
            return self.decay
        return ema_beta_from_half_life(batch_size, self.half_life_kimg, (step - 1) * batch_size, self.rampup)

    @override
    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
        self._step_before = trainer.global_step

    @override
    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, *args) -> None:
        step = trainer.global_step
        if step == self._step_before:  # a discriminator-only step (n_critic > 1)
            return
        real, _ = module.unpack(batch)
        batch_size = real.shape[0] * trainer.world_size
        ema_update(module.generator_ema, module.generator, self.beta(batch_size, step))
