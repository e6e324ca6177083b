"""Files written whole or not at all, with the permissions a plain ``open`` would give them.

Every file this library writes for a user to keep (checkpoints, exported generators, predictions, cached metric
statistics) goes through :func:`atomic_write`: the content is written to a temporary file beside the target, flushed
to disk, given the process umask's permissions and renamed over the target, so a crash mid-write leaves the previous
file intact, never a truncated one. Setting the permissions matters because some writers do not honour the umask:
safetensors creates its files with mode 0600, which a colleague on a shared cluster cannot read.
"""

import os
from collections.abc import Callable
from pathlib import Path


def current_umask() -> int:
    """The process's file-creation mask (``os.umask`` can only be read by setting it, so it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
