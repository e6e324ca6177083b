"""Progressive and multi-scale GANs on Fashion-MNIST 32x32 (CPU): what growing buys, and the three families compared.

``speed``: the paper's speed argument. ProGAN as ``configs/progan_fashion_mnist.yaml`` trains with its growth
schedule and, separately, at 32x32 from the start (the same callback with ``start_resolution: 32``: same code, data,
optimizers), both for the same number of real images. Reported: wall-clock time and images until the final resolution
is reached and fully faded in, the total time of each run, and a grid of the EMA generator's samples at the end of
every resolution (``bench/figures/progan_growth_<r>.png``).

``compare``: ProGAN, MSG-GAN and LAPGAN, each from its Fashion-MNIST config, trained for the same wall-clock time
(Lightning's ``max_time``) and scored by ``callbacks.GANMetrics`` with a feature extractor it accepts: the penultimate
features of the small Fashion-MNIST classifier of ``bench/lazy_regularization.py`` (FID's Inception weights cannot be
downloaded here), so the "FID" is a Frechet distance in that classifier's features: only comparable between runs
scored with the same classifier file.

    python bench/lazy_regularization.py classifier --out bench/out/lazy_reg        # once (about 2 minutes)
    python bench/progressive.py speed --kimg 48 --out bench/out/progressive
    python bench/progressive.py compare --seconds 300 --out bench/out/progressive
    python bench/progressive.py compare --seconds 300 --models lapgan --tag _narrow \
        --set=--model.init_args.generator.init_args.features=32 --set=--model.init_args.discriminator.init_args.features=32
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "bench")]

from callbacks import GANMetrics, ProgressiveGrowing
from callbacks.samples import save_png, to_grid
from gans.cli import main as cli_main

CONFIGS = {
    "progan": "configs/progan_fashion_mnist.yaml",
    "msggan": "configs/msggan_fashion_mnist.yaml",
    "lapgan": "configs/lapgan_fashion_mnist.yaml",
}
CLASSIFIER = os.environ.get("GANS_BENCH_CLASSIFIER", str(REPO_ROOT / "bench" / "out" / "lazy_reg" / "classifier.pt"))


class ClassifierFeatures(nn.Module):
    """A GANMetrics feature extractor: uint8 [N, 3, H, W] (grey images repeated on 3 channels) -> (the Fashion-MNIST
    classifier's 256 penultimate features, its 10 logits), the images taken at 32x32 in [-1, 1] as it was trained."""

    def __init__(self, path: str = CLASSIFIER) -> None:
        super().__init__()
        from lazy_regularization import Classifier

        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: run `python bench/lazy_regularization.py classifier --out ...` first")
        self.classifier = Classifier()
        self.classifier.load_state_dict(torch.load(path, map_location="cpu")["state_dict"])
        self.classifier.eval()

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = images[:, :1].float() / 127.5 - 1.0
        if x.shape[-1] != 32:
            x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        return self.classifier(x)


class Timeline(L.Callback):
    """When each resolution starts (images shown, seconds since fitting began) and a grid of the EMA generator's
    samples from fixed latents at each change of resolution and at the end. The grid of resolution r is drawn on the
    first batch of the next fade, alpha 0, where the generator's output is exactly r's, pixel-doubled."""

    def __init__(self, out: Path, tag: str) -> None:
        self.out, self.tag, self.rows, self.start = out, tag, [], 0.0
        self.z = None

    def on_train_start(self, trainer, module):
        self.start = time.perf_counter()
        self.z = torch.randn(64, module.latent_dim, generator=torch.Generator().manual_seed(0))

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        state = (module.resolution, module.alpha)
        if not self.rows or self.rows[-1]["resolution"] != state[0] or (state[1] == 1.0) != self.rows[-1]["stable"]:
            if self.rows and self.rows[-1]["resolution"] != state[0]:
                self.grid(module, self.rows[-1]["resolution"])
            self.rows.append({"resolution": state[0], "stable": state[1] == 1.0, "images": module.images_seen,
                              "seconds": time.perf_counter() - self.start})

    def on_train_end(self, trainer, module):
        self.grid(module, module.resolution)
        self.rows.append({"end": True, "images": module.images_seen, "seconds": time.perf_counter() - self.start})

    def grid(self, module, resolution):
        for ema in (True, False):
            images = module.sample(z=self.z, ema=ema)
            save_png(to_grid(images, 8), self.out / f"{self.tag}_{resolution}{'' if ema else '_raw'}.png")


def build(config: str, out: Path, *overrides: str):
    """Model, data module and trainer of ``config`` as ``train.py fit`` builds them, without a logger or checkpoints,
    the Fashion-MNIST files read from ``$GANS_DATA_DIR``."""
    data_dir = os.environ.get("GANS_DATA_DIR", str(REPO_ROOT.parent / "shared" / "data"))
    return cli_main([
        "--config", str(REPO_ROOT / config), f"--trainer.default_root_dir={out}", "--trainer.logger=false",
        "--checkpoint=null", "--samples=null", "--metrics=false", "--trainer.enable_progress_bar=false",
        f"--data.init_args.data_dir={data_dir}", "--data.init_args.download=false", *overrides,
    ], run=False)


def score(cli, args: argparse.Namespace) -> dict[str, float]:
    """GANMetrics' FID and IS on ``args.samples`` images against as many training images, in the classifier's
    features (:class:`ClassifierFeatures`), of the EMA generator and (``*_raw``) of the trained one: in runs this
    short an average with decay 0.999 still weighs the first weights (0.999^500 = 0.61), so the raw generator's
    score is the one that says where training stands."""
    values = {}
    for ema, suffix in ((True, ""), (False, "_raw")):
        metrics = GANMetrics(every_n_steps=0, num_samples=args.samples, num_real=args.samples, metrics=["fid", "is"],
                             batch_size=250, feature_extractor="progressive.ClassifierFeatures",
                             cache_dir=str(args.out / "cache"), ema=ema)
        values.update({f"{name}{suffix}": value for name, value in metrics.evaluate(cli.trainer, cli.model).items()})
    return values


def speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    results = {}
    for mode in ("growing", "fixed"):
        cli = build(CONFIGS["progan"], args.out, f"--trainer.max_steps={round(args.kimg * 1000 / args.batch)}",
                    f"--data.init_args.batch_size={args.batch}")
        growing = next(c for c in cli.trainer.callbacks if isinstance(c, ProgressiveGrowing))
        # Each phase a sixth of the images: 32x32 is fully faded in after 3 (fade + stabilization) pairs, at the end.
        growing.fade_images = growing.stabilize_images = round(args.kimg * 1000 / 6)
        if mode == "fixed":
            growing.start_resolution = cli.model.resolutions[-1]
        timeline = Timeline(args.out / "figures", f"progan_{mode}")
        cli.trainer.callbacks.append(timeline)
        L.seed_everything(0, verbose=False)
        start = time.perf_counter()
        cli.trainer.fit(cli.model, cli.datamodule)
        seconds = time.perf_counter() - start
        results[mode] = {"seconds": seconds, "timeline": timeline.rows, "phase_images": growing.fade_images,
                         "threads": args.threads, **score(cli, args)}
        print(json.dumps({mode: results[mode]}), flush=True)
    (args.out / "speed.json").write_text(json.dumps(results, indent=1))


def compare(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    seconds = args.seconds
    rows = []
    for name in args.models:
        cli = build(CONFIGS[name], args.out, "--trainer.max_steps=-1",
                    f"--trainer.max_time=00:00:{seconds // 60:02d}:{seconds % 60:02d}", *args.set)
        L.seed_everything(0, verbose=False)
        start = time.perf_counter()
        cli.trainer.fit(cli.model, cli.datamodule)
        trained = time.perf_counter() - start
        values = score(cli, args)
        for ema in (True, False):
            grid = to_grid(cli.model.sample(64, generator=torch.Generator().manual_seed(0), ema=ema), 8)
            save_png(grid, args.out / "figures" / f"compare_{name}{args.tag}{'' if ema else '_raw'}.png")
        row = {"model": name + args.tag, "config": CONFIGS[name], "overrides": args.set, "train_seconds": trained, "iterations": cli.trainer.global_step,
               "kimg": cli.model.images_seen / 1000, **values}
        if hasattr(cli.model, "resolution"):
            row["resolution"] = cli.model.resolution
        rows.append(row)
        print(json.dumps(row), flush=True)
    (args.out / f"compare_{seconds}s{args.tag}.json").write_text(json.dumps(rows, indent=1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--kimg", type=float, default=48.0, help="thousands of real images per run")
    s.add_argument("--batch", type=int, default=64)
    c = sub.add_parser("compare")
    c.add_argument("--seconds", type=int, default=300, help="wall-clock training time per model")
    c.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    c.add_argument("--set", action="append", default=[], help="a CLI override for every model (--set=--model...=32)")
    c.add_argument("--tag", default="", help="suffix of the result names")
    for p in (s, c):
        p.add_argument("--samples", type=int, default=5000, help="generated and real images per score")
        p.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out" / "progressive")
        p.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    (args.out / "figures").mkdir(parents=True, exist_ok=True)
    {"speed": speed, "compare": compare}[args.command](args)


if __name__ == "__main__":
    main()
