"""What the image-to-image translation variants share (Pix2Pix, CycleGAN, Pix2PixHD, SPADE, SRGAN): models without
z that map a source image to a target image.

A translation model is a :class:`gans.base.GAN` with ``latent_dim=0``: its batches are ``(source, target)`` pairs (a
paired data module's; Pix2PixHD's add an instance map), ``unpack`` returns the target as the real images and the
source as conditioning, ``decode`` feeds the source to the generator and ``critic`` shows the discriminator the source
and the image side by side (the conditional discriminator of pix2pix, pix2pixHD and SPADE; an unconditional variant
overrides it). Nothing here changes the base's training loop: the schedule, the optimizers, the non-finite guard,
checkpoints and resumption are the base's.

What the callbacks ask for:

- ``sample_inputs(n)``: the first ``n`` training sources, kept from the first batches (``FixedExamples``, in every
  checkpoint), for the sample grids; more than are kept are drawn from the attached data module's training set
  (``GANMetrics``: FID compares the translations of training sources with the training targets);
- ``sample_grid``: rows of input | output | target;
- ``metric_images``: the targets of a data item (what FID compares against);
- ``evaluation_terms``: L1, PSNR and SSIM (torchmetrics) of the translations of held-out sources against their targets,
  with the discriminator's scores.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from gans.base import GAN
from gans.errors import ConfigurationError, check_at_least
from gans.outputs import GeneratorOutput


class FixedExamples(nn.Module):
    """The first ``capacity`` (source, target) pairs training saw, on the CPU: the inputs of the sample grids, so that
    successive grids show the same sources. They travel in the state dict as extra state (their count grows from 0,
    so they cannot be buffers of a fixed shape), through checkpoints and ``load_gan``.

    Args:
        capacity: pairs kept.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.source: Tensor | None = None  # [n, C_source, H, W]
        self.target: Tensor | None = None  # [n, C, H', W']

    def __len__(self) -> int:
        return 0 if self.source is None else len(self.source)

    def keep(self, source: Tensor, target: Tensor) -> None:
        """Adds the first pairs of a batch until ``capacity`` are kept."""
        room = self.capacity - len(self)
        if room <= 0:
            return
        source, target = source[:room].detach().cpu().clone(), target[:room].detach().cpu().clone()
        self.source = source if self.source is None else torch.cat([self.source, source])
        self.target = target if self.target is None else torch.cat([self.target, target])

    def get_extra_state(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.source, self.target = state.get("source"), state.get("target")


def as_rgb(images: Tensor) -> Tensor:
    """Images [N, C, H, W] in [-1, 1] as three channels for a grid: grey repeated, RGB as it is, any other count shown
    by its first three channels (padded with -1)."""
    channels = images.shape[1]
    if channels == 3:
        return images
    if channels == 1:
        return images.expand(-1, 3, -1, -1)
    if channels > 3:
        return images[:, :3]
    return torch.cat([images, images.new_full((len(images), 3 - channels, *images.shape[2:]), -1.0)], dim=1)


def psnr(fake: Tensor, real: Tensor) -> Tensor:
    """The peak signal-to-noise ratio in dB of each image [N, C, H, W] in [0, 1] against its target (data range 1),
    averaged over the images, as the papers report it (torchmetrics' default would take one MSE over the whole batch,
    which depends on how images are batched)."""
    return peak_signal_noise_ratio(fake, real, data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3))


def to_unit(images: Tensor) -> Tensor:
    """[-1, 1] to [0, 1], clamped (what PSNR and SSIM are computed on, with a data range of 1)."""
    return ((images.float() + 1) / 2).clamp(0, 1)


class Translation(GAN):
    """Base of the image-to-image translation variants: no z, batches of ``(source, target)``.

    A variant builds ``self.generator`` (source [N, source_channels, H, W] to images [N, channels, H, W] in [-1, 1])
    and ``self.discriminator`` (by default shown ``cat([source, image])``, so built for ``source_channels +
    channels`` input channels), and overrides what differs: its losses, ``critic`` for an unconditional or
    multi-scale discriminator, ``decode`` for a generator with more inputs, ``show_source`` for a source that is not
    an image (a label map).

    Args:
        channels: channels of the target images (linked from the data module's ``image_shape``).
        source_channels: channels of the source images (linked from the data module's ``source_shape``); ``None``:
            as ``channels``.
        image_size: side of the target images (linked from the data module).
        num_fixed: sources (with their targets) kept from the first training batches for the sample grids.
        latent_dim: 0, the only value (no z); in the signature so that the command line's default is 0, not the
            base's 100.
        pack: 1, the only value (pairs are judged one by one); likewise.
        **kwargs: the rest of :class:`gans.base.GAN`'s arguments (``loss``, the optimizers and schedulers, ...).

    Raises:
        ConfigurationError: a size below 1, or ``latent_dim``/``pack`` given.
    """

    batch_kinds = ("paired",)

    def __init__(
        self,
        channels: int = 3,
        source_channels: int | None = None,
        image_size: int = 256,
        num_fixed: int = 8,
        latent_dim: int = 0,
        pack: int = 1,
        **kwargs: Any,
    ) -> None:
        for name, value, only in (("latent_dim", latent_dim, 0), ("pack", pack, 1)):
            if value != only:
                raise ConfigurationError(
                    f"{name}={value}: a translation model has no latent (latent_dim=0) and judges pairs one by one "
                    "(pack=1)"
                )
        check_at_least(1, channels=channels, image_size=image_size, num_fixed=num_fixed)
        if source_channels is not None:
            check_at_least(1, source_channels=source_channels)
        super().__init__(latent_dim=0, **kwargs)
        self.channels, self.image_size = channels, image_size
        self.source_channels = channels if source_channels is None else source_channels
        self.fixed = FixedExamples(num_fixed)

    # ----------------------------------------------------------------------------------------------------------
    # Data and networks
    # ----------------------------------------------------------------------------------------------------------

    def unpack(self, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """``(source, target)`` -> the target [N, C, H, W] as the real images and ``{"source": source}``."""
        source, target = batch[0], batch[1]
        return target, {"source": source}

    def decode(self, network: nn.Module, z: Tensor, source: Tensor, **cond: Tensor) -> GeneratorOutput:
        """The generator's translation of ``source`` (``z`` is empty: [N, 0])."""
        return GeneratorOutput.of(network(source))

    def critic(self, x: Tensor | GeneratorOutput, discriminator: Any = None, source: Tensor | None = None,
               **cond: Tensor) -> Tensor:
        """The conditional discriminator's scores of images given their sources, D(cat[source, x]): [N, ...] (a map of
        patch scores for a PatchGAN; the losses average over it)."""
        if source is None:
            raise TypeError(f"{type(self).__name__}.critic needs the source images the samples translate (source=...)")
        images = GeneratorOutput.images_of(x)
        return (discriminator or self.discriminator)(torch.cat([self.show_condition(source), images], dim=1))

    def show_condition(self, source: Tensor) -> Tensor:
        """The source as the discriminator sees it, next to an image: the source itself (a label-map variant gives
        its one-hot encoding)."""
        return source

    def show_source(self, source: Tensor) -> Tensor:
        """The source as an image in [-1, 1] for the sample grids: the source itself (a label-map variant colours
        its classes)."""
        return source.float()

    def random_source(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` random sources of the shape the generator takes, [n, source_channels, image_size, image_size] in
        [-1, 1]: for shape checks and smoke tests only (translations of noise mean nothing)."""
        size = (n, self.source_channels, self.image_size, self.image_size)
        return (torch.rand(size, generator=generator) * 2 - 1).to(self.device)

    # ----------------------------------------------------------------------------------------------------------
    # Sampling and what the callbacks show and measure
    # ----------------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def sample_output(self, n: int | None = None, z: Tensor | None = None, generator: torch.Generator | None = None,
                      ema: bool = True, **cond: Tensor) -> GeneratorOutput:
        """The translations of ``cond["source"]`` (see :meth:`gans.base.GAN.sample_output`); ``n`` and ``z`` may be
        left out.

        Raises:
            TypeError: no ``source``.
        """
        if "source" not in cond:
            raise TypeError(
                f"{type(self).__name__} translates images: sample(source=...) needs the source images, [N, "
                f"{self.source_channels}, H, W] (python train.py predict translates a folder)"
            )
        if z is None:
            z = self.sample_z(len(cond["source"]))
        return super().sample_output(n, z=z, generator=generator, ema=ema, **cond)

    def sample_inputs(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The first ``n`` kept training sources (fixed from the first batches); when fewer are kept, ``n`` sources of
        the attached data module's training set, drawn with ``generator`` (the metrics' seeded set).

        Raises:
            ConfigurationError: more sources asked than are kept, outside a run with a data module.
        """
        if n <= len(self.fixed):
            return self._inputs(self.fixed.source[:n])
        datamodule = getattr(self.attached_trainer, "datamodule", None)
        if datamodule is None:
            raise ConfigurationError(
                f"num={n}: {type(self).__name__} keeps {len(self.fixed)} sources and {n} were asked: a translation "
                "model translates inputs; give them (sample(source=...), or python train.py predict on a folder)"
            )
        datamodule.setup("fit")
        dataset = datamodule.train_dataloader().dataset
        order = torch.randint(len(dataset), (n,), generator=generator).tolist()
        return self._inputs(torch.stack([dataset[i][0] for i in order]))

    def _inputs(self, source: Tensor) -> dict[str, Tensor]:
        return {"z": self.sample_z(len(source)), "source": source.to(self.device)}

    def sample_grid(self, inputs: dict[str, Tensor], images: Tensor, nrow: int) -> tuple[Tensor, int]:
        """Rows of input | output | target (the target when the inputs are the kept ones), as images in [-1, 1], and
        the images per row."""
        source = inputs["source"]
        columns = [as_rgb(self.show_source(source).to(images.device)), as_rgb(images)]
        kept = self.fixed.source
        if kept is not None and len(source) <= len(kept) and torch.equal(source.cpu(), kept[: len(source)]):
            columns.append(as_rgb(self.fixed.target[: len(source)].to(images.device)))
        size = images.shape[-2:]
        columns = [F.interpolate(c.float(), size=size, mode="nearest") if c.shape[-2:] != size else c for c in columns]
        return torch.stack(columns, dim=1).flatten(0, 1), len(columns)  # [N * columns, 3, H, W]

    def metric_images(self, item: Any) -> Tensor:
        """The real images of a data item (or collated items) that FID compares translations against: the targets."""
        return item[1]

    def evaluation_terms(self, real: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """L1, PSNR (dB, per image, then averaged) and SSIM of the translations of held-out sources against their targets
        (images mapped to [0, 1], data range 1, torchmetrics' Gaussian-window SSIM), with D's loss and mean scores of
        both."""
        fake = self.sample(**cond)
        terms = {
            "l1": (fake.float() - real.float()).abs().mean(),
            "psnr": psnr(to_unit(fake), to_unit(real)),
            "ssim": structural_similarity_index_measure(to_unit(fake), to_unit(real), data_range=1.0),
        }
        return {**terms, **self.evaluation_d_terms(real, fake, **cond)}

    def evaluation_d_terms(self, real: Tensor, fake: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """D's loss (``d_loss``) and mean scores (``d_real``, ``d_fake``) of held-out pairs and their translations,
        comparable with the training values: the adversarial loss of ``critic``'s scores here; a variant whose
        training loss is not that (one per scale) gives its own."""
        d_real, d_fake = self.critic(real, **cond), self.critic(fake, **cond)
        return {"d_loss": self.d_adversarial(d_real, d_fake), "d_real": d_real.mean(), "d_fake": d_fake.mean()}

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """The translations of a batch of sources (a tensor, or a tuple whose first entry is the sources)."""
        source = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.sample(source=source)

    # ----------------------------------------------------------------------------------------------------------
    # Training
    # ----------------------------------------------------------------------------------------------------------

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        if len(self.fixed) < self.fixed.capacity:
            real, cond = self.unpack(batch)
            self.fixed.keep(cond["source"], real)
