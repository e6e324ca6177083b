"""The LightningCLI entry point behind ``train.py`` and the ``gans`` console script.

``python train.py fit --config configs/dcgan_mnist.yaml`` or ``python train.py fit --model=WGANGP
--data=MNISTDataModule``; also ``validate``, ``test`` and ``predict`` (one fake per example of the data module's
predict split, written by :class:`callbacks.PredictionWriter`).

A value the user gave that is refused (by the parser, by a constructor's validation, or later by a
:class:`gans.errors.ConfigurationError` from a data module's or callback's setup) ends the run with one ``error:``
line that names the argument as ``--model.init_args.<name>`` (``--data...``), and exit status 2; any other exception
is a bug and keeps its traceback (``JSONARGPARSE_DEBUG=true`` shows the traceback of a refused value too).
"""

import argparse
import difflib
import inspect
import logging
import operator
import os
import re
import signal
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from pydoc import locate
from typing import Any, Literal, NoReturn

import lightning as L
import torch
from jsonargparse import DefaultHelpFormatter, Namespace, lazy_instance
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.multiprocessing import ProcessRaisedException

import callbacks  # noqa: F401  (registers the callbacks for short names on the command line)
import datamodules
import gans
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
from gans.errors import ConfigurationError
from gans.loading import RENAMED_ARGUMENTS

# Noise a user of this tool cannot act on, silenced by its exact text only: Lightning 2.6 still builds torch's
# deprecated LeafSpec (its own code, not ours), and it advertises its cloud services on every run.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
# Every resumed run logs into a new version_N folder, so Lightning's ModelCheckpoint says its dirpath changed and it
# will not reload its best-k bookkeeping: the expected course of --ckpt_path last, which finds the checkpoints anyway.
warnings.filterwarnings("ignore", message=r"The dirpath has changed from .* therefore `best_model_score`")
_ADVERT = re.compile(r"💡 Tip: .*\[lit(logger|models)\]\(https://pypi\.org/project/lit(logger|models)/\)")


def _not_an_advert(record: logging.LogRecord) -> bool:
    return not _ADVERT.match(record.getMessage())


# lightning_utilities' rank_zero_info logs through whichever of these two Lightning imported last.
for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_not_an_advert)

#: Exit status of a run stopped by SIGTERM: 128 + 15, as the shell reports a process killed by it.
TERMINATED = 128 + signal.SIGTERM
#: Exit status of a run stopped by a refused value, as for the parser's own errors.
USAGE_ERROR = 2

#: One line per subcommand for ``--help`` (Lightning takes the first lines of the Trainer methods' docstrings, cut
#: mid-sentence for two of them).
SUBCOMMANDS = {
    "fit": "Train: each iteration is n_critic discriminator steps and one generator step, up to "
    "--trainer.max_steps iterations.",
    "validate": "Score held-out real images against fresh fakes with the discriminator (val/d_real, val/d_fake).",
    "test": "The same on the data module's test split (test/d_real, test/d_fake).",
    "predict": "Generate one fake per example of the data module's predict split and save them with a PNG grid.",
}
#: Titles of the --model and --data option groups in a subcommand's help (else the classes' first docstring lines).
GROUP_TITLES = {
    "model": "The GAN variant, by name (gans --help lists them) or class path, and its arguments",
    "data": "The data module, by name (gans --help lists them) or class path, and its arguments",
}
#: The callbacks a run gets without listing them, each an option of its own: ``--ema.decay=0.999`` (``ema: {decay:
#: 0.999}`` in a config) sets an argument, ``--ema=null`` drops it, ``--samples=my.Grid`` puts a subclass in its place.
#: In this order among the trainer's callbacks: the EMA is updated before the sample grids and the metrics read it.
#: A callback of one of these classes listed in trainer.callbacks takes that default's place.
DEFAULT_CALLBACKS: dict[str, type[L.Callback]] = {
    "checkpoint": IterationCheckpoint,
    "ema": GeneratorEMA,
    "samples": SampleGrid,
    "metrics": GANMetrics,
    "predictions": PredictionWriter,
}
DEFAULT_CALLBACK_HELP = {
    "checkpoint": "callbacks.IterationCheckpoint: a checkpoint every every_n_train_steps iterations and last.ckpt "
    "(null: none of ours).",
    "ema": "callbacks.GeneratorEMA: the moving average of the generator that samples and metrics use (null: none).",
    "samples": "callbacks.SampleGrid: grids from fixed latents every every_n_steps iterations (null: none).",
    "metrics": "callbacks.GANMetrics: FID/KID/IS, off unless set (--metrics=GANMetrics, or a config's "
    "metrics: {class_path: callbacks.GANMetrics, ...}); --metrics=false drops every GANMetrics, also one listed in "
    "trainer.callbacks (for a machine without the Inception weights).",
    "predictions": "callbacks.PredictionWriter: where predict saves its fakes (null: nothing saved).",
}
#: The model arguments that follow the data module's samples: (data module attribute, model argument, value). A data
#: module without the attribute when built (the folder data modules know their channels only from the files) and a
#: model without the argument leave it as configured.
SHAPE_LINKS = (
    ("data.image_shape", "channels", operator.itemgetter(0)),
    ("data.image_shape", "image_size", operator.itemgetter(-1)),
    ("data.image_shape", "data_shape", list),
    ("data.data_shape", "data_shape", list),
    ("data.source_shape", "source_channels", operator.itemgetter(0)),  # a translation set's inputs
)
SHAPE_ARGUMENTS = tuple(dict.fromkeys(target for _, target, _ in SHAPE_LINKS))
_LAST = (
    "'last': the newest complete checkpoint under --trainer.default_root_dir (any of its version_N folders) and the "
    "checkpoint callbacks' dirpath, passing over truncated files with a warning"
)
#: ``--ckpt_path`` as GANCLI._resolve_checkpoint reads it (Lightning's own text describes its ``last``).
CKPT_PATH_HELP = {
    "fit": f"Checkpoint to resume training from: a .ckpt file (an incomplete one stops the run), or {_LAST}; with "
    "none, a new run starts (so a job script can always pass it). 'hpc', 'registry' and URLs as in Lightning.",
    "eval": f"Checkpoint whose weights to use: a .ckpt file (an incomplete one stops the run), or {_LAST}; with "
    "none, the model as configured. 'hpc', 'registry' and URLs as in Lightning.",
}


def known_classes(key: str) -> list[str]:
    """The short names ``--model`` (``key="model"``: the variants) or ``--data`` (the data modules) accepts, from the
    packages' ``__all__``."""
    package, base = (gans, GAN) if key == "model" else (datamodules, L.LightningDataModule)
    classes = (getattr(package, name) for name in package.__all__)
    return sorted(c.__name__ for c in classes if isinstance(c, type) and issubclass(c, base) and c is not base)


# jsonargparse's messages for a --model/--data name that is no class: a short name, or a class path (with why).
_UNKNOWN_CLASS = (
    re.compile(r'^Parser key "(model|data)":.*Expected a dot import path string: (\S+)()', re.DOTALL),
    re.compile(r"^Parser key \"(model|data)\":.*Problem with given class_path '([^']+)':\s*\n\s*([^\n]+)", re.DOTALL),
)


#: A ConfigurationError raised in a spawned process reaches the parent as the text of that process's traceback.
_SPAWNED_REFUSAL = re.compile(
    r"^gans\.errors\.(?:ConfigurationError|MissingFileError): (.*)\Z", re.MULTILINE | re.DOTALL
)


def _explain_unknown_class(message: str) -> str:
    """jsonargparse's message for an unknown ``--model``/``--data`` name says only that it is not an import path:
    list the known names instead, with the closest one."""
    if message.count('Parser key "') > 1:  # a nested argument of a known class is wrong, not the class name
        return message
    match = next((m for m in (p.search(message) for p in _UNKNOWN_CLASS) if m is not None), None)
    if match is None:
        return message
    key, name, reason = match.groups()
    known = known_classes(key)
    option = re.search(r"Option '(\w+)' is not accepted", reason or "")
    if option is not None and name.rpartition(".")[2] in known:  # a known class, one of its options is wrong
        return _explain_unknown_option(key, name.rpartition(".")[2], option.group(1))
    close = difflib.get_close_matches(name.rpartition(".")[2], known, n=1)
    return (
        f"--{key}={name!r} is not a known {'variant' if key == 'model' else 'data module'}"
        f"{f' ({reason.strip()})' if reason else ''}; expected one of {', '.join(known)} (or a class path, or a "
        f"YAML file){f'; did you mean {close[0]}?' if close else ''}"
    )


def _explain_unknown_option(key: str, class_name: str, option: str) -> str:
    """The message for an option the class does not take: where a renamed network argument lives now, or the closest
    option it has."""
    if key == "model" and option in RENAMED_ARGUMENTS:
        where = " and ".join(f"--model.init_args.{net}.init_args.{name}" for net, name in RENAMED_ARGUMENTS[option])
        return (
            f"--model.init_args.{option} is now {where}: the networks are arguments of their own, with the paper's as "
            "defaults (in a config: generator: {init_args: {...}} under model.init_args)"
        )
    package = gans if key == "model" else datamodules
    cls = getattr(package, class_name)
    accepted = {name for klass in cls.__mro__ for name in inspect.signature(klass.__init__).parameters} - {"self"}
    close = difflib.get_close_matches(option, sorted(accepted), n=1)
    return f"--{key}.init_args.{option}: {class_name} has no argument {option!r}" + (
        f"; did you mean {close[0]}?" if close else ""
    )


class GANArgumentParser(LightningArgumentParser):
    """The parser of :class:`GANCLI`: an error is one ``error:`` line and a pointer to ``--help``, without the usage
    block of every option that buried it."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        message = _one_line(_explain_unknown_class(message))
        if not self.exit_on_error or os.environ.get("JSONARGPARSE_DEBUG"):
            super().error(message, ex)  # raises, with the cause's traceback
        prog = (getattr(ex, "subcommand_parser", None) or self).prog.replace(" [options]", "")
        sys.stderr.write(f"error: {message}\ntip: {prog} --help lists the accepted options\n")
        self.exit(USAGE_ERROR)


#: Lines of jsonargparse's report on a value that fits no type of a Union: the types tried, the value echoed back
#: (the whole model configuration, for an error inside it) and the None it could also have been. What remains, the
#: keys and the reasons, says what is wrong.
_UNION_NOISE = re.compile(
    r"^(?:Does not validate against any of the Union subtypes|Subtypes: |Errors:$|Given value(?: type)?: |"
    r"Expected a <class '[\w.]+'>$)"
)


def _one_line(message: str) -> str:
    """jsonargparse's message for a nested value without the lines that only repeat the configuration, on one line."""
    lines = (line.strip().removeprefix("- ").strip() for line in message.splitlines())
    return " ".join(line for line in lines if line and not _UNION_NOISE.match(line))


def _help_text() -> tuple[str, str]:
    """The description and epilog of ``gans --help``: what the tool is, the first commands, the variants, data
    modules and configs."""
    description = (
        "Train, evaluate and sample the classic GANs of the gans library (one PyTorch Lightning module per\n"
        "variant) from a YAML config or from the command line, on CPU, one GPU or many."
    )
    configs = sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml"))
    lines = [
        "first steps (python train.py is the same as gans):",
        "  gans fit --config configs/dcgan_mnist.yaml                   train DCGAN on MNIST",
        "  gans fit --config configs/dcgan_mnist.yaml --ckpt_path last  resume from the newest complete checkpoint",
        "  python -m gans.sample --ckpt lightning_logs/version_0/checkpoints/last.ckpt --num 64 --out samples.png",
        "                                                               sample images from a checkpoint",
        "  (--metrics=false on a machine without the FID Inception weights)",
        "",
        f"variants (--model=<name>): {', '.join(known_classes('model'))}",
        f"data modules (--data=<name>): {', '.join(known_classes('data'))}",
    ]
    if configs:  # a checkout; an installed package has no configs folder
        lines.append(f"configs (--config configs/<name>.yaml): {', '.join(c.stem for c in configs)}")
    lines = [textwrap.fill(line, 110, subsequent_indent="  ") if len(line) > 110 else line for line in lines]
    lines += ["", "Each subcommand has its own options: gans fit --help; a variant's: gans fit --model.help DCGAN."]
    return description, "\n".join(lines)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's formatter, keeping the line breaks of the description and epilog (the command examples)."""


class GANCLI(LightningCLI):
    """LightningCLI in subclass mode for any :class:`gans.base.GAN` and any LightningDataModule."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except ConfigurationError as err:  # raised while running the subcommand: a data module's or callback's setup
            self._refuse(err)
        except ProcessRaisedException as err:  # the same in a process of a spawning strategy (gan_ddp_spawn)
            refused = _SPAWNED_REFUSAL.search(str(err))
            if refused is None:
                raise
            self._refuse(ConfigurationError(refused.group(1).strip()))

    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]
    ) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        # The subcommands' one-line help, the title of their own options' group and --ckpt_path's help come from
        # the Trainer's docstrings; argparse keeps them in its actions and groups (the subcommand list in the
        # pseudo-actions of ``_choices_actions``). Neither argparse nor LightningCLI (``_subcommand_parsers``) has a
        # public way to change them: these private attributes are read here only, and
        # tests/test_cli_errors.py::test_help_says_what_the_tool_is_and_how_to_start fails when they change.
        for name, parser in getattr(self, "_subcommand_parsers", {}).items():
            for group in parser._action_groups:
                for action in group._group_actions:
                    if action.dest == "ckpt_path":
                        action.help = CKPT_PATH_HELP["fit" if name == "fit" else "eval"]
                        group.title = f"options of {name}"
                    elif action.dest in GROUP_TITLES:  # the GAN's and LightningDataModule's docstrings, cut
                        group.title = GROUP_TITLES[action.dest]
        for action in self.parser._actions:
            for choice in getattr(action, "_choices_actions", []):
                choice.help = SUBCOMMANDS.get(choice.dest, choice.help)

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except Exception as err:
            cause: BaseException | None = err
            while cause is not None and not isinstance(cause, ConfigurationError):  # jsonargparse wraps it
                cause = cause.__cause__
            if cause is not None:  # a constructor refusing a value the user configured
                self._refuse(cause)
            raise  # anything else is a bug: its traceback is what a report needs
        self._check_linked_shape()

    def _check_linked_shape(self) -> None:
        """Refuses a model ``channels``/``image_size``/``data_shape`` the user gave that differs from what the link
        took from the data module (jsonargparse would silently replace it), and drops the links to arguments the
        model does not have from its hyperparameters (Lightning records every applied link there, and the
        checkpoint could not rebuild the model with them)."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        model_args = config["model"].get("init_args") or {}
        self.model.remove_ignored_hparams([name for name in SHAPE_ARGUMENTS if name not in model_args])
        for name, given in self._given_shape.items():
            linked = self.model.hparams.get(name)
            if _plain(linked) != _plain(given):
                shape = getattr(self.datamodule, "image_shape", None) or getattr(self.datamodule, "data_shape", None)
                parser = getattr(self, "_subcommand_parsers", {}).get(self.subcommand, self.parser)
                parser.error(
                    f"--model.init_args.{name}={_plain(given)} differs from the data module's {_plain(linked)} "
                    f"({type(self.datamodule).__name__} makes samples of shape {list(shape)}): the model's "
                    f"{', '.join(SHAPE_ARGUMENTS)} follow the data module; leave them out of the model's arguments"
                )

    def _refuse(self, err: ConfigurationError) -> NoReturn:
        """Ends the run with ``error: --<where>=<value> ...`` and exit status 2."""
        config, subcommand = getattr(self, "config", None), getattr(self, "subcommand", None)
        if config is not None and subcommand:
            config = config[subcommand]
        message = " ".join(str(err).split())  # one line, also when it quotes a multi-line error of a library
        where = _where(config, err) if config is not None else None
        if where is not None:
            option, value = where
            if err.argument is not None and message.startswith(f"{err.argument}="):
                message = f"{option}{message[len(err.argument):]}"
            else:
                message = f"{option}={value}: {message}"
        # The subcommand's parser, so that the tip names its --help.
        parser = getattr(self, "_subcommand_parsers", {}).get(subcommand, self.parser)
        parser.error(message, err)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Each default callback is an option of its own, so a config sets only the arguments it changes
        # (``ema: {decay: 0.999}``, ``--samples.every_n_steps=100``) and trainer.callbacks lists only additions.
        for name, cls in DEFAULT_CALLBACKS.items():
            # --metrics=false, as before these options: no FID/KID/IS at all (for a machine without the Inception
            # weights), also from a GANMetrics that trainer.callbacks lists. null drops a default callback.
            parser.add_argument(
                f"--{name}",
                type=cls | Literal[False] | None if name == "metrics" else cls | None,
                default=None if name == "metrics" else lazy_instance(cls),
                help=DEFAULT_CALLBACK_HELP[name],
            )
        # The model's sample shape follows the data module's, read from the built data module (so the folder data
        # modules, which know theirs only after reading the files, and the 2-D mixtures, whose shape is no argument,
        # need no rule here); a link to an argument the model does not have is skipped.
        for source, target, compute_fn in SHAPE_LINKS:
            parser.link_arguments(source, f"model.init_args.{target}", compute_fn=compute_fn, apply_on="instantiate")

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        config = self.config[self.subcommand] if self.subcommand else self.config
        built = self.config_init[self.subcommand] if self.subcommand else self.config_init
        kwargs.setdefault("callbacks", _with_default_callbacks(built))
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # keep any plugin the user chose
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if not any(isinstance(c, Preemption) for c in trainer.callbacks):  # SIGTERM / SLURM's signal: save, stop
            trainer.callbacks.append(Preemption())
        # Lightning's default bar (not one the config names) counts discriminator batches: count iterations instead.
        bar = trainer.progress_bar_callback
        configured = _class_configs(config.get("trainer", {}).get("callbacks"))
        named = any(c["class_path"].endswith("TQDMProgressBar") for c in configured)
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
        self._given_shape = self._given_shape_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand:  # before --ckpt_path last searches the loggers' folders
            _loggers_under_root(self.config[subcommand].get("trainer") or {})
        # Before LightningCLI reads the checkpoint's hyperparameters (it loads the file right after parsing).
        if subcommand and self.config[subcommand].get("ckpt_path"):
            try:
                self._resolve_checkpoint(self.config[subcommand])
            except ValueError as err:
                parser.error(str(err))  # "error: ..." and exit status 2, as for any other bad argument

    @staticmethod
    def _given_shape_arguments(parser: LightningArgumentParser, args: Any) -> dict[str, Any]:
        """The model's linked arguments (``SHAPE_ARGUMENTS``) that the command line or a config gives: the links
        replace them at instantiation, so they are read here, from a parse without defaults, to check them then."""
        if isinstance(args, (dict, Namespace)):
            given = parser.parse_object(args, defaults=False)
        else:
            given = parser.parse_args(args, defaults=False)
        if given.get("subcommand"):
            given = given[given.subcommand]
        model_args = (given.get("model") or Namespace()).get("init_args") or Namespace()
        return {name: model_args[name] for name in SHAPE_ARGUMENTS if name in model_args}

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
            problem = checkpoint_problem(ckpt_path) or _training_state_problem(ckpt_path, config.get("model"))
            if problem is not None:
                if Path(ckpt_path).suffix == ".pkl":
                    problem += ("; an official StyleGAN2-ADA snapshot cannot be resumed (python -m gans.convert makes "
                                "a checkpoint of it for load_gan and gans.sample)")
                raise ValueError(f"cannot load checkpoint {str(ckpt_path)!r} (--ckpt_path): {problem}")
            return
        trainer = config.get("trainer") or {}
        folders = [Path(trainer.get("default_root_dir") or Path.cwd())]
        listed = [*_class_configs(trainer.get("callbacks")), *_class_configs(config.get("checkpoint"))]
        for component in [*listed, *_class_configs(trainer.get("logger"))]:
            init_args = component.get("init_args") or {}
            # A checkpoint callback's folder; a logger's, which holds the checkpoints when no dirpath is given.
            for key in ("dirpath", "save_dir"):
                if init_args.get(key):
                    folders.append(Path(init_args[key]))
        path, skipped = newest_complete_checkpoint(folders)
        for bad, why in skipped.items():
            rank_zero_warn(f"--ckpt_path=last: passing over {bad}: {why}")
        where = ", ".join(str(f) for f in dict.fromkeys(folders))
        if path is None:
            rank_zero_info(f"--ckpt_path=last: no complete checkpoint under {where}; starting a new run")
        else:
            problem = _training_state_problem(path, config.get("model"))
            if problem is not None:  # found, but not one this config can continue: say so rather than start over
                raise ValueError(f"--ckpt_path=last found {str(path)!r}, the newest checkpoint under {where}: {problem}")
            rank_zero_info(f"--ckpt_path=last: resuming from {path}")
        config["ckpt_path"] = None if path is None else str(path)


def _training_state_problem(path: str | Path, model: Any = None) -> str | None:
    """Why the complete checkpoint ``path`` cannot be resumed under the configured ``model``, or ``None``.

    One without the optimizers' states (a snapshot converted by ``gans.convert``, a weights-only checkpoint) would
    otherwise fail inside Lightning, after its hyperparameters replaced the config's model with a confusing "not a
    known variant" message. One of another variant than the config's would silently train the checkpoint's variant
    with the config's callbacks (a StyleGAN without its ProgressiveGrowing, under a StyleGAN2 config). Memory-mapped:
    the tensors are not read.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 (unsafe or unreadable: Lightning's own load reports it, as before)
        return None
    if not isinstance(checkpoint, dict):
        return None
    if "optimizer_states" not in checkpoint:
        return ("it holds the networks but no training state (no optimizers: a converted snapshot or a weights-only "
                "checkpoint), so it cannot be resumed; load_gan and gans.sample read it")
    saved = (checkpoint.get("gans") or {}).get("class_path")
    configured = model.get("class_path") if isinstance(model, (dict, Namespace)) else None
    saved_class, configured_class = (locate(str(p)) if p else None for p in (saved, configured))
    if isinstance(saved_class, type) and isinstance(configured_class, type) and saved_class is not configured_class:
        return (f"it was saved by {saved_class.__name__}, and the config trains {configured_class.__name__}; resume "
                "with the config of the run that wrote it")
    return None


def _with_default_callbacks(config: Any) -> list[L.Callback]:
    """The trainer's callbacks: the defaults of ``DEFAULT_CALLBACKS`` that are on, each replaced by any callback of its
    class that trainer.callbacks lists, then the other listed ones; without GANMetrics under ``--metrics=false``."""
    listed = config["trainer"].get("callbacks") or []
    listed = list(listed) if isinstance(listed, list) else [listed]
    if config.get("metrics") is False:
        listed = [c for c in listed if not isinstance(c, GANMetrics)]
    chosen = []
    for name, cls in DEFAULT_CALLBACKS.items():
        replacing = [c for c in listed if isinstance(c, cls)]
        chosen += replacing or ([config[name]] if isinstance(config.get(name), L.Callback) else [])
    trainer_callbacks = chosen + [c for c in listed if not any(c is other for other in chosen)]
    _refuse_twice_listed(trainer_callbacks)
    return trainer_callbacks


def _refuse_twice_listed(trainer_callbacks: list[L.Callback]) -> None:
    """Refuses a callback that cannot run twice: one with checkpointed state (``ADA``, ``ProgressiveGrowing``; the
    Trainer would stop with a RuntimeError traceback, as both would save under one key) or an augmentation before D
    (``DiffAugment``: each image would be augmented twice). The usual cause: ``--trainer.callbacks+=ADA`` on a config
    that already lists it.

    Raises:
        ConfigurationError: the message names the callback and the list.
    """
    from callbacks.augment import DiscriminatorAugmentation  # here: the package __init__ does not export it

    seen: set[str] = set()
    for callback in trainer_callbacks:
        stateful = type(callback).state_dict is not L.Callback.state_dict
        if not (stateful or isinstance(callback, DiscriminatorAugmentation)):
            continue
        if callback.state_key in seen:
            names = ", ".join(type(c).__name__ for c in trainer_callbacks)
            raise ConfigurationError(
                f"trainer.callbacks=[{names}]: {type(callback).__name__} is listed twice (a config that lists it and "
                f"--trainer.callbacks+={type(callback).__name__}?); keep one"
            )
        seen.add(callback.state_key)


def _plain(value: Any) -> Any:
    """A shape or size as a user writes it: tuples as lists, for comparing a configured value with a linked one."""
    return list(value) if isinstance(value, (tuple, list)) else value


def _where(config: Any, err: ConfigurationError) -> tuple[str, str] | None:
    """The option (as ``--data.init_args.batch_size``) and the value of the argument that ``err`` names: in the
    component (model, data module, callback) whose code raised it, else among the top-level and trainer options.
    ``None`` when the error names no argument or it is not in the configuration."""
    if err.argument is None:
        return None
    config = config.as_dict() if hasattr(config, "as_dict") else dict(config)
    owner = _raised_by(err)
    if owner is not None:
        for path, component, listed in _components(config):
            init_args, name = component.get("init_args") or {}, component["class_path"].rpartition(".")[2]
            if name == owner.__name__ and err.argument in init_args:
                option = f"--{path} ({name}) {err.argument}" if listed else f"--{path}.init_args.{err.argument}"
                return option, _show(init_args[err.argument])
    for path, options in (("", config), ("trainer.", config.get("trainer") or {})):
        if err.argument in options:
            return f"--{path}{err.argument}", _show(options[err.argument])
    return None


def _raised_by(err: BaseException) -> type | None:
    """The class of the model, data module or callback whose method raised ``err`` (the innermost such frame: a
    callback's setup that calls the data module's names the data module).
    jsonargparse's wrapper of a constructor's error and Lightning's hooks do not say which component failed; the
    frames of the component's own methods do, and the message then names the option the user set."""
    owner, tb = None, err.__traceback__
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("self")
        if isinstance(candidate, (L.LightningModule, L.LightningDataModule, L.Callback)):
            owner = type(candidate)
        tb = tb.tb_next
    return owner


def _components(config: Any, path: str = "", listed: bool = False) -> Iterator[tuple[str, dict, bool]]:
    """``(path, {"class_path": ..., "init_args": ...}, listed)`` for every class in a configuration dict; the entries
    of a list (``trainer.callbacks``) share its path, with ``listed`` true."""
    if isinstance(config, dict):
        if isinstance(config.get("class_path"), str):
            yield path, config, listed
        for key, value in config.items():
            yield from _components(value, f"{path}.{key}" if path else key)
    elif isinstance(config, list):
        for value in config:
            yield from _components(value, path, listed=True)


def _show(value: Any) -> str:
    """A configured value as the user would type it (a class by its name)."""
    if isinstance(value, dict) and isinstance(value.get("class_path"), str):
        return value["class_path"].rpartition(".")[2]
    return str(value)


def _class_configs(value: Any) -> list[Any]:
    """The ``class_path``/``init_args`` entries of a trainer option that holds one or a list of them."""
    values = value if isinstance(value, list) else [value]
    return [v for v in values if hasattr(v, "get") and isinstance(v.get("class_path"), str)]


def _loggers_under_root(trainer: Any) -> None:
    """A W&B logger left at its default ``save_dir`` ("." , the current folder) writes under the run's
    ``default_root_dir`` instead, as Lightning's own loggers do: the checkpoints Lightning puts beside the logger's
    files are then where ``--ckpt_path last`` looks, and runs with their own root folders do not mix."""
    root = trainer.get("default_root_dir")
    for logger in _class_configs(trainer.get("logger")) if root else []:
        init_args = logger.get("init_args")
        if logger["class_path"].endswith("WandbLogger") and init_args is not None and init_args.get("save_dir") in (
            None,
            ".",
        ):
            init_args["save_dir"] = root


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
    description, epilog = _help_text()
    try:
        cli = GANCLI(
            GAN,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            parser_class=GANArgumentParser,
            parser_kwargs={
                "description": description,
                "epilog": epilog,
                "formatter_class": _HelpFormatter,
                **{name: {"description": text} for name, text in SUBCOMMANDS.items()},
            },
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
