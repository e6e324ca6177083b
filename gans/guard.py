"""The non-finite guard and gradient clipping of a GAN's optimizer steps.

A GAN that diverges does so in one step: a loss or a gradient becomes inf or NaN, the optimizer writes it into the
weights, and every later step and checkpoint is garbage. The guard checks each step's loss terms and gradients
before the step is applied, with one device sync, and either stops the run (the checkpoints keep the last good
state) or skips that step. Or, as NVIDIA's StyleGAN2-ADA code does before every step (``training_loop.py``), it checks
nothing and sanitises the final gradients: NaN becomes 0 and +-inf +-1e5, so an overflow in a float16 layer costs one
poor step instead of the run. Under DDP every process takes the same decision; under fp16 mixed precision the
GradScaler owns overflow (it must skip steps while it calibrates its scale), so such steps are only counted.
"""

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, get_args

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.optim import Optimizer

from gans.errors import ConfigurationError


def params_with_grad(optimizer: Optimizer) -> list[nn.Parameter]:
    """The parameters of ``optimizer`` that have a gradient."""
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


def grad_scaler(trainer: L.Trainer | None) -> torch.amp.GradScaler | None:
    """The precision plugin's GradScaler (fp16 mixed precision), or None."""
    return getattr(trainer.precision_plugin, "scaler", None) if trainer is not None else None


#: What a non-finite loss term or gradient does (see :class:`StepGuard`), and its values.
NonFinite = Literal["stop", "skip", "sanitize"]
NONFINITE_MODES: tuple[str, ...] = get_args(NonFinite)
#: What ``nonfinite="sanitize"`` writes for NaN and +-inf gradients (stylegan2-ada-pytorch, ``training_loop.py``).
SANITIZED_NAN, SANITIZED_INF = 0.0, 1e5


class StepGuard:
    """Checks and clips the optimizer steps of a GAN.

    Args:
        nonfinite: ``"stop"`` raises ``FloatingPointError`` naming the loss term or parameter, the network and the
            iteration before the step is applied; ``"skip"`` drops that step, counts it and goes on; ``"sanitize"``
            checks nothing (no sync) and replaces, in the gradients about to be applied, NaN by 0 and +-inf by
            +-1e5 (:meth:`finalize`, the official StyleGAN2-ADA behaviour).
        skip_limit: steps of one network skipped in a row after which training stops anyway; 0 never stops.
        clip_grad_norm: the largest L2 norm of one step's gradient (all parameters of the optimizer together), or
            ``None`` for no clipping.

    Raises:
        ConfigurationError: for a value outside those ranges.
    """

    def __init__(self, nonfinite: str = "stop", skip_limit: int = 100, clip_grad_norm: float | None = None) -> None:
        if nonfinite not in NONFINITE_MODES:
            expected = ", ".join(map(repr, NONFINITE_MODES))
            raise ConfigurationError(f"nonfinite={nonfinite!r}; expected one of {expected}")
        if skip_limit < 0:
            raise ConfigurationError(f"skip_limit={skip_limit} must be >= 0 (0: never stop for skipped steps)")
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ConfigurationError(f"clip_grad_norm={clip_grad_norm} must be positive (or None: no clipping)")
        self.nonfinite, self.skip_limit, self.clip_grad_norm = nonfinite, skip_limit, clip_grad_norm
        self.skipped_steps = 0  # optimizer steps dropped for non-finite values, all networks
        self._in_a_row: dict[str, int] = {}

    def check(
        self,
        trainer: L.Trainer,
        optimizer: Optimizer,
        network: str,
        terms: Mapping[str, Tensor],
        total: str,
        named_parameters: Callable[[], Iterable[tuple[str, nn.Parameter]]],
        where: Callable[[], str],
    ) -> bool:
        """Whether the loss terms and the gradients of ``optimizer``'s parameters are all finite, on every process.
        One device sync per step; names are only looked up once something is wrong. With ``nonfinite="stop"`` a
        failure raises; with ``"skip"`` it is counted and ``False`` returned (the caller drops the step).

        Args:
            trainer: the running trainer (world size, strategy, precision plugin).
            optimizer: the (unwrapped) optimizer about to step.
            network: the name of what it optimises, for messages and the skip counters.
            terms: the step's loss terms; ``terms[total]`` is what was minimised.
            total: the key of the minimised term.
            named_parameters: the module's ``named_parameters``, to name a parameter with a non-finite gradient.
            where: the position in training, for messages (``"at iteration 12 (...)"``), asked only on a failure.

        Raises:
            FloatingPointError: with ``nonfinite="stop"``, or after ``skip_limit`` skipped steps in a row.
        """
        if self.nonfinite == "sanitize":  # the gradients are made finite where they are final (sanitize)
            return True
        params = params_with_grad(optimizer)
        flags = [torch.stack([t.detach().float() for t in terms.values()]).isfinite().all()]
        # Under fp16 mixed precision the GradScaler owns overflow: while it calibrates, scaled gradients (and input
        # gradients inside penalties) overflow, and it skips those steps and lowers its scale. Such steps are left to
        # it (counted; stopped only after skip_limit in a row); the gradients are not checked.
        scaled = grad_scaler(trainer) is not None
        if params and not scaled:
            flags.append(torch.nn.utils.get_total_norm([p.grad for p in params]).isfinite())
        finite = torch.stack(flags).all()
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            # The losses differ between processes: all of them must skip or stop together.
            finite = finite.to(trainer.strategy.root_device, torch.int32)
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if bool(finite):
            self._in_a_row[network] = 0
            return True

        at = where()
        bad_terms = {name: float(t.detach()) for name, t in terms.items() if not torch.isfinite(t).all()}
        bad_grads = [name for name, p in named_parameters() if p.grad is not None and not p.grad.isfinite().all()]
        if bad_terms:
            name, value = next(iter(bad_terms.items()))
            what = f"train/{name} became {value} in the {network}'s step {at}; non-finite terms: {bad_terms}"
        elif bad_grads:
            what = (
                f"the {network}'s gradient of train/{total} = {float(terms[total]):.4g} became non-finite {at}, "
                f"first in {bad_grads[0]} ({len(bad_grads)} parameter tensors)"
            )
        else:
            what = f"a non-finite loss or gradient on another process in the {network}'s step {at}"
        if self.nonfinite == "skip" or scaled:
            self.skipped_steps += 1
            self._in_a_row[network] = in_a_row = self._in_a_row.get(network, 0) + 1
            if not self.skip_limit or in_a_row < self.skip_limit:
                if scaled:  # the scaler sees the non-finite gradients, skips the step and lowers its scale
                    return True
                rank_zero_warn(f"Skipped the step: {what}. Steps skipped so far: {self.skipped_steps}.")
                return False
            what += f"; {in_a_row} of the {network}'s steps in a row were skipped (skip_limit={self.skip_limit})"
        raise FloatingPointError(
            f"{what}. Training stopped before this step was applied: the last checkpoint holds the last good state. "
            "Lower the learning rates, check the data, or pass --model.init_args.nonfinite=skip to skip such steps."
        )

    def finalize(self, trainer: L.Trainer, optimizer: Optimizer) -> Tensor | None:
        """Sanitizes (``nonfinite="sanitize"``) and clips (``clip_grad_norm``) the gradients of ``optimizer``'s
        parameters; returns the norm before clipping, or ``None`` without clipping. Call it where the gradients are
        final: after the all-reduce of the processes (so that every process writes the same values) and the
        GradScaler's unscaling (``LightningModule.on_before_optimizer_step``).

        Under fp16 the GradScaler must see the gradients before they are sanitized: its overflow check skips the step
        and lowers the scale, which a sanitized overflow would hide (the scale would stay too high and every step
        apply the sanitized values). Lightning unscales before this hook, except for a fused optimizer, which it
        leaves to unscale in its step; such an optimizer is unscaled here first, and ``GradScaler.step`` then tells
        it that its gradients are unscaled and whether they overflowed."""
        if self.nonfinite != "sanitize" and self.clip_grad_norm is None:
            return None
        scaler = grad_scaler(trainer)
        if scaler is not None and optimizer.defaults.get("fused"):
            scaler.unscale_(optimizer)
        if self.nonfinite == "sanitize":
            for param in params_with_grad(optimizer):
                torch.nan_to_num_(param.grad, nan=SANITIZED_NAN, posinf=SANITIZED_INF, neginf=-SANITIZED_INF)
        if self.clip_grad_norm is None:
            return None
        return torch.nn.utils.clip_grad_norm_(params_with_grad(optimizer), self.clip_grad_norm)

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps, "in_a_row": dict(self._in_a_row)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.skipped_steps = state.get("skipped_steps", 0)
        self._in_a_row = dict(state.get("in_a_row", {}))
