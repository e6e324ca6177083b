"""Hardware knobs of a GAN that leave the math unchanged: the channels-last memory format and ``torch.compile``."""

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from gans.errors import ConfigurationError


def channels_last(t: Tensor) -> Tensor:
    """A 4-D tensor in the channels-last memory format (what tensor cores prefer for convolutions); others as they
    are."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


def check_compile(names: Iterable[str] | None, networks: Iterable[str]) -> list[str]:
    """The names of the networks to compile, validated against the model's ``networks``.

    Raises:
        ConfigurationError: a name that is not one of the model's networks.
    """
    names, networks = list(names or []), list(networks)
    unknown = [name for name in names if name not in networks]
    if unknown:
        raise ConfigurationError(f"compile={names}; expected a list of the model's networks: {', '.join(networks)}")
    return names


def compile_networks(module: nn.Module, names: Iterable[str]) -> None:
    """Compiles the submodules ``names`` of ``module`` in place with ``torch.compile``; their parameter names and
    checkpoints stay those of the eager modules."""
    for name in names:
        getattr(module, name).compile()


def double_backward_error(err: RuntimeError, total: str, compiled: list[str]) -> RuntimeError | None:
    """The message for a backward that failed because it differentiated through a compiled network's gradient, or
    ``None`` for any other error."""
    if "double backward" not in str(err) or not compiled:
        return None
    return RuntimeError(
        f"train/{total} needs a double backward through a compiled network (compile={compiled}): input-gradient "
        "penalties (WGAN-GP, R1, R2) and unrolling differentiate through the discriminator's gradient, which "
        "torch.compile does not support; compile only the generator"
    )
