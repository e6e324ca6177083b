"""The LightningCLI entry point behind ``train.py`` and the ``gans`` console script.

``python train.py fit --config configs/dcgan_mnist.yaml`` or ``python train.py fit --model=WGANGP
--data=MNISTDataModule``; also ``validate``, ``test`` and ``predict`` (one fake per example of the data module's
predict split, written by :class:`callbacks.PredictionWriter`).
"""

import logging
import re
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

import callbacks  # noqa: F401  (registers the callbacks for short names on the command line)
import datamodules  # noqa: F401  (registers the data modules for --data=<Name>)
import gans  # noqa: F401  (registers the variants for --model=<Name>)
from callbacks import (
    AtomicCheckpointIO,
    GANMetrics,
    GANProgressBar,
    GeneratorEMA,
    IterationCheckpoint,
    PredictionWriter,
    Preemption,
    SampleGrid,
)
from callbacks.checkpoint import checkpoint_problem, newest_complete_checkpoint
from gans.base import GAN

# Noise a user of this tool cannot act on, silenced by its exact text only: Lightning 2.6 still builds torch's
# deprecated LeafSpec (its own code, not ours), and it advertises its cloud services on every run.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
_ADVERT = re.compile(r"💡 Tip: .*\[lit(logger|models)\]\(https://pypi\.org/project/lit(logger|models)/\)")


def _not_an_advert(record: logging.LogRecord) -> bool:
    return not _ADVERT.match(record.getMessage())


# lightning_utilities' rank_zero_info logs through whichever of these two Lightning imported last.
for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_not_an_advert)

#: Exit status of a run stopped by SIGTERM: 128 + 15, as the shell reports a process killed by it.
TERMINATED = 128 + signal.SIGTERM


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
        if not any(isinstance(c, Preemption) for c in trainer.callbacks):  # SIGTERM / SLURM's signal: save, stop
            trainer.callbacks.append(Preemption())
        # Lightning's default bar (not one the config names) counts discriminator batches: count iterations instead.
        # Replaced here rather than listed in the default callbacks, which a config's own list would drop.
        bar = trainer.progress_bar_callback
        configured = config.get("trainer", {}).get("callbacks") or []
        configured = configured if isinstance(configured, list) else [configured]
        named = any(str(getattr(c, "class_path", "")).endswith("TQDMProgressBar") for c in configured)
        if type(bar) is TQDMProgressBar and not named:
            trainer.callbacks[trainer.callbacks.index(bar)] = GANProgressBar()
        # Lightning's default logger (logger=True) writes hp_metric = -1 to TensorBoard's HPARAMS tab, a placeholder
        # for a metric this library never logs: the same logger without it.
        if config.get("trainer", {}).get("logger") in (None, True) and type(trainer.logger) is TensorBoardLogger:
            trainer.logger = TensorBoardLogger(
                save_dir=trainer.default_root_dir, version=SLURMEnvironment.job_id(), default_hp_metric=False
            )
        return trainer

    def before_instantiate_classes(self) -> None:
        # Lightning's "auto" picks plain DDP for several devices, which fails for a GAN (see gans/distributed.py).
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.get("trainer")
        if trainer is not None and trainer.get("strategy", "auto") == "auto" and _process_count(trainer) > 1:
            trainer["strategy"] = "gan_ddp"

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        # Before LightningCLI reads the checkpoint's hyperparameters (it loads the file right after parsing).
        subcommand = self.config.get("subcommand")
        if subcommand and self.config[subcommand].get("ckpt_path"):
            try:
                self._resolve_checkpoint(self.config[subcommand])
            except ValueError as err:
                parser.error(str(err))  # "error: ..." and exit status 2, as for any other bad argument

    @staticmethod
    def _resolve_checkpoint(config: Any) -> None:
        """``--ckpt_path last``: the newest complete checkpoint under the run's root folder (any ``version_N`` of it)
        and the checkpoint callbacks' folders, or a new run when there is none; Lightning's own "last" looks only in
        the new run's empty ``version_N`` folder, and would take a truncated file. Any other path must be a complete
        checkpoint file, or the run stops with a message that names it."""
        ckpt_path = config["ckpt_path"]
        if ckpt_path in ("best", "hpc", "registry") or "://" in str(ckpt_path):
            return
        if ckpt_path != "last":
            problem = checkpoint_problem(ckpt_path)
            if problem is not None:
                raise ValueError(f"cannot load checkpoint {str(ckpt_path)!r} (--ckpt_path): {problem}")
            return
        trainer = config.get("trainer") or {}
        folders = [Path(trainer.get("default_root_dir") or Path.cwd())]
        for callback in trainer.get("callbacks") or []:
            dirpath = (callback.get("init_args") or {}).get("dirpath") if hasattr(callback, "get") else None
            if dirpath:
                folders.append(Path(dirpath))
        path, skipped = newest_complete_checkpoint(folders)
        for bad, why in skipped.items():
            rank_zero_warn(f"--ckpt_path=last: passing over {bad}: {why}")
        where = ", ".join(str(f) for f in dict.fromkeys(folders))
        if path is None:
            rank_zero_info(f"--ckpt_path=last: no complete checkpoint under {where}; starting a new run")
        else:
            rank_zero_info(f"--ckpt_path=last: resuming from {path}")
        config["ckpt_path"] = None if path is None else str(path)


def _process_count(trainer: Any) -> int:
    """How many processes the trainer settings ask for (devices per node times nodes), as Lightning would count
    them; 1 when they cannot tell."""
    devices, accelerator = trainer.get("devices", "auto"), str(trainer.get("accelerator", "auto"))
    if isinstance(devices, (list, tuple)):
        count = len(devices)
    elif isinstance(devices, int) or (isinstance(devices, str) and devices.strip().lstrip("-").isdigit()):
        count = int(devices)
        if count == -1:
            count = torch.cuda.device_count() if accelerator != "cpu" else 1
    elif isinstance(devices, str) and "," in devices:
        count = len([d for d in devices.split(",") if d.strip()])
    else:  # "auto": every GPU when there are GPUs and they are allowed
        count = torch.cuda.device_count() if accelerator in ("auto", "gpu", "cuda") else 1
    return max(count, 1) * int(trainer.get("num_nodes", 1) or 1)


def main(args: list[str] | None = None, run: bool = True) -> GANCLI:
    """Runs the CLI on ``args`` (``sys.argv`` when ``None``). ``run=False`` only parses and instantiates; ``args``
    then has no subcommand. A run stopped by SIGTERM (after saving its checkpoint) exits with status 143."""
    try:
        cli = GANCLI(
            GAN,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
        )
    except SIGTERMException:  # Lightning's way out after SIGTERM; a plain SystemExit would report success
        sys.exit(TERMINATED)
    stopped_by = [c.received for c in cli.trainer.callbacks if isinstance(c, Preemption) and c.saved] if run else []
    if signal.SIGTERM in stopped_by:
        sys.exit(TERMINATED)
    return cli


if __name__ == "__main__":
    main()
