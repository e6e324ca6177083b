"""Write samples of a trained generator or of an official StyleGAN2-ADA snapshot.

``python -m gans.sample --ckpt PATH (--num N | --seeds 0-3,7 | --latents FILE) (--out FILE | --outdir DIR)``.

``--ckpt`` is a checkpoint, an exported generator (``.safetensors``) or an official stylegan2-ada-pytorch snapshot
(``.pkl``, read without running its code). ``FILE.pt`` holds a float tensor in [-1, 1] shaped [N, C, H, W];
``FILE.png`` (or any image suffix) a grid; ``--outdir`` one PNG per sample (``seed0042.png`` for ``--seeds``, as
NVIDIA's ``generate.py`` names them). ``--num N --seed S`` draws N latents from one seeded sequence; ``--seeds`` draws
each latent from its own seed, the way ``generate.py`` does (numpy's ``RandomState(seed).randn``), so an official
snapshot gives the images ``generate.py`` gives; ``--latents`` decodes the latents of a ``.pt``/``.npy`` file
[N, z_dim]. ``--class``, ``--trunc``, ``--trunc-cutoff`` and ``--noise-mode`` are the controls of ``generate.py``; a
model that does not have one refuses it. Samples come from the EMA generator when there is one; ``--raw`` uses the
trained generator itself.
"""

from __future__ import annotations

import argparse
import inspect
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torchvision.io import write_png
from torchvision.utils import save_image

from gans.errors import ConfigurationError, OneLineArgumentParser
from gans.files import atomic_write, check_output
from gans.latent import split_inputs
from gans.loading import exported_network, load_gan
from gans.nets.stylegan2 import NOISE_MODES

if TYPE_CHECKING:
    from gans.base import GAN

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}

#: The style controls of ``generate.py``: command-line option -> keyword argument of the model's ``sample_output``.
STYLE_CONTROLS = {"--trunc": "truncation_psi", "--trunc-cutoff": "truncation_cutoff", "--noise-mode": "noise_mode"}


@dataclass(frozen=True)
class Controls:
    """How to pick the samples beyond their number: the ``generate.py`` controls, ``None`` where not given.

    Attributes:
        seeds: one sample per seed, its latents ``RandomState(seed).randn(1, *z_shape)``.
        latents: a ``.pt``/``.npy`` file of latents [N, z_dim] to decode.
        class_idx: the class of every sample, for a class-conditional model.
        truncation_psi: truncation towards the mean w (StyleGAN); 1 is none.
        truncation_cutoff: the layers truncated (``None``: all).
        noise_mode: ``const``, ``random`` or ``none`` (StyleGAN's per-pixel noise).
        outdir: write one PNG per sample into this folder instead of ``out``.
    """

    seeds: list[int] | None = None
    latents: str | Path | None = None
    class_idx: int | None = None
    truncation_psi: float | None = None
    truncation_cutoff: int | None = None
    noise_mode: str | None = None
    outdir: str | Path | None = None


def parse_seeds(text: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``: comma-separated seeds and inclusive ranges, as ``generate.py`` reads them.

    Raises:
        argparse.ArgumentTypeError: not such a list, or a seed outside numpy's 0 .. 2**32 - 1.
    """
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise argparse.ArgumentTypeError(f"{text!r}: expected seeds like 0-3,7 (numbers and inclusive ranges)")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low or high >= 2**32:
            raise argparse.ArgumentTypeError(f"{text!r}: {part.strip()} is not a range of seeds in 0 .. 2**32 - 1")
        seeds.extend(range(low, high + 1))
    return seeds


def sample_to_file(
    ckpt: str | Path,
    num: int | None,
    out: str | Path | None,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "cpu",
    ema: bool = True,
    unsafe_load: bool = False,
    controls: Controls | None = None,
) -> torch.Tensor:
    """Draws samples from the generator of ``ckpt`` (its EMA when it has one and ``ema``) and writes them.

    Args:
        ckpt: a checkpoint, an exported generator or an official snapshot (see :func:`gans.loading.load_gan`).
        num: the number of samples drawn with latents seeded by ``seed``; ``None`` with ``controls.seeds`` or
            ``controls.latents``.
        out: a ``.pt`` file (the tensor in [-1, 1]) or an image (a grid); ``None`` with ``controls.outdir``.
        seed: seeds the latents (and labels) of ``num`` samples.
        batch_size: samples per forward pass; the samples do not depend on it.
        device: the torch device of the generator.
        ema: use the EMA generator when there is one.
        unsafe_load: allow a checkpoint that needs arbitrary unpickling.
        controls: the ``generate.py`` controls.

    Returns:
        The samples, [N, C, H, W] in [-1, 1].

    Raises:
        ConfigurationError: a value that does not fit (the message names the option), a control the model does not
            support, an unreadable latents file or checkpoint.
        FileNotFoundError: the checkpoint or the latents file does not exist.
    """
    controls = controls or Controls()
    sources = [name for name, given in (("--num", num is not None), ("--seeds", controls.seeds is not None),
                                        ("--latents", controls.latents is not None)) if given]
    if len(sources) != 1:
        given = " and ".join(sources) or "none"
        raise ConfigurationError(f"{given}: give exactly one of --num, --seeds, --latents")
    if (out is None) == (controls.outdir is None):
        raise ConfigurationError("--out/--outdir: give exactly one of them")
    if num is not None and num < 1:
        raise ConfigurationError(f"--num {num}: expected a positive number of samples")
    if batch_size < 1:
        raise ConfigurationError(f"--batch-size {batch_size}: expected a positive integer")
    if out is not None and Path(out).suffix.lower() not in IMAGE_SUFFIXES | {".pt"}:
        raise ConfigurationError(
            f"--out {str(out)!r}: expected a .pt file or an image ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    if controls.noise_mode is not None and controls.noise_mode not in NOISE_MODES:
        raise ConfigurationError(f"--noise-mode {controls.noise_mode!r}: expected one of {', '.join(NOISE_MODES)}")
    if out is not None:
        check_output(out, "--out")
    else:
        check_output(controls.outdir, "--outdir", folder=True)
    check_device(device)
    if not ema and Path(ckpt).suffix == ".safetensors" and exported_network(ckpt) == "generator_ema":
        # The export holds the EMA generator alone: sampling it "raw" would give the EMA's images under --raw.
        raise ConfigurationError(f"--raw with --ckpt {str(ckpt)!r}: the file holds only the EMA generator; export "
                                 "the trained one with python -m gans.export --raw")
    model = load_gan(ckpt, map_location=device, unsafe_load=unsafe_load)
    style = style_arguments(model, controls)
    inputs, names = sample_inputs(model, num, seed, controls)
    images = torch.cat(
        [model.sample(**chunk, ema=ema, **style).cpu() for chunk in split_inputs(inputs, batch_size)]
    )
    if controls.outdir is not None:
        Path(controls.outdir).mkdir(parents=True, exist_ok=True)
        for image, name in zip(images, names, strict=True):
            # The image's own channels (save_image would make a grey image RGB), with save_image's rounding.
            pixels = ((image + 1) / 2).mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
            write_png(pixels, str(Path(controls.outdir) / f"{name}.png"))
    elif Path(out).suffix.lower() == ".pt":
        atomic_write(out, lambda tmp: torch.save(images, tmp))
    else:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        save_image((images + 1) / 2, out, nrow=max(1, round(math.sqrt(len(images)))), padding=2, pad_value=1.0)
    return images


def check_device(device: str | torch.device) -> None:
    """Refuses a device this machine cannot use (a misspelt name, ``cuda`` without a GPU or CUDA build), before the
    model is loaded onto it.

    Raises:
        ConfigurationError: the message names ``--device`` and the reason torch gives.
    """
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, ValueError) as err:  # torch raises AssertionError for a CPU-only build
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigurationError(f"--device {str(device)!r}: {reason}") from err


def style_arguments(model: GAN, controls: Controls) -> dict[str, Any]:
    """The style controls given, as keyword arguments of ``model.sample_output``.

    Raises:
        ConfigurationError: a control given for a model whose ``sample_output`` does not take it.
    """
    accepted = inspect.signature(model.sample_output).parameters
    arguments = {}
    for option, name in STYLE_CONTROLS.items():
        value = getattr(controls, name)
        if value is None:
            continue
        if name not in accepted:
            raise ConfigurationError(
                f"{option} {value}: {type(model).__name__} does not support it (its sample_output has no {name})"
            )
        arguments[name] = value
    return arguments


def sample_inputs(model: GAN, num: int | None, seed: int, controls: Controls) -> tuple[dict[str, torch.Tensor],
                                                                                       list[str]]:
    """The keyword inputs of ``model.sample`` for the chosen samples, and a file name for each."""
    if controls.seeds is not None:
        parts = [seeded_inputs(model, s) for s in controls.seeds]
        inputs = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
        names = [f"seed{s:04d}" for s in controls.seeds]
    elif controls.latents is not None:
        z = read_latents(controls.latents, model)
        inputs = {**model.sample_inputs(len(z), generator=torch.Generator().manual_seed(seed)), "z": z}
        names = [f"latent{i:04d}" for i in range(len(z))]
    else:
        # Inputs (latents, and labels for a conditional model) are drawn in one sequence, so the samples do not depend
        # on batch_size.
        inputs = model.sample_inputs(num, generator=torch.Generator().manual_seed(seed))
        names = [f"sample{i:04d}" for i in range(num)]
    if controls.class_idx is not None:
        key = class_input(model, controls.class_idx)
        inputs[key] = torch.full_like(inputs[key], controls.class_idx)
    return inputs, names


def seeded_inputs(model: GAN, seed: int) -> dict[str, torch.Tensor]:
    """One sample's inputs from ``seed``: latents ``RandomState(seed).randn(1, *z_shape)`` as NVIDIA's generate.py
    draws them (the same z for the same seed), any other input (labels) from a torch generator seeded alike."""
    inputs = model.sample_inputs(1, generator=torch.Generator().manual_seed(seed))
    if "z" in inputs and inputs["z"].numel():
        z = np.random.RandomState(seed).randn(*inputs["z"].shape)
        inputs["z"] = torch.from_numpy(z).to(inputs["z"])
    return inputs


def read_latents(path: str | Path, model: GAN) -> torch.Tensor:
    """Latents [N, z_dim] from a ``.pt`` (a tensor, read with ``weights_only=True``) or ``.npy`` file (no pickles).

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigurationError: another suffix, an unreadable file, or latents of another shape than the model's.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--latents {str(path)!r}: the file does not exist")
    try:
        if path.suffix == ".npy":
            z = torch.from_numpy(np.load(path, allow_pickle=False))
        elif path.suffix == ".pt":
            z = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise ConfigurationError(f"--latents {str(path)!r}: expected a .pt or .npy file of latents [N, z_dim]")
    except ConfigurationError:
        raise
    except Exception as err:
        raise ConfigurationError(f"--latents {str(path)!r}: cannot read it ({type(err).__name__}: {err})") from err
    expected = tuple(model.sample_z(1).shape[1:])
    if not isinstance(z, torch.Tensor) or z.dim() != 1 + len(expected) or tuple(z.shape[1:]) != expected or not len(z):
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        wanted = ", ".join(map(str, expected))
        raise ConfigurationError(f"--latents {str(path)!r}: holds {shape}; {type(model).__name__} takes latents [N, {wanted}]")
    return z.float()


def class_input(model: GAN, class_idx: int) -> str:
    """The keyword input that carries the class of a class-conditional model: the single class-index input of
    ``model.sample_conditions()`` (one row per class, ``arange(K)``).

    Raises:
        ConfigurationError: the model is not class-conditional, or ``class_idx`` is not one of its classes.
    """
    conditions = model.sample_conditions()
    classes = [(key, len(value)) for key, value in conditions.items()
               if value.dim() == 1 and not value.is_floating_point()]
    if len(classes) != 1:
        raise ConfigurationError(f"--class {class_idx}: {type(model).__name__} is not class-conditional")
    key, count = classes[0]
    if not 0 <= class_idx < count:
        raise ConfigurationError(f"--class {class_idx}: expected a class in 0 .. {count - 1}")
    return key


def main(argv: list[str] | None = None) -> None:
    parser = OneLineArgumentParser(prog="python -m gans.sample", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True,
                        help="checkpoint (.ckpt), exported generator (.safetensors) or official StyleGAN2-ADA .pkl")
    parser.add_argument("--num", type=int, help="number of samples, their latents drawn in one sequence from --seed")
    parser.add_argument("--seeds", type=parse_seeds, help="one sample per seed, e.g. 0-3,7 (as generate.py)")
    parser.add_argument("--latents", help="a .pt or .npy file of latents z [N, z_dim] to decode")
    parser.add_argument("--out", help="output file: .pt (tensor in [-1, 1]) or .png (grid)")
    parser.add_argument("--outdir", help="output folder: one PNG per sample (seed0042.png, latent0000.png, ...)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents of --num (default 0)")
    parser.add_argument("--class", dest="class_idx", type=int, help="class label of a class-conditional model")
    parser.add_argument("--trunc", type=float, help="truncation psi of a StyleGAN (1: none)")
    parser.add_argument("--trunc-cutoff", type=int, help="truncate only the first layers' styles (StyleGAN)")
    parser.add_argument("--noise-mode", help=f"per-pixel noise of a StyleGAN: {', '.join(NOISE_MODES)}")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per forward pass (default 256)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default cpu)")
    parser.add_argument("--raw", action="store_true", help="use the raw generator, not its EMA")
    parser.add_argument("--unsafe-load", action="store_true",
                        help="allow a checkpoint that needs arbitrary unpickling (only from a trusted source)")
    args = parser.parse_args(argv)
    controls = Controls(seeds=args.seeds, latents=args.latents, class_idx=args.class_idx, truncation_psi=args.trunc,
                        truncation_cutoff=args.trunc_cutoff, noise_mode=args.noise_mode, outdir=args.outdir)
    try:
        images = sample_to_file(
            args.ckpt, args.num, args.out, args.seed, args.batch_size, args.device, not args.raw, args.unsafe_load,
            controls,
        )
    except (OSError, ValueError) as err:  # OSError: a write refused by the system (permissions, a full disk)
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {images.shape[0]} samples {tuple(images.shape[1:])} to {args.out or args.outdir}")


if __name__ == "__main__":
    main()
