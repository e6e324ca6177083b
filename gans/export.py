"""Export a trained generator to safetensors: ``python -m gans.export --ckpt PATH --out generator.safetensors``.

The file holds the generator's tensors (the EMA generator's when the checkpoint has one; ``--raw`` for the trained
one) and, as string metadata, the variant's class path and hyperparameters, so that ``gans.base.load_gan`` and
``gans.sample`` rebuild the generator without unpickling anything.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_model

from gans.base import GAN
from gans.errors import OneLineArgumentParser
from gans.files import atomic_write, check_output
from gans.loading import EXPORT_FORMAT, load_exported, load_gan

FORMAT = EXPORT_FORMAT
__all__ = ["FORMAT", "export_generator", "load_exported", "main"]


def export_generator(model: GAN, out: str | Path, ema: bool = True) -> Path:
    """Writes ``model``'s generator (its EMA when it has one and ``ema``) to ``out``, atomically, with the permissions
    of the process umask (0644 under the usual 022)."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {str(out)!r}: expected a .safetensors file")
    use_ema = ema and model.generator_ema is not None
    network = model.generator_ema if use_ema else model.generator
    try:
        hyper_parameters = json.dumps(dict(model.hparams))
    except TypeError as err:
        raise ValueError(f"the hyperparameters of {type(model).__name__} are not JSON: {err}") from err
    metadata = {
        "format": FORMAT,
        "class_path": f"{type(model).__module__}.{type(model).__qualname__}",
        "hyper_parameters": hyper_parameters,
        "network": "generator_ema" if use_ema else "generator",
    }
    # safetensors alone would create the file with mode 0600, unreadable for the colleagues it is meant for.
    return atomic_write(out, lambda tmp: save_model(network, str(tmp), metadata=metadata))


def main(argv: list[str] | None = None) -> None:
    parser = OneLineArgumentParser(prog="python -m gans.export", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True,
                        help="checkpoint written by training (.ckpt) or official StyleGAN2-ADA snapshot (.pkl)")
    parser.add_argument("--out", required=True, help="output file (.safetensors)")
    parser.add_argument("--raw", action="store_true", help="export the raw generator, not its EMA")
    parser.add_argument("--unsafe-load", action="store_true",
                        help="allow a checkpoint that needs arbitrary unpickling (only from a trusted source)")
    args = parser.parse_args(argv)
    try:
        if not args.out.endswith(".safetensors"):
            raise ValueError(f"--out {args.out!r}: expected a .safetensors file")
        check_output(args.out, "--out")
        model = load_gan(args.ckpt, unsafe_load=args.unsafe_load)
        out = export_generator(model, args.out, ema=not args.raw)
    except (OSError, ValueError) as err:  # OSError: a write refused by the system (permissions, a full disk)
        parser.exit(2, f"error: {err}\n")
    print(f"wrote the {'raw' if args.raw or model.generator_ema is None else 'EMA'} generator of {args.ckpt} to {out}")


if __name__ == "__main__":
    main()
