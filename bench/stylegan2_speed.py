"""StyleGAN2 training speed: seconds per thousand real images (sec/kimg) and peak memory, ours against NVIDIA's
stylegan2-ada-pytorch at the same configuration.

    python bench/stylegan2_speed.py --resolution 32 --batch 32 --iterations 12 [--official PATH] [--device cpu]

Both sides train the same networks (the ``auto`` preset of the official ``train.py`` for the resolution and one
process, unless ``--channel-base``/``--channel-max``/``--map`` say otherwise) on random real images with the same
schedule: G every iteration, path length every 4th, D every iteration, R1 every 16th, style mixing 0.9, EMA after
every iteration. ``--official`` is a checkout of https://github.com/NVlabs/stylegan2-ada-pytorch (never imported by
the library or its tests; on a CPU it takes its reference paths, without the custom CUDA kernels). Timing starts
after ``--warmup`` iterations (the first include one-time allocations) and covers whole 16-iteration cycles when
``--iterations`` is a multiple of 16, so both lazy phases weigh as in training; ours is timed inside a Lightning
``Trainer.fit`` (what users run), the official inside a copy of its training loop's phase loop.

Precision: ``--num-fp16-res`` puts the highest-resolution blocks in float16: by default 4 (train.py's) on a GPU and 0
on a CPU. The official code honours it on a CPU too, where PyTorch has no fast float16 convolution (its slow im2col
path, ``aten::_slow_conv2d_*``, took 94% of a profiled iteration at 32x32); ours runs those blocks in float32 on a CPU,
so only 0 compares the same arithmetic there. ``--profile N`` prints the N ops of most self CPU time over
the timed iterations (``torch.profiler``).

Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU; on a CPU, the process's peak resident set size (ru_maxrss),
which includes Python and the libraries: each side runs in its own process (``--side``).
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def auto_spec(resolution: int, gpus: int = 1) -> dict:
    """The official ``auto`` configuration (train.py, cfg_specs) for ``resolution`` and ``gpus``."""
    mb = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
    return {
        "mb": mb, "mbstd": min(mb // gpus, 4), "channel_base": int((1 if resolution >= 512 else 0.5) * 32768),
        "lrate": 0.002 if resolution >= 1024 else 0.0025, "gamma": 0.0002 * resolution**2 / mb, "ema": mb * 10 / 32,
        "map": 2,
    }


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_official(args: argparse.Namespace, spec: dict) -> dict:
    sys.path.insert(0, str(Path(args.official).resolve()))
    import copy

    from training.loss import StyleGAN2Loss
    from training.networks import Discriminator, Generator

    device = torch.device(args.device)
    common = {"c_dim": 0, "img_resolution": args.resolution, "img_channels": 3}
    net = {"channel_base": spec["channel_base"], "channel_max": args.channel_max, "num_fp16_res": args.num_fp16_res,
           "conv_clamp": 256}
    G = Generator(z_dim=512, w_dim=512, mapping_kwargs={"num_layers": spec["map"]}, synthesis_kwargs=net, **common)
    D = Discriminator(block_kwargs={}, mapping_kwargs={}, epilogue_kwargs={"mbstd_group_size": spec["mbstd"]},
                      **net, **common)
    G, D = G.train().requires_grad_(False).to(device), D.train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    loss = StyleGAN2Loss(device=device, G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, r1_gamma=spec["gamma"])
    phases = []
    for name, module, interval in (("G", G, 4), ("D", D, 16)):
        ratio = interval / (interval + 1)
        opt = torch.optim.Adam(module.parameters(), lr=spec["lrate"] * ratio, betas=[0**ratio, 0.99**ratio], eps=1e-8)
        phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]
    batch = args.batch
    real = torch.randn(batch, 3, args.resolution, args.resolution, device=device).clamp(-1, 1)
    c = torch.zeros(batch, 0, device=device)
    ema_nimg, times = spec["ema"] * 1000, []
    for batch_idx in range(args.warmup + args.iterations):
        if batch_idx == args.warmup:
            synchronize(device)
            profiler = start_profiler(args)
            start = time.perf_counter()
        for phase_name, module, opt, interval in phases:
            if batch_idx % interval != 0:
                continue
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            loss.accumulate_gradients(phase=phase_name, real_img=real, real_c=c, gen_z=torch.randn(batch, 512,
                                      device=device), gen_c=c, sync=True, gain=interval)
            module.requires_grad_(False)
            opt.step()
        beta = 0.5 ** (batch / max(min(ema_nimg, (batch_idx + 1) * batch * 0.05), 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
                p_ema.copy_(p.lerp(p_ema, beta))
        times.append(time.perf_counter())
    synchronize(device)
    seconds = time.perf_counter() - start
    stop_profiler(profiler, args)
    return {"side": "official", "sec_per_kimg": seconds / (args.iterations * batch) * 1000,
            "peak_mib": peak_memory_mib(device),
            "g_params": sum(p.numel() for p in G.parameters()), "d_params": sum(p.numel() for p in D.parameters())}


def start_profiler(args: argparse.Namespace) -> "torch.profiler.profile | None":
    if not args.profile:
        return None
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]
                                      + ([torch.profiler.ProfilerActivity.CUDA] if args.device != "cpu" else []))
    profiler.__enter__()
    return profiler


def stop_profiler(profiler: "torch.profiler.profile | None", args: argparse.Namespace) -> None:
    if profiler is None:
        return
    profiler.__exit__(None, None, None)
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile, max_name_column_width=40))


def fp16_res(device: torch.device) -> int:
    """The default of ``--num-fp16-res``: train.py's 4 float16 resolutions on a GPU; none on a CPU, where ours runs
    those layers in float32 and the official code would run them in float16 (its choice ignores the device), about 20
    times slower there: the two sides would not do the same arithmetic."""
    return 4 if device.type == "cuda" else 0


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=None, help="images per iteration (default: the auto preset's)")
    parser.add_argument("--iterations", type=int, default=16, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--channel-base", type=int, default=None)
    parser.add_argument("--channel-max", type=int, default=512)
    parser.add_argument("--map", type=int, default=None, help="mapping layers (default: the auto preset's, 2)")
    parser.add_argument("--num-fp16-res", type=int, default=None,
                        help="blocks in float16 (default: 4 on a GPU, as train.py; 0 on a CPU, where ours runs float32 "
                        "and the official code would run float16)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="profile the timed iterations (torch.profiler) and print the N ops of most self CPU time")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--official", default=None, help="a stylegan2-ada-pytorch checkout, to time it too")
    parser.add_argument("--side", choices=["ours", "official"], default=None, help="run one side in this process")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--out", default=None, help="append the results as JSON lines to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = auto_spec(args.resolution)
    spec["channel_base"] = args.channel_base or spec["channel_base"]
    spec["map"] = args.map or spec["map"]
    if args.num_fp16_res is None:
        args.num_fp16_res = fp16_res(torch.device(args.device))
    args.batch = args.batch or spec["mb"]
    if args.side is None:  # each side in a process of its own, so that peak memory is its own
        sides = ["ours"] + (["official"] if args.official else [])
        for side in sides:
            subprocess.run([sys.executable, *sys.argv, "--side", side], check=True)
        return
    result = run_official(args, spec) if args.side == "official" else run_ours(args, spec)
    result.update(resolution=args.resolution, batch=args.batch, iterations=args.iterations, device=args.device,
                  threads=torch.get_num_threads(), channel_base=spec["channel_base"], channel_max=args.channel_max,
                  map=spec["map"], num_fp16_res=args.num_fp16_res)
    line = json.dumps(result)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


def run_ours(args: argparse.Namespace, spec: dict) -> dict:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from callbacks import GeneratorEMA
    from gans import StyleGAN2

    device = torch.device(args.device)
    net = {"channel_base": spec["channel_base"], "channel_max": args.channel_max, "num_fp16_res": args.num_fp16_res,
           "conv_clamp": 256}
    adam = {"class_path": "torch.optim.Adam", "init_args": {"lr": spec["lrate"], "betas": (0.0, 0.99), "eps": 1e-8}}
    model = StyleGAN2(
        latent_dim=512, channels=3, image_size=args.resolution, r1_gamma=spec["gamma"],
        generator={"init_args": {"mapping_kwargs": {"num_layers": spec["map"]}, "synthesis_kwargs": net}},
        discriminator={"init_args": {**net, "epilogue_kwargs": {"mbstd_group_size": spec["mbstd"]}}},
        g_optimizer=adam, d_optimizer=adam,
    )
    steps = args.warmup + args.iterations
    real = torch.randn(steps * args.batch, 3, args.resolution, args.resolution).clamp(-1, 1)

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == args.warmup:
                synchronize(device)
                self.profiler = start_profiler(args)
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch_idx == steps - 1:
                synchronize(device)
                self.seconds = time.perf_counter() - self.start
                stop_profiler(self.profiler, args)

    clock = Clock()
    trainer = L.Trainer(
        accelerator=device.type, devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[GeneratorEMA(half_life_kimg=spec["ema"], rampup=0.05), clock],
    )
    trainer.fit(model, DataLoader(TensorDataset(real), batch_size=args.batch))
    return {"side": "ours", "sec_per_kimg": clock.seconds / (args.iterations * args.batch) * 1000,
            "peak_mib": peak_memory_mib(device),
            "g_params": sum(p.numel() for p in model.generator.parameters()),
            "d_params": sum(p.numel() for p in model.discriminator.parameters())}


if __name__ == "__main__":
    main()
