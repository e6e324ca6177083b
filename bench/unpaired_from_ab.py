"""Makes CycleGAN's unpaired layout from a pix2pix "AB" set: each image split at half its width into A (left) and B
(right), training halves under ``trainA/`` and ``trainB/`` (the unpaired loader pairs them at random, so the true
partners are apart), each held-out split's under ``<split>A/`` and ``<split>B/`` with the same file names, so the
deterministic serial pairing of the loader's held-out sets pairs every A with its own B and the base's L1, PSNR and
SSIM of G(a) against b measure the translation. Halves are written as PNG (no second JPEG loss).

    python bench/unpaired_from_ab.py ../shared/data/silhouettes data/silhouettes_unpaired

(``configs/cyclegan_silhouettes.yaml`` reads ``data/silhouettes_unpaired``.)
"""

import argparse
from pathlib import Path

from PIL import Image

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def split_ab(source: Path, target: Path, held_out: str = "val") -> dict[str, int]:
    """Writes the halves of ``source/train/*`` to ``target/trainA``, ``trainB`` and of ``source/<held_out>/*`` to
    ``target/<held_out>A``, ``<held_out>B``; returns the images written per split.

    Raises:
        FileNotFoundError: ``source/train`` is missing.
    """
    if not (source / "train").is_dir():
        raise FileNotFoundError(f"{source / 'train'} does not exist: expected a pix2pix AB set")
    counts = {}
    for split in ("train", held_out):
        files = sorted(p for p in (source / split).glob("*") if p.suffix.lower() in SUFFIXES)
        for domain in "AB":
            (target / f"{split}{domain}").mkdir(parents=True, exist_ok=True)
        for path in files:
            with Image.open(path) as image:
                image = image.convert("RGB")
                half = image.width // 2
                image.crop((0, 0, half, image.height)).save(target / f"{split}A" / f"{path.stem}.png")
                image.crop((half, 0, 2 * half, image.height)).save(target / f"{split}B" / f"{path.stem}.png")
        counts[split] = len(files)
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the AB set (holding train/ and val/)")
    parser.add_argument("target", type=Path, help="the folder to write trainA/, trainB/, valA/, valB/ into")
    parser.add_argument("--held-out", default="val", help="the AB set's held-out split (val or test)")
    args = parser.parse_args()
    print(split_ab(args.source, args.target, args.held_out))
