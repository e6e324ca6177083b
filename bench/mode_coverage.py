"""Mode coverage of the classic GANs on the 2-D mixtures (8 Gaussians on a ring, 25 on a grid).

Every variant trains the same MLP networks for the same number of generator iterations, with each variant's own
loss, regulariser, critic steps and, where its paper gives one (WGAN, WGAN-GP, SNGAN, BEGAN), optimizer; the others
use Adam(--g-lr / --d-lr) with the preset's beta1 (``--no-paper-optimizers``: every variant does). ``--preset metz``
(default) takes the networks and batch of the unrolled-GAN paper's 2-D experiment (Metz et al. 2017: G two ReLU
layers of 128 units from z of 256 dimensions, D one hidden layer of 128 units, batch 512), ``--preset pacgan`` those
of the PacGAN paper's (G four BatchNorm-ReLU layers of 400 units from z of 2 dimensions, D three maxout layers of 200
units, batch 100). Both learning rates decay linearly to 0 over the run (``--no-anneal`` keeps them), so the samples
scored are those of a settled generator.
After training, ``--eval-samples`` points from the generator are scored with ``datamodules.mixtures.mode_coverage``:
modes covered (at least 20 high-quality points nearest to the mode), the share of high-quality points (within 3
std of a mode) and modes reached (at least 20 points within 0.5 of the mode, sharp or not). Mean and standard
deviation over seeds are printed as a Markdown table, with ``results.json``, ``points.pt`` and ``scatter.png`` (seed
0's samples over the true modes, a row per variant) in ``--out``. Minibatch discrimination compares all pairs of a
batch: at the metz batch of 512 a run of it takes hours on a CPU (BENCHMARKS.md), so name the variants to leave it out.

    python bench/mode_coverage.py --mixtures ring --seeds 0 1 2 --out bench/out/mode_coverage_ring
    python bench/mode_coverage.py --preset pacgan --steps 10000 --mixtures grid --variants PacGAN2 ...
    python bench/mode_coverage.py --merge bench/out/run_a bench/out/run_b --out bench/out/merged
"""

import argparse
import ctypes
import json
import logging
import os
import signal
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.nn.utils import parametrize

from callbacks.samples import scatter_image
from datamodules.mixtures import GaussianMixtureDataModule, mixture_modes, mode_coverage
from gans import BEGAN, LSGAN, MLPGAN, WGAN, WGANGP, UnrolledGAN
from gans.base import GAN
from gans.nets import MLPAutoencoder, MLPDiscriminator, MLPGenerator
from gans.optim import Schedules, from_spec
from gans.sngan import SNGAN_ADAM

#: The two settings of the literature's 2-D experiments. ``metz``: the unrolled-GAN paper's (Metz et al. 2017,
#: appendix A and their notebook; also VEEGAN's): G two ReLU layers of 128 units from z of 256 dimensions, D one
#: hidden layer of 128 units, batch 512, Adam beta1 0.5 (their D lr is 1e-4). ``pacgan``: the PacGAN paper's (Lin et
#: al. 2018, their code): G four ReLU layers of 400 units with BatchNorm from z of 2 dimensions, D three maxout
#: layers of 200 units with 5 pieces, batch 100, weights from N(0, 0.02), Adam beta1 0.8 (lr 1e-4 for 400 epochs of
#: 1000 batches there).
PRESETS = {
    "metz": {
        "batch_size": 512,
        "latent_dim": 256,
        "g_width": 128,
        "g_layers": 2,
        "g_batch_norm": False,
        "d_width": 128,
        "d_layers": 1,
        "d_pieces": 1,
        "beta1": 0.5,
        "init_std": None,
    },
    "pacgan": {
        "batch_size": 100,
        "latent_dim": 2,
        "g_width": 400,
        "g_layers": 4,
        "g_batch_norm": True,
        "d_width": 200,
        "d_layers": 3,
        "d_pieces": 5,
        "beta1": 0.8,
        "init_std": 0.02,
    },
}


def adam(lr: float, beta1: float) -> dict:
    return {"class_path": "torch.optim.Adam", "init_args": {"lr": lr, "betas": (beta1, 0.999)}}


def optimizers(args: argparse.Namespace) -> dict:
    """The optimizers of the variants whose paper gives none for this setting: Adam with the preset's beta1, at
    ``--g-lr`` and ``--d-lr``."""
    return {"g_optimizer": adam(args.g_lr, args.beta1), "d_optimizer": adam(args.d_lr, args.beta1)}


def networks(args: argparse.Namespace, pack: int = 1, **d_kwargs) -> tuple[nn.Module, nn.Module]:
    generator = MLPGenerator(args.latent_dim, (2,), (args.g_width,) * args.g_layers, args.g_batch_norm, tanh=False)
    discriminator = MLPDiscriminator(
        (2 * pack,), (args.d_width,) * args.d_layers, pieces=args.d_pieces, input_dropout=0, dropout=0, **d_kwargs
    )
    return generator, discriminator


def mlp(args: argparse.Namespace, pack: int = 1, d_spectral_norm: bool = False, d_minibatch: str | None = None, **kw):
    return MLPGAN(
        latent_dim=args.latent_dim,
        data_shape=(2,),
        generator={"init_args": {"hidden": (args.g_width,) * args.g_layers, "batch_norm": args.g_batch_norm,
                                 "tanh": False}},
        discriminator={"init_args": {
            "hidden": (args.d_width,) * args.d_layers, "pieces": args.d_pieces, "input_dropout": 0, "dropout": 0,
            "spectral_norm": d_spectral_norm, "minibatch": d_minibatch,
        }},
        pack=pack,
        **{**optimizers(args), **kw},
    )


def initialise(module: nn.Module, std: float) -> None:
    """Weights of every linear layer from N(0, std), biases 0 (the PacGAN code's initialisation)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            weight = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
            nn.init.normal_(weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def swapped(model: GAN, generator: nn.Module, discriminator: nn.Module) -> GAN:
    """A variant trains whatever networks it is given: its own are replaced before training."""
    model.generator, model.discriminator = generator, discriminator
    return model


#: The looser radius of the second measure: a quarter of the spacing between neighbouring modes on the grid (2) and
#: about a third on the ring (1.53): modes a generator reaches, sharp or not.
REACH = 0.5
#: Half the side of the square each mixture's scatter plot shows.
EXTENT = {"ring": 3.0, "grid": 6.0}
#: Networks replaced at once: the image variants' networks take (channels, image size), not the points' shape, so
#: their MLP replacements are assigned (a bench run saves no checkpoint for load_gan to rebuild).
TINY_IMAGES = {"image_size": 8, "generator": {"init_args": {"features": 1}}, "discriminator": {"init_args": {"features": 1}}}
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
    "R1 lazy (gamma 0.1, every 16)": lambda a: mlp(a, r1_gamma=0.1, reg_every=16),
    "BEGAN": lambda a: swapped(
        BEGAN(latent_dim=a.latent_dim, image_size=8, generator={"init_args": {"features": 1}},
              discriminator={"init_args": {"features": 1, "embedding": 8}}),
        networks(a)[0],
        MLPAutoencoder((2,), (a.d_width,) * a.d_layers, embedding=a.d_width // 2),
    ),
    "Minibatch discrimination": lambda a: mlp(a, d_minibatch="discrimination"),
    "Minibatch stddev": lambda a: mlp(a, d_minibatch="stddev"),
    "PacGAN2": lambda a: mlp(a, pack=2),
    "PacGAN4": lambda a: mlp(a, pack=4),
    "Unrolled GAN (5 steps)": lambda a: swapped(
        UnrolledGAN(**TINY_IMAGES, latent_dim=a.latent_dim, unroll_steps=5, **optimizers(a)), *networks(a)
    ),
}


def save_figure(plots: dict[str, dict[str, torch.Tensor]], mixtures: list[str], path: Path) -> None:
    """One row per variant (its name on the left), one column per mixture: seed 0's samples over the modes."""
    from PIL import Image, ImageDraw  # torchvision's dependency

    size, label = 256, 200
    figure = Image.new("RGB", (label + size * len(mixtures), size * len(plots)), "white")
    draw = ImageDraw.Draw(figure)
    for row, (name, per) in enumerate(plots.items()):
        draw.text((8, row * size + size // 2), name, fill="black")
        for col, mixture in enumerate(mixtures):
            if mixture in per:
                image = (per[mixture].permute(1, 2, 0) * 255).round().byte().numpy()
                figure.paste(Image.fromarray(image), (label + col * size, row * size))
        draw.line([(0, row * size), (figure.width, row * size)], fill="grey")
    figure.save(path)


def run(name: str, mixture: str, seed: int, args: argparse.Namespace) -> dict:
    L.seed_everything(seed, verbose=False)
    model = VARIANTS[name](args)
    if args.init_std is not None:
        initialise(model, args.init_std)
    if not args.paper_optimizers:
        # The shared Adam for every variant: tells what a technique does from what its paper's (slower) optimizer
        # does within this budget of iterations.
        shared = optimizers(args)
        model.optimizer_factories = {"g": from_spec(shared["g_optimizer"]), "d": from_spec(shared["d_optimizer"])}
    if args.anneal:
        # Both learning rates fall linearly to 0 over the run, for every variant alike: the samples at the end are
        # those of a converged generator, not a snapshot of one still moving at full learning rate.
        anneal = {
            "class_path": "torch.optim.lr_scheduler.LinearLR",
            "init_args": {"start_factor": 1.0, "end_factor": 0.0, "total_iters": args.steps},
        }
        factories = model.optimizer_factories
        model.schedules = Schedules(
            {name: (f"{name}_scheduler", factories[name], from_spec(anneal)) for name in ("g", "d")}, "step"
        )
    data = GaussianMixtureDataModule(mixture, batch_size=args.batch_size, seed=seed)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    start = time.perf_counter()
    trainer.fit(model, data)
    seconds = time.perf_counter() - start
    points = model.sample(args.eval_samples, generator=torch.Generator().manual_seed(seed))
    modes, quality = mode_coverage(points, data.modes, data.std)
    reached, near = mode_coverage(points, data.modes, data.std, radius=REACH)
    return {"modes": modes, "quality": quality, "reached": reached, "near": near, "seconds": seconds, "points": points}


def quiet(threads: int) -> None:
    """Per process: torch threads, and no Lightning chatter or warnings."""
    torch.set_num_threads(threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def start_worker(threads: int) -> None:
    """A worker process: dies with the benchmark, then ``quiet``."""
    # PR_SET_PDEATHSIG (workers only: the benchmark itself may outlive the shell that started it): SIGKILL, since
    # Lightning's trainer traps SIGTERM; without it, a killed benchmark leaves its workers training.
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    quiet(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="generator iterations per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mixtures", nargs="+", default=["ring", "grid"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help="names as in the table")
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="metz",
        help="networks, batch and Adam beta1 of a paper's 2-D experiment; the options below override",
    )
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--latent-dim", type=int)
    parser.add_argument("--g-lr", type=float, default=1e-3, help="generator's Adam lr where the variant has no own")
    parser.add_argument(
        "--d-lr", type=float, default=1e-3, help="discriminator's Adam lr likewise (1e-4 in Metz et al.)"
    )
    parser.add_argument("--g-width", type=int)
    parser.add_argument("--g-layers", type=int)
    parser.add_argument("--g-batch-norm", action=argparse.BooleanOptionalAction)
    parser.add_argument("--d-width", type=int)
    parser.add_argument("--d-layers", type=int)
    parser.add_argument("--d-pieces", type=int, help="maxout pieces of D's hidden units (1: LeakyReLU)")
    parser.add_argument("--beta1", type=float, help="Adam beta1 of the variants without an optimizer of their own")
    parser.add_argument("--init-std", type=float, help="weights from N(0, std) (default: PyTorch's initialisation)")
    parser.add_argument(
        "--paper-optimizers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="WGAN, WGAN-GP, SNGAN and BEGAN train with their papers' optimizers (else with the shared Adam)",
    )
    parser.add_argument("--eval-samples", type=int, default=2500)
    parser.add_argument(
        "--anneal",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="learning rates decay linearly to 0 over the run",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (runs are small: 1 is fastest)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="runs in parallel processes")
    parser.add_argument("--out", type=Path, default=Path("bench/out/mode_coverage"))
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="train nothing: combine the results.json and points.pt of earlier runs' --out folders into one table "
        "and one scatter.png in --out",
    )
    parser.add_argument("--every-seed", action="store_true", help="with --merge: a figure row per variant and seed")
    args = parser.parse_args()
    if args.merge:
        return merge(args.merge, args.out, args.every_seed)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    quiet(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    tasks = [(name, mixture, seed) for mixture in args.mixtures for name in args.variants for seed in args.seeds]
    with ProcessPoolExecutor(args.jobs, initializer=start_worker, initargs=(args.threads,)) as pool:
        futures = {task: pool.submit(run, *task, args) for task in tasks}
        results: dict[str, dict[str, list[dict]]] = {}
        plots: dict[str, dict[str, torch.Tensor]] = {}
        points: dict[str, dict[str, torch.Tensor]] = {}
        for mixture in args.mixtures:
            modes = mixture_modes(mixture)
            for name in args.variants:
                runs = [futures[(name, mixture, seed)].result() for seed in args.seeds]
                results.setdefault(name, {})[mixture] = [{k: v for k, v in r.items() if k != "points"} for r in runs]
                points.setdefault(name, {})[mixture] = torch.stack([r["points"] for r in runs])  # [seeds, N, 2]
                plots.setdefault(name, {})[mixture] = scatter_image(runs[0]["points"], EXTENT[mixture], modes)
                m, q = [r["modes"] for r in runs], [100 * r["quality"] for r in runs]
                reached = [r["reached"] for r in runs]
                print(
                    f"{mixture:4s} {name:30s} modes {statistics.mean(m):5.2f} +- {statistics.pstdev(m):4.2f} / "
                    f"{len(modes)}  high-quality {statistics.mean(q):5.1f}% +- {statistics.pstdev(q):4.1f}  reached "
                    f"{statistics.mean(reached):5.2f}  ({statistics.mean(r['seconds'] for r in runs):.0f} s/run)  "
                    f"seeds: {m} {reached}",
                    flush=True,
                )
    save_figure(plots, args.mixtures, args.out / "scatter.png")
    torch.save(points, args.out / "points.pt")
    (args.out / "results.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1)
    )

    print_table(results, args.mixtures)


def merge(folders: list[Path], out: Path, every_seed: bool = False) -> None:
    """One table and one figure (seed 0's samples, or every seed's) from several runs' output folders, variants in
    order of appearance; a variant and mixture found in two folders is taken from the later one."""
    results: dict[str, dict[str, list[dict]]] = {}
    points: dict[str, dict[str, torch.Tensor]] = {}
    for folder in folders:
        for name, per in json.loads((folder / "results.json").read_text())["results"].items():
            results.setdefault(name, {}).update(per)
        for name, per in torch.load(folder / "points.pt", weights_only=True).items():
            points.setdefault(name, {}).update(per)
    mixtures = [m for m in ("ring", "grid") if any(m in per for per in results.values())]
    plots = {
        f"{name} (seed {seed})" if every_seed else name: {
            m: scatter_image(p[seed], EXTENT[m], mixture_modes(m)) for m, p in per.items() if seed < len(p)
        }
        for name, per in points.items()
        for seed in range(max(len(p) for p in per.values()) if every_seed else 1)
    }
    out.mkdir(parents=True, exist_ok=True)
    save_figure(plots, mixtures, out / "scatter.png")
    print_table(results, mixtures)


def print_table(results: dict[str, dict[str, list[dict]]], mixtures: list[str]) -> None:
    """Mean ± standard deviation over seeds, per variant and mixture, as Markdown."""

    def cell(values: list[float], unit: str = "") -> str:
        return f"{statistics.mean(values):.1f}{unit} ± {statistics.pstdev(values):.1f}"

    header = ["Variant"]
    for mixture in mixtures:
        k = 8 if mixture == "ring" else 25
        header += [f"{mixture}: modes (of {k})", f"{mixture}: high quality", f"{mixture}: reached (r={REACH})"]
    print("\n| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for name, per in results.items():
        cells = [name]
        for mixture in mixtures:
            runs = per.get(mixture, [])
            if not runs:
                cells += ["", "", ""]
                continue
            cells += [
                cell([r["modes"] for r in runs]),
                cell([100 * r["quality"] for r in runs], "%"),
                cell([r["reached"] for r in runs]),
            ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
