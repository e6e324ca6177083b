"""Pix2PixHD (Wang et al. 2018): a coarse-to-fine generator, three PatchGANs at halving scales, and the
discriminator feature-matching loss, with the VGG perceptual loss as an option.

The details follow the reference code (NVIDIA/pix2pixHD, ``models/pix2pixHD_model.py``, ``train.py`` and
``options/*.py``):

- input: a label map as the one-hot encoding of its classes (``--label_nc 35`` for Cityscapes) or an image
  (``--label_nc 0``), with the instance-boundary map as one more channel (``get_edges``: a pixel is on a boundary when
  one of its 4 neighbours belongs to another instance); G sees that, D sees it stacked with the image;
- losses: least squares (LSGAN, the reference's default), the discriminator's loss halved (``(D_fake + D_real) *
  0.5``), G's ``sum_k MSE(D_k(G(x)), 1) + lambda_feat * FM + lambda_vgg * VGG`` with FM the L1 distance of D's
  intermediate features on fake and real pairs weighted ``4 / (n_layers_D + 1)`` per layer and ``1 / num_D`` per
  discriminator, and VGG relu1_1 .. relu5_1 weighted 1/32 .. 1 (``gans.perceptual.VGGLoss.pix2pixhd``);
- Adam(2e-4, betas (0.5, 0.999)), a constant rate for 100 epochs then a linear decay to zero over 100 (the reference
  steps the rate by lr / niter_decay after each epoch; ``gans.optim.LinearDecay`` is pix2pix's form of that policy);
- the coarse-to-fine schedule (section 3.2) as two runs: ``stage="global"`` trains the global generator G1 alone on
  images of half the final side; ``stage="local"`` trains the local enhancer (``gans.nets.LocalEnhancer``), its G1
  loaded from the first run's checkpoint (``global_checkpoint``, the reference's ``--load_pretrain``), the enhancer
  alone for ``fix_global_epochs`` epochs (``--niter_fix_global``), then all of it.

Not done: the instance-level feature embedding of section 3.4 (the encoder E with instance-wise average pooling, the
k-means clusters of its features and the interactive editing they allow; the paper calls it optional, for
multimodal synthesis). Two differences in the schedule: when G1 joins the training after ``fix_global_epochs``, the
reference builds a new Adam for all of G, which restarts the enhancer's moment estimates too; here G1's parameters
start theirs and the enhancer's go on; and the reference's ``--load_pretrain`` loads the first stage's discriminator
too (the layers that match: its 512p run has two scales, the 1024p run three); here the discriminator of the local
stage starts from its initial weights.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import default_collate

from gans.errors import ConfigurationError, MissingFileError
from gans.loading import load_gan
from gans.losses import feature_matching
from gans.nets import ImageDiscriminator, TranslationGenerator
from gans.outputs import GeneratorOutput
from gans.perceptual import VGGLoss
from gans.translation import Translation

#: The reference's default generator (``--netG global``); the local stage names ``gans.nets.LocalEnhancer``.
GLOBAL_GENERATOR = {"class_path": "gans.nets.pix2pixhd.GlobalGenerator", "init_args": {}}
#: Three PatchGANs of 3 layers, instance norm, padding 2 (``--num_D 3`` as the paper; the code's default is 2).
MULTISCALE_DISCRIMINATOR = {"class_path": "gans.nets.patchgan.MultiscaleDiscriminator", "init_args": {"num_d": 3}}
#: 100 epochs at the initial rate, 100 of linear decay (``--niter 100 --niter_decay 100``).
LINEAR_DECAY = {"class_path": "gans.optim.LinearDecay", "init_args": {"constant": 100, "decay": 100}}

#: The reference's GANLoss for LSGAN is MSE(D(G(x)), 1), twice the library's least-squares generator loss (Mao et
#: al.'s 1/2); lambda_feat and lambda_vgg are relative to the reference's, so its adversarial term is restored.
_REFERENCE_G_GAIN = {"least_squares": 2.0}


def one_hot_labels(labels: Tensor, num_classes: int) -> Tensor:
    """A label map as the one-hot encoding of its classes, the reference's ``encode_input``.

    Args:
        labels: class indices [N, 1, H, W] (any dtype holding whole numbers).
        num_classes: classes K.

    Returns:
        Float [N, K, H, W], 1 at each pixel's class, 0 elsewhere.

    Raises:
        ConfigurationError: a class outside ``0 .. num_classes - 1``.
    """
    indices = labels[:, 0].round().long()  # [N, H, W]
    # Not on the meta device (shapes only: the configs' tests size the networks so), where values cannot be read.
    if indices.numel() and not indices.is_meta and (int(indices.min()) < 0 or int(indices.max()) >= num_classes):
        raise ConfigurationError(
            f"source_channels={num_classes}: the label map holds classes {int(indices.min())}..{int(indices.max())}, "
            f"outside 0..{num_classes - 1} (source_channels is the class count of a label-map source)"
        )
    one_hot = torch.zeros(indices.shape[0], num_classes, *indices.shape[1:], device=indices.device)
    return one_hot.scatter_(1, indices[:, None], 1.0)  # F.one_hot would read the values on the meta device too


def instance_edges(instance: Tensor) -> Tensor:
    """The instance-boundary map of the reference's ``get_edges``: 1 where a pixel's right, left, lower or upper
    neighbour has another instance id, else 0 (both pixels of a boundary are marked).

    Args:
        instance: instance ids [N, 1, H, W].

    Returns:
        Float [N, 1, H, W] of 0 and 1.
    """
    edge = torch.zeros_like(instance, dtype=torch.bool)
    across = instance[..., :, 1:] != instance[..., :, :-1]  # [N, 1, H, W - 1]
    down = instance[..., 1:, :] != instance[..., :-1, :]  # [N, 1, H - 1, W]
    edge[..., :, 1:] |= across
    edge[..., :, :-1] |= across
    edge[..., 1:, :] |= down
    edge[..., :-1, :] |= down
    return edge.float()


def class_colours(num_classes: int) -> Tensor:
    """A fixed colour in [-1, 1] for each class, [K, 3], to show label maps in the sample grids."""
    return torch.rand(num_classes, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1


class Pix2PixHD(Translation):
    """Pix2PixHD: label maps (or images), with optional instance boundaries, to images.

    The model's sources are what the data module's batches ``(source, target[, instance])`` hold, with the boundary
    map of the instance map as one more channel when ``instance_maps`` (``with_edges`` adds it; ``sample(source=...)``
    takes that form): a label map [N, 1, H, W] of class indices (``source_type="labels"``, the data module's
    ``PairedImageDataModule(source_type="labels")``) or an image [N, source_channels, H, W] in [-1, 1].

    Args:
        channels: channels of the target images.
        source_channels: channels of an image source, or the class count K of a label map (both linked from the data
            module's ``source_shape``: its ``num_classes`` for label maps).
        image_size: side of the target images (the square crops of the data module; the paper's Cityscapes images are
            2048 x 1024, 1024 x 512 for the global stage).
        source_type: ``"labels"``: the sources are class indices, one-hot encoded to K channels; ``"image"``: used as
            they are.
        instance_maps: batches carry an instance map, whose boundaries G and D see as one more input channel.
        generator: ``factory(input_channels, channels, image_size)``, ``input_channels`` being K or the image
            channels, plus one with ``instance_maps``: by default ``gans.nets.GlobalGenerator`` (``features``,
            ``n_downsampling``, ``n_blocks``); ``stage="local"`` needs ``gans.nets.LocalEnhancer``.
        discriminator: ``factory(input_channels + channels, image_size)`` with a ``features(x)`` method that returns
            every layer's activations per scale: by default ``gans.nets.MultiscaleDiscriminator`` (``num_d`` 3,
            ``features`` 64, ``n_layers`` 3, instance norm, padding 2).
        lambda_feat: weight of the discriminator feature-matching loss (10); 0 is off.
        lambda_vgg: weight of the VGG perceptual loss (10); 0 is off.
        vgg_weights: VGG19's weights for the perceptual loss (:class:`gans.perceptual.VGGFeatures`): ``"imagenet"``
            (torchvision's, downloaded once into torch's hub cache), a path to a saved state dict, or ``None`` for
            random weights (tests only). Loaded when fitting starts: weights that cannot be found stop the run then,
            with what to do; ``lambda_vgg=0`` needs none.
        stage: ``"global"`` trains the generator whole (the global generator, on images of half the final side);
            ``"local"`` trains a local enhancer whose G1 comes from ``global_checkpoint``.
        global_checkpoint: with ``stage="local"``: the global stage's checkpoint (``.ckpt``) or exported generator
            (``.safetensors``), whose generator becomes G1 when a new run starts (a resumed run has it in its own
            checkpoint); ``None``: G1 starts from its initial weights.
        fix_global_epochs: with ``stage="local"``: the first epochs during which G1 is kept fixed and the enhancer
            alone is trained (the reference's ``niter_fix_global``; its 1024p scripts use 10 or 20).
        loss: adversarial loss (``least_squares``, the reference's LSGAN).
        g_scheduler: the generator's learning-rate schedule (constant then linear decay, stepped per epoch); ``None``:
            a constant rate.
        d_scheduler: the discriminator's.
        scheduler_interval: ``"epoch"``, as the paper counts.
        **kwargs: the rest of :class:`gans.translation.Translation`'s and :class:`gans.base.GAN`'s arguments
            (``num_fixed``, the optimizers: Adam(2e-4, betas (0.5, 0.999)) by default).

    Raises:
        ConfigurationError: a stage and generator that do not go together, stage-local arguments with
            ``stage="global"``, a negative weight, or R1/R2 penalties (scores of several scales are not one score).
    """

    def __init__(
        self,
        channels: int = 3,
        source_channels: int | None = None,
        image_size: int = 512,
        source_type: Literal["image", "labels"] = "image",
        instance_maps: bool = False,
        generator: TranslationGenerator = GLOBAL_GENERATOR,
        discriminator: ImageDiscriminator = MULTISCALE_DISCRIMINATOR,
        lambda_feat: float = 10.0,
        lambda_vgg: float = 10.0,
        vgg_weights: str | None = "imagenet",
        stage: Literal["global", "local"] = "global",
        global_checkpoint: str | None = None,
        fix_global_epochs: int = 0,
        loss: str = "least_squares",
        g_scheduler: LRSchedulerCallable = LINEAR_DECAY,
        d_scheduler: LRSchedulerCallable = LINEAR_DECAY,
        scheduler_interval: Literal["step", "epoch"] = "epoch",
        **kwargs: Any,
    ) -> None:
        for name, value, accepted in (("source_type", source_type, ("image", "labels")),
                                      ("stage", stage, ("global", "local"))):
            if value not in accepted:
                raise ConfigurationError(f"{name}={value!r}; expected one of {', '.join(map(repr, accepted))}")
        for name, value in (("lambda_feat", lambda_feat), ("lambda_vgg", lambda_vgg),
                            ("fix_global_epochs", fix_global_epochs)):
            if value < 0:
                raise ConfigurationError(f"{name}={value} must be >= 0 (0 is off)")
        for name in ("r1_gamma", "r2_gamma"):
            if kwargs.get(name, 0):
                raise ConfigurationError(f"{name}={kwargs[name]}: Pix2PixHD has no R1/R2 penalty (its discriminator "
                                         "gives scores at several scales)")
        if stage == "global" and (global_checkpoint is not None or fix_global_epochs):
            raise ConfigurationError(
                f"global_checkpoint={global_checkpoint!r} and fix_global_epochs={fix_global_epochs} belong to "
                "stage='local' (the local enhancer's G1 and its fixed epochs); the global stage trains G1 from scratch",
                "global_checkpoint" if global_checkpoint is not None else "fix_global_epochs",
            )
        if fix_global_epochs and global_checkpoint is None:
            raise ConfigurationError(f"fix_global_epochs={fix_global_epochs} keeps G1 fixed, but it was not trained: "
                                     "give global_checkpoint (the global stage's checkpoint)")
        super().__init__(channels=channels, source_channels=source_channels, image_size=image_size, loss=loss,
                         g_scheduler=g_scheduler, d_scheduler=d_scheduler, scheduler_interval=scheduler_interval,
                         **kwargs)
        self.source_type, self.instance_maps, self.stage = source_type, instance_maps, stage
        self.lambda_feat, self.lambda_vgg = lambda_feat, lambda_vgg
        self.global_checkpoint, self.fix_global_epochs = global_checkpoint, fix_global_epochs
        inputs = self.source_channels + int(instance_maps)
        self.generator = self.build_network("generator", generator, inputs, self.channels, self.image_size)
        self.discriminator = self.build_discriminator(discriminator, inputs + self.channels, self.image_size)
        if stage == "local" and not callable(getattr(self.generator, "load_global_generator", None)):
            raise ConfigurationError(
                f"stage='local' trains a local enhancer, and the generator is a {type(self.generator).__name__}: set "
                "generator: {class_path: gans.nets.LocalEnhancer}", "stage",
            )
        # A plain object, not a submodule: VGG19's 80 MB stay out of checkpoints (gans.perceptual).
        self.vgg = VGGLoss.pix2pixhd(vgg_weights) if lambda_vgg > 0 else None
        self.g_gain = _REFERENCE_G_GAIN.get(loss, 1.0)

    # ----------------------------------------------------------------------------------------------------------
    # Inputs
    # ----------------------------------------------------------------------------------------------------------

    @property
    def source_planes(self) -> int:
        """Channels of the model's sources before encoding: 1 for a label map, the image's otherwise, plus the
        boundary map's."""
        return (1 if self.source_type == "labels" else self.source_channels) + int(self.instance_maps)

    def with_edges(self, source: Tensor, instance: Tensor) -> Tensor:
        """The model's source: ``source`` [N, C, H, W] with the boundary map of ``instance`` [N, 1, H, W] as one
        more channel (label maps as float class indices)."""
        return torch.cat([source.float(), instance_edges(instance)], dim=1)

    def encode(self, source: Tensor) -> Tensor:
        """What the networks see of a source: the one-hot classes (or the image), then the boundary map."""
        if source.shape[1] != self.source_planes:
            raise ConfigurationError(
                f"source_channels={self.source_channels}: {type(self).__name__} takes sources of {self.source_planes} "
                "channels ("
                f"{'a map of class indices' if self.source_type == 'labels' else f'{self.source_channels} image channels'}"
                f"{', then the instance-boundary map (with_edges)' if self.instance_maps else ''}), got "
                f"{source.shape[1]}", "source_channels",
            )
        planes = 1 if self.source_type == "labels" else self.source_channels
        first = source[:, :planes]
        if self.source_type == "labels":
            first = one_hot_labels(first, self.source_channels)
        return torch.cat([first.float(), source[:, planes:].float()], dim=1)

    def source_of(self, items: Sequence[Tensor]) -> Tensor:
        """The model's source from a batch's items ``(source, target[, instance])``: the source, with the boundary
        map of the instance map when ``instance_maps``.

        Raises:
            ConfigurationError: ``instance_maps`` and items without instance maps.
        """
        if not self.instance_maps:
            return items[0]
        if len(items) < 3:
            raise ConfigurationError(
                "instance_maps=True: the batches hold no instance maps, which this model draws the boundaries of (the "
                "data module's instance_folder gives them, to predict too), or set instance_maps=False"
            )
        return self.with_edges(items[0], items[2])

    def unpack(self, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """``(source, target[, instance])`` -> the target and ``{"source": ...}`` (with the boundary map)."""
        return batch[1], {"source": self.source_of(batch)}

    def decode(self, network: torch.nn.Module, z: Tensor, source: Tensor, **cond: Tensor) -> GeneratorOutput:
        return GeneratorOutput.of(network(self.encode(source)))

    def show_condition(self, source: Tensor) -> Tensor:
        return self.encode(source)

    def show_source(self, source: Tensor) -> Tensor:
        """The label map in fixed class colours, or the image; the boundaries drawn white."""
        if self.source_type == "labels":
            labels = source[:, 0].round().long().clamp(0, self.source_channels - 1)  # [N, H, W]
            shown = class_colours(self.source_channels).to(source.device)[labels].permute(0, 3, 1, 2)
        else:
            shown = source[:, : self.source_channels].float()
        if self.instance_maps:
            shown = torch.where(source[:, -1:] > 0.5, torch.ones_like(shown), shown)
        return shown

    def random_source(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Random sources of the model's form: class indices or an image, then a random boundary map."""
        size = (n, 1, self.image_size, self.image_size)
        if self.source_type == "labels":
            planes = [torch.randint(self.source_channels, size, generator=generator).float()]
        else:
            planes = [super().random_source(n, generator).cpu()]
        if self.instance_maps:
            planes.append(instance_edges(torch.randint(2, size, generator=generator)))
        return torch.cat(planes, dim=1).to(self.device)

    def sample_inputs(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """As :meth:`gans.translation.Translation.sample_inputs`; with ``instance_maps``, sources drawn from the
        training set carry the boundary maps of their items' instance maps (the base takes the sources alone)."""
        if not self.instance_maps or n <= len(self.fixed) or self.attached_trainer is None:
            return super().sample_inputs(n, generator)
        datamodule = self.attached_trainer.datamodule
        datamodule.setup("fit")
        dataset = datamodule.train_dataloader().dataset
        order = torch.randint(len(dataset), (n,), generator=generator).tolist()
        source = self.source_of(default_collate([dataset[i] for i in order]))
        return {"z": self.sample_z(n), "source": source.to(self.device)}

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """The translations of a batch of sources ((source, empty) items of a folder of sources, or (source,
        target, instance) items with instance maps)."""
        return self.sample(source=self.source_of(batch if isinstance(batch, (tuple, list)) else (batch,)))

    # ----------------------------------------------------------------------------------------------------------
    # The discriminators and the losses
    # ----------------------------------------------------------------------------------------------------------

    def judge(self, x: Tensor | GeneratorOutput, source: Tensor, discriminator: Any = None) -> list[list[Tensor]]:
        """Per scale, fine to coarse, every layer's activations of the conditional discriminator on (source, x); the
        last of each scale is its map of patch scores [N, 1, H_k, W_k]."""
        pair = torch.cat([self.show_condition(source), GeneratorOutput.images_of(x)], dim=1)
        scales = (discriminator or self.discriminator).features(pair)
        return scales if isinstance(scales[0], (list, tuple)) else [scales]  # one PatchGAN: one scale

    def critic(self, x: Tensor | GeneratorOutput, discriminator: Any = None, source: Tensor | None = None,
               **cond: Tensor) -> Tensor:
        """Every scale's patch scores side by side, [N, 1, 1, P] (P patches over all scales)."""
        if source is None:
            raise TypeError(f"{type(self).__name__}.critic needs the source images the samples translate (source=...)")
        return torch.cat([layers[-1].flatten(1) for layers in self.judge(x, source, discriminator)], dim=1)[:, None, None]

    def d_loss(self, real: Tensor, fake: GeneratorOutput, source: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """The adversarial loss of every scale, summed (least squares: the reference's ``(D_fake + D_real) * 0.5``)."""
        d_real = [layers[-1] for layers in self.judge(real, source)]
        d_fake = [layers[-1] for layers in self.judge(fake.images.detach(), source)]
        return {
            "d_loss": sum(self.d_adversarial(r, f) for r, f in zip(d_real, d_fake, strict=True)),
            "d_real": torch.stack([r.detach().mean() for r in d_real]).mean(),
            "d_fake": torch.stack([f.detach().mean() for f in d_fake]).mean(),
        }

    def evaluation_d_terms(self, real: Tensor, fake: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """D's terms on held-out pairs as in training (:meth:`d_loss`: the loss of each scale, not of all scales'
        scores pooled), so that ``val/d_loss`` compares with ``train/d_loss``."""
        return self.d_loss(real, GeneratorOutput(images=fake), **cond)

    def g_loss(self, real: Tensor, fake: GeneratorOutput, source: Tensor, **cond: Tensor) -> dict[str, Tensor]:
        """The adversarial loss of every scale, summed, plus ``lambda_feat`` times the feature matching and
        ``lambda_vgg`` times the VGG loss."""
        fake_layers = self.judge(fake, source)
        g_gan = self.g_gain * sum(self.g_adversarial(layers[-1]) for layers in fake_layers)
        terms = {"g_gan": g_gan}
        total = g_gan
        if self.lambda_feat > 0:
            with torch.no_grad():
                real_layers = self.judge(real, source)
            # 4 / (n_layers_D + 1): the weight of each of a PatchGAN's n_layers_D + 1 intermediate layers.
            terms["g_feat"] = feature_matching(real_layers, fake_layers, 4 / (len(fake_layers[0]) - 1))
            total = total + self.lambda_feat * terms["g_feat"]
        if self.vgg is not None:
            terms["g_vgg"] = self.vgg(fake.images, real)
            total = total + self.lambda_vgg * terms["g_vgg"]
        return {"g_loss": total, **terms}

    # ----------------------------------------------------------------------------------------------------------
    # The coarse-to-fine schedule
    # ----------------------------------------------------------------------------------------------------------

    def load_global_checkpoint(self, path: str | Path | None = None) -> None:
        """Loads G1 of the local enhancer from the global stage's generator.

        Args:
            path: its checkpoint (``.ckpt``) or exported generator (``.safetensors``); by default
                ``global_checkpoint``.

        Raises:
            MissingFileError: the file does not exist.
            ConfigurationError: the file is not a checkpoint of this library, or its generator does not fit G1.
        """
        path = Path(path if path is not None else self.global_checkpoint)
        if not path.is_file():
            raise MissingFileError(
                f"global_checkpoint={str(path)!r} does not exist: expected the global stage's checkpoint (.ckpt) or "
                "exported generator (.safetensors)", "global_checkpoint",
            )
        try:
            trained = load_gan(path)
            self.generator.load_global_generator(trained.generator.state_dict())
        except ConfigurationError as err:
            raise ConfigurationError(f"global_checkpoint={str(path)!r}: {err}", "global_checkpoint") from err

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit":
            return
        if self.vgg is not None:
            self.vgg.build()  # missing weights stop the run now, not at the first generator step

    def on_fit_start(self) -> None:
        super().on_fit_start()
        # After a resumed run's checkpoint is restored (which holds G1 already): only a new run loads it.
        if self.stage == "local" and self.global_checkpoint is not None and self.trainer.ckpt_path is None:
            self.load_global_checkpoint()
        elif self.stage == "local" and self.global_checkpoint is None and self.trainer.ckpt_path is None:
            rank_zero_warn("Pix2PixHD: stage='local' without global_checkpoint trains the local enhancer's G1 from its "
                           "initial weights; the paper trains it first (stage='global') and loads it")

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.stage == "local":
            # A parameter without requires_grad gets no gradient, and Adam leaves a parameter without one untouched.
            trainable = self.current_epoch >= self.fix_global_epochs
            for parameter in self.generator.global_parameters():
                parameter.requires_grad_(trainable)
