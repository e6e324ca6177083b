"""Seconds per iteration of the DCGAN LightningModule next to a plain PyTorch loop, on CPU, in the same process.

Both runs train DCGAN (32x32, batch 128, Adam(2e-4, betas=(0.5, 0.999)), non-saturating loss, n_critic = 1) on
Fashion-MNIST with the same data pipeline, seed, networks and math per iteration: one D step on the real batch with
fakes made under no_grad from fresh z, then one G step from fresh z with D's parameters frozen. The difference in
seconds per iteration is what the Lightning module and Trainer cost.

    python bench/dcgan_overhead.py --iters 1000 --repeats 3 --profile

Writes ``<out>/dcgan_overhead.md`` (also printed), the sample grids ``<out>/dcgan_fashion_mnist_<iters>.png``
(Lightning) and ``..._plain.png``, and, with the default ``--logger csv``, the Lightning run's metrics under
``<out>/lightning_logs``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import hashlib
import logging
import os
import platform
import pstats
import shlex
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor, nn
from torchvision.utils import save_image

from callbacks.samples import to_grid
from datamodules.mnist import MNISTDataModule
from gans import losses
from gans.dcgan import DCGAN
from gans.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from gans.optim import fused_where_supported
from gans.seeding import step_seed

REPO_ROOT = Path(__file__).resolve().parents[1]
LATENT_DIM = 100
WIDTH = 64
ADAM = {"lr": 2e-4, "betas": (0.5, 0.999)}
GRID_SIZE = 64
PROFILE_ITERS = 50

# cProfile entries (file suffix, function) whose cumulative time makes up each row of the --profile table. The rows
# do not nest, so they add up; whatever is left of the timed window is the loops, hooks and module-call dispatch.
PROFILE_ROWS: dict[str, tuple[tuple[str, str], ...]] = {
    "G and D forward": (("gans/nets/dcgan.py", "forward"),),
    "losses": (("gans/losses.py", "d_logistic"), ("gans/losses.py", "g_nonsaturating")),
    "backward (autograd engine)": (("torch/autograd/__init__.py", "backward"),),
    "Adam update": (
        ("torch/optim/adam.py", "_single_tensor_adam"),
        ("torch/optim/adam.py", "_multi_tensor_adam"),
        ("torch/optim/adam.py", "_fused_adam"),
    ),
    "zero_grad": (("torch/optim/optimizer.py", "zero_grad"),),
    "data loading (DataLoader)": (("torch/utils/data/dataloader.py", "__next__"),),
    "finite check": (("gans/guard.py", "check"), ("bench/dcgan_overhead.py", "check_finite")),
    "freeze D (requires_grad)": (
        ("lightning/pytorch/core/module.py", "toggle_optimizer"),
        ("lightning/pytorch/core/module.py", "untoggle_optimizer"),
        ("bench/dcgan_overhead.py", "set_requires_grad"),
    ),
    "self.log_dict": (("lightning/pytorch/core/module.py", "log_dict"),),
}


@dataclass
class Run:
    """One timed training run."""

    seconds_per_iter: float  # mean over the timed iterations
    whole_s: float  # warmup included; for Lightning the whole fit() (Trainer set-up and teardown too)
    d_loss: float  # of the last iteration
    g_loss: float
    samples: Tensor  # [GRID_SIZE, 1, H, W] in [-1, 1], from fixed latents


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = os.environ.get("GANS_DATA_DIR", str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument(
        "--data-dir", default=default_data, help="folder holding FashionMNIST/raw/ (default: %(default)s)"
    )
    parser.add_argument("--iters", type=int, default=1000, help="timed iterations (one D step + one G step each)")
    parser.add_argument("--warmup", type=int, default=20, help="iterations run before timing starts")
    parser.add_argument("--batch-size", type=int, default=128, help="the DCGAN paper's 128 by default")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=1, help="plain/Lightning pairs to run, to expose noise")
    parser.add_argument("--logger", choices=("csv", "none"), default="csv", help="the Lightning run's logger")
    parser.add_argument(
        "--profile", action="store_true", help=f"add a cProfile breakdown of {PROFILE_ITERS} iterations"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out", help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or args.repeats < 1 or args.batch_size < 1:
        parser.error("--iters, --repeats and --batch-size must be >= 1, --warmup >= 0")
    return args


# ---------------------------------------------------------------------------------------------------------------
# Plain PyTorch
# ---------------------------------------------------------------------------------------------------------------


def check_finite(terms: dict[str, Tensor], params: list[nn.Parameter]) -> None:
    # The same check as gans.guard.StepGuard.check (the loss terms and the gradients' total norm, one bool() per
    # step), so both runs do the same math and the same host syncs.
    grads = [p.grad for p in params if p.grad is not None]
    flags = [torch.stack([t.detach().float() for t in terms.values()]).isfinite().all()]
    flags.append(torch.nn.utils.get_total_norm(grads).isfinite())
    if not bool(torch.stack(flags).all()):
        raise FloatingPointError(f"non-finite loss terms or gradients: { {name: float(t) for name, t in terms.items()} }")


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for param in module.parameters():
        param.requires_grad_(flag)


def plain_iteration(
    real: Tensor,
    generator: nn.Module,
    discriminator: nn.Module,
    g_opt: torch.optim.Optimizer,
    d_opt: torch.optim.Optimizer,
    seed: int,
) -> tuple[Tensor, Tensor]:
    """GAN.training_step with n_critic = 1, in the same order of random draws (the global RNG seeded per step, as
    GAN.on_train_batch_start does); returns (d_loss, g_loss)."""
    torch.manual_seed(seed)
    n = real.shape[0]
    with torch.no_grad():
        fake = generator(torch.randn(n, LATENT_DIM))  # [N, 1, H, W]
    d_real = discriminator(real)  # [N]
    d_fake = discriminator(fake)  # [N]
    # d_real/d_fake means are what the module logs; computed here too so that the finite check stacks the same terms.
    d_terms = {
        "d_loss": losses.d_logistic(d_real, d_fake),
        "d_real": d_real.detach().mean(),
        "d_fake": d_fake.detach().mean(),
    }
    d_opt.zero_grad(set_to_none=True)
    d_terms["d_loss"].backward()
    check_finite(d_terms, list(discriminator.parameters()))
    d_opt.step()

    # Frozen D: the G step needs gradients through D's activations but not D's weight gradients.
    set_requires_grad(discriminator, False)
    g_terms = {"g_loss": losses.g_nonsaturating(discriminator(generator(torch.randn(n, LATENT_DIM))))}
    g_opt.zero_grad(set_to_none=True)
    g_terms["g_loss"].backward()
    check_finite(g_terms, list(generator.parameters()))
    g_opt.step()
    set_requires_grad(discriminator, True)
    return d_terms["d_loss"].detach(), g_terms["g_loss"].detach()


def run_plain(dm: MNISTDataModule, args: argparse.Namespace, iters: int, profiler: cProfile.Profile | None) -> Run:
    total = args.warmup + iters
    # Same seed, then the same construction order as DCGAN.__init__ (G, then D), so both runs start from equal weights.
    torch.manual_seed(args.seed)
    generator = DCGANGenerator(LATENT_DIM, 1, args.image_size, WIDTH).train()
    discriminator = DCGANDiscriminator(1, args.image_size, WIDTH).train()
    # Fused where the device has the kernels, as the module's configure_optimizers makes them.
    g_opt = fused_where_supported(torch.optim.Adam(generator.parameters(), **ADAM))
    d_opt = fused_where_supported(torch.optim.Adam(discriminator.parameters(), **ADAM))
    loader = dm.train_dataloader()
    rng_seed = int(torch.randint(2**62, ()))  # as GAN.setup draws it

    whole_start = time.perf_counter()
    step, start, end, epoch = 0, 0.0, 0.0, 0
    while step < total:  # epochs, as the Trainer does
        loader.sampler.set_epoch(epoch)
        epoch += 1
        for real, _ in loader:
            if step == args.warmup:  # after this batch was fetched, as on_train_batch_start is
                start = time.perf_counter()
                if profiler is not None:
                    profiler.enable()
            d_loss, g_loss = plain_iteration(
                real, generator, discriminator, g_opt, d_opt, step_seed(rng_seed, 0, step)
            )
            step += 1
            if step == total:
                end = time.perf_counter()
                if profiler is not None:
                    profiler.disable()
                break
    whole_s = time.perf_counter() - whole_start

    with torch.no_grad():
        generator.eval()  # BatchNorm running statistics, as GAN.sample uses
        z = torch.randn(GRID_SIZE, LATENT_DIM, generator=torch.Generator().manual_seed(args.seed))
        samples = generator(z).clamp(-1.0, 1.0)
    return Run((end - start) / iters, whole_s, float(d_loss), float(g_loss), samples)


# ---------------------------------------------------------------------------------------------------------------
# Lightning
# ---------------------------------------------------------------------------------------------------------------


class IterationTimer(L.Callback):
    """Times iterations ``warmup`` to ``total - 1``, from the start of the first to the end of the last, so that
    Trainer set-up and teardown stay out of the measurement. Counts the iterations it saw."""

    def __init__(self, warmup: int, total: int, profiler: cProfile.Profile | None = None) -> None:
        self.warmup = warmup
        self.total = total
        self.profiler = profiler
        self.batches = 0
        self.start = 0.0
        self.end = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
        if self.batches == self.warmup:
            self.start = time.perf_counter()
            if self.profiler is not None:
                self.profiler.enable()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
        self.batches += 1
        if self.batches == self.total:
            self.end = time.perf_counter()
            if self.profiler is not None:
                self.profiler.disable()


def run_lightning(dm: MNISTDataModule, args: argparse.Namespace, iters: int, profiler: cProfile.Profile | None) -> Run:
    total = args.warmup + iters
    torch.manual_seed(args.seed)
    module = DCGAN(
        latent_dim=LATENT_DIM, channels=1, image_size=args.image_size,
        generator={"init_args": {"features": WIDTH}}, discriminator={"init_args": {"features": WIDTH}},
    )
    timer = IterationTimer(args.warmup, total, profiler)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=total,  # counts generator steps, i.e. iterations (gans/base.py)
        logger=CSVLogger(args.out, name="lightning_logs") if args.logger == "csv" else False,
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=args.out,
    )
    whole_start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    whole_s = time.perf_counter() - whole_start
    # If global_step ever counted D steps too, max_steps would stop at half the iterations and the comparison would
    # be void: refuse to report it.
    if timer.batches != total or trainer.global_step != total:
        raise RuntimeError(
            f"Lightning ran {timer.batches} batches, global_step {trainer.global_step}; expected {total}"
        )

    metrics = trainer.callback_metrics
    samples = module.sample(GRID_SIZE, generator=torch.Generator().manual_seed(args.seed))
    return Run(
        (timer.end - timer.start) / iters,
        whole_s,
        float(metrics["train/d_loss"]),
        float(metrics["train/g_loss"]),
        samples,
    )


# ---------------------------------------------------------------------------------------------------------------
# Profile
# ---------------------------------------------------------------------------------------------------------------


def profile_rows(profiler: cProfile.Profile, iters: int, window_s: float) -> dict[str, float]:
    """Milliseconds per iteration in each PROFILE_ROWS row, plus the rest of the timed window."""
    stats = pstats.Stats(profiler).stats  # {(file, line, function): (calls, prim calls, tottime, cumtime, callers)}
    rows = {}
    for row, targets in PROFILE_ROWS.items():
        cumulative = sum(
            entry[3]
            for (file, _, function), entry in stats.items()
            if any(file.replace(os.sep, "/").endswith(suffix) and function == name for suffix, name in targets)
        )
        rows[row] = 1e3 * cumulative / iters
    rows["everything else (loop, hooks, module-call dispatch)"] = 1e3 * window_s / iters - sum(rows.values())
    rows["total, under cProfile"] = 1e3 * window_s / iters
    return rows


def profile(dm: MNISTDataModule, args: argparse.Namespace) -> str:
    """A markdown table of where each loop's time goes, over PROFILE_ITERS iterations under cProfile."""
    columns = {}
    for name, run in (("plain", run_plain), ("Lightning", run_lightning)):
        profiler = cProfile.Profile()
        result = run(dm, args, PROFILE_ITERS, profiler)
        columns[name] = profile_rows(profiler, PROFILE_ITERS, result.seconds_per_iter * PROFILE_ITERS)
    caveat = (
        "cProfile charges every Python call, so Python-heavy code (Lightning's loop and hooks) looks slower here "
        "than it runs; the timing above is the measurement, this table says where the difference comes from."
    )
    lines = [
        f"### Where the time goes ({PROFILE_ITERS} iterations under cProfile, ms/iteration)",
        "",
        caveat,
        "",
        "| part | plain | Lightning | difference |",
        "|---|---:|---:|---:|",
    ]
    for row in columns["plain"]:
        plain, lightning = columns["plain"][row], columns["Lightning"][row]
        lines.append(f"| {row} | {plain:.2f} | {lightning:.2f} | {lightning - plain:+.2f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report(args: argparse.Namespace, pairs: list[tuple[Run, Run]]) -> str:
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    command = " ".join(shlex.quote(arg) for arg in ["python", *sys.argv])
    setup = (
        f"DCGAN {args.image_size}x{args.image_size}, latent {LATENT_DIM}, width {WIDTH}, batch {args.batch_size}, "
        f"Adam(2e-4, betas=(0.5, 0.999)), non-saturating loss, n_critic 1, seed {args.seed}, "
        f"Lightning logger: {args.logger}"
    )
    timing = (
        f"{args.iters} iterations (1 D step + 1 G step each) after {args.warmup} warmup iterations, from the start "
        "of the first timed iteration to the end of the last; data loading included in both, Trainer set-up and "
        "teardown excluded. Whole run: all iterations including warmup; for Lightning the whole `fit()`."
    )
    header = (
        "| repeat | plain s/it | Lightning s/it | overhead | plain whole s | Lightning fit() s "
        "| plain d_loss | plain g_loss | Lightning d_loss | Lightning g_loss |"
    )
    lines = [
        "## DCGAN on Fashion-MNIST, CPU: Lightning module vs plain PyTorch loop",
        "",
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- command: `{command}`",
        f"- hardware: {cpu_model()}, {cores} logical cores ({usable} usable), torch threads {torch.get_num_threads()}",
        f"- software: Python {platform.python_version()}, torch {torch.__version__}, lightning {L.__version__}",
        f"- run: {setup}",
        f"- timing: {timing}",
        "",
        header,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, (plain, lit) in enumerate(pairs, 1):
        overhead = 100 * (lit.seconds_per_iter / plain.seconds_per_iter - 1)
        lines.append(
            f"| {i} | {plain.seconds_per_iter:.4f} | {lit.seconds_per_iter:.4f} | {overhead:+.1f}% "
            f"| {plain.whole_s:.1f} | {lit.whole_s:.1f} | {plain.d_loss:.4f} | {plain.g_loss:.4f} "
            f"| {lit.d_loss:.4f} | {lit.g_loss:.4f} |"
        )
    if len(pairs) > 1:
        plain_median = statistics.median(plain.seconds_per_iter for plain, _ in pairs)
        lit_median = statistics.median(lit.seconds_per_iter for _, lit in pairs)
        overhead = 100 * (lit_median / plain_median - 1)
        lines.append(f"| median | {plain_median:.4f} | {lit_median:.4f} | {overhead:+.1f}% | | | | | | |")
    plain, lit = pairs[-1]
    same = (plain.d_loss, plain.g_loss) == (lit.d_loss, lit.g_loss) and torch.equal(plain.samples, lit.samples)
    lines += [
        "",
        "Same losses and samples bit for bit: " + ("yes (the two runs did the same computation)." if same else "no."),
        "",
        # Exact bits, to compare code versions run by run (the table rounds to 4 decimals).
        (
            f"Lightning run, exact: d_loss {float(lit.d_loss).hex()}, g_loss {float(lit.g_loss).hex()}, samples "
            f"sha256 {hashlib.sha256(lit.samples.contiguous().numpy().tobytes()).hexdigest()[:16]}"
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # The loader runs in the main process on purpose (the same pipeline for both runs); Lightning's hint is noise here.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)

    dm = MNISTDataModule(
        args.data_dir, dataset="fashion_mnist", batch_size=args.batch_size, image_size=args.image_size, num_workers=0
    )
    dm.setup("fit")  # once, outside every measurement; the Trainer's own setup() call then finds it done

    pairs = []
    for i in range(args.repeats):
        print(f"repeat {i + 1}/{args.repeats}: plain loop ...", file=sys.stderr, flush=True)
        plain = run_plain(dm, args, args.iters, None)
        print(f"repeat {i + 1}/{args.repeats}: Lightning ...", file=sys.stderr, flush=True)
        lit = run_lightning(dm, args, args.iters, None)
        pairs.append((plain, lit))

    plain, lit = pairs[-1]
    grid = args.out / f"dcgan_fashion_mnist_{args.iters}.png"
    nrow = round(GRID_SIZE**0.5)
    save_image(to_grid(lit.samples, nrow), grid)
    save_image(to_grid(plain.samples, nrow), grid.with_name(f"{grid.stem}_plain.png"))

    text = report(args, pairs)
    if args.profile:
        print("profiling ...", file=sys.stderr, flush=True)
        text += "\n\n" + profile(dm, args)
    text += f"\n\nSample grids (64 fixed latents, seed {args.seed}): `{grid}` (Lightning), `{grid.stem}_plain.png`.\n"
    (args.out / "dcgan_overhead.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
