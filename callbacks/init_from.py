"""Start a training run from the weights of a trained model: fine-tuning and transfer learning.

This is what stylegan2-ada-pytorch's ``train.py --resume=ffhq256.pkl`` does (Karras et al. 2020, section 4.3,
transfer learning from FFHQ): G, D and G_ema take the trained weights, everything else starts fresh (optimizer
state, iteration and image counters, so the EMA ramp-up and the schedules start over). A resume is different:
``--ckpt_path`` continues a run of this library where it stopped, optimizer state and counters included, and when it
is given this callback leaves the restored weights alone.
"""

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from gans.errors import ConfigurationError

#: Prefix of the EMA generator's entries in a GAN's state dict (``generator_ema``, see ``callbacks.GeneratorEMA``).
EMA = "generator_ema."


class InitFrom(L.Callback):
    """Copies a trained model's weights into the module when fitting starts, unless the run resumes a checkpoint.

    Every parameter and buffer of the module (generator, discriminator, EMA generator and the variant's own buffers,
    e.g. StyleGAN2's ``w_avg`` and ``pl_mean``) is matched by name to ``path``'s; a module with an EMA generator
    (``callbacks.GeneratorEMA``) takes the source's EMA generator, or its generator when the source has none. The
    optimizer state, ``images_seen`` and the callbacks' state (ADA's p, the growth stage) start fresh, as in the
    official ``--resume``; a growing network (ProGAN, StyleGAN) keeps the resolution it runs at, whatever the order
    of this callback and ``ProgressiveGrowing``. Every process reads the file, so all start from the same weights.

    From a config:

    .. code-block:: yaml

        trainer:
          callbacks:
            - class_path: callbacks.InitFrom
              init_args: {path: stylegan2-ffhq-256x256.pkl}

    Args:
        path: a checkpoint of this library (``.ckpt``), an exported generator (``.safetensors``: the generator alone,
            with ``strict: false``) or an official stylegan2-ada-pytorch snapshot (``.pkl``), anything
            :func:`gans.load_gan` reads. The module must be built with the same sizes (for a snapshot: the
            resolution, ``channel_base``, ``channel_max``, mapping layers and architectures it was trained with).
        strict: every parameter and buffer of the module must be in the file; ``False`` copies those that are
            (matched by name), leaves the others as initialised and lists them in the log.

    Raises:
        ConfigurationError: ``path`` is not a file; when fitting starts, the file is not one ``load_gan`` reads, a
            tensor's shape differs from the module's, or (``strict``) the file lacks some of the module's tensors.
            The message names the file and the tensors.
    """

    def __init__(self, path: str | Path, strict: bool = True) -> None:
        self.path, self.strict = Path(path), strict
        if not self.path.is_file():  # before the data and the processes are set up
            raise ConfigurationError(f"InitFrom(path={str(path)!r}): no such file", "path")
        self._applied = False  # once: a second fit in the same process continues from the first one's weights

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path is not None:
            rank_zero_info(f"InitFrom(path={str(self.path)!r}): resuming {trainer.ckpt_path}, whose weights are kept")
            return
        if self._applied:
            rank_zero_info(f"InitFrom(path={str(self.path)!r}): applied in an earlier fit, whose weights are kept")
            return
        from gans.loading import load_gan  # here: gans imports the callbacks package

        try:
            model = load_gan(self.path, map_location=pl_module.device)
        except ValueError as err:  # a file load_gan cannot read: one message naming it
            raise ConfigurationError(f"InitFrom(path={str(self.path)!r}): {err}", "path") from err
        source = model.state_dict()
        if self.path.suffix == ".safetensors":  # an exported generator: the rest of the rebuilt model is initial
            source = {name: tensor for name, tensor in source.items() if name.startswith("generator.")}
        if not any(name.startswith(EMA) for name in source):  # the EMA starts as the generator, as attach_ema does
            source.update({EMA + name[len("generator."):]: tensor for name, tensor in source.items()
                           if name.startswith("generator.")})
        # A growing network's growth state (the resolution it runs at) is the run's, set by ProgressiveGrowing from
        # its own schedule, which may have run before this callback: the source's (fully grown) is not copied.
        from gans.nets.progan import Growing

        growth = {f"{prefix}.{buffer}" if prefix else buffer for prefix, network in pl_module.named_modules()
                  if isinstance(network, Growing) for buffer in ("level_state", "alpha_state")}
        target = {name: tensor for name, tensor in pl_module.state_dict().items() if name not in growth}
        missing = [name for name in target if name not in source]
        if missing and self.strict:
            raise ConfigurationError(
                f"InitFrom(path={str(self.path)!r}): the file lacks {len(missing)} of the module's {len(target)} "
                f"tensors (first: {', '.join(missing[:3])}); is it a model of {type(pl_module).__name__} with the "
                "same networks? strict=false copies what it has",
                "path",
            )
        for name, tensor in target.items():
            if name in source and source[name].shape != tensor.shape:
                raise ConfigurationError(
                    f"InitFrom(path={str(self.path)!r}): {name} is {tuple(source[name].shape)} in the file but "
                    f"{tuple(tensor.shape)} in the module; build the module with the sizes the file was trained with",
                    "path",
                )
        # torch's own loading (the modules' load hooks run), of the module's tensors only: a source's EMA generator is
        # dropped for a module without one.
        pl_module.load_state_dict({name: source[name] for name in target if name in source}, strict=False)
        left = f"; left as initialised: {', '.join(missing)}" if missing else ""
        self._applied = True
        rank_zero_info(f"InitFrom: {len(target) - len(missing)} tensors from {self.path}{left}")
