"""Augmentation of everything the discriminator sees, for any GAN variant: ``ADA`` and ``DiffAugment``.

Both register, when fitting starts, a forward pre-hook on the discriminator (and on every other network its optimizer
steps whose name starts with ``discriminator``, e.g. CycleGAN's ``discriminator_a``) that augments its input while it
is in training mode. So real and fake images are augmented alike, in the discriminator's and the generator's phases,
and inside the R1/R2 penalties, whose gradient is then taken through the augmentation with respect to the clean
images, as in the official StyleGAN2-ADA code; validation and test (eval mode) see clean images.

What the hook handles:

- PacGAN (``module.pack`` m > 1): the input holds m samples stacked on the channels; each is augmented on its own.
- Inputs that are not RGB or grayscale images, such as a translation model's source and image side by side: geometric
  transforms (and cutout) are the same for all channels, so both halves move together; color transforms would also
  recolor the source, and are refused with a ``ConfigurationError``.
- Refused with a ``ConfigurationError`` naming the variant: a discriminator taking something other than one batch of
  images (MSG-GAN's pyramid, 2-D points), an auto-encoder discriminator (BEGAN: its output would be compared with the
  clean input), and variants that run their discriminators' layers without its ``forward`` (Pix2PixHD, SPADE, LAPGAN),
  noticed after the first discriminator step.
"""

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from gans.augment import PRESETS, AugmentPipe
from gans.augment import DiffAugment as DiffAugmentModule
from gans.errors import ConfigurationError

__all__ = ["ADA", "DiffAugment"]


class DiscriminatorAugmentation(L.Callback):
    """Base of the augmentation callbacks: hooks ``augmentation`` in front of the discriminators while they train.

    Args:
        augmentation: the module applied to each sample batch [N, C, H, W]; its ``changes_color()`` says whether it
            needs 1 or 3 channels, its ``min_size()`` the smallest image side it takes.
        description: how messages name the callback (``"ADA(preset='bgc')"``).
    """

    def __init__(self, augmentation: nn.Module, description: str) -> None:
        self._augmentation = augmentation
        self._description = description
        self._handles: list[RemovableHandle] = []
        self._networks: list[nn.Module] = []
        self._variant = ""
        self._pack = 1
        self._fired = False  # a discriminator's forward ran in training mode

    @property
    def augmentation(self) -> nn.Module:
        """The augmentation module (``AugmentPipe`` or ``gans.augment.DiffAugment``)."""
        return self._augmentation

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._variant = type(pl_module).__name__
        self._pack = int(getattr(pl_module, "pack", 1))
        names = [name for names in pl_module.optimized_networks().values() if "discriminator" in names for name in names]
        self._networks = [getattr(pl_module, name) for name in names if name.startswith("discriminator")]
        self._fired = False
        for network in self._networks:
            self._handles.append(network.register_forward_pre_hook(self._augment_input))
            self._handles.append(network.register_forward_hook(self._check_output))

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # The module may be sampled, validated or saved after fitting: it keeps no trace of the callback.
        for handle in self._handles:
            handle.remove()
        self._handles, self._networks = [], []

    def _augment_input(self, network: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not network.training:
            return None
        x = args[0] if args else None
        if not isinstance(x, Tensor) or x.dim() != 4:
            what = f"a tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
            raise ConfigurationError(
                f"{self._description}: {self._variant}'s discriminator takes {what}, not one batch of images "
                "[N, C, H, W], so it cannot be augmented in front of it"
            )
        n, channels, height, width = x.shape
        per_sample = channels // self._pack
        if self._augmentation.changes_color() and per_sample not in (1, 3):
            raise ConfigurationError(
                f"{self._description}: {self._variant}'s discriminator sees {per_sample} channels per sample (a "
                "translation model's source and image side by side?); color transforms take RGB or grayscale images "
                "and would recolor the source too: choose transforms without color (ADA's preset='bg', DiffAugment's "
                "policy='translation,cutout')"
            )
        if min(height, width) < self._augmentation.min_size():
            raise ConfigurationError(
                f"{self._description}: {self._variant}'s discriminator sees images of {height}x{width} pixels; the "
                f"augmentation takes images of at least {self._augmentation.min_size()} pixels a side (the image "
                "filter of the presets with 'f'): choose a preset without it"
            )
        self._fired = True
        # PacGAN's m samples per input: augmented one by one (unpacked, augmented, packed again).
        samples = x.reshape(n * self._pack, per_sample, height, width)
        augmented = self._augmentation(samples).reshape(n, channels, height, width)
        return (augmented, *args[1:])

    def _check_output(self, network: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if network.training and isinstance(output, Tensor) and output.shape == args[0].shape:
            raise ConfigurationError(
                f"{self._description}: {self._variant}'s discriminator returns an image of its input's shape (an "
                "auto-encoder, as BEGAN's): it would be scored against the clean input, not the augmented one"
            )

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._fired:
            return
        trained = any(p.grad is not None for network in self._networks for p in network.parameters())
        if trained:  # a discriminator step ran without the discriminator's forward: the hook can never apply
            raise ConfigurationError(
                f"{self._description}: {self._variant} runs its discriminator's layers directly, not through its "
                "forward, so the augmentation would never apply; this variant cannot be augmented by a callback"
            )


class DiffAugment(DiscriminatorAugmentation):
    """DiffAugment (Zhao et al. 2020) in front of the discriminator: ``gans.augment.DiffAugment`` applied to every real
    and fake batch the discriminator sees while training, with the same random transform per sample for all channels.

    The paper uses ``"color,translation,cutout"`` with 10% or less of the data and ``"translation"`` alone (or with
    ``cutout``) on full data sets; add to a config:

    .. code-block:: yaml

        trainer:
          callbacks:
            - class_path: callbacks.DiffAugment
              init_args: {policy: color,translation,cutout}

    Args:
        policy: comma-separated policies: ``color`` (brightness, saturation, contrast), ``translation`` (up to 1/8 of
            the image), ``cutout`` (a zeroed square of half the image side).

    Raises:
        ConfigurationError: an unknown policy.
    """

    def __init__(self, policy: str = "color,translation,cutout") -> None:
        super().__init__(DiffAugmentModule(policy), f"DiffAugment(policy={policy!r})")


class ADA(DiscriminatorAugmentation):
    """Adaptive discriminator augmentation (Karras et al. 2020): the official ``AugmentPipe`` in front of the
    discriminator, with a probability p that rises when the discriminator over-fits and falls otherwise.

    The over-fitting measure is r_t = E[sign(D(real))] over the last ``interval`` iterations, the mean of the ``D``
    phase's ``d_real_sign`` terms (``on_train_batch_end``'s ``outputs``), summed over all processes. Every
    ``interval`` iterations p moves by sign(r_t - target) * images / (kimg * 1000), ``images`` being the real images
    shown in those iterations on all processes (batch_size * interval with one discriminator step per iteration, the
    official formula), so p can go from 0 to 1 in ``kimg`` thousand images; it is clamped to [0, 1]. Every process
    computes the same p. As the official code, the signs are summed on the device and the processes synchronise once
    per adjustment (one all-reduce of two numbers), not every batch. p is logged as ``train/ada_p`` (every batch) and
    r_t as ``train/ada_rt`` (at each adjustment). p and the interval's partial sums are in the callback's state: a
    resumed run continues exactly on one process; on several, the partial sums saved are rank 0's, so the first r_t
    after a resume between two adjustments leaves out the other processes' batches before the checkpoint.

    The paper's defaults: ``preset="bgc"``, p from 0, target 0.6, interval 4, 500 kimg. Add to a config:

    .. code-block:: yaml

        trainer:
          callbacks:
            - class_path: callbacks.ADA
              init_args: {preset: bgc, target: 0.6}

    Args:
        preset: the official pipeline (``gans.augment.PRESETS``): ``blit``, ``geom``, ``color``, ``filter``,
            ``noise``, ``cutout``, ``bg``, ``bgc``, ``bgcf``, ``bgcfn``, ``bgcfnc``.
        p: the probability at the start (the official ``--p`` with ``fixed``).
        target: the target value of r_t (the official ``--target``, 0.6).
        interval: iterations between two adjustments (``ada_interval``, 4).
        kimg: thousands of images over which p can move by 1 (``ada_kimg``, 500).
        fixed: keep p as given (the official ``--aug=fixed``); otherwise it adapts.

    Raises:
        ConfigurationError: an unknown preset, p or target outside [0, 1], interval below 1 or kimg not positive; when
            adapting, a variant whose discriminator phase reports no ``d_real_sign``.
    """

    def __init__(
        self,
        preset: str = "bgc",
        p: float = 0.0,
        target: float = 0.6,
        interval: int = 4,
        kimg: float = 500.0,
        fixed: bool = False,
    ) -> None:
        if preset not in PRESETS:
            raise ConfigurationError(f"ADA(preset={preset!r}): expected one of {', '.join(PRESETS)}", "preset")
        for name, value in (("p", p), ("target", target)):
            if not 0.0 <= value <= 1.0:
                raise ConfigurationError(f"ADA({name}={value}): expected a probability in [0, 1]", name)
        if interval < 1:
            raise ConfigurationError(f"ADA(interval={interval}): expected an integer >= 1 (iterations)", "interval")
        if not kimg > 0:
            raise ConfigurationError(f"ADA(kimg={kimg}): expected a positive number of thousands of images", "kimg")
        pipe = AugmentPipe(**PRESETS[preset]).requires_grad_(False)
        pipe.p.fill_(p)
        super().__init__(pipe, f"ADA(preset={preset!r})")
        self.target, self.interval, self.kimg, self.fixed = target, interval, kimg, fixed
        # Sum and count of d_real_sign on this process since the last adjustment, on the module's device, and where that
        # adjustment was.
        self._sign_sums = torch.zeros(2, dtype=torch.float64)
        self._restored_sums: tuple[float, int] | None = None
        self._adjusted_at_step = 0
        self._adjusted_at_images: int | None = None

    @property
    def p(self) -> float:
        """The current augmentation probability."""
        return float(self._augmentation.p)

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # Spawned processes (ddp_spawn) receive the callback through torch.multiprocessing, which moves CPU tensors
        # to memory shared by all of them: each needs a p of its own, or every process's adjustment would hit all.
        self._augmentation.p = self._augmentation.p.clone()

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._augmentation.to(pl_module.device)
        self._sign_sums = torch.zeros(2, dtype=torch.float64, device=pl_module.device)
        if self._restored_sums is not None and trainer.global_rank == 0:  # the checkpoint's sums are rank 0's
            self._sign_sums[0], self._sign_sums[1] = self._restored_sums
        self._restored_sums = None
        if self._adjusted_at_images is None:  # a fresh run (a resumed one restored it)
            self._adjusted_at_images = int(pl_module.images_seen)
            self._adjusted_at_step = trainer.global_step

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not self.fixed:
            self._accumulate(trainer, pl_module, outputs)
            if trainer.global_step - self._adjusted_at_step >= self.interval:
                self._adjust(trainer, pl_module)
        pl_module.log("train/ada_p", self._augmentation.p.detach().clone())  # a tensor: no host sync per batch

    def _accumulate(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any) -> None:
        sign = outputs.get("d_real_sign") if isinstance(outputs, Mapping) else None
        if sign is not None:
            self._sign_sums += torch.stack([sign.detach().to(self._sign_sums), self._sign_sums.new_ones(())])

    def _adjust(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The one synchronisation per interval: every process then holds the same sums and computes the same p.
        sign_sum, sign_count = trainer.strategy.reduce(self._sign_sums.clone(), reduce_op="sum").tolist()
        if sign_count == 0:
            raise ConfigurationError(
                f"{self._description}: {self._variant}'s discriminator phase reports no d_real_sign (the mean sign of "
                "D's scores on real images, ADA's over-fitting measure r_t), so p cannot adapt; use "
                "ADA(fixed=True, p=...) for a fixed probability"
            )
        r_t = sign_sum / sign_count
        images = int(pl_module.images_seen) - self._adjusted_at_images
        step = float(torch.sign(torch.tensor(r_t - self.target))) * images / (self.kimg * 1000)
        p = self._augmentation.p
        p.copy_((p + step).clamp(0.0, 1.0))
        pl_module.log("train/ada_rt", r_t)
        self._sign_sums.zero_()
        self._adjusted_at_step, self._adjusted_at_images = trainer.global_step, int(pl_module.images_seen)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "p": self.p,
            "sign_sum": float(self._sign_sums[0]),
            "sign_count": int(self._sign_sums[1]),
            "adjusted_at_step": self._adjusted_at_step,
            "adjusted_at_images": self._adjusted_at_images,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.fixed:  # a fixed p is the configured one, even when resuming an adaptive run
            rank_zero_info(f"ADA(fixed=True): p stays {self.p}, not the checkpoint's {state_dict['p']}")
            return
        self._augmentation.p.fill_(state_dict["p"])
        self._restored_sums = (state_dict["sign_sum"], state_dict["sign_count"])
        self._adjusted_at_step = state_dict["adjusted_at_step"]
        self._adjusted_at_images = state_dict["adjusted_at_images"]
