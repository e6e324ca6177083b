"""Fashion-MNIST DCGAN + lazy R1: does a code version train as well as another? Scored with a classifier of our own.

FID's Inception weights cannot be downloaded on the benchmark machine, so the score is a Frechet distance in the
penultimate features of a small CNN trained here on the Fashion-MNIST training split (deterministic), next to that
classifier's view of the samples: the mean entropy of its prediction per sample (low: each sample looks like one
garment), its mean top-class confidence, and the entropy of the mean prediction over all samples (high, at most
ln 10 = 2.303: the samples spread over the ten classes). Only differences between runs scored with the same
classifier file mean anything; the numbers are not FIDs and compare with no published figure.

Three steps; ``train`` uses whichever ``gans`` is importable, so the same script trains two code versions
(``PYTHONPATH=<tree>``); the networks' API (flat ``d_norm`` arguments or ``generator``/``discriminator`` specs) is
read from ``DCGAN``'s signature:

    python bench/lazy_regularization.py classifier --out bench/out/lazy_reg
    PYTHONPATH=<tree> python bench/lazy_regularization.py train --seed 0 --iters 1500 --tag new --out bench/out/lazy_reg
    python bench/lazy_regularization.py score bench/out/lazy_reg/samples_*.pt --out bench/out/lazy_reg

The model is ``configs/r1_mnist.yaml``'s: DCGAN (width 64, 32x32, one channel) without BatchNorm in D, the
non-saturating loss, R1 gamma 10 computed every 16 D steps, Adam(2e-4, (0.5, 0.999)), batch 64; samples come from
the raw generator (no EMA) in eval mode, from latents fixed by ``--sample-seed``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 32
NUM_CLASSES = 10


def data_dir() -> Path:
    return Path(os.environ.get("GANS_DATA_DIR", str(REPO_ROOT.parent / "shared" / "data")))


def fashion_split(split: str) -> tuple[Tensor, Tensor]:
    """Images float [N, 1, 32, 32] in [-1, 1] (resized as MNISTDataModule resizes them) and labels int64 [N]."""
    from datamodules.mnist import load_split, resize_images

    images, labels = load_split(data_dir() / "FashionMNIST" / "raw", split)
    return resize_images(images, IMAGE_SIZE).float() / 127.5 - 1.0, labels


class Classifier(nn.Module):
    """Three conv blocks, a 256-unit penultimate layer (the features scored), ten logits."""

    def __init__(self) -> None:
        super().__init__()
        blocks = []
        for cin, cout in ((1, 32), (32, 64), (64, 128)):
            blocks += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*blocks, nn.Flatten(), nn.Linear(128 * 4 * 4, 256), nn.ReLU())
        self.head = nn.Linear(256, NUM_CLASSES)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(x)
        return features, self.head(features)


@torch.no_grad()
def classify(model: Classifier, images: Tensor, batch: int = 500) -> tuple[Tensor, Tensor]:
    """Features float64 [N, 256] and class probabilities float64 [N, 10]."""
    model.eval()
    feats, probs = [], []
    for start in range(0, len(images), batch):
        f, logits = model(images[start : start + batch])
        feats.append(f.double())
        probs.append(logits.double().softmax(-1))
    return torch.cat(feats), torch.cat(probs)


def train_classifier(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    images, labels = fashion_split("train")
    test_images, test_labels = fashion_split("test")
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        for i in range(0, len(images), 128):
            index = order[i : i + 128]
            _, logits = model(images[index])
            loss = F.cross_entropy(logits, labels[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _, probs = classify(model, test_images)
        accuracy = (probs.argmax(-1) == test_labels).double().mean().item()
        print(f"epoch {epoch + 1}: test accuracy {accuracy:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "test_accuracy": accuracy, "epochs": args.epochs,
                "seed": args.seed}, args.out / "classifier.pt")
    print(json.dumps({"test_accuracy": accuracy, "epochs": args.epochs, "seconds": time.perf_counter() - start}))


def build_gan(args: argparse.Namespace):
    from gans import DCGAN

    common = {"latent_dim": 100, "channels": 1, "image_size": IMAGE_SIZE, "r1_gamma": args.r1_gamma,
              "reg_every": args.reg_every}
    if "discriminator" in inspect.signature(DCGAN).parameters:  # networks as specs (after issue 15)
        return DCGAN(discriminator={"init_args": {"features": 64, "norm": None}}, **common), "specs"
    return DCGAN(g_features=64, d_features=64, d_norm=None, **common), "flat"


def train_gan(args: argparse.Namespace) -> None:
    import lightning as L

    import gans
    from datamodules import MNISTDataModule

    torch.set_num_threads(args.threads)
    L.seed_everything(args.seed, verbose=False)
    model, api = build_gan(args)
    data = MNISTDataModule(data_dir=str(data_dir()), dataset="fashion_mnist", batch_size=64, image_size=IMAGE_SIZE,
                           on_device=True)
    trainer = L.Trainer(accelerator="cpu", max_steps=args.iters, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(model, data)
    seconds = time.perf_counter() - start
    model.eval()
    z = torch.randn(args.samples, 100, generator=torch.Generator().manual_seed(args.sample_seed))
    with torch.no_grad():
        samples = torch.cat([model.generator(z[i : i + 500]) for i in range(0, len(z), 500)]).clamp(-1, 1)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    info = {"tag": args.tag, "seed": args.seed, "iters": args.iters, "global_step": trainer.global_step,
            "api": api, "gans": str(Path(gans.__file__).resolve().parent), "r1_gamma": args.r1_gamma,
            "reg_every": args.reg_every, "seconds": seconds, "final_metrics": metrics}
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({"samples": samples, **info}, args.out / f"samples_{args.tag}_seed{args.seed}.pt")
    print(json.dumps(info))


def frechet(a: Tensor, b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two sets of features [N, D] (float64).

    tr(sqrt(A B)) is taken as the sum of the square roots of the eigenvalues of sqrt(A) B sqrt(A), a symmetric
    positive semi-definite matrix: exact also when a covariance is singular (ReLU units dead on every input), where a
    general matrix square root of A B is not reliable.
    """
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross)


def summary(features: Tensor, probs: Tensor, reference: Tensor) -> dict:
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
    mean = probs.mean(0)
    return {
        "fd": frechet(features, reference),
        "entropy": float(entropy.mean()),
        "confidence": float(probs.max(-1).values.mean()),
        "class_entropy": float(-(mean * mean.clamp_min(1e-12).log()).sum()),
    }


def score(args: argparse.Namespace) -> None:
    checkpoint = torch.load(args.out / "classifier.pt")
    model = Classifier()
    model.load_state_dict(checkpoint["state_dict"])
    test_images, _ = fashion_split("test")
    reference, test_probs = classify(model, test_images)
    train_images, _ = fashion_split("train")
    rows = [{"tag": "real (train split)", "seed": "", "iters": "",
             **summary(*classify(model, train_images[: len(test_images)]), reference)}]
    rows[0]["test"] = summary(reference, test_probs, reference)
    for path in args.files:
        run = torch.load(path)
        features, probs = classify(model, run["samples"].float())
        rows.append({"tag": run["tag"], "seed": run["seed"], "iters": run["global_step"],
                     "seconds": round(run["seconds"]), **summary(features, probs, reference)})
    print(f"classifier test accuracy {checkpoint['test_accuracy']:.4f}; reference: the test split's 10,000 images")
    print("| run | seed | iterations | FD (classifier features) | per-sample entropy | mean confidence "
          "| entropy of the mean prediction | train s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['tag']} | {r['seed']} | {r['iters']} | {r['fd']:.2f} | {r['entropy']:.3f} | "
              f"{r['confidence']:.3f} | {r['class_entropy']:.3f} | {r.get('seconds', '')} |")
    (args.out / "scores.json").write_text(json.dumps(rows, indent=1))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out" / "lazy_reg")
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("classifier", help="train the scoring classifier on the training split")
    c.add_argument("--epochs", type=int, default=2)
    c.add_argument("--seed", type=int, default=0)
    t = commands.add_parser("train", help="train DCGAN + R1 with the importable gans; save samples")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--iters", type=int, default=1500, help="generator iterations (max_steps)")
    t.add_argument("--tag", required=True, help="name of the code version, e.g. old or new")
    t.add_argument("--r1-gamma", type=float, default=10.0)
    t.add_argument("--reg-every", type=int, default=16)
    t.add_argument("--samples", type=int, default=5000)
    t.add_argument("--sample-seed", type=int, default=1234)
    t.add_argument("--threads", type=int, default=1)
    s = commands.add_parser("score", help="score samples files against the test split")
    s.add_argument("files", nargs="+", type=Path)
    for sub in (c, t, s):
        sub.add_argument("--out", type=Path, default=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command == "train" and (args.iters < 1 or args.samples < 2):
        parser.error("--iters must be >= 1 and --samples >= 2")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    {"classifier": train_classifier, "train": train_gan, "score": score}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
