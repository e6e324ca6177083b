"""Paired and unpaired translation on the silhouettes set (CPU): Pix2Pix and CycleGAN for the same wall-clock budget,
scored on the 55 validation pairs against the trivial baselines.

Pix2Pix trains as ``configs/pix2pix_silhouettes.yaml`` (the pairs); CycleGAN (when ``gans.CycleGAN`` exists) as
``configs/cyclegan_silhouettes.yaml``, or its defaults without that file, on the same training images with the
pairing thrown away: the A halves and the B halves are written as two folders (``trainA/``, ``trainB/``) under
file names shuffled independently, so neither the names nor the order pair them, and
``datamodules.unpaired.UnpairedImageDataModule`` draws them apart. Both translate the same direction (``--direction``,
photo -> outline by default) at the same size, each for ``--seconds`` of training (Lightning's ``max_time``), without
validation during the run, without a generator average (the papers keep none) and on ``--threads`` CPU threads.

Reported, on the 55 validation pairs cut as validation cuts them (resized to ``--size``): L1 (images in [-1, 1]),
PSNR (dB, per image, then averaged) and SSIM (torchmetrics' Gaussian window) in [0, 1] as the translation base
computes them (:mod:`gans.translation`), for each model and for two trivial baselines: output = input and output =
the mean training target (the pixel-wise mean of the 100 training targets, cut as validation); the iterations run,
the median seconds per iteration (a training batch: one D and one G step) and the epochs reached. Each model's
translations are drawn in batches of its training batch size (its batch norms use the statistics of the batch at
test time, as the paper) with a fixed seed. A figure per model, ``bench/figures/translation_<model>.png``: rows of
input | output | target for the first 8 validation pairs.

    python bench/translation.py --seconds 20 --out bench/out/translation_smoke          # a smoke test
    python bench/translation.py --models pix2pix --seconds 3000 --out bench/out/translation              # the benchmark
    python bench/translation.py --models cyclegan --seconds 3000 --out bench/out/translation_cyclegan     # (2 processes)

Run the two models of a long benchmark in two processes: in one process the command line's second parse (CycleGAN's
config after Pix2Pix's) refuses CycleGAN's ``LinearDecay`` scheduler spec ("Option 'g_scheduler.init_args.constant' is
not accepted"), a jsonargparse state carried between parses that a fresh process does not have.

Results go to ``<out>/translation_<seconds>s.json`` (one row per model and baseline) and are printed as they come.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch
from PIL import Image
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT)]

import gans
from callbacks.samples import save_png, to_grid
from datamodules.paired import PairedImageDataModule
from gans.cli import main as cli_main
from gans.translation import as_rgb, to_unit

#: The silhouettes set: ``$GANS_DATA_DIR/silhouettes``, else ``../shared/data/silhouettes`` beside the repository.
DATA = str(Path(os.environ.get("GANS_DATA_DIR", REPO_ROOT.parent / "shared" / "data")) / "silhouettes")
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class IterationTimer(L.Callback):
    """Seconds of every training batch (data loading excluded), for the time per iteration."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch, batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def scores(output: Tensor, target: Tensor) -> dict[str, float]:
    """L1, PSNR and SSIM of ``output`` against ``target`` ([N, C, H, W] in [-1, 1]), as the translation base's
    ``evaluation_terms`` computes them, the PSNR per image and averaged over the images."""
    fake, real = to_unit(output), to_unit(target)
    psnr = peak_signal_noise_ratio(fake, real, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return {
        "l1": (output.float() - target.float()).abs().mean().item(),
        "psnr": psnr.mean().item(),
        "ssim": structural_similarity_index_measure(fake, real, data_range=1.0).item(),
    }


def held_out(direction: str, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """The validation sources and targets [55, C, size, size] and the mean training target [C, size, size], every
    image cut as validation cuts it (resized to ``size``, no jitter)."""
    data = PairedImageDataModule(data_dir=DATA, direction=direction, load_size=size, crop_size=size, jitter=False,
                                 to_channels=3, seed=0)
    data.setup("fit")
    val = [data.splits["val"][i] for i in range(len(data.splits["val"]))]
    train = [data.train_set[i] for i in range(len(data.train_set))]
    source, target = (torch.stack([item[k] for item in val]) for k in (0, 1))
    return source, target, torch.stack([item[1] for item in train]).mean(0)


def write_unpaired(out: Path, seed: int = 0) -> Path:
    """CycleGAN's layout from the AB files: the training A halves and B halves under ``trainA/`` and ``trainB/``,
    each named by its own random permutation (no name or position pairs them), the validation halves under
    ``testA/`` and ``testB/`` with their shared names (the unpaired loader pairs held-out sets in order, so its own
    validation would see true pairs). Returns the folder."""
    root = out / "silhouettes_unpaired"
    rng = random.Random(seed)
    for split, held in (("train", "train"), ("val", "test")):
        files = sorted(p for p in (Path(DATA) / split).iterdir() if p.suffix.lower() in SUFFIXES)
        names = {d: list(range(len(files))) for d in "AB"}
        if split == "train":
            for order in names.values():
                rng.shuffle(order)
        for d in "AB":
            (root / f"{held}{d}").mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(files):
            with Image.open(path) as image:
                image = image.convert("RGB")
                half = image.width // 2
                image.crop((0, 0, half, image.height)).save(root / f"{held}A" / f"{names['A'][i]:03d}.png")
                image.crop((half, 0, 2 * half, image.height)).save(root / f"{held}B" / f"{names['B'][i]:03d}.png")
    return root


def max_time(seconds: int) -> str:
    """Lightning's ``max_time`` as DD:HH:MM:SS."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours // 24:02d}:{hours % 24:02d}:{minutes:02d}:{secs:02d}"


def common_args(args: argparse.Namespace, run_dir: Path) -> list[str]:
    """What both runs share: the budget, no validation, logger, checkpoints, grids, metrics or average."""
    load = round(args.size * 286 / 256)  # the paper's jitter, scaled
    return [
        f"--trainer.default_root_dir={run_dir}", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
        "--trainer.max_steps=-1", f"--trainer.max_time={max_time(args.seconds)}",
        "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
        "--checkpoint=null", "--samples=null", "--metrics=false", "--ema=null",
        f"--data.init_args.direction={args.direction}", f"--data.init_args.crop_size={args.size}",
        f"--data.init_args.load_size={load}", "--data.init_args.to_channels=3",
    ]


def run(name: str, cli_args: list[str], args: argparse.Namespace, source: Tensor, target: Tensor) -> dict:
    """Trains one model for the budget, then scores its translations of the validation sources and draws its
    figure."""
    argv, sys.argv = sys.argv, sys.argv[:1]  # the CLI warns when it sees this script's own arguments too
    try:
        cli = cli_main(cli_args, run=False)
    finally:
        sys.argv = argv
    timer = IterationTimer()
    cli.trainer.callbacks.append(timer)
    L.seed_everything(0, verbose=False)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    trained = time.perf_counter() - start
    model = cli.model.eval()
    batch = cli.datamodule.batch_size
    generator = torch.Generator().manual_seed(0)
    output = torch.cat([model.sample(source=s, generator=generator, ema=False).cpu() for s in source.split(batch)])
    rows = torch.stack([as_rgb(source[:8]), as_rgb(output[:8]), as_rgb(target[:8])], dim=1).flatten(0, 1)
    figure = save_png(to_grid(rows, 3), REPO_ROOT / "bench" / "figures" / f"translation_{name}{args.tag}.png")
    steady = timer.seconds[3:] or timer.seconds  # the first batches pay for allocation and warm-up
    return {
        "model": name + args.tag, "train_seconds": round(trained, 1), "iterations": cli.trainer.global_step,
        "epochs": round(cli.trainer.global_step / max(cli.trainer.num_training_batches, 1), 2), "batch_size": batch,
        "seconds_per_iteration": round(statistics.median(steady), 4) if steady else None,
        **scores(output, target), "figure": str(figure.relative_to(REPO_ROOT)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=1800, help="training budget of each model, wall-clock")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out" / "translation")
    parser.add_argument("--models", nargs="+", default=["pix2pix", "cyclegan"], choices=["pix2pix", "cyclegan"])
    parser.add_argument("--direction", default="AtoB", choices=["AtoB", "BtoA"],
                        help="AtoB: photo -> outline; BtoA: outline -> photo")
    parser.add_argument("--size", type=int, default=64, help="image side (the configs' 64)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--tag", default="", help="suffix of the model names, figures and results file")
    parser.add_argument("--set", action="append", default=[], metavar="--KEY=VALUE",
                        help="extra command-line arguments of both runs (e.g. --set=--data.init_args.batch_size=1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    source, target, mean_target = held_out(args.direction, args.size)
    rows = [
        {"model": "baseline: output = input", **scores(source, target)},
        {"model": "baseline: output = mean training target", **scores(mean_target.expand_as(target), target)},
    ]
    for row in rows:
        print(json.dumps(row), flush=True)
    for name in args.models:
        run_dir = args.out / name
        if name == "pix2pix":
            cli_args = ["--config", str(REPO_ROOT / "configs" / "pix2pix_silhouettes.yaml"),
                        f"--data.init_args.data_dir={DATA}"]
        elif not hasattr(gans, "CycleGAN"):
            print(json.dumps({"model": "cyclegan", "skipped": "gans.CycleGAN does not exist"}), flush=True)
            continue
        else:
            config = REPO_ROOT / "configs" / "cyclegan_silhouettes.yaml"
            model_data = ["--config", str(config)] if config.is_file() else [
                "--model=gans.CycleGAN", "--data=datamodules.unpaired.UnpairedImageDataModule"]
            cli_args = [*model_data, f"--data.init_args.data_dir={write_unpaired(args.out)}"]
        row = run(name, [*cli_args, *common_args(args, run_dir), *args.set], args, source, target)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"seconds": args.seconds, "size": args.size, "direction": args.direction, "threads": args.threads,
              "overrides": args.set, "rows": rows}
    (args.out / f"translation_{args.seconds}s{args.tag}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
