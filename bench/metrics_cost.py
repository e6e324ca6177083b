"""What FID/KID/IS cost: feature extraction per image, the metric arithmetic at 10k and 50k samples, peak memory,
and the share of training time the GANMetrics callback takes at a config's interval.

    python bench/metrics_cost.py --extract 1000 --counts 10000 50000 --seconds-per-iter 0.3715 --interval 2000

The FID Inception weights cannot be downloaded on machines without network, so the extractor here is
torch-fidelity's Inception-v3 (through ``callbacks.metrics.InceptionV3Features``) with random weights: the same
network and arithmetic, so the same time, but meaningless values. ``--weights PATH`` uses real weights instead.
Each metric-arithmetic measurement runs in its own process so that its peak resident memory is its own.
"""

import argparse
import contextlib
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from callbacks.metrics import (
    InceptionV3Features,
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    to_uint8_rgb,
)
from gans import DCGAN


def peak_rss_mib() -> float:
    """Peak resident memory of this process (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def random_inception_weights(path: Path) -> None:
    """Writes a randomly initialised state dict of torch-fidelity's Inception-v3 (timing only)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    with contextlib.ExitStack() as stack:
        original = nn.Module.load_state_dict
        stack.callback(setattr, nn.Module, "load_state_dict", original)
        nn.Module.load_state_dict = lambda self, *args, **kwargs: None
        stack.callback(setattr, tf_inception, "load_state_dict_from_url", tf_inception.load_state_dict_from_url)
        tf_inception.load_state_dict_from_url = lambda *args, **kwargs: {}
        net = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"])
    torch.save(net.state_dict(), path)


def measure_arithmetic(count: int) -> dict:
    """FID, KID and IS arithmetic on random features of ``count`` images against as many real ones."""
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(count, 2048, generator=generator).abs()  # pool features are non-negative
    fake = torch.randn(count, 2048, generator=generator).abs()
    logits = torch.randn(count, 1008, generator=generator)
    times = {}
    start = time.perf_counter()
    mu_r, sigma_r = feature_statistics(real)
    mu_f, sigma_f = feature_statistics(fake)
    times["statistics (both sets)"] = time.perf_counter() - start
    start = time.perf_counter()
    frechet_distance(mu_r, sigma_r, mu_f, sigma_f)
    times["Frechet distance"] = time.perf_counter() - start
    start = time.perf_counter()
    kernel_inception_distance(real, fake, subsets=100, subset_size=1000)
    times["KID (100 subsets of 1000)"] = time.perf_counter() - start
    start = time.perf_counter()
    inception_score(logits, splits=10)
    times["IS (10 splits)"] = time.perf_counter() - start
    return {"seconds": times, "peak_rss_mib": peak_rss_mib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extract", type=int, default=1000, help="images to time generation and extraction on")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--counts", type=int, nargs="+", default=[10000, 50000])
    parser.add_argument("--seconds-per-iter", type=float, default=None, help="training s/it, for the share")
    parser.add_argument("--interval", type=int, default=2000, help="iterations between evaluations (the config's)")
    parser.add_argument("--num-samples", type=int, default=10000, help="samples per evaluation (the config's)")
    parser.add_argument("--weights", default=None, help="real Inception weights (default: random, timing only)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arithmetic-only", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arithmetic_only is not None:
        print(json.dumps(measure_arithmetic(args.arithmetic_only)))
        return

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights
        if weights is None:
            weights = str(Path(tmp) / "random_inception.pth")
            random_inception_weights(Path(weights))
        extractor = InceptionV3Features(weights_path=weights).eval().to(device)
    model = DCGAN(channels=1, image_size=32).to(device)  # the config's generator; its weights do not matter
    z = model.sample_z(args.extract, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        extractor(to_uint8_rgb(model.sample(z=z[:8])))  # warm-up
        gen_s = extract_s = 0.0
        for chunk in z.split(args.batch_size):
            start = time.perf_counter()
            images = model.sample(z=chunk)
            if device.type == "cuda":
                torch.cuda.synchronize()
            gen_s += time.perf_counter() - start
            start = time.perf_counter()
            extractor(to_uint8_rgb(images))
            if device.type == "cuda":
                torch.cuda.synchronize()
            extract_s += time.perf_counter() - start
    gen_ms, extract_ms = 1000 * gen_s / args.extract, 1000 * extract_s / args.extract

    arithmetic = {}
    for count in args.counts:
        out = subprocess.run(
            [sys.executable, __file__, "--arithmetic-only", str(count)], capture_output=True, text=True, check=True
        )
        arithmetic[count] = json.loads(out.stdout.strip().splitlines()[-1])

    cpu = platform.processor() or "unknown CPU"
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    lines = [
        "## FID/KID/IS cost",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- hardware: {cpu}, {torch.get_num_threads()} torch threads, GPU: {gpu}; device used: {device}",
        f"- software: Python {platform.python_version()}, torch {torch.__version__}",
        f"- extractor: torch-fidelity Inception-v3, {'given weights' if args.weights else 'random weights (timing only)'}",
        "",
        (f"Per image, measured on {args.extract} DCGAN 32x32 samples in batches of {args.batch_size}: generation "
        f"{gen_ms:.2f} ms, feature extraction (resize to 299 inside Inception) {extract_ms:.2f} ms."),
        "",
        "| samples | statistics s | Frechet s | KID s | IS s | peak RSS MiB | extraction s (derived) | total s (derived) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count, result in arithmetic.items():
        t = result["seconds"]
        extraction = count * (gen_ms + extract_ms) / 1000
        total = extraction + sum(t.values())
        lines.append(
            f"| {count} | {t['statistics (both sets)']:.2f} | {t['Frechet distance']:.2f} | "
            f"{t['KID (100 subsets of 1000)']:.2f} | {t['IS (10 splits)']:.2f} | {result['peak_rss_mib']:.0f} | "
            f"{extraction:.0f} | {total:.0f} |"
        )
    lines += [
        "",
        ("The arithmetic columns are measured on random features of that many images (real and generated each); "
        "'extraction' is that many images times the measured per-image generation and extraction time, and "
        "'total' adds the arithmetic: derived, not timed end to end."),
    ]
    if args.seconds_per_iter:
        t = arithmetic.get(args.num_samples, next(iter(arithmetic.values())))["seconds"]
        evaluation = args.num_samples * (gen_ms + extract_ms) / 1000 + sum(t.values())
        training = args.interval * args.seconds_per_iter
        lines += [
            "",
            (f"Share of training time at the config's interval (derived): one evaluation of {args.num_samples} "
            f"samples every {args.interval} iterations of {args.seconds_per_iter} s: {evaluation:.0f} s per "
            f"{training:.0f} s of training = {100 * evaluation / (evaluation + training):.1f}% of wall time."),
        ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
