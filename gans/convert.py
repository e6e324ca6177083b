"""Convert an official StyleGAN2-ADA snapshot into this library's files.

``python -m gans.convert --pkl network-snapshot.pkl --out stylegan2.ckpt`` writes a checkpoint of a ``gans.StyleGAN2``
with the snapshot's G, D and G_ema (the EMA generator); ``--out generator.safetensors`` writes the G_ema generator
alone (``--raw``: G), as ``gans.export`` does. Both load with ``gans.loading.load_gan`` and ``gans.sample`` without any
pickle. The snapshot is read by :func:`gans.official.read_snapshot`, which never runs the code such files embed. The
checkpoint holds the model, not a training state (the snapshot has no optimizer states): it is for sampling, export
and editing, not for ``--ckpt_path``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import lightning
import torch

from gans.errors import ConfigurationError, OneLineArgumentParser
from gans.export import export_generator
from gans.files import atomic_write, check_output
from gans.official import build_stylegan2

if TYPE_CHECKING:
    from gans.base import GAN

SUFFIXES = (".ckpt", ".safetensors")


def save_model(model: GAN, out: str | Path) -> Path:
    """Writes ``model`` (its networks, EMA included, and hyperparameters) as a checkpoint that ``load_gan`` reads,
    atomically: what Lightning's checkpoint holds of the module, without a trainer's state.

    Returns:
        ``out`` as a ``Path``.
    """
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
    }
    model.on_save_checkpoint(checkpoint)  # the class path and counters, as in a checkpoint written by training
    return atomic_write(out, lambda tmp: torch.save(checkpoint, tmp))


def convert_snapshot(pkl: str | Path, out: str | Path, ema: bool = True) -> Path:
    """Converts the official snapshot ``pkl`` into ``out``: a ``.ckpt`` of the whole model or a ``.safetensors``
    of its generator (G_ema, or G when not ``ema``).

    Raises:
        ConfigurationError: ``out`` has another suffix or cannot be written (a folder), ``ema`` is off for a
            ``.ckpt``, or the snapshot cannot be read or built (see :func:`gans.official.build_stylegan2`).
        FileNotFoundError: ``pkl`` does not exist.
    """
    out = Path(out)
    if out.suffix not in SUFFIXES:
        raise ConfigurationError(f"--out {str(out)!r}: expected a {' or '.join(SUFFIXES)} file")
    if not ema and out.suffix == ".ckpt":  # it would be ignored: a checkpoint holds both generators
        raise ConfigurationError(f"--raw with --out {str(out)!r}: a .ckpt holds G, D and G_ema; --raw chooses G for a "
                                 ".safetensors")
    check_output(out, "--out")
    model = build_stylegan2(pkl)
    if out.suffix == ".safetensors":
        return export_generator(model, out, ema=ema)
    return save_model(model, out)


def main(argv: list[str] | None = None) -> None:
    parser = OneLineArgumentParser(prog="python -m gans.convert", description=__doc__.splitlines()[0])
    parser.add_argument("--pkl", required=True, help="official stylegan2-ada-pytorch snapshot (.pkl)")
    parser.add_argument("--out", required=True, help="output: .ckpt (G, D, G_ema) or .safetensors (the generator)")
    parser.add_argument("--raw", action="store_true", help="with .safetensors: export G, not G_ema")
    args = parser.parse_args(argv)
    try:
        out = convert_snapshot(args.pkl, args.out, ema=not args.raw)
    except (OSError, ValueError) as err:  # OSError: a write refused by the system (permissions, a full disk)
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {args.pkl} as {out}")


if __name__ == "__main__":
    main()
