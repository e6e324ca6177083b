"""Training throughput: the library's module against a plain PyTorch loop of the same networks and math, and the GAN
data-parallel strategy against DDP with find_unused_parameters=True.

    python bench/throughput.py --models dcgan wgan_gp --modes plain lightning ddp_find_unused gan_ddp

Each (model, mode) runs in its own process (clean peak-memory figures, a fresh process group). Synthetic data:
random images in [-1, 1], 64x64 RGB, so data loading is negligible and the figures are the training step's. An
iteration is ``n_critic`` discriminator steps and one generator step (DCGAN: 1, WGAN-GP: 5); images per second
count real images shown to the discriminator, summed over processes. The two-process modes split the cores
between the processes (CPU) or take one GPU each. Peak memory: the largest resident set of a process (CPU) or
``torch.cuda.max_memory_allocated`` (GPU).

``--adam`` sets both loops' Adam step (equal math). The speed-up of the library's fast options over a plain fp32
loop with PyTorch's defaults takes two runs:

    python bench/throughput.py --device cuda --models dcgan --modes plain --adam foreach
    python bench/throughput.py --device cuda --models dcgan --modes lightning --precision bf16-mixed --channels-last
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch
from dcgan_overhead import check_finite  # the same check as StepGuard.check (bench/ is on sys.path)
from torch.utils.data import DataLoader, Dataset

from gans import DCGAN, WGANGP
from gans.dcgan import DCGAN_ADAM
from gans.losses import gradient_penalty
from gans.optim import fused_where_supported
from gans.seeding import step_seed
from gans.wgan_gp import WGANGP_ADAM

REPO_ROOT = Path(__file__).resolve().parents[1]

MODES = ("plain", "lightning", "ddp_find_unused", "gan_ddp")


class RandomImages(Dataset):
    """``n`` fixed random images [3, size, size] in [-1, 1]."""

    def __init__(self, n: int, size: int) -> None:
        self.images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def build(name: str, size: int, adam_step: str = "fused", **options) -> L.LightningModule:
    """The paper's 64x64 model; ``adam_step`` ``"fused"`` leaves its Adam to the module (fused where the device has
    the kernels), ``"foreach"`` asks for PyTorch's default multi-tensor step; ``options`` go to the module
    (``channels_last``, ``compile``)."""
    torch.manual_seed(0)
    cls, adam = (DCGAN, DCGAN_ADAM) if name == "dcgan" else (WGANGP, WGANGP_ADAM)
    if adam_step == "foreach":
        adam = {**adam, "init_args": {**adam["init_args"], "foreach": True}}
    return cls(channels=3, image_size=size, g_optimizer=adam, d_optimizer=adam, **options)


# -------------------------------------------------------------------------------------------------------------------
# Plain PyTorch: the same networks, losses, penalty, optimizers and per-step seeds as the module's training_step.
# -------------------------------------------------------------------------------------------------------------------


def run_plain(args: argparse.Namespace, device: torch.device) -> dict:
    model = build(args.model, args.size, args.adam).to(device)
    generator, discriminator = model.generator, model.discriminator
    factories = model.optimizer_factories  # as the module's configure_optimizers builds them
    g_opt = fused_where_supported(factories["g"](generator.parameters()))
    d_opt = fused_where_supported(factories["d"](discriminator.parameters()))
    loader = DataLoader(RandomImages(args.num_images, args.size), batch_size=args.batch_size, shuffle=True,
                        drop_last=True, pin_memory=device.type == "cuda")
    rng_seed, d_steps, iterations = int(torch.randint(2**62, ())), 0, 0
    total = args.warmup + args.iters
    start = time.perf_counter()
    while iterations < total:
        for real in loader:
            if iterations == args.warmup and d_steps % model.n_critic == 0:
                _sync(device)
                start = time.perf_counter()
            torch.manual_seed(step_seed(rng_seed, 0, d_steps))
            real = real.to(device, non_blocking=True)
            n = real.shape[0]
            with torch.no_grad():
                fake = generator(torch.randn(n, model.latent_dim, device=device))
            d_real, d_fake = discriminator(real), discriminator(fake)
            d_loss = model.d_adversarial(d_real, d_fake)
            if args.model == "wgan_gp":
                d_loss = d_loss + model.gp_weight * gradient_penalty(discriminator, real, fake)
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            check_finite({"d_loss": d_loss, "d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean()},
                         list(discriminator.parameters()))
            d_opt.step()
            d_steps += 1
            if d_steps % model.n_critic == 0:
                discriminator.requires_grad_(False)
                g_loss = model.g_adversarial(discriminator(generator(torch.randn(n, model.latent_dim, device=device))))
                g_opt.zero_grad(set_to_none=True)
                g_loss.backward()
                check_finite({"g_loss": g_loss}, list(generator.parameters()))
                g_opt.step()
                discriminator.requires_grad_(True)
                iterations += 1
                if iterations == total:
                    break
    _sync(device)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "world": 1, **adam_ms([g_opt, d_opt], device)}


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def peak_mib() -> float:
    """This process's peak memory: CUDA memory allocated on GPU, the resident set on CPU."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -------------------------------------------------------------------------------------------------------------------
# The library's module through Lightning, in one process or two
# -------------------------------------------------------------------------------------------------------------------


class Timer(L.Callback):
    """Times the iterations after the warm-up ones (from the first D step of iteration ``warmup``)."""

    def __init__(self, warmup: int, out: Path) -> None:
        self.warmup, self.out, self.start = warmup, out, None

    def on_train_batch_start(self, trainer, module, *args) -> None:
        if self.start is None and trainer.global_step == self.warmup and module.batches_seen % module.n_critic == 0:
            _sync(module.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, module) -> None:
        _sync(module.device)
        seconds = time.perf_counter() - self.start
        result = {"seconds": seconds, "world": trainer.world_size, "peak_mib": peak_mib()}
        if trainer.world_size == 1:
            result.update(adam_ms(trainer.optimizers, module.device))
        if trainer.world_size > 1 and type(trainer.strategy).__name__ == "GANDDPStrategy":
            result.update(allreduce_ms(module, trainer.world_size))
        if trainer.is_global_zero:  # measured here: with two processes this is a spawned one, not the benchmark's
            self.out.write_text(json.dumps(result))


def ms_per_call(fn, device: torch.device, repeats: int, warmup: int) -> float:
    """Milliseconds per call of ``fn`` over ``repeats`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats * 1000


def adam_ms(optimizers: list[torch.optim.Optimizer], device: torch.device) -> dict:
    """Milliseconds of one optimizer step of G and of D (the last gradients, stepped again after the timed run)."""
    return {
        f"adam_{name}_ms": ms_per_call(optimizer.step, device, repeats=20, warmup=3)
        for name, optimizer in zip(("g", "d"), optimizers, strict=True)
    }


def allreduce_ms(module: L.LightningModule, world: int) -> dict:
    """What gan_ddp's communication costs: the milliseconds of one gradient all-reduce of G and of D, as its
    optimizer steps run them (after the backward, not overlapped with it), timed in the training processes."""
    from gans.distributed import all_reduce_gradients

    times = {}
    for name in ("generator", "discriminator"):
        params = list(getattr(module, name).parameters())
        for p in params:
            p.grad = torch.zeros_like(p) if p.grad is None else p.grad
        reduce = functools.partial(all_reduce_gradients, params, world)
        times[f"allreduce_{name[0]}_ms"] = ms_per_call(reduce, module.device, repeats=10, warmup=1)
    return times


def run_lightning(args: argparse.Namespace, device: torch.device, out: Path) -> dict | None:
    from lightning.pytorch.strategies import DDPStrategy

    from gans import GANDDPStrategy

    options = {"channels_last": args.channels_last, "compile": ["generator"] if args.compile else None}
    if args.compile and args.model == "dcgan":  # WGAN-GP's critic needs a double backward: it stays eager
        options["compile"] = ["generator", "discriminator"]
    model = build(args.model, args.size, args.adam, **options)
    processes = 1 if args.mode == "lightning" else 2
    strategy = {
        "lightning": "auto",
        "ddp_find_unused": DDPStrategy(find_unused_parameters=True, start_method="spawn"),
        "gan_ddp": GANDDPStrategy(start_method="spawn"),
    }[args.mode]
    trainer = L.Trainer(
        accelerator=device.type, devices=processes, strategy=strategy, max_steps=args.warmup + args.iters,
        precision=args.precision,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[Timer(args.warmup, out)],
    )
    loader = DataLoader(RandomImages(args.num_images, args.size), batch_size=args.batch_size, shuffle=True,
                        drop_last=True, pin_memory=device.type == "cuda")
    trainer.fit(model, loader)
    return json.loads(out.read_text())


# -------------------------------------------------------------------------------------------------------------------


def one_run(args: argparse.Namespace) -> None:
    """Runs one (model, mode) and prints its result as JSON on the last line."""
    device = torch.device(args.device)
    if device.type == "cpu" and args.mode in ("ddp_find_unused", "gan_ddp"):
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))  # the two processes share the cores
        os.environ["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    out = Path(args.out) / f"{args.model}_{args.mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = run_plain(args, device) if args.mode == "plain" else run_lightning(args, device, out)
    n_critic = 5 if args.model == "wgan_gp" else 1
    result.update(
        model=args.model,
        mode=args.mode,
        it_per_s=args.iters / result["seconds"],
        images_per_s=args.iters * n_critic * args.batch_size * result["world"] / result["seconds"],
    )
    result.setdefault("peak_mib", peak_mib())
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["dcgan", "wgan_gp"], choices=["dcgan", "wgan_gp"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=64, help="image side (64: DCGAN-64, WGAN-GP-64)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch, per process")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=3, help="iterations before the timing starts")
    parser.add_argument("--num-images", type=int, default=2048, help="size of the synthetic data set")
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "out" / "throughput"))
    parser.add_argument(
        "--adam", choices=["fused", "foreach"], default="fused",
        help="Adam's step in both loops: fused (the module's default where the device has the kernels) or foreach "
        "(PyTorch's default)",
    )
    # Speed options of the library's runs; the plain loop stays the fp32 eager reference.
    parser.add_argument("--precision", default="32-true", help="Trainer precision: 32-true, bf16-mixed, 16-mixed")
    parser.add_argument("--channels-last", action="store_true", help="the module's channels_last option")
    parser.add_argument("--compile", action="store_true", help="torch.compile G (and DCGAN's D)")
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode is not None:
        return one_run(args)

    rows = []
    for model in args.models:
        for mode in args.modes:
            command = [sys.executable, __file__, "--model", model, "--mode", mode, "--device", args.device,
                       "--size", str(args.size), "--batch-size", str(args.batch_size), "--iters", str(args.iters),
                       "--warmup", str(args.warmup), "--num-images", str(args.num_images), "--out", args.out,
                       "--precision", args.precision, "--adam", args.adam]
            command += [flag for flag, on in (("--channels-last", args.channels_last), ("--compile", args.compile))
                        if on]
            print(f"{model} / {mode} ...", file=sys.stderr, flush=True)
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{model} / {mode} failed")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))

    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else None
    print(f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"- command: `python bench/throughput.py {shlex.join(sys.argv[1:])}`")
    print(f"- hardware: {gpu or cpu_name()}, {os.cpu_count()} logical cores")
    print(f"- software: Python {platform.python_version()}, torch {torch.__version__}, lightning {L.__version__}")
    print(f"- run: {args.size}x{args.size} RGB synthetic images, batch {args.batch_size} per process, "
          f"{args.iters} timed iterations after {args.warmup}; {args.adam} Adam; plain loop: fp32 eager; library: "
          f"{args.precision}{', channels_last' if args.channels_last else ''}"
          f"{', compiled' if args.compile else ''}\n")
    # The comparisons the targets ask for: the module against the plain loop (one process), and the GAN strategy
    # against DDP with find_unused_parameters (two processes).
    print("| model | mode | processes | it/s | images/s | peak MiB (per process) | Adam step G / D ms | speed vs reference |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    speed = {(r["model"], r["mode"]): r["it_per_s"] for r in rows}
    reference = {"lightning": "plain", "gan_ddp": "ddp_find_unused"}
    for r in rows:
        ref = speed.get((r["model"], reference.get(r["mode"], "")))
        ratio = f"{r['it_per_s'] / ref:.3f}x {reference[r['mode']]}" if ref else ""
        adam = f"{r['adam_g_ms']:.1f} / {r['adam_d_ms']:.1f}" if "adam_g_ms" in r else ""
        print(f"| {r['model']} | {r['mode']} | {r['world']} | {r['it_per_s']:.3f} | {r['images_per_s']:.1f} | "
              f"{r['peak_mib']:.0f} | {adam} | {ratio} |")
    for r in rows:
        if "allreduce_d_ms" in r:
            # An iteration runs n_critic D all-reduces and one G all-reduce, none overlapped with a backward.
            n_critic = 5 if r["model"] == "wgan_gp" else 1
            comm = (n_critic * r["allreduce_d_ms"] + r["allreduce_g_ms"]) / 1000
            print(f"\n{r['model']} gan_ddp all-reduce: G {r['allreduce_g_ms']:.1f} ms, D {r['allreduce_d_ms']:.1f} ms; "
                  f"{comm * r['it_per_s']:.1%} of an iteration")


if __name__ == "__main__":
    main()
