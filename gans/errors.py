"""The exception for a user's configuration mistake, shared by the GAN modules, data modules and callbacks.

It imports nothing from the library, so any module can raise it without an import cycle. The command line
(:mod:`gans.cli`) reports it as one ``error:`` line naming the argument, with exit status 2, instead of a traceback;
any other exception is a bug and keeps its traceback.
"""

import argparse
import re
import sys
from typing import NoReturn

# The house style of validation messages: "name=value ..." (e.g. "batch_size=0 is invalid; expected ...").
_LEADING_ARGUMENT = re.compile(r"([A-Za-z_]\w*)=")


class ConfigurationError(ValueError):
    """A value the user configured is not accepted: the message names the value and what is accepted.

    Args:
        message: what is wrong and what would be accepted, e.g. ``"batch_size=0 is invalid; expected an integer >=
            1"``.
        argument: the ``__init__`` argument (or command-line option without ``--``) that holds the value, e.g.
            ``"batch_size"``; by default the ``name`` of a message that starts with ``name=``, else ``None``.
    """

    def __init__(self, message: str, argument: str | None = None) -> None:
        super().__init__(message)
        match = _LEADING_ARGUMENT.match(message)
        self.argument = argument if argument is not None else (match.group(1) if match else None)


class MissingFileError(ConfigurationError, FileNotFoundError):
    """A file or folder that the configuration names (a data directory, a weights file) does not exist or lacks
    what is needed; still a ``FileNotFoundError`` for callers that catch that."""


def check_at_least(low: int, owner: str | None = None, **values: int) -> None:
    """Refuses the first of ``values`` below ``low``, in the house style.

    Args:
        low: the smallest accepted value.
        owner: the class whose arguments these are, named in the message the way callbacks name theirs
            (``"GANMetrics(num_samples=1): ..."``); ``None`` for the plain ``"num_samples=1 is invalid; ..."``.
        **values: the arguments to check, by name.

    Raises:
        ConfigurationError: a value below ``low``; the message names it and what is accepted.
    """
    for name, value in values.items():
        if value < low:
            where = f"{owner}({name}={value}):" if owner else f"{name}={value} is invalid;"
            raise ConfigurationError(f"{where} expected an integer >= {low}")


class OneLineArgumentParser(argparse.ArgumentParser):
    """The parser of the ``python -m gans.*`` tools: a mistake on the command line (a bad ``--seeds``, a missing
    ``--out``) is one ``error:`` line and a pointer to ``--help``, as ``train.py`` reports it, without argparse's
    usage block, which buried the one line that names the value; exit status 2 as argparse's."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message}\ntip: {self.prog} --help lists the accepted options\n")
        sys.exit(2)
