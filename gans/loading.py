"""Rebuilding a GAN from what training or ``gans.export`` wrote: ``load_gan`` for checkpoints and exported
generators, ``build_gan`` for an untrained variant from saved hyperparameters.

Nothing here imports a variant or a callback: the variant is named by the file (its class path) and imported through
Lightning's ``instantiate_class``, so this module sits below every other and creates no import cycle.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.cli import instantiate_class
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model

from gans.errors import ConfigurationError
from gans.files import checkpoint_problem

if TYPE_CHECKING:
    from gans.base import GAN

#: The format tag of a generator written by ``gans.export``.
EXPORT_FORMAT = "gans.generator/1"

#: The flat network arguments of the checkpoints, exports and configs written before the networks became arguments of
#: their own (up to commit 5ebb08f), and where each value now goes: (network argument, its ``init_args`` key).
RENAMED_ARGUMENTS: dict[str, tuple[tuple[str, str], ...]] = {
    **{f"g_{name}": (("generator", name),) for name in ("features", "hidden", "batch_norm", "tanh")},
    **{
        f"d_{name}": (("discriminator", name),)
        for name in ("features", "norm", "minibatch", "hidden", "pieces", "input_dropout", "dropout", "spectral_norm")
    },
    "features": (("generator", "features"), ("discriminator", "features")),  # BEGAN's n, both networks
    "embedding": (("discriminator", "embedding"),),  # BEGAN's N_h
}


def upgrade_hyperparameters(hyper_parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters saved before the networks were arguments, with their flat network arguments moved into
    ``generator``/``discriminator`` specs without ``class_path`` (the variant's default networks with those values);
    newer ones as they are."""
    upgraded = dict(hyper_parameters)
    if "generator" in upgraded or "discriminator" in upgraded:
        return upgraded
    for old, targets in RENAMED_ARGUMENTS.items():
        if old in upgraded:
            value = upgraded.pop(old)
            for network, name in targets:
                upgraded.setdefault(network, {"init_args": {}})["init_args"][name] = value
    return upgraded


def build_gan(class_path: str, hyper_parameters: Mapping[str, Any]) -> GAN:
    """An untrained instance of the variant ``class_path`` built with a checkpoint's hyperparameters (those of older
    checkpoints upgraded by :func:`upgrade_hyperparameters`).

    Raises:
        ConfigurationError: the hyperparameters do not fit the variant's arguments.
    """
    # Keys starting with "_" are LightningCLI's bookkeeping (_class_path, _instantiator), not arguments.
    init_args = {k: v for k, v in upgrade_hyperparameters(hyper_parameters).items() if not k.startswith("_")}
    try:
        return instantiate_class((), {"class_path": class_path, "init_args": init_args})
    except (ImportError, AttributeError) as err:  # a variant defined in a script (__main__) is not importable
        raise ConfigurationError(
            f"{class_path} cannot be imported ({err}): define the variant in a module on the Python path"
        ) from err
    except TypeError as err:
        raise ConfigurationError(f"{class_path} cannot be built from the saved hyperparameters: {err}") from err


def load_gan(path: str | Path, map_location: str | torch.device = "cpu", unsafe_load: bool = False) -> GAN:
    """Rebuilds the GAN variant a checkpoint of this library was saved from, with its weights, in eval mode.

    ``path`` is a training checkpoint (``.ckpt``), a generator exported by ``gans.export`` (``.safetensors``:
    the generator's weights only, no pickle at all) or an official stylegan2-ada-pytorch snapshot (``.pkl``: a
    ``gans.StyleGAN2`` with its G, D and G_ema, read by :func:`gans.official.read_snapshot`, which never runs the
    code such a file embeds). A checkpoint loads with ``weights_only=True``: one that would need arbitrary unpickling
    (objects other than tensors and plain containers, which can run code while loading) is refused unless
    ``unsafe_load`` says its source is trusted.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigurationError: ``path`` is a folder, or the file is truncated, not a checkpoint of this library, or needs
            unsafe unpickling.
    """
    path = Path(path)
    expected = "a .ckpt written by training, a .safetensors from gans.export or an official StyleGAN2-ADA .pkl"
    if path.is_dir():
        raise ConfigurationError(f"checkpoint {str(path)!r} is a folder (expected {expected})")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist (expected {expected})")
    if path.suffix == ".safetensors":
        return load_exported(path, map_location)
    if path.suffix == ".pkl":
        from gans.official import build_stylegan2  # here: it imports gans.StyleGAN2, which imports this module

        return build_stylegan2(path).to(map_location).eval()
    problem = checkpoint_problem(path)
    if problem is not None:
        raise ConfigurationError(f"cannot load checkpoint {str(path)!r}: {problem}")
    checkpoint = _load_checkpoint(path, map_location, unsafe_load)
    class_path = checkpoint.get("gans", {}).get("class_path") if isinstance(checkpoint, dict) else None
    if class_path is None:
        raise ConfigurationError(f"{str(path)!r} is not a checkpoint of a gans model (it has no 'gans' entry)")
    try:
        model = build_gan(class_path, checkpoint.get("hyper_parameters", {}))
    except ConfigurationError as err:
        raise ConfigurationError(f"cannot load checkpoint {str(path)!r}: {err}") from err
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(map_location).eval()


def _load_checkpoint(path: Path, map_location: str | torch.device, unsafe_load: bool) -> Any:
    """``torch.load`` with ``weights_only=True``, or without it for a file that needs it when ``unsafe_load``;
    any failure becomes a ValueError that names the file."""
    try:
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            if not unsafe_load:
                raise ConfigurationError(
                    f"{str(path)!r} holds objects that only arbitrary unpickling can load, and unpickling can run any "
                    f"code ({str(err).splitlines()[0][:200]}). Load it only if you trust its source: --unsafe-load "
                    "(unsafe_load=True in Python)"
                ) from err
        return torch.load(path, map_location=map_location, weights_only=False)
    except ValueError:
        raise
    except Exception as err:
        raise ConfigurationError(f"cannot load checkpoint {str(path)!r}: {type(err).__name__}: {err}") from err


def exported_network(path: str | Path) -> str | None:
    """Which generator an export of ``gans.export`` holds (``"generator_ema"`` or ``"generator"``, from its metadata),
    ``None`` for a file that is not such an export: the file has one generator, so ``--raw`` cannot choose another."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError):
        return None
    return metadata.get("network") if metadata.get("format") == EXPORT_FORMAT else None


def load_exported(path: str | Path, map_location: str | torch.device = "cpu") -> GAN:
    """The variant of an exported generator, rebuilt from the file's metadata, with the generator's weights (the
    discriminator keeps its initial weights), in eval mode.

    Raises:
        ValueError: the file is not safetensors, not written by ``gans.export``, or does not fit the variant.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"cannot read {str(path)!r} as safetensors: {err}") from err
    if metadata.get("format") != EXPORT_FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a generator exported by gans.export (no format {EXPORT_FORMAT!r} metadata)"
        )
    try:
        model = build_gan(metadata["class_path"], json.loads(metadata["hyper_parameters"]))
    except ConfigurationError as err:
        raise ConfigurationError(f"cannot load {str(path)!r}: {err}") from err
    missing, unexpected = load_model(model.generator, str(path), strict=False)
    if missing or unexpected:
        raise ValueError(f"{str(path)!r} does not fit {metadata['class_path']}'s generator: missing {missing}, "
                         f"unexpected {unexpected}")
    return model.to(map_location).eval()
