"""Files written whole or not at all, with the permissions a plain ``open`` would give them.

The tensor files this library writes for a user to keep (checkpoints, exported generators, predictions, cached
metric statistics, ``gans.sample``'s tensors) go through :func:`atomic_write`: the content is written to a temporary
file beside the target, flushed to disk, given the process umask's permissions and renamed over the target, so a
crash mid-write leaves the previous file intact, never a truncated one. Setting the permissions matters because some
writers do not honour the umask: safetensors creates its files with mode 0600, which a colleague on a shared cluster
cannot read.
"""

import os
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

from gans.errors import ConfigurationError


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Calls ``write(tmp)`` to create the file ``tmp`` beside ``path``, then moves it into place atomically.

    Args:
        path: the file to create or replace; its folder is created when missing.
        write: writes the whole content to the path it is given (``torch.save``, ``safetensors.torch.save_model``).

    Returns:
        ``path`` as a ``Path``, with mode ``0o666 & ~umask`` (0644 under the usual umask 022), as ``open`` gives.

    Raises:
        Whatever ``write`` raises; the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # The mode the process umask gives a new file, read from a file created with it: os.umask can only be read
        # by setting it, which would race with other threads creating files.
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        os.close(fd)
        write(tmp)  # may replace the file, with a mode of its own
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_output(path: str | Path, option: str, folder: bool = False) -> None:
    """Refuses an output path that cannot be written, before any work is done: a folder where a file is to be written
    (or a file where a folder is), or a file where one of its parent folders would be. Checked up front because the
    write itself would fail only at the end, after loading and sampling, with an ``OSError`` about a temporary file.

    Args:
        path: the file (or with ``folder``, the folder) to be written; missing parents are created later.
        option: the command-line option that gave it, named in the message (``"--out"``).
        folder: ``path`` is a folder to write files into.

    Raises:
        ConfigurationError: ``path`` cannot be written; the message names the option and the path.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind = "a folder" if folder else "a file"
        raise ConfigurationError(f"{option} {str(path)!r}: expected {kind}, and it exists as the other kind")
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise ConfigurationError(f"{option} {str(path)!r}: {str(blocking)!r} is a file, not a folder")


def checkpoint_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a complete checkpoint file, or ``None`` when it is one. Cheap: ``torch.save`` writes a zip
    archive whose central directory comes last, so a truncated file has none (the data is not read)."""
    path = Path(path)
    if not path.is_file():
        return "the file does not exist"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        return f"truncated or not a checkpoint ({err})"
    if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in names):
        return "a zip archive without the data.pkl of a torch checkpoint"
    return None
