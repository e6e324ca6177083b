"""Write samples of a trained generator: ``python -m gans.sample --ckpt PATH --num N --out FILE [--seed S]``.

``FILE.pt`` holds a float tensor in [-1, 1] shaped [N, C, H, W]; ``FILE.png`` (or any image suffix) a grid.
Samples come from the EMA generator when the checkpoint has one; ``--raw`` uses the trained generator itself.
"""

import argparse
import math
from pathlib import Path

import torch
from torchvision.utils import save_image

from gans.files import atomic_write
from gans.latent import split_inputs
from gans.loading import load_gan

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def sample_to_file(
    ckpt: str | Path,
    num: int,
    out: str | Path,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "cpu",
    ema: bool = True,
    unsafe_load: bool = False,
) -> torch.Tensor:
    """Draws ``num`` samples from the checkpoint's generator (its EMA when it has one and ``ema``) with latents
    seeded by ``seed`` and writes ``out``."""
    out = Path(out)
    if num < 1:
        raise ValueError(f"--num {num}: expected a positive number of samples")
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size}: expected a positive integer")
    if out.suffix.lower() not in IMAGE_SUFFIXES | {".pt"}:
        raise ValueError(f"--out {str(out)!r}: expected a .pt file or an image ({', '.join(sorted(IMAGE_SUFFIXES))})")
    model = load_gan(ckpt, map_location=device, unsafe_load=unsafe_load)
    rng = torch.Generator().manual_seed(seed)
    # Inputs (latents, and labels for a conditional model) are drawn in one sequence, so the samples do not depend on
    # batch_size.
    inputs = model.sample_inputs(num, generator=rng)
    images = torch.cat([model.sample(**chunk, ema=ema).cpu() for chunk in split_inputs(inputs, batch_size)])
    if out.suffix.lower() == ".pt":
        atomic_write(out, lambda tmp: torch.save(images, tmp))
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image((images + 1) / 2, out, nrow=max(1, round(math.sqrt(num))), padding=2, pad_value=1.0)
    return images


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gans.sample", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint (.ckpt) or exported generator (.safetensors)")
    parser.add_argument("--num", type=int, required=True, help="number of samples")
    parser.add_argument("--out", required=True, help="output file: .pt (tensor in [-1, 1]) or .png (grid)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per forward pass (default 256)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default cpu)")
    parser.add_argument("--raw", action="store_true", help="use the raw generator, not its EMA")
    parser.add_argument("--unsafe-load", action="store_true",
                        help="allow a checkpoint that needs arbitrary unpickling (only from a trusted source)")
    args = parser.parse_args(argv)
    try:
        images = sample_to_file(
            args.ckpt, args.num, args.out, args.seed, args.batch_size, args.device, not args.raw, args.unsafe_load
        )
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {images.shape[0]} samples {tuple(images.shape[1:])} to {args.out}")


if __name__ == "__main__":
    main()
