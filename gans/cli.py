"""The LightningCLI entry point behind ``train.py`` and the ``gans`` console script.

``python train.py fit --config configs/dcgan_mnist.yaml`` or ``python train.py fit --model=WGANGP
--data=MNISTDataModule``; also ``validate``, ``test`` and ``predict`` (one fake per example of the data module's
predict split, written by :class:`callbacks.PredictionWriter`).
"""

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

import callbacks  # noqa: F401  (registers the callbacks for short names on the command line)
import datamodules  # noqa: F401  (registers the data modules for --data=<Name>)
import gans  # noqa: F401  (registers the variants for --model=<Name>)
from callbacks import AtomicCheckpointIO, GANMetrics, GeneratorEMA, IterationCheckpoint, PredictionWriter, SampleGrid
from gans.base import GAN


class GANCLI(LightningCLI):
    """LightningCLI in subclass mode for any :class:`gans.base.GAN` and any LightningDataModule."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Without a config, a run still checkpoints by iteration, keeps a generator EMA, writes sample grids and
        # saves what predict generates; a config's own trainer.callbacks list replaces these.
        defaults = [
            {"class_path": f"callbacks.{cls.__name__}"}
            for cls in (IterationCheckpoint, GeneratorEMA, SampleGrid, PredictionWriter)
        ]
        parser.set_defaults({"trainer.callbacks": defaults})
        parser.add_argument(
            "--metrics",
            type=bool,
            default=True,
            help="Compute the FID/KID/IS of the GANMetrics callbacks in the config; --metrics=false drops them "
            "(for a machine without the Inception weights).",
        )

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        config = self.config[self.subcommand] if self.subcommand else self.config
        if not config.get("metrics", True):
            trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, GANMetrics)]
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # keep any plugin the user chose
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer


def main(args: list[str] | None = None, run: bool = True) -> GANCLI:
    """Runs the CLI on ``args`` (``sys.argv`` when ``None``). ``run=False`` only parses and instantiates; ``args``
    then has no subcommand."""
    return GANCLI(
        GAN,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


if __name__ == "__main__":
    main()
