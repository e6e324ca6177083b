"""Mode coverage of the classic GANs on the 2-D mixtures (8 Gaussians on a ring, 25 on a grid).

Every variant trains the same MLP networks (those of the PacGAN and VEEGAN 2-D experiments, narrower: G has four
ReLU+BatchNorm layers of ``--g-width`` units, D three maxout layers of ``--d-width`` units with 5 pieces; an
auto-encoder of the same width for BEGAN) for the same number of generator iterations, with each variant's own loss,
regulariser, optimizer and critic steps as its class defines them. After training, ``--eval-samples`` points from the
generator are scored with ``datamodules.mixtures.mode_coverage``: modes covered (at least 20 high-quality points
nearest to the mode) and the share of high-quality points (within 3 std of a mode). Mean and standard deviation
over seeds are printed as a Markdown table; a scatter plot of seed 0's samples over the true modes is written per
variant and mixture.

    python bench/mode_coverage.py --steps 3000 --seeds 0 1 2 --out bench/results/mode_coverage
"""

import argparse
import json
import logging
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torchvision.utils import save_image

from datamodules.mixtures import GaussianMixtureDataModule, mode_coverage
from gans import BEGAN, LSGAN, MLPGAN, WGAN, WGANGP, UnrolledGAN
from gans.base import GAN, optimizer_factory
from gans.nets import MLPAutoencoder, MLPDiscriminator, MLPGenerator
from gans.sngan import SNGAN_ADAM


def adam(lr: float) -> dict:
    return {"class_path": "torch.optim.Adam", "init_args": {"lr": lr, "betas": (0.5, 0.999)}}


def optimizers(args: argparse.Namespace) -> dict:
    """The optimizers of the variants whose paper gives none for this setting: those of the unrolled-GAN paper's
    2-D experiment, Adam with beta1 0.5 and a generator learning rate ten times the discriminator's."""
    return {"g_optimizer": adam(args.g_lr), "d_optimizer": adam(args.d_lr)}


def networks(args: argparse.Namespace, pack: int = 1, **d_kwargs) -> tuple[nn.Module, nn.Module]:
    generator = MLPGenerator(args.latent_dim, (2,), (args.g_width,) * args.g_layers, tanh=False)
    discriminator = MLPDiscriminator(
        (2 * pack,), (args.d_width,) * args.d_layers, pieces=1, input_dropout=0, dropout=0, **d_kwargs
    )
    return generator, discriminator


def mlp(args: argparse.Namespace, pack: int = 1, d_spectral_norm: bool = False, d_minibatch: str | None = None, **kw):
    return MLPGAN(
        latent_dim=args.latent_dim, data_shape=(2,), g_hidden=(args.g_width,) * args.g_layers, g_tanh=False,
        d_hidden=(args.d_width,) * args.d_layers, d_pieces=1, d_input_dropout=0, d_dropout=0,
        d_spectral_norm=d_spectral_norm, d_minibatch=d_minibatch, pack=pack, **{**optimizers(args), **kw},
    )


def swapped(model: GAN, generator: nn.Module, discriminator: nn.Module) -> GAN:
    """A variant trains whatever networks it is given: its own are replaced before training."""
    model.generator, model.discriminator = generator, discriminator
    return model


TINY_IMAGES = {"image_size": 8, "g_features": 1, "d_features": 1}  # networks replaced at once
VARIANTS: dict[str, Callable[[argparse.Namespace], GAN]] = {
    "GAN (minimax)": lambda a: mlp(a, loss="minimax"),
    "GAN (non-saturating)": lambda a: mlp(a),
    "WGAN (clipping)": lambda a: swapped(WGAN(**TINY_IMAGES, latent_dim=a.latent_dim), *networks(a)),
    "WGAN-GP": lambda a: swapped(WGANGP(**TINY_IMAGES, latent_dim=a.latent_dim), *networks(a)),
    "LSGAN": lambda a: swapped(LSGAN(**TINY_IMAGES, latent_dim=a.latent_dim, **optimizers(a)), *networks(a)),
    "SNGAN (hinge, spectral norm)": lambda a: mlp(
        a, loss="hinge", d_spectral_norm=True, n_critic=5, g_optimizer=SNGAN_ADAM, d_optimizer=SNGAN_ADAM
    ),
    "R1 (gamma 0.1)": lambda a: mlp(a, r1_gamma=0.1),
    "BEGAN": lambda a: swapped(
        BEGAN(latent_dim=a.latent_dim, image_size=8, features=1, embedding=8),
        networks(a)[0], MLPAutoencoder((2,), (a.d_width,) * a.d_layers, embedding=a.d_width // 2),
    ),
    "Minibatch discrimination": lambda a: mlp(a, d_minibatch="discrimination"),
    "Minibatch stddev": lambda a: mlp(a, d_minibatch="stddev"),
    "PacGAN2": lambda a: mlp(a, pack=2),
    "PacGAN4": lambda a: mlp(a, pack=4),
    "Unrolled GAN (5 steps)": lambda a: swapped(
        UnrolledGAN(**TINY_IMAGES, latent_dim=a.latent_dim, unroll_steps=5, **optimizers(a)), *networks(a)
    ),
}


def scatter(points: torch.Tensor, modes: torch.Tensor, extent: float, size: int = 256) -> torch.Tensor:
    """A [3, size, size] image: samples as blue dots over the true modes as red crosses, square window of half-side
    ``extent`` around the origin."""
    image = torch.ones(3, size, size)

    def pixels(xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ij = ((xy / extent + 1) / 2 * (size - 1)).round().long()
        inside = ((ij >= 0) & (ij < size)).all(dim=1)
        return (size - 1 - ij[inside, 1]), ij[inside, 0]  # rows from the top

    rows, cols = pixels(points)
    image[:, rows, cols] = torch.tensor([0.1, 0.3, 0.9]).view(3, 1)
    for d in range(-3, 4):
        for offset in ((d, 0), (0, d)):
            rows, cols = pixels(modes + torch.tensor(offset) * extent / size * 2)
            image[:, rows, cols] = torch.tensor([0.9, 0.1, 0.1]).view(3, 1)
    return image


def run(name: str, mixture: str, seed: int, args: argparse.Namespace) -> dict:
    L.seed_everything(seed, verbose=False)
    model = VARIANTS[name](args)
    if args.anneal:
        # Both learning rates fall linearly to 0 over the run, for every variant alike: the samples at the end are
        # those of a converged generator, not a snapshot of one still moving at full learning rate.
        anneal = {"class_path": "torch.optim.lr_scheduler.LinearLR",
                  "init_args": {"start_factor": 1.0, "end_factor": 0.0, "total_iters": args.steps}}
        model.g_scheduler = model.d_scheduler = optimizer_factory(anneal)
        model.scheduler_interval = "step"
    data = GaussianMixtureDataModule(mixture, batch_size=args.batch_size, seed=seed)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=args.steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
    )
    start = time.perf_counter()
    trainer.fit(model, data)
    seconds = time.perf_counter() - start
    model.generator.eval()
    with torch.no_grad():
        points = model.decode(model.generator, model.sample_z(args.eval_samples, torch.Generator().manual_seed(seed)))
    modes, quality = mode_coverage(points, data.modes, data.std)
    return {"modes": modes, "quality": quality, "seconds": seconds, "points": points}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="generator iterations per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mixtures", nargs="+", default=["ring", "grid"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help="names as in the table")
    # The unrolled-GAN paper's 2-D setting (Metz et al. 2017, appendix A, and their notebook).
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--latent-dim", type=int, default=256)
    parser.add_argument("--g-lr", type=float, default=1e-3, help="generator's Adam lr where the variant has no own")
    parser.add_argument("--d-lr", type=float, default=1e-4, help="discriminator's Adam lr likewise")
    parser.add_argument("--g-width", type=int, default=128)
    parser.add_argument("--g-layers", type=int, default=2)
    parser.add_argument("--d-width", type=int, default=128)
    parser.add_argument("--d-layers", type=int, default=1)
    parser.add_argument("--eval-samples", type=int, default=2500)
    parser.add_argument("--anneal", action=argparse.BooleanOptionalAction, default=True,
                        help="learning rates decay linearly to 0 over the run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (runs are small: 1 is fastest)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/mode_coverage"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    args.out.mkdir(parents=True, exist_ok=True)

    results: dict[str, dict[str, list[dict]]] = {}
    for mixture in args.mixtures:
        modes_total = 8 if mixture == "ring" else 25
        for name in args.variants:
            runs = [run(name, mixture, seed, args) for seed in args.seeds]
            results.setdefault(name, {})[mixture] = [{k: v for k, v in r.items() if k != "points"} for r in runs]
            extent = 3.0 if mixture == "ring" else 6.0
            modes = GaussianMixtureDataModule(mixture).modes
            file = args.out / f"{mixture}_{name.split(' (')[0].lower().replace(' ', '_').replace('-', '_')}.png"
            save_image(scatter(runs[0]["points"], modes, extent), file)
            m = [r["modes"] for r in runs]
            q = [100 * r["quality"] for r in runs]
            print(
                f"{mixture:4s} {name:30s} modes {statistics.mean(m):5.2f} +- {statistics.pstdev(m):4.2f} / {modes_total}"
                f"  high-quality {statistics.mean(q):5.1f}% +- {statistics.pstdev(q):4.1f}"
                f"  ({statistics.mean(r['seconds'] for r in runs):.0f} s/run)  seeds: {m}",
                flush=True,
            )
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                        "results": results}, indent=1))

    print("\n| Variant | ring: modes (of 8) | ring: high quality | grid: modes (of 25) | grid: high quality |")
    print("|---|---|---|---|---|")
    for name, per in results.items():
        cells = []
        for mixture in ("ring", "grid"):
            runs = per.get(mixture)
            if not runs:
                cells += ["", ""]
                continue
            m = [r["modes"] for r in runs]
            q = [100 * r["quality"] for r in runs]
            cells += [f"{statistics.mean(m):.1f} ± {statistics.pstdev(m):.1f}", f"{statistics.mean(q):.1f}% ± {statistics.pstdev(q):.1f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
