"""How fast MNISTDataModule hands training batches to the device: per-item loading in the main process, worker
processes (persistent, pinned memory on a GPU), or the whole split held on the device (``on_device``).

    python bench/data_loading.py --data-dir ../shared/data --dataset fashion_mnist --batches 300

Each setting iterates the training loader and moves every batch to the device (as Lightning does before the training
step), after a warm-up pass of 20 batches (workers started); the figure is milliseconds per batch.
"""

from __future__ import annotations

import argparse
import time

import torch

from datamodules import MNISTDataModule


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ms_per_batch(dm: MNISTDataModule, device: torch.device, batches: int, warmup: int = 20) -> float:
    loader = dm.train_dataloader()
    seen, start = 0, time.perf_counter()
    while seen < warmup + batches:
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            seen += 1
            if seen == warmup:
                sync(device)
                start = time.perf_counter()
            if seen == warmup + batches:
                break
    sync(device)
    return (time.perf_counter() - start) / batches * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=300, help="timed batches per setting")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    common = {"data_dir": args.data_dir, "dataset": args.dataset, "batch_size": args.batch_size,
              "image_size": args.image_size}
    settings = {
        "per item, main process": {},
        f"{args.workers} persistent workers{', pinned' if device.type == 'cuda' else ''}": {
            "num_workers": args.workers, "pin_memory": device.type == "cuda"},
        "on_device": {"on_device": True},
        "on_device, flip": {"on_device": True, "flip": True},
    }
    print(f"{args.dataset} {args.image_size}x{args.image_size}, batch {args.batch_size}, device {device}")
    print("| loading | ms per batch |\n|---|---:|")
    for name, options in settings.items():
        dm = MNISTDataModule(**common, **options)
        dm.setup("fit")
        if options.get("on_device"):  # without a trainer, setup leaves the set on the CPU: move it to the device
            dm.train_set.images, dm.train_set.labels = dm.train_set.images.to(device), dm.train_set.labels.to(device)
        print(f"| {name} | {ms_per_batch(dm, device, args.batches):.2f} |", flush=True)


if __name__ == "__main__":
    main()
